-- A producer -> 3 workers -> collector pipeline over bounded channels.
-- The collector is the slowest stage, so the results channel fills, the
-- workers wait, the jobs channel fills and the producer waits too:
-- backpressure travels upstream and memory stays bounded by the
-- capacities. Closing a channel shuts the next stage down: its `for v in
-- ch:iter()` loop ends once the channel is drained. corio.scope ties every
-- stage's lifetime to the block.
--
--   .ci/with 5.4 lua examples/pipeline.lua   (also 5.3 and LuaJIT; PUC 5.1
--   needs `while` loops over ch:recv() instead of ch:iter())
local corio = require "corio"

local ITEMS, WORKERS, CAP = 60, 3, 4

corio.run(function()
  local jobs, results = corio.channel(CAP), corio.channel(CAP)
  local waited, max_jobs, max_results = 0, 0, 0
  local per_worker = {}
  local t0 = corio.now()

  local sum, count = corio.scope(function(s)
    s:spawn({ name = "producer" }, function()
      for n = 1, ITEMS do
        if not jobs:try_send(n) then -- full: wait until a worker takes one
          waited = waited + 1
          assert(jobs:send(n))
        end
        max_jobs = math.max(max_jobs, jobs:len())
      end
      jobs:close() -- no more work: each worker's loop ends once it is drained
    end)

    s:spawn({ name = "pool" }, function()
      corio.scope(function(pool)
        for w = 1, WORKERS do
          per_worker[w] = 0
          pool:spawn({ name = "worker" .. w }, function()
            for n in jobs:iter() do
              corio.sleep(0.002 + n % 3 * 0.001) -- the "work": 2-4 ms
              assert(results:send({ n = n, square = n * n, by = w }))
              max_results = math.max(max_results, results:len())
              per_worker[w] = per_worker[w] + 1
            end
          end)
        end
      end)
      results:close() -- every worker is done: the collector's loop ends
    end)

    -- the collector is the scope's own body
    local total, got, seen = 0, 0, {}
    for r in results:iter() do
      assert(not seen[r.n], "duplicate item")
      seen[r.n] = true
      corio.sleep(0.0015) -- "store" the result: slower than the workers together
      total, got = total + r.square, got + 1
    end
    return total, got
  end)

  local wall = corio.now() - t0
  print(("producer: %d items, found the jobs channel full %d times and waited")
    :format(ITEMS, waited))
  print(("buffers peaked at jobs %d/%d, results %d/%d")
    :format(max_jobs, CAP, max_results, CAP))
  print(("workers handled %s items; collector got %d, sum of squares %d")
    :format(table.concat(per_worker, "/"), count, sum))
  local live = #corio.tasks()
  print(("pipeline drained in %.3f s; tasks alive after the scope: %d (main)")
    :format(wall, live))

  assert(count == ITEMS and sum == ITEMS * (ITEMS + 1) * (2 * ITEMS + 1) / 6)
  assert(max_jobs <= CAP and max_results <= CAP, "a channel exceeded its capacity")
  assert(waited > 0, "no backpressure: the producer never waited")
  assert(jobs:is_closed() and results:is_closed() and jobs:len() == 0)
  assert(live == 1, "a pipeline task outlived its scope")
end)
