#!/usr/bin/env bash
# `make test`: everything CI checks, in this order:
#   1. build corio for Lua 5.4, 5.3, 5.1 and LuaJIT (.rocks/<v>), the
#      ASan+UBSan module (build/asan/) and the TSan module (build/tsan/);
#   2. busted on each of the four, slow specs included (--run=ci), and
#      on LuaJIT with the module built for PUC 5.1 (.ci/with luajit51);
#   3. busted on Lua 5.4 with the sanitized module (.ci/with asan), and
#      the thread pool's and the I/O specs under ThreadSanitizer (.ci/with tsan);
#   4. luacheck lua spec bench examples;
#   5. every examples/*.lua on Lua 5.4, each under a timeout;
#   6. the soak (bench/soak.lua) at a reduced size on Lua 5.4: heap, RSS
#      and descriptors flat over task lifecycles, pool jobs and TCP
#      connections (`make soak` runs the full size).
#   7. reliability (issue 13): every spec file under the most eager
#      collector (.ci/with eagergc, one busted per file), the core specs
#      under valgrind (.ci/valgrind.sh), allocation failure injected at
#      a sample of the allocations of a corio program (.ci/allocfail.c)
#      and a bounded libFuzzer run of each target in .ci/fuzz/.
#      (spec/chaos_spec.lua runs its seeds in every busted run above.)
# Each step goes on when an earlier one failed. The last line printed is
#   N passed, N failed
# where busted runs add their successes to "passed" and failures + errors
# to "failed" (a run that crashes, times out or exits non-zero after a
# clean summary, e.g. a LeakSanitizer or ThreadSanitizer report, adds 1
# failure), a failed build adds 1 failure, and luacheck and each example
# add 1 to one side, as does the soak. Exit status is non-zero if anything failed.
#
# Knobs: BUSTED_TIMEOUT (seconds per busted run, default 300),
# EXAMPLE_TIMEOUT (default 60), SOAK_SCALE (default 0.1; 0 skips the
# soak), SOAK_TIMEOUT (default 120), VARIANTS (default "5.4 5.3 5.1 luajit"),
# ASAN=0 to skip the ASan run, TSAN=0 to skip the TSan run,
# RELIABILITY=0 to skip step 7, FUZZ_SECONDS (per target, default 20),
# ALLOCFAIL_STRIDE (every allocation of the program fails in turn, and
# every ALLOCFAIL_STRIDE-th of loading corio; default 7).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

BUSTED_TIMEOUT=${BUSTED_TIMEOUT:-300}
EXAMPLE_TIMEOUT=${EXAMPLE_TIMEOUT:-60}
VARIANTS=${VARIANTS:-5.4 5.3 5.1 luajit}
ASAN=${ASAN:-1}
TSAN=${TSAN:-1}
SOAK_SCALE=${SOAK_SCALE:-0.1}
SOAK_TIMEOUT=${SOAK_TIMEOUT:-120}
RELIABILITY=${RELIABILITY:-1}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
ALLOCFAIL_STRIDE=${ALLOCFAIL_STRIDE:-7}
# What the TSan run covers: the specs that start threads (the pool) and
# the I/O specs (libuv's threadpool serves fs, DNS and stdio on files).
# signal_spec is left out: its fixtures are child processes, which would
# load the TSan module without TSan's runtime.
TSAN_SPECS=(spec/pool_spec.lua spec/marshal_spec.lua spec/tcp_spec.lua
  spec/udp_spec.lua spec/stream_spec.lua spec/fs_spec.lua
  spec/process_spec.lua spec/dns_spec.lua spec/stdio_spec.lua
  spec/net_lifetime_spec.lua spec/socket_spec.lua)
logdir=build/test
mkdir -p "$logdir"

passed=0
failed=0
report=()

section() { printf '\n==== %s ====\n' "$*"; }
record() { report+=("$(printf '  %-22s %s' "$1" "$2")"); }
pass() { passed=$((passed + 1)); record "$1" "pass${2:+ ($2)}"; }
fail() { failed=$((failed + 1)); record "$1" "FAIL${2:+ ($2)}"; }

