-- Workload: memory per parked task. n tasks each park in a long sleep;
-- once all are parked, measure the Lua heap (after a full collect) and
-- VmRSS against a baseline taken just before spawning. impl "bare" does
-- the same with plain coroutines that have yielded once.
-- Params: n. Reports heap_per_task and rss_per_task in bytes.
local lib = require "bench.lib"

return function(rt, impl, p)
  local n = p.n
  local parked = 0
  local handles = {}
  for i = 1, n do handles[i] = false end -- slots exist before the baseline
  local heap0, rss0, heap1, rss1

  local function baseline()
    heap0 = lib.heap_bytes()
    rss0 = lib.status_kb("VmRSS")
  end
  local function measure()
    heap1 = lib.heap_bytes()
    rss1 = lib.status_kb("VmRSS")
  end

  if impl == "bare" then
    local yield = coroutine.yield
    local function body()
      parked = parked + 1
      yield()
    end
    baseline()
    for i = 1, n do
      local co = coroutine.create(body)
      coroutine.resume(co)
      handles[i] = co
    end
    measure()
  else
    local sleep, yield = rt.sleep, rt.yield
    local function body()
      parked = parked + 1
      sleep(3600)
    end
    rt.run(function()
      baseline()
      for i = 1, n do handles[i] = rt.spawn(body) end
      for _ = 1, 100 do
        if parked == n then break end
        yield()
      end
      measure()
    end) -- main returns: the implementation drops or cancels the sleepers
  end
  if parked ~= n then return "only " .. parked .. " of " .. n .. " tasks parked" end
  return {
    n = #handles, heap_per_task = (heap1 - heap0) / n,
    rss_per_task = (rss1 - rss0) * 1024 / n,
  }
end
