#!/usr/bin/env bash
# Benchmarks fetchq against curl, wget2 and aria2c (and dd) over loopback against a throwaway nginx.
#
#   tools/bench/run.sh [--quick] [--runs N] [--only S1,S2,S3,S6,S8,S9,S4,S5,RL] [--s8-mib N] [--markdown-out FILE] [--json-out FILE]
#
# Installs the Debian packages it needs, builds build-release/ (unless FETCHQ_BIN_DIR names a folder
# with ready fetchq and fetchqd binaries), makes a scratch folder under /tmp (or $FETCHQ_BENCH_TMP),
# and runs tools/bench/bench.py, which prints a Markdown report on standard output (progress goes to
# standard error). Whatever is left running (nginx, fetchqd, aria2c) is stopped at exit, S9's network
# namespace and veth pair removed, and the scratch folder removed. See tools/bench/README.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

note() { echo "[run.sh] $*" >&2; }

# --- tools
pkgs=(nginx-light aria2 curl wget2 python3)
have_all() {
  command -v curl >/dev/null && command -v aria2c >/dev/null && command -v wget2 >/dev/null &&
    { command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]]; } && [[ -x /usr/bin/python3 ]]
}
if ! have_all; then
  note "installing ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2; then
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
  fi
fi
export PATH="$PATH:/usr/sbin:/sbin"
# S9 shapes a link with iproute2 (ip netns, veth, tc); without it (or without root) S9 runs over
# unshaped loopback and says so
if [[ $EUID -eq 0 ]] && ! { command -v ip >/dev/null && command -v tc >/dev/null; }; then
  note "installing iproute2 (for S9's shaped link)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 >&2 ||
    note "iproute2 could not be installed; S9 will run over unshaped loopback"
fi
py=/usr/bin/python3
[[ -x $py ]] || py=python3

# --- fetchq
if [[ -n "${FETCHQ_BIN_DIR:-}" ]]; then
  bin_dir=$(cd "$FETCHQ_BIN_DIR" && pwd)
  note "using the binaries in $bin_dir (FETCHQ_BIN_DIR)"
else
  [[ -x "$root/tools/install-deps.sh" ]] && "$root/tools/install-deps.sh" >&2
  build="$root/build-release"
  jobs=()
  [[ -n "${BUILD_JOBS:-}" ]] && jobs=(-j "$BUILD_JOBS")
  note "building $build"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFETCHQ_BUILD_TESTS=OFF \
    -DFETCHQ_WERROR=ON >&2
  cmake --build "$build" "${jobs[@]}" >&2
  bin_dir="$build/src"
fi

# --- scratch folder, and cleanup of whatever is left in it
tmp_base="${FETCHQ_BENCH_TMP:-/tmp}"
work=$(mktemp -d "$tmp_base/fetchq-bench.XXXXXX")
cleanup() {
  local pid f
  for f in "$work/nginx/nginx.pid" "$work/nginx-s9/nginx.pid"; do
    [[ -f "$f" ]] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    [[ -n "$pid" ]] && kill -QUIT "$pid" 2>/dev/null && sleep 1 || true
  done
  # S9's shaped link, if bench.py could not remove it: the veth pair (its qdisc goes with it)
  # and the network namespace, by the names bench.py wrote down
  if [[ -f "$work/s9-link" ]]; then
    local ns veth
    read -r ns veth <"$work/s9-link" || true
    [[ -n "$veth" ]] && ip link del "$veth" 2>/dev/null || true
    [[ -n "$ns" ]] && ip netns del "$ns" 2>/dev/null || true
  fi
  for f in "$work"/fetchqd-*.pid "$work"/aria2c-*.pid; do
    [[ -f "$f" ]] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.2
  rm -rf "$work"
}
trap cleanup EXIT

note "scratch folder $work"
# bench.py runs in the background so that Ctrl-C or SIGTERM reach this script at once; they are
# passed on as SIGTERM, on which bench.py stops its own processes, and then the EXIT trap runs.
pypid=
forward() { [[ -n "$pypid" ]] && kill -TERM "$pypid" 2>/dev/null || true; }
trap forward INT TERM
set +e
"$py" "$here/bench.py" --bin-dir "$bin_dir" --workdir "$work" "$@" &
pypid=$!
while :; do
  wait "$pypid"
  rc=$?
  kill -0 "$pypid" 2>/dev/null || break
done
set -e
exit $rc
