#!/usr/bin/env bash
# Checks that libfetchq is usable from outside: installs the build into a temporary prefix,
# checks what was installed (headers that compile alone, libfetchq.a, the CMake package,
# fetchq.pc), builds examples/ against that prefix with CMake and once with pkg-config, and has
# the example download files from a local HTTP server.
#
#   tools/example-check.sh [BUILD_DIR]    (default build-release, configured Release if new)
#
# Exits nonzero, naming the step, when anything is missing or a download is wrong.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-release}
jobs=${FETCHQ_JOBS:-$(nproc)}
cxx=${CXX:-c++}
work=$(mktemp -d "${TMPDIR:-/tmp}/fetchq-example.XXXXXX")
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "example-check: $*" >&2
  exit 1
}

if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" -j "$jobs" >/dev/null
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null

# What a consumer needs, wherever GNUInstallDirs put it (lib or lib/<multiarch>).
for h in queue.h job.h result.h version.h; do
  [[ -f $prefix/include/fetchq/$h ]] || fail "the install has no include/fetchq/$h"
done
lib=$(find "$prefix" -name libfetchq.a -print -quit)
[[ -n $lib ]] || fail "the install has no libfetchq.a"
for f in fetchqConfig.cmake fetchqConfigVersion.cmake fetchqTargets.cmake; do
  [[ -n $(find "$prefix" -path "*/cmake/fetchq/$f" -print -quit) ]] || fail "the install has no cmake/fetchq/$f"
done
pc=$(find "$prefix" -name fetchq.pc -print -quit)
[[ -n $pc ]] || fail "the install has no fetchq.pc"
if find "$prefix/include" -type f ! -path "$prefix/include/fetchq/*" | grep -q .; then
  fail "the install has headers outside include/fetchq/"
fi
# Each public header compiles on its own, seeing only the installed include/ (nothing of src/).
for h in "$prefix"/include/fetchq/*.h; do
  echo "#include <fetchq/$(basename "$h")>" |
    "$cxx" -std=c++20 -Wall -Wextra -Werror -fsyntax-only -x c++ -I"$prefix/include" - ||
    fail "$(basename "$h") does not compile on its own"
done

# The example through the CMake package...
cmake -S examples -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null ||
  fail "examples/ does not configure against the installed package"
cmake --build "$work/build" >/dev/null || fail "examples/ does not build against the installed package"
# ...against the shared libfetchq too, when the build made one (-DFETCHQ_SHARED=ON).
so=$(find "$prefix" -name 'libfetchq.so.*' -type f -print -quit)
if [[ -n $so ]]; then
  # The shared library alone must not need the static one's dependencies: configured with
  # those packages made unfindable, the shared build configures and the static one does not.
  no_static_deps=(-DCMAKE_DISABLE_FIND_PACKAGE_SQLiteCpp=ON -DCMAKE_DISABLE_FIND_PACKAGE_CURL=ON
    -DCMAKE_DISABLE_FIND_PACKAGE_spdlog=ON -DCMAKE_DISABLE_FIND_PACKAGE_OpenSSL=ON)
  cmake -S examples -B "$work/build-so" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
    -DFETCHQ_TARGET=fetchq::fetchq_shared "${no_static_deps[@]}" >"$work/cmake-so.log" 2>&1 ||
    fail "examples/ does not configure against the installed shared library alone: $(tail -5 "$work/cmake-so.log")"
  cmake -S examples -B "$work/build-nodeps" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
    "${no_static_deps[@]}" >/dev/null 2>&1 &&
    fail "the static package configured without its dependencies (the check above proves nothing)"
  cmake --build "$work/build-so" >/dev/null || fail "examples/ does not build against libfetchq.so"
  readelf -d "$work/build-so/download" | grep -q "NEEDED.*\[libfetchq\.so" ||
    fail "the shared build of examples/ does not load libfetchq.so"
  # libfetchq.so exports the public API (fetchq/export.h) and nothing of its insides: no
  # fetchq::<namespace>:: names (store, queue, transfer, util, ...) and none of its dependencies'
  # own code, which a program with its own copy could otherwise take over or be taken over by.
  exported=$(nm -D --defined-only -C "$so" | cut -d' ' -f3-) || fail "nm cannot read $so"
  grep -q '^fetchq::DownloadQueue::open(' <<<"$exported" || fail "libfetchq.so does not export DownloadQueue::open"
  grep -q '^typeinfo for fetchq::StorageError$' <<<"$exported" ||
    fail "libfetchq.so does not export StorageError's typeinfo (a program could not catch it)"
  leaked=$(grep -E '^((typeinfo( name)?|vtable|VTT|guard variable) for )?(fetchq::[a-z_]+::|fmt::|spdlog::|SQLite::|nlohmann::|sqlite3_|curl_)' \
    <<<"$exported" | head -5 || true)
  [[ -z $leaked ]] || fail "libfetchq.so exports internal symbols, e.g.: $leaked"
fi
# ...and through pkg-config.
flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs fetchq) || fail "pkg-config fetchq failed"
# Where libfetchq.so is installed too, -lfetchq would link it: the static archive is named, so
# that what fetchq.pc lists for libfetchq.a is what is checked; the .so gets a build of its own.
static_flags=${flags//-lfetchq /-l:libfetchq.a }
"$cxx" -std=c++20 -Wall -Wextra -Werror examples/download.cpp -o "$work/download-pc" $static_flags ||
  fail "examples/download.cpp does not build with pkg-config --cflags --libs fetchq"
readelf -d "$work/download-pc" | grep -q "NEEDED.*\[libfetchq\.so" &&
  fail "the pkg-config build meant to link libfetchq.a loads libfetchq.so"
if [[ -n $so ]]; then
  "$cxx" -std=c++20 -Wall -Wextra -Werror examples/download.cpp -o "$work/download-pc-so" $flags ||
    fail "examples/download.cpp does not build with pkg-config against libfetchq.so"
fi

# A local server with one larger binary file and one small text file.
mkdir -p "$work/www" "$work/out" "$work/out-pc"
head -c 3000000 /dev/urandom >"$work/www/data.bin"
echo "hello from fetchq" >"$work/www/hello.txt"
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$work/www" >"$work/server.log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/.* port \([0-9][0-9]*\).*/\1/p' "$work/server.log" | head -1)
  [[ -n $port ]] && break
  sleep 0.1
