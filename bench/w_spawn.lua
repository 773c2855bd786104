-- Workload: spawn n tasks that each yield once, then join them all.
-- Params: n. Reports tasks/s over spawn + run + join, by the wall clock
-- (rate) and per CPU second of this process (cpu_rate).
local lib = require "bench.lib"

return function(rt, _, p)
  local n = p.n
  local spawn, yield = rt.spawn, rt.yield
  local function body() yield() end
  local tasks = {}
  for i = 1, n do tasks[i] = false end
  local elapsed, cpu
  rt.run(function()
    local t0, c0 = lib.clock(), os.clock()
    for i = 1, n do tasks[i] = spawn(body) end
    for i = 1, n do tasks[i]:join() end
    elapsed, cpu = lib.clock() - t0, os.clock() - c0
  end)
  return { n = n, wall_s = elapsed, rate = n / elapsed, cpu_rate = n / cpu }
end
