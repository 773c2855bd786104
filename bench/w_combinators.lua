-- Workload (corio only): per-call cost of the combinators around functions
-- that never wait, next to a plain call and to spawning + joining the same
-- number of tasks. Params: n (calls per measurement; divided by the
-- number of functions for the multi-function ones).
-- Reports <name>_ns per call; `missing` lists absent APIs.
local lib = require "bench.lib"

return function(rt, impl, p)
  if impl ~= "corio" then return "corio-only workload" end
  local n = p.n
  local unpack = table.unpack
  local function f() return 1 end
  local fs = {}
  for i = 1, 10 do fs[i] = f end
  local out, missing = { n = n }, {}
  local spawn = rt.spawn

  local function time(name, iters, loop)
    loop(iters // 10 + 1) -- warm up
    local t0 = lib.clock()
    loop(iters)
    out[name .. "_ns"] = (lib.clock() - t0) / iters * 1e9
  end

  local function combinator(name, k)
    local fn = rt[name]
    if not fn then
      missing[#missing + 1] = name
      return
    end
    time(name .. k, n // k, function(iters)
      for _ = 1, iters do fn(unpack(fs, 1, k)) end
    end)
  end

  local tasks = {}
  local function spawn_join(k)
    time("spawn_join" .. k, n // k, function(iters)
      for _ = 1, iters do
        for i = 1, k do tasks[i] = spawn(f) end
        for i = 1, k do tasks[i]:join() end
      end
    end)
  end

  rt.run(function()
    time("plain", n * 10, function(iters)
      for _ = 1, iters do f() end
    end)
    if rt.timeout then
      local timeout = rt.timeout
      time("timeout", n, function(iters)
        for _ = 1, iters do timeout(1, f) end
      end)
    else
      missing[#missing + 1] = "timeout"
    end
    for _, k in ipairs({ 1, 2, 10 }) do spawn_join(k) end
    for _, k in ipairs({ 2, 10 }) do
      combinator("try_join", k)
      combinator("select", k)
    end
  end)
  if #missing > 0 then out.missing = table.concat(missing, ",") end
  return out
end