done
[[ -n $port ]] || fail "the HTTP server did not start: $(cat "$work/server.log")"
url=http://127.0.0.1:$port

timeout 120 "$work/build/download" "$work/state.db" "$work/out" "$url/data.bin" "$url/hello.txt" \
  >"$work/run.out" || fail "the example failed: $(cat "$work/run.out")"
cmp "$work/www/data.bin" "$work/out/data.bin" || fail "data.bin downloaded wrong"
cmp "$work/www/hello.txt" "$work/out/hello.txt" || fail "hello.txt downloaded wrong"
if [[ -n $so ]]; then
  mkdir -p "$work/out-so"
  timeout 120 "$work/build-so/download" "$work/state-so.db" "$work/out-so" "$url/data.bin" \
    >"$work/run-so.out" || fail "the example on libfetchq.so failed: $(cat "$work/run-so.out")"
  cmp "$work/www/data.bin" "$work/out-so/data.bin" || fail "data.bin (libfetchq.so) downloaded wrong"
fi
[[ $(grep -c ' completed ' "$work/run.out") == 2 ]] || fail "expected two completed jobs: $(cat "$work/run.out")"
# The pkg-config build: a file the server lacks must end the job in error and the program in 1.
rc=0
timeout 120 "$work/download-pc" "$work/state-pc.db" "$work/out-pc" "$url/hello.txt" "$url/missing" \
  >"$work/run-pc.out" || rc=$?
[[ $rc == 1 ]] || fail "expected exit 1 for a missing file, got $rc: $(cat "$work/run-pc.out")"
cmp "$work/www/hello.txt" "$work/out-pc/hello.txt" || fail "hello.txt (pkg-config build) downloaded wrong"
grep -q ' error ' "$work/run-pc.out" || fail "the missing file did not end in error: $(cat "$work/run-pc.out")"
echo "example-check: ok (installed to a temporary prefix; CMake${so:+ (static and shared)} and pkg-config builds downloaded $url)"
