# fish completion for fetchq. Installed as share/fish/vendor_completions.d/fetchq.fish.
# Keep the option lists in step with `fetchq SUB --help`.

set -l commands get add list show cancel pause resume retry set-url prune wait events limit stats config
complete -c fetchq -f
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -l help -s h -d 'print the commands'
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -l version -d 'print the version'
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -a get -d 'download URLs now, without a daemon'
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -a add -d 'queue downloads on fetchqd'
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -a list -d 'list jobs'
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -a show -d 'show one job'
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -a cancel -d 'cancel jobs'
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -a pause -d 'pause jobs'
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -a resume -d 'resume paused jobs'
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -a retry -d 'put failed jobs back to waiting'
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -a set-url -d 'give a job another URL'
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -a prune -d 'remove jobs that ended'
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -a wait -d 'wait for jobs to end'
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -a events -d 'print events'
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -a limit -d 'show or change bandwidth limits'
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -a stats -d 'counts by status, rate, uptime'
complete -c fetchq -n "not __fish_seen_subcommand_from $commands" -a config -d 'settings in effect and where each comes from'

# Every command
complete -c fetchq -n "__fish_seen_subcommand_from $commands" -s h -l help -d 'print the options'
complete -c fetchq -n "__fish_seen_subcommand_from $commands" -l json -d 'JSON output'
complete -c fetchq -n "__fish_seen_subcommand_from add list show cancel pause resume retry set-url prune wait events limit stats" -l socket -r -F -d 'control socket of fetchqd'
complete -c fetchq -n "__fish_seen_subcommand_from list show events" -l db -r -F -d 'read this database directly'

# get and add
set -l dl get add
complete -c fetchq -n "__fish_seen_subcommand_from $dl" -s d -l dir -r -a '(__fish_complete_directories)' -d 'folder to download into'
complete -c fetchq -n "__fish_seen_subcommand_from $dl" -s o -l output -r -F -d 'file to write (one URL only)'
complete -c fetchq -n "__fish_seen_subcommand_from $dl" -s p -l priority -x -d 'priority; lower runs first'
complete -c fetchq -n "__fish_seen_subcommand_from $dl" -l sha256 -x -d 'expected sha256 of the file'
complete -c fetchq -n "__fish_seen_subcommand_from $dl" -l token-env -x -a '(set -xn)' -d 'variable holding a Bearer token'
complete -c fetchq -n "__fish_seen_subcommand_from $dl" -l if-exists -x -a 'error skip overwrite rename' -d 'what to do with an existing file'
complete -c fetchq -n "__fish_seen_subcommand_from $dl" -l connections -x -d 'connections one big file may use at once (1 to 16)'
complete -c fetchq -n "__fish_seen_subcommand_from $dl" -s H -l header -x -d 'request header Name: value (repeatable)'
complete -c fetchq -n "__fish_seen_subcommand_from $dl" -l user-agent -x -d 'User-Agent to send'
complete -c fetchq -n "__fish_seen_subcommand_from $dl" -l mirror -x -d 'another URL of the same file (repeatable)'
complete -c fetchq -n "__fish_seen_subcommand_from get" -l ca-cert -r -F -d 'PEM file of CA certificates to trust'
complete -c fetchq -n "__fish_seen_subcommand_from get" -l proxy -x -d 'proxy URL'
complete -c fetchq -n "__fish_seen_subcommand_from $dl" -l limit-rate -x -d 'bytes per second at most (500k, 5M; 0: none)'
complete -c fetchq -n "__fish_seen_subcommand_from get" -s j -l parallel -x -d 'downloads at once'
complete -c fetchq -n "__fish_seen_subcommand_from get" -l state -r -F -d 'state database'
complete -c fetchq -n "__fish_seen_subcommand_from get" -s q -l quiet -d 'no progress output'
complete -c fetchq -n "__fish_seen_subcommand_from get" -s c -l continue -d 'accepted: resuming is automatic'
complete -c fetchq -n "__fish_seen_subcommand_from get" -l retention -x -d 'forget completed jobs of earlier runs older than this (30d)'
complete -c fetchq -n "__fish_seen_subcommand_from config" -l json -d 'JSON output'
complete -c fetchq -n "__fish_seen_subcommand_from add" -s i -l input -r -F -d 'file with one URL or JSON job a line'
complete -c fetchq -n "__fish_seen_subcommand_from add" -l allow-duplicate -d 'add even when a live job fetches the same'

# list
set -l statuses 'waiting running paused completed cancelled error'
complete -c fetchq -n "__fish_seen_subcommand_from list pause resume retry" -l status -x -a $statuses -d 'only jobs in these statuses'
complete -c fetchq -n "__fish_seen_subcommand_from list" -l sort -x -a 'id newest priority' -d 'order'
complete -c fetchq -n "__fish_seen_subcommand_from list" -l limit -x -d 'at most this many jobs'
complete -c fetchq -n "__fish_seen_subcommand_from list" -l offset -x -d 'skip this many jobs first'
complete -c fetchq -n "__fish_seen_subcommand_from list" -l errors -d 'count failed jobs by error type'

# cancel, pause, resume, retry
complete -c fetchq -n "__fish_seen_subcommand_from cancel pause resume retry" -l all -d 'every job it applies to'

# wait
complete -c fetchq -n "__fish_seen_subcommand_from wait" -l timeout -x -d 'seconds; exit 5 when it runs out'
complete -c fetchq -n "__fish_seen_subcommand_from wait" -l progress -d 'progress bars on standard error'

# events
complete -c fetchq -n "__fish_seen_subcommand_from events" -s f -l follow -d 'keep printing new events'
complete -c fetchq -n "__fish_seen_subcommand_from events" -l since -x -d 'only events after this seq'
complete -c fetchq -n "__fish_seen_subcommand_from events" -l job -x -d 'only events of this job'
complete -c fetchq -n "__fish_seen_subcommand_from events" -l type -x -a 'started progress complete error cancelled paused resumed restarted retrying limit_changed source_dropped' -d 'only events of these types'
complete -c fetchq -n "__fish_seen_subcommand_from get" -s i -l input -r -F -d 'file with one URL a line (- for standard input)'
complete -c fetchq -n "__fish_seen_subcommand_from prune" -l status -x -a 'completed cancelled error' -d 'only jobs that ended so'
complete -c fetchq -n "__fish_seen_subcommand_from prune" -l older-than -x -d 'only jobs that ended longer ago than this (7d)'
