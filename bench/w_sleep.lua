-- Workload: `tasks` tasks, each sleeping `sleeps` times for a seeded
-- random min_ms..max_ms; lateness = wake time - requested deadline on the
-- implementation's own monotonic clock (rt.now).
-- Params: tasks, sleeps, min_ms, max_ms, seed.
local lib = require "bench.lib"

return function(rt, _, p)
  local ntask, nsleep = p.tasks, p.sleeps
  local total = ntask * nsleep
  math.randomseed(p.seed or 42)
  local lo, span = p.min_ms / 1e3, (p.max_ms - p.min_ms) / 1e3
  local durs, late = {}, {}
  for i = 1, total do
    durs[i] = lo + span * math.random()
    late[i] = 0.0
  end
  local sleep, now = rt.sleep, rt.now
  local function body(base)
    for k = base + 1, base + nsleep do
      local d = durs[k]
      local deadline = now() + d
      sleep(d)
      late[k] = now() - deadline
    end
  end
  local tasks = {}
  for i = 1, ntask do tasks[i] = false end
  local wall
  collectgarbage("collect")
  local cpu0 = os.clock()
  rt.run(function()
    local t0 = lib.clock()
    for i = 1, ntask do tasks[i] = rt.spawn(body, (i - 1) * nsleep) end
    for i = 1, ntask do tasks[i]:join() end
    wall = lib.clock() - t0
  end)
  local cpu = os.clock() - cpu0
  local s = lib.summary(late)
  return {
    n = total, wall_s = wall, cpu_s = cpu, late_mean_ms = s.mean * 1e3,
    late_p50_ms = s.p50 * 1e3, late_p99_ms = s.p99 * 1e3,
    late_min_ms = s.min * 1e3, late_max_ms = s.max * 1e3,
  }
end
