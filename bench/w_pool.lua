-- Workload: the thread pool (#8) against luv's uv.new_work. Params:
--   mode=trivial n=N   N tiny jobs all in flight (N tasks, one job each):
--                      rate (jobs/s)
--   mode=rtt n=N       N sequential round trips from one task: rtt_us
--   mode=cpu jobs=K secs=S workers=W
--                      K CPU-bound jobs of ~S s each: speedup of running
--                      them on W workers over running them one after the
--                      other on the loop thread; corio also reports
--                      hook_pct, what a job costs more on a worker than on
--                      the loop thread (the interrupt machinery included),
--                      and ceiling: the speedup W separate processes get
--                      on this machine, the most any thread pool can get.
-- corio jobs take (args...); luv's take (id, args...) and return the id
-- first (rt_luv.work), the way luv's after-callback needs it.
local lib = require "bench.lib"

local function trivial(x) return x end
local function trivial_luv(id, x) return id, x end

-- a CPU-bound loop of n iterations
local function burn(n)
  local s = 0
  for i = 1, n do s = (s + i * i) % 1000003 end
  return s
end
local function burn_luv(id, n)
  local s = 0
  for i = 1, n do s = (s + i * i) % 1000003 end
  return id, s
end

-- The speedup of w processes each running burn(iters) at once over one
-- process running it w times: what the machine's cores allow.
local function ceiling(w, iters)
  local lua = os.getenv("BENCH_LUA") or "lua5.4"
  local code = ("local s = 0 for i = 1, %d do s = (s + i * i) %% 1000003 end")
    :format(iters)
  local function spawn() return io.popen(lua .. " -e '" .. code .. "'", "r") end
  local t0 = lib.clock()
  for _ = 1, w do spawn():close() end
  local seq = lib.clock() - t0
  t0 = lib.clock()
  local ps = {}
  for i = 1, w do ps[i] = spawn() end
  for i = 1, w do ps[i]:close() end
  return seq / (lib.clock() - t0)
end

-- iterations of burn that take about secs on this machine
local function calibrate(secs)
  local n = 200000
  while true do
    local t0 = lib.clock()
    burn(n)
    local dt = lib.clock() - t0
    if dt > 0.05 then return math.floor(n * secs / dt) end
    n = n * 2
  end
end

return function(rt, impl, p)
  local corio = impl == "corio"
  if corio and not rt.blocking then return "corio.blocking missing" end
  local opts = corio and { workers = p.workers } or nil
  local call = function(fn, fn_luv)
    if corio then return function(...) return rt.blocking(fn, ...) end end
    return rt.work(fn_luv)
  end
  local run = function(main)
    if corio then return rt.runtime(opts):run(main) end
    return rt.run(main)
  end
  if p.mode == "trivial" then
    local n, elapsed = p.n, nil
    local job = call(trivial, trivial_luv)
    local sum = run(function()
      local t0 = lib.clock()
      local ts = {}
      for i = 1, n do ts[i] = rt.spawn(job, i) end
      local s = 0
      for i = 1, n do s = s + ts[i]:join() end
      elapsed = lib.clock() - t0
      return s
    end)
    assert(sum == n * (n + 1) // 2, "wrong sum")
    return { n = n, wall_s = elapsed, rate = n / elapsed }
  elseif p.mode == "rtt" then
    local n, elapsed = p.n, nil
    local job = call(trivial, trivial_luv)
    run(function()
      job(0) -- warm: the worker is started and has the function
      local t0 = lib.clock()
      for i = 1, n do assert(job(i) == i) end
      elapsed = lib.clock() - t0
    end)
    return { n = n, rtt_us = elapsed / n * 1e6 }
  elseif p.mode == "cpu" then
    local iters = calibrate(p.secs)
    local job = call(burn, burn_luv)
    local t0 = lib.clock()
    for _ = 1, p.jobs do burn(iters) end
    local seq = lib.clock() - t0
    local par, on_loop, on_worker = nil, math.huge, math.huge
    run(function()
      local t1 = lib.clock()
      local ts = {}
      for i = 1, p.jobs do ts[i] = rt.spawn(job, iters) end
      for i = 1, p.jobs do ts[i]:join() end
      par = lib.clock() - t1
      -- one job alone on a worker against one on the loop thread, the
      -- best of 3 alternating pairs (other load on the machine only adds)
      for _ = 1, corio and 3 or 0 do
        local t2 = lib.clock()
        burn(iters // 2)
        on_loop = math.min(on_loop, lib.clock() - t2)
        t2 = lib.clock()
        job(iters // 2)
        on_worker = math.min(on_worker, lib.clock() - t2)
      end
    end)
    local res = { seq_s = seq, par_s = par, speedup = seq / par }
    if corio then
      res.hook_pct = (on_worker / on_loop - 1) * 100
      res.ceiling = ceiling(p.workers, iters)
    end
    return res
  end
  error("unknown mode " .. tostring(p.mode))
end
