#!/usr/bin/env bash
# Checks the man pages and shell completions against a build: they install where man and the
# shells look, the pages render without a groff warning, the bash completion completes, and
# every long option the pages and completions name exists in the binaries' --help.
# Usage: tools/check-docs.sh [BUILD_DIR]   (default: build-debug; run after a build)
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build-debug}" && pwd) || exit 2
fetchq=$build/src/fetchq
fetchqd=$build/src/fetchqd
for b in "$fetchq" "$fetchqd"; do
  [[ -x $b ]] || { echo "check-docs: $b is missing; build first" >&2; exit 2; }
done
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. cmake --install puts every page and completion at its place.
cache_value() {  # NAME DEFAULT: a path from the build's cache, relative to the prefix
  local v
  v=$(sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt" | head -1)
  echo "${v:-$2}"
}
mandir=$(cache_value CMAKE_INSTALL_MANDIR share/man)
datadir=$(cache_value CMAKE_INSTALL_DATADIR share)
prefix=$tmp/prefix
if ! cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1; then
  cat "$tmp/install.log" >&2
  fail "cmake --install $build failed"
fi
pages=("$prefix/$mandir/man1/fetchq.1" "$prefix/$mandir/man5/fetchqd.conf.5" "$prefix/$mandir/man8/fetchqd.8")
bash_comp=$prefix/$datadir/bash-completion/completions/fetchq
zsh_comp=$prefix/$datadir/zsh/vendor-completions/_fetchq
fish_comp=$prefix/$datadir/fish/vendor_completions.d/fetchq.fish
for f in "${pages[@]}" "$bash_comp" "$prefix/$datadir/bash-completion/completions/fetchqd" \
  "$zsh_comp" "$fish_comp"; do
  [[ -s $f ]] || fail "not installed: ${f#"$prefix"/}"
done

# 2. Each page renders without a warning.
if ! command -v groff >/dev/null; then
  fail "groff is not installed (tools/install-deps.sh installs groff-base)"
else
  for p in "${pages[@]}"; do
    [[ -f $p ]] || continue
    out=$(groff -man -ww -z "$p" 2>&1)
    [[ -z $out ]] || fail "groff warns on $(basename "$p"): $out"
  done
fi

# 3. The bash completion completes commands, options and values (plain bash, no helpers).
complete_words() {  # WORD...: what completing the last word offers
  bash --norc --noprofile -c '
    source "$1" || exit 1
    shift
    complete -p "$1" >/dev/null || exit 1
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
    COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    func=$(complete -p "$1" | sed -n "s/.*-F \([^ ]*\).*/\1/p")
    "$func" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}" 2>/dev/null
    printf "%s\n" "${COMPREPLY[@]}"' bash "$bash_comp" "$@"
}
expect_completion() {  # WANTED WORD...
  local want=$1 got
  shift
  got=$(complete_words "$@")
  grep -qxF -- "$want" <<<"$got" || fail "bash: completing '$*' does not offer $want (got: $(echo $got))"
}
if [[ -f $bash_comp ]]; then
  expect_completion list fetchq li
  expect_completion events fetchq ev
  expect_completion --continue fetchq get --con
  expect_completion --parallel fetchq get --par
  expect_completion --allow-duplicate fetchq add --allow
  expect_completion rename fetchq add --if-exists re
  expect_completion running,waiting fetchq list --status running,wa
  expect_completion --follow fetchq events --fo
  expect_completion --max-parallel fetchqd --max-p
  expect_completion info fetchqd --log-level in
  got=$(complete_words fetchq list --con)
  [[ -z $got ]] || fail "bash: 'fetchq list --con' offers options list does not take: $got"
fi

