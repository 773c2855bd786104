-- Fairness cost (#7): the scheduler's ticks (due timers and a loop poll
-- every few task steps) must cost under 3% on spawn+join and on
-- yield-heavy work. Run by bench/fairness.sh in one interpreter per
-- measurement, against the current module and a baseline build; prints
-- one line: "<workload> <ops/s>".
--   lua5.4 bench/w_fairness.lua spawn|yield1|yield10
local corio = require "corio"

local which = arg[1] or "spawn"
local clock = os.clock
local rate

if which == "spawn" then -- 200k tasks spawn, yield once, join
  corio.run(function()
    local n, tasks = 200000, {}
    local t0 = clock()
    for i = 1, n do tasks[i] = corio.spawn(corio.yield) end
    for i = 1, n do tasks[i]:join() end
    rate = n / (clock() - t0)
  end)
elseif which == "yield1" then -- one task yields 2M times (batches of one)
  corio.run(function()
    local n = 2000000
    local t0 = clock()
    for _ = 1, n do corio.yield() end
    rate = n / (clock() - t0)
  end)
else -- ten tasks yield 200k times each
  corio.run(function()
    local ts = {}
    local t0 = clock()
    for i = 1, 10 do
      ts[i] = corio.spawn(function()
        for _ = 1, 200000 do corio.yield() end
      end)
    end
    for i = 1, 10 do ts[i]:join() end
    rate = 2000000 / (clock() - t0)
  end)
end
print(which, ("%.0f"):format(rate))
