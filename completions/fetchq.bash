# bash completion for fetchq and fetchqd. Plain bash: it needs no bash-completion helpers.
# Installed as share/bash-completion/completions/fetchq (and a fetchqd link beside it).
# Keep the option lists in step with `fetchq SUB --help` and `fetchqd --help`
# (tools/check-docs.sh checks that every option offered here exists).

_fetchq_commands="get add list show cancel pause resume retry set-url prune wait events limit stats config"

# Options of each command; those that take a value are listed again in _fetchq_valued.
_fetchq_options() {
  local common="--socket --json -h --help"
  local download="-d --dir -o --output -p --priority --sha256 --token-env --if-exists --connections -H --header --user-agent --mirror --limit-rate"
  case $1 in
    get) echo "-i --input $download -j --parallel --state --ca-cert --proxy --json -q --quiet -c --continue --retention -h --help" ;;
    add) echo "-i --input $download --allow-duplicate $common" ;;
    list) echo "--status --sort --limit --offset --errors --db $common" ;;
    show) echo "--db $common" ;;
    set-url) echo "$common" ;;
    cancel) echo "--all $common" ;;
    pause | resume | retry) echo "--all --status $common" ;;
    prune) echo "--status --older-than $common" ;;
    stats | limit) echo "$common" ;;
    config) echo "--json -h --help" ;;
    wait) echo "--timeout --progress $common" ;;
    events) echo "-f --follow --since --job --type --db $common" ;;
  esac
}

_fetchq_valued=" -d --dir -o --output -p --priority --sha256 --token-env --if-exists --connections -H --header
  --user-agent --mirror --limit-rate -j --parallel --proxy --state --ca-cert -i --input --status --sort --limit --offset --db --socket --timeout --since --job --type --older-than --retention "

_fetchq() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  local sub="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      -*) ;;
      *) sub=${COMP_WORDS[i]}; break ;;
    esac
  done
  COMPREPLY=()
  if [[ -z $sub ]]; then
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "--help --version" -- "$cur"))
    else
      COMPREPLY=($(compgen -W "$_fetchq_commands" -- "$cur"))
    fi
    return 0
  fi
  case $prev in
    --if-exists) COMPREPLY=($(compgen -W "error skip overwrite rename" -- "$cur")); return 0 ;;
    --sort) COMPREPLY=($(compgen -W "id newest priority" -- "$cur")); return 0 ;;
    --status)
      # A comma-separated list: complete the last item.
      local head="" last=$cur
      [[ $cur == *,* ]] && head=${cur%,*}, last=${cur##*,}
      COMPREPLY=($(compgen -P "$head" -W "waiting running paused completed cancelled error" -- "$last"))
      compopt -o nospace 2>/dev/null
      return 0 ;;
    --type)
      local head="" last=$cur
      [[ $cur == *,* ]] && head=${cur%,*}, last=${cur##*,}
      COMPREPLY=($(compgen -P "$head" -W "started progress complete error cancelled paused resumed restarted retrying limit_changed source_dropped" -- "$last"))
      compopt -o nospace 2>/dev/null
      return 0 ;;
    -d | --dir) COMPREPLY=($(compgen -d -- "$cur")); return 0 ;;
    -o | --output | -i | --input | --state | --db | --socket | --ca-cert)
      COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
    --token-env) COMPREPLY=($(compgen -v -- "$cur")); return 0 ;;
  esac
  [[ $_fetchq_valued == *" $prev "* ]] && return 0
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(_fetchq_options "$sub")" -- "$cur"))
  fi
  return 0
}

_fetchqd() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  COMPREPLY=()
  case $prev in
    --config | --db | --socket | --ca-cert) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
    --download-root) COMPREPLY=($(compgen -d -- "$cur")); return 0 ;;
    --log-level) COMPREPLY=($(compgen -W "trace debug info warn error off" -- "$cur")); return 0 ;;
    --block-private-addresses) COMPREPLY=($(compgen -W "0 1" -- "$cur")); return 0 ;;
    --max-parallel | --connect-timeout | --stall-timeout | --max-attempts | --give-up-after | \
      --checkpoint-interval-ms | --event-retention | --token-rule | --connections | --max-connections-per-host | \
      --max-connections | --segment-threshold | --segment-min-size | \
      --proxy | --limit-rate | --rate-schedule) return 0 ;;
  esac
  COMPREPLY=($(compgen -W "--config --db --socket --max-parallel --download-root --log-level
    --connect-timeout --stall-timeout --max-attempts --give-up-after --checkpoint-interval-ms
    --event-retention --connections --max-connections-per-host --max-connections --segment-threshold --segment-min-size --limit-rate --rate-schedule --block-private-addresses --token-rule --ca-cert --proxy --version -h --help" -- "$cur"))
  return 0
}

complete -o default -F _fetchq fetchq
complete -o default -F _fetchqd fetchqd