have_specs() {
  [[ -d spec ]] && [[ -n $(find spec -name '*_spec.lua' -print -quit) ]]
}

why_rc() {
  case $1 in
    124|137) echo "timed out after ${BUSTED_TIMEOUT}s" ;;
    23) echo "LeakSanitizer reported leaks" ;;
    66) echo "ThreadSanitizer reported races" ;;
    *) echo "exit $1" ;;
  esac
}

# run_busted VARIANT [SPEC...]: busted with .busted's `ci` run (all specs,
# #slow too, or only the SPEC files given).
run_busted() {
  local v=$1 log=$logdir/busted-$1.log rc line s f p
  shift
  section "busted ($v)"
  timeout -k 10 "$BUSTED_TIMEOUT" .ci/with "$v" busted --run=ci \
    -o plainTerminal "$@" </dev/null 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  line=$(sed 's/\x1b\[[0-9;]*m//g' "$log" |
    grep -E '^[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' |
    tail -n 1)
  if [[ ! $line =~ ^([0-9]+)\ success(es)?\ /\ ([0-9]+)\ failures?\ /\ ([0-9]+)\ errors?\ /\ ([0-9]+)\ pending ]]; then
    fail "busted $v" "no summary: crashed? $(why_rc "$rc")"
    return
  fi
  s=${BASH_REMATCH[1]}
  f=$((BASH_REMATCH[3] + BASH_REMATCH[4]))
  p=${BASH_REMATCH[5]}
  passed=$((passed + s))
  failed=$((failed + f))
  if ((rc != 0 && f == 0)); then
    failed=$((failed + 1))
    record "busted $v" "$s ok, FAIL after summary: $(why_rc "$rc")"
  else
    record "busted $v" "$s ok, $f failed, $p pending$( ((rc == 0)) || echo ", $(why_rc "$rc")")"
  fi
}

section "environment"
for l in lua5.4 lua5.3 lua5.1; do "$l" -v 2>&1; done
luajit -v
echo "libuv $(pkg-config --modversion libuv 2>/dev/null || echo '?')," \
  "busted $(busted --version 2>/dev/null)," \
  "$(luarocks --version | head -n 1), $(gcc --version | head -n 1)"

# 1. builds
built=()
for v in $VARIANTS; do
  section "build ($v)"
  if make --no-print-directory "build-$v"; then
    built+=("$v")
  else
    fail "build $v"
  fi
done
# build_san NAME: the sanitized module (make NAME); 0 when it built. The
# sanitizer variants take the pure-Lua modules from .rocks/5.4.
build_san() {
  section "build ($1)"
  if [[ " ${built[*]} " == *" 5.4 "* ]] && make --no-print-directory "$1"; then
    return 0
  fi
  fail "build $1"
  return 1
}
asan_ok=0
tsan_ok=0
[[ $ASAN == 1 ]] && build_san asan && asan_ok=1
[[ $TSAN == 1 ]] && build_san tsan && tsan_ok=1

