-- Workload: task churn, the server pattern. n tasks are spawned in waves
-- of `wave`; each task yields once, and a wave is joined before the next
-- one is spawned, so about `wave` tasks are alive at a time and finished
-- tasks keep making room for new ones. Params: n, wave.
-- Reports tasks/s over all the waves, by the wall clock (rate) and per
-- CPU second of this process (cpu_rate).
local lib = require "bench.lib"

return function(rt, _, p)
  local n, wave = p.n, p.wave
  local spawn, yield = rt.spawn, rt.yield
  local function body() yield() end
  local tasks = {}
  for i = 1, wave do tasks[i] = false end
  local elapsed, cpu, started = nil, nil, 0
  rt.run(function()
    local t0, c0 = lib.clock(), os.clock()
    while started < n do
      local k = math.min(wave, n - started)
      for i = 1, k do tasks[i] = spawn(body) end
      for i = 1, k do tasks[i]:join() end
      started = started + k
    end
    elapsed, cpu = lib.clock() - t0, os.clock() - c0
  end)
  if started ~= n then error(("ran %d of %d tasks"):format(started, n)) end
  return { n = n, wave = wave, wall_s = elapsed, rate = n / elapsed, cpu_rate = n / cpu }
end
