-- Workload: spawn n tasks that each yield once, then join them all.
-- Params: n. Reports tasks/s over spawn + run + join.
local lib = require "bench.lib"

return function(rt, _, p)
  local n = p.n
  local spawn, yield = rt.spawn, rt.yield
  local function body() yield() end
  local tasks = {}
  for i = 1, n do tasks[i] = false end
  local elapsed
  rt.run(function()
    local t0 = lib.clock()
    for i = 1, n do tasks[i] = spawn(body) end
    for i = 1, n do tasks[i]:join() end
    elapsed = lib.clock() - t0
  end)
  return { n = n, wall_s = elapsed, rate = n / elapsed }
end
