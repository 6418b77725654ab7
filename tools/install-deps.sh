#!/usr/bin/env bash
# Installs the Debian 12 packages fetchq needs to build, test and benchmark. Run as root.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config git python3 curl sqlite3
  libsqlitecpp-dev libsqlite3-dev libcurl4-openssl-dev libssl-dev libspdlog-dev libfmt-dev
  nlohmann-json3-dev libcli11-dev libsystemd-dev libgtest-dev libgmock-dev systemd
  groff-base tmux openssl pybind11-dev python3-dev python3-pytest python3-tqdm
)
if [[ "${1:-}" == "--fuzz" ]]; then packages+=(clang-14 libclang-rt-14-dev); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
