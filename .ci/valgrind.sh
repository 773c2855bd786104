#!/usr/bin/env bash
# The core specs under valgrind memcheck, with Lua 5.4 and the normal
# -O2 build of corio (.rocks/5.4): any invalid access, use of
# uninitialised memory or leak (definite or possible) fails the run with
# exit status 99. .ci/valgrind.supp holds suppressions for other
# libraries' false positives (each with its reason); it is empty while
# none is needed.
#
#   .ci/valgrind.sh [SPEC...]      (default: the list below; make valgrind)
#
# Stress specs of 100k tasks or 1M messages are filtered out: under
# valgrind they take minutes and exercise no other path; so are the
# specs that assert a real-time latency (valgrind's slowdown of 20-50x
# is not corio's): they run everywhere else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

specs=("$@")
if ((${#specs[@]} == 0)); then
  for s in task scope cancel channel semaphore mutex event watch sleep \
    timeout combinators shield yield errors deadlock runtime lifetime \
    marshal pool stream tcp; do
    specs+=("spec/${s}_spec.lua")
  done
fi

exec .ci/with 5.4 valgrind --tool=memcheck --error-exitcode=99 \
  --leak-check=full --errors-for-leak-kinds=definite,possible \
  --suppressions=.ci/valgrind.supp --quiet \
  lua5.4 "$(command -v busted)" --filter-out=100k --filter-out="1M messages" \
  --filter-out="keeps timers on time" --filter-out="within milliseconds" \
  --filter-out="at once even when the job sits in a C call" \
  --filter-out="keeps slow jobs from starving" \
  --filter-out="runs concurrent sleeps side by side" \
  "${specs[@]}"
