-- Workload: n tasks pass through a semaphore of `permits`, each yielding
-- once while it holds a permit. Params: n, permits. Reports acquisitions/s
-- by the wall clock (rate) and per CPU second of this process (cpu_rate).
local lib = require "bench.lib"

return function(rt, _, p)
  if not rt.semaphore then return "semaphore API missing" end
  local n, permits = p.n, p.permits
  local yield = rt.yield
  local sem
  local holding, most = 0, 0
  local function body()
    local permit, err = sem:acquire()
    if not permit then error("acquire failed: " .. tostring(err)) end
    holding = holding + 1
    if holding > most then most = holding end
    yield()
    holding = holding - 1
    permit:release()
  end
  local tasks = {}
  for i = 1, n do tasks[i] = false end
  local elapsed, cpu
  rt.run(function()
    sem = rt.semaphore(permits)
    local t0, c0 = lib.clock(), os.clock()
    for i = 1, n do tasks[i] = rt.spawn(body) end
    for i = 1, n do tasks[i]:join() end
    elapsed, cpu = lib.clock() - t0, os.clock() - c0
  end)
  if most > permits then
    error(("%d tasks held the %d-permit semaphore at once"):format(most, permits))
  end
  return { n = n, wall_s = elapsed, rate = n / elapsed, cpu_rate = n / cpu }
end
