#!/usr/bin/env bash
# Builds fetchq and runs every test: a plain build, then ASan+UBSan (and TSan with --tsan),
# then each libFuzzer target for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
jobs=$(nproc)
run() {  # run NAME CMAKE-ARGS...
  local dir="build-$1"; shift
  cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 300)
}
run debug -DCMAKE_BUILD_TYPE=Debug -DFETCHQ_SHARED=ON
# libfetchq from outside: install the Debug build into a temporary prefix, then build examples/
# against it (CMake package and pkg-config) and download through it.
tools/example-check.sh build-debug
# The unit file, pointed at the binary just built (the repository copy names /usr/local).
unit=$(mktemp -d)/fetchqd.service
sed "s|/usr/local/sbin/fetchqd|$PWD/build-debug/src/fetchqd|" systemd/fetchqd.service >"$unit"
systemd-analyze verify "$unit"
systemd-analyze security --offline=true "$unit" | tail -1
if [[ -f ../shared/conformance/check.py ]]; then
  python3 ../shared/conformance/check.py --bin build-debug/src | tail -1
fi
run asan -DCMAKE_BUILD_TYPE=Debug -DFETCHQ_SANITIZE=address,undefined
if [[ "${1:-}" == "--tsan" || -n "${FETCHQ_TSAN:-}" ]]; then
  run tsan -DCMAKE_BUILD_TYPE=Debug -DFETCHQ_SANITIZE=thread
fi
tools/fuzz.sh "${FETCHQ_FUZZ_SECONDS:-30}"