# A module missing from the rockspec is not installed into the trees, so
# its specs would fail to require it: say so up front.
for f in lua/corio/*.lua csrc/*.c; do
  [[ -e $f ]] || continue
  grep -qF "\"$f\"" rockspec/corio-scm-1.rockspec ||
    echo "WARNING: $f is not listed in rockspec/corio-scm-1.rockspec"
done

# 2, 3. specs
if have_specs; then
  for v in "${built[@]}"; do run_busted "$v"; done
  # LuaJIT also loads the module built against PUC 5.1's headers
  [[ " ${built[*]} " == *" 5.1 "* ]] && run_busted luajit51
  ((asan_ok)) && run_busted asan
  # without #slow specs: TSan's shadow stack does not follow Lua's longjmp
  # between coroutines, and the stress specs overflow it (a CHECK in its
  # stack depot), which says nothing about races
  ((tsan_ok)) && run_busted tsan --exclude-tags=slow "${TSAN_SPECS[@]}"
else
  section "busted"
  echo "no spec/*_spec.lua yet: busted runs skipped"
  record "busted" "skipped: no specs"
fi

# 4. lint
section "luacheck"
dirs=()
for d in lua spec bench examples; do [[ -d $d ]] && dirs+=("$d"); done
if ((${#dirs[@]} == 0)); then
  record "luacheck" "skipped: nothing to check"
elif luacheck --no-color "${dirs[@]}"; then
  pass "luacheck"
else
  fail "luacheck"
fi

# 5. examples
shopt -s nullglob
examples=(examples/*.lua)
if ((${#examples[@]})); then
  if [[ " ${built[*]} " == *" 5.4 "* ]]; then
    for ex in "${examples[@]}"; do
      section "example $ex"
      timeout -k 5 "$EXAMPLE_TIMEOUT" .ci/with 5.4 lua "$ex" </dev/null
      rc=$?
      if ((rc == 0)); then
        pass "$ex"
      elif ((rc == 124 || rc == 137)); then
        fail "$ex" "timed out after ${EXAMPLE_TIMEOUT}s"
      else
        fail "$ex" "exit $rc"
      fi
    done
  else
    for ex in "${examples[@]}"; do fail "$ex" "not run: no 5.4 build"; done
  fi
fi

# step NAME TIMEOUT COMMAND...: one pass/fail line for a command.
step() {
  local name=$1 limit=$2 rc
  shift 2
  section "$name"
  timeout -k 10 "$limit" "$@" </dev/null
  rc=$?
  if ((rc == 0)); then pass "$name"
  elif ((rc == 124 || rc == 137)); then fail "$name" "timed out after ${limit}s"
  else fail "$name" "exit $rc"
  fi
}

# 6. soak, reduced
if [[ $SOAK_SCALE != 0 ]]; then
  if [[ " ${built[*]} " == *" 5.4 "* ]]; then
    step "soak" "$SOAK_TIMEOUT" .ci/with 5.4 lua bench/soak.lua "$SOAK_SCALE"
  else
    fail "soak" "not run: no 5.4 build"
  fi
fi

# 7. reliability
if [[ $RELIABILITY == 1 ]] && [[ " ${built[*]} " == *" 5.4 "* ]] && have_specs; then
  # one busted process per spec file: the eager collector's cost grows
  # with the heap, and a file's heap is small; the stress specs of 100k
  # tasks, 1M messages and 100000 nested levels, and the CPU-time bounds
  # of "in linear time" specs, are left out (each would take minutes
  # under a collection per step, and they exercise no other path)
  n0=${#report[@]}
  eager_bad=()
  p0=$passed
  f0=$failed
  for f in spec/*_spec.lua; do
    run_busted eagergc --filter-out=100k --filter-out="1M messages" \
      --filter-out="levels" --filter-out="thousands of nested" \
      --filter-out="in linear time" "$f"
    [[ ${report[-1]} == *FAIL* || ${report[-1]} != *", 0 failed"* ]] && eager_bad+=("$f")
  done
  report=("${report[@]:0:n0}")
  record "busted eagergc" "$((passed - p0)) ok, $((failed - f0)) failed${eager_bad[*]:+ in ${eager_bad[*]}}"
  step "valgrind" 600 .ci/valgrind.sh
  section "build (allocfail, fuzz)"
  if make --no-print-directory build/allocfail/allocfail; then
    step "allocfail" 600 make --no-print-directory allocfail \
      ALLOCFAIL_ARGS="$ALLOCFAIL_STRIDE"
  else
    fail "build allocfail"
  fi
  if make --no-print-directory fuzz-build; then
    step "fuzz" 300 make --no-print-directory fuzz FUZZ_TIME="$FUZZ_SECONDS"
  else
    fail "build fuzz"
  fi
fi

section "summary"
printf '%s\n' "${report[@]}"
echo "$passed passed, $failed failed"
((failed == 0))
