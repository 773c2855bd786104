#!/usr/bin/env bash
# Fairness cost (#7): the current corio.core against a baseline built from
# git revision BASE (default 4eb49bb, the last commit before the ticks),
# alternating fresh interpreters, medians of RUNS (default 7) per side.
#   bench/fairness.sh [BASE]      (after `make build`)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
base=${1:-4eb49bb}
runs=${RUNS:-7}
dir=build/fairness-base
rm -rf "$dir" && mkdir -p "$dir/src" "$dir/corio"
git archive "$base" csrc | tar -x -C "$dir/src"
gcc -O2 -fPIC -std=c99 -D_DEFAULT_SOURCE -fvisibility=hidden -shared \
  -I"$dir/src/csrc" -I/usr/include/lua5.4 -o "$dir/corio/core.so" \
  "$dir"/src/csrc/*.c -luv -lpthread
eval "$(.ci/with 5.4)"
cur_cpath=$LUA_CPATH
med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '| workload | baseline (%s) | now | now/baseline |\n|---|---|---|---|\n' "$base"
for w in spawn yield1 yield10; do
  b=() c=()
  for ((i = 0; i < runs; i++)); do
    b+=("$(LUA_CPATH="$PWD/$dir/?.so;$cur_cpath" lua5.4 bench/w_fairness.lua "$w" | cut -f2)")
    c+=("$(lua5.4 bench/w_fairness.lua "$w" | cut -f2)")
  done
  mb=$(printf '%s\n' "${b[@]}" | med)
  mc=$(printf '%s\n' "${c[@]}" | med)
  awk -v w="$w" -v b="$mb" -v c="$mc" \
    'BEGIN { printf "| %s | %.0f k/s | %.0f k/s | %.3f |\n", w, b/1e3, c/1e3, c/b }'
done
