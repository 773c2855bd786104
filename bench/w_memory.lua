-- Workload: memory per parked task. n tasks each park in a long sleep;
-- once all are parked, measure the Lua heap (after a full collect) and
-- VmRSS against a baseline taken just before spawning. impl "bare" does
-- the same with plain coroutines that have yielded once.
-- Then `extra` (default 64) more tasks park one at a time, each followed
-- by a full collection: the median heap growth per task is the exact
-- Lua heap bytes one more parked task costs (heap_exact), without the
-- share of tables that grow by doubling that the average carries.
-- Params: n, extra. Reports heap_per_task, heap_exact and rss_per_task in
-- bytes.
local lib = require "bench.lib"

return function(rt, impl, p)
  local n, extra = p.n, p.extra or 64
  local parked = 0
  local handles, more, deltas = {}, {}, {} -- handles keep the tasks alive
  for i = 1, n do handles[i] = false end -- slots exist before the baseline
  for i = 1, extra do more[i], deltas[i] = false, 0.0 end
  local heap0, rss0, heap1, rss1

  local function baseline()
    heap0 = lib.heap_bytes()
    rss0 = lib.status_kb("VmRSS")
  end
  local function measure()
    heap1 = lib.heap_bytes()
    rss1 = lib.status_kb("VmRSS")
  end
  -- park_one(i) parks task n + i and stores its handle in more[i]
  local function marginal(park_one)
    local before = lib.heap_bytes()
    for i = 1, extra do
      park_one(i)
      local after = lib.heap_bytes()
      deltas[i] = after - before
      before = after
    end
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
    marginal(function(i)
      local co = coroutine.create(body)
      coroutine.resume(co)
      more[i] = co
    end)
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
      marginal(function(i)
        more[i] = rt.spawn(body)
        for _ = 1, 100 do
          if parked == n + i then break end
          yield()
        end
      end)
    end) -- main returns: the implementation drops or cancels the sleepers
  end
  if parked ~= n + extra then
    return "only " .. parked .. " of " .. n + extra .. " tasks parked"
  end
  return {
    n = #handles, extra = #more, heap_per_task = (heap1 - heap0) / n, heap_exact = lib.median(deltas),
    rss_per_task = (rss1 - rss0) * 1024 / n,
  }
end
