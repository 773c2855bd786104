#!/usr/bin/env bash
# Install the Debian packages corio needs to build and test, if missing.
#
#   .ci/deps.sh [extra-package ...]
#
# As root, missing packages are installed with apt-get (one `apt-get
# update` first). As anyone else, the missing ones are listed and the
# script fails, so `make` stops with a clear message.
set -euo pipefail

pkgs=(
  gcc libc6-dev make pkg-config
  lua5.4 liblua5.4-dev
  lua5.3 liblua5.3-dev
  lua5.1 liblua5.1-0-dev
  luajit libluajit-5.1-dev
  libuv1-dev
  luarocks lua-busted lua-check lua-luv lua-cqueues
  lua-socket lua-redis redis-server lua-copas neovim
  valgrind clang   # reliability: .ci/valgrind.sh, libFuzzer (.ci/fuzz/)
  "$@"
)

missing=()
for p in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done

((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "deps: missing Debian packages: ${missing[*]}" >&2
  echo "deps: install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q "${missing[@]}" </dev/null
