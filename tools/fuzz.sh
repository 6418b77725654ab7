#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang-14 in build-fuzz and runs each one for
# SECONDS_PER_TARGET (default 60) on a copy of its committed seed corpus.
# Prints "fuzz <target>: <N> executions, <M> seconds, no crash" per target; exits 1 when any
# target crashed, hung or a sanitizer fired (the input is kept in build-fuzz/fuzz-artifacts/).
#
#   tools/fuzz.sh [SECONDS_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: tools/fuzz.sh [SECONDS_PER_TARGET]  (a positive integer, default 60)" >&2
  exit 2
fi

# clang-14 and its runtimes (libFuzzer, ASan, UBSan), as tools/install-deps.sh installs packages.
missing=()
for p in clang-14 libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=()
  if ((EUID != 0)); then sudo=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

build=build-fuzz
CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -G Ninja -DFETCHQ_FUZZ=ON \
  -DFETCHQ_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target fuzz

list="$build/tests/fuzz/fuzz_targets.txt"
if [[ ! -s "$list" ]]; then
  echo "fuzz: no targets in $list (is the compiler clang and FETCHQ_FUZZ on?)" >&2
  exit 1
fi
mapfile -t targets < <(grep -v '^$' "$list")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
artifacts="$PWD/$build/fuzz-artifacts"
mkdir -p "$artifacts"
export UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

failed=0
summary=()
for target in "${targets[@]}"; do
  name="${target#fuzz_}"
  corpus="$work/corpus/$name"
  mkdir -p "$corpus" "$work/tmp/$name"
  if [[ -d "tests/fuzz/corpus/$name" ]]; then cp -R "tests/fuzz/corpus/$name/." "$corpus/"; fi
  log="$work/$name.log"
  start=$(date +%s)
  rc=0
  # TMPDIR: whatever a target creates (fuzz_url_check's roots) goes away with $work.
  TMPDIR="$work/tmp/$name" "$build/tests/fuzz/$target" "$corpus" \
    -max_total_time="$seconds" -timeout=20 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$target-" >"$log" 2>&1 || rc=$?
  elapsed=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  if [[ -z "$execs" ]]; then  # no final stats: take the last "#N" status line
    execs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -1)
  fi
  execs=${execs:-0}
  if ((rc == 0)) && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|invariant failed' "$log"; then
    summary+=("fuzz $target: $execs executions, $elapsed seconds, no crash")
  else
    failed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    cp "$log" "$artifacts/$target.log"
    echo "---- $target failed (exit $rc); log: $artifacts/$target.log" >&2
    grep -E -A12 'ERROR:|runtime error:|invariant failed' "$log" | head -40 >&2 || tail -20 "$log" >&2
    summary+=("fuzz $target: $execs executions, $elapsed seconds, CRASH (exit $rc) input: ${artifact:-none}")
  fi
done

printf '%s\n' "${summary[@]}"
exit "$failed"
