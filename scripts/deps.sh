#!/usr/bin/env bash
# Install the Debian 12 packages patctl needs, only those missing.
#   scripts/deps.sh            build + run (demo)
#   scripts/deps.sh --test     also what the test suite uses
# As root apt-get runs directly, otherwise through sudo.
set -euo pipefail

pkgs=(cmake make gcc pkg-config
      libgsl-dev libopenblas-dev libzmq3-dev libserialport-dev libcmocka-dev
      zlib1g-dev libinih-dev libcjson-dev libsqlite3-dev
      dataset-fashion-mnist)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(python3 python3-numpy python3-zmq python3-serial sqlite3 gnuplot-nox socat clang)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "patctl: installing missing packages: ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
  sudo_cmd=()
elif command -v sudo >/dev/null 2>&1; then
  sudo_cmd=(sudo)
else
  echo "patctl: need root or sudo to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; then
  "${sudo_cmd[@]}" apt-get update
  "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi
