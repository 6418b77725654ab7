#!/usr/bin/env bash
# Installs what fetchq needs, builds it, and runs `fetchq get` into ./downloads with its state in
# ./downloads.db. With URLs as arguments it downloads those; without, it serves three sample files
# from a throwaway HTTP server on 127.0.0.1 and downloads them from there.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DFETCHQ_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)"
urls=("$@")
server_pid=
if ((${#urls[@]} == 0)); then
  www=$(mktemp -d)
  trap 'rm -rf "$www"; [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true' EXIT
  head -c $((64 << 20)) /dev/urandom >"$www/dataset.bin"
  head -c $((8 << 20)) /dev/urandom >"$www/model.safetensors"
  echo "hello from fetchq" >"$www/notes.txt"
  port=$((20000 + RANDOM % 20000))
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$www" >/dev/null 2>&1 &
  server_pid=$!
  for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$port/notes.txt" && break; sleep 0.1; done
  urls=("http://127.0.0.1:$port/dataset.bin" "http://127.0.0.1:$port/model.safetensors" "http://127.0.0.1:$port/notes.txt")
fi
build-release/src/fetchq get "${urls[@]}" -d downloads --state downloads.db --if-exists rename
ls -l downloads