# 4. Every long option named in a page or a completion exists in the binaries' --help.
help_of() {  # BINARY [SUB...]: the long options of the binary and each sub-command's --help
  local bin=$1
  shift
  {
    "$bin" --help
    for sub in "$@"; do "$bin" "$sub" --help; done
  } 2>&1 | grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u
}
subs=$("$fetchq" --help | awk '/^Subcommands:/ {on = 1; next} on && NF {print $1}')
[[ -n $subs ]] || fail "fetchq --help lists no commands"
# shellcheck disable=SC2086
help_of "$fetchq" $subs >"$tmp/fetchq.opts"
help_of "$fetchqd" >"$tmp/fetchqd.opts"
# The text of a page or completion whose options are checked: roff's \- made plain, roff
# comments left out, and in examples (.EX to .EE) only the lines that run fetchq or fetchqd
# (an example may run cmake or systemctl with options of their own).
option_text() {
  sed 's/\\-/-/g' "$1" | awk '
    /^\.\\"/ {next}
    /^\.EX/ {ex = 1; next}
    /^\.EE/ {ex = 0; next}
    ex {
      line = $0; sub(/^([A-Z_]+=[^ ]* )*/, "", line)
      if (line !~ /^fetchqd? /) next
    }
    {print}'
}
check_options() {  # FILE OPTIONS-LIST: the options FILE names, each must be in the list
  local file=$1 list=$2 opts
  opts=$(option_text "$file" | grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u)
  [[ -n $opts ]] || fail "$(basename "$file") names no option"
  for o in $opts; do
    grep -qxF -- "$o" "$list" || fail "$(basename "$file") names $o, which is not in its --help"
  done
}
check_options "$src/docs/man/fetchq.1" "$tmp/fetchq.opts"
check_options "$src/docs/man/fetchqd.8" "$tmp/fetchqd.opts"
# fish writes a long option as "complete ... -l name".
fish_opts=$(grep '^complete ' "$src/completions/fetchq.fish" | grep -oE -- ' -l [a-z0-9-]+' |
  awk '{print "--" $2}' | sort -u)
[[ -n $fish_opts ]] || fail "fetchq.fish names no option"
for o in $fish_opts; do
  grep -qxF -- "$o" "$tmp/fetchq.opts" || fail "fetchq.fish offers $o, which is not in fetchq's --help"
done
# The completions of fetchqd: its section of each file.
sed -n '/^_fetchqd()/,/^}/p' "$src/completions/fetchq.bash" >"$tmp/fetchqd.bash"
sed '/^_fetchqd()/,/^}/d' "$src/completions/fetchq.bash" >"$tmp/fetchq.bash"
sed -n '/^_fetchq_daemon()/,/^}/p' "$src/completions/_fetchq" >"$tmp/fetchqd.zsh"
sed '/^_fetchq_daemon()/,/^}/d' "$src/completions/_fetchq" >"$tmp/fetchq.zsh"
check_options "$tmp/fetchq.bash" "$tmp/fetchq.opts"
check_options "$tmp/fetchqd.bash" "$tmp/fetchqd.opts"
check_options "$tmp/fetchq.zsh" "$tmp/fetchq.opts"
check_options "$tmp/fetchqd.zsh" "$tmp/fetchqd.opts"
# Every setting of fetchqd.conf(5) is a fetchqd flag.
for s in $(sed -n 's/^\.BI "\([a-z\\-]*\) = ".*/\1/p' "$src/docs/man/fetchqd.conf.5" | sed 's/\\-/-/g'); do
  grep -qxF -- "--$s" "$tmp/fetchqd.opts" || fail "fetchqd.conf.5 names the setting $s, which fetchqd does not take"
done
# And the other way round: an option a binary takes is named in its man page.
option_text "$src/docs/man/fetchq.1" >"$tmp/fetchq.1.txt"
option_text "$src/docs/man/fetchqd.8" >"$tmp/fetchqd.8.txt"
for o in $(cat "$tmp/fetchq.opts"); do
  grep -qE -- "$o([^a-z0-9-]|\$)" "$tmp/fetchq.1.txt" || fail "fetchq.1 does not name $o, which fetchq takes"
done
for o in $(cat "$tmp/fetchqd.opts"); do
  grep -qE -- "$o([^a-z0-9-]|\$)" "$tmp/fetchqd.8.txt" || fail "fetchqd.8 does not name $o, which fetchqd takes"
done

# 5. zsh and fish check the syntax of theirs, where they are installed.
if command -v zsh >/dev/null; then
  zsh -n "$zsh_comp" || fail "zsh -n $zsh_comp"
else
  echo "skip: zsh is not installed" >&2
fi
if command -v fish >/dev/null; then
  fish -n "$fish_comp" || fail "fish -n $fish_comp"
else
  echo "skip: fish is not installed" >&2
fi
bash -n "$bash_comp" || fail "bash -n $bash_comp"

if ((failures)); then
  echo "check-docs: $failures failure(s)" >&2
  exit 1
fi
echo "check-docs: man pages and completions OK"
