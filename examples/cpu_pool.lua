-- CPU-bound work on the thread pool: count the primes below N in chunks,
-- first on the loop thread (one chunk after another), then with every
-- chunk a corio.blocking job, spread over the pool's workers (one per CPU
-- by default). While the jobs run, a ticker task keeps its 10 ms beat:
-- the loop thread stays free. Prints both times and the speedup.
--
-- The job function has no upvalues (it travels to the worker as bytecode)
-- and gets its chunk as arguments; its result comes back as a number.
--
--   .ci/with 5.4 lua examples/cpu_pool.lua   (also 5.3, 5.1 and LuaJIT)
local corio = require "corio"

local N, CHUNKS = 600000, 8

local function count_primes(lo, hi)
  local n = 0
  for k = math.max(lo, 2), hi do
    local prime = true
    for d = 2, math.floor(math.sqrt(k)) do
      if k % d == 0 then
        prime = false
        break
      end
    end
    if prime then n = n + 1 end
  end
  return n
end

local function chunk(i)
  local size = math.ceil(N / CHUNKS)
  return (i - 1) * size + 1, math.min(i * size, N - 1)
end

corio.run(function()
  local t0 = corio.now()
  local on_loop = 0
  for i = 1, CHUNKS do on_loop = on_loop + count_primes(chunk(i)) end
  local loop_s = corio.now() - t0

  local ticks, worst = 0, 0
  local ticker = corio.spawn(function()
    while true do
      local t = corio.now()
      corio.sleep(0.01)
      worst = math.max(worst, corio.now() - t - 0.01)
      ticks = ticks + 1
    end
  end)

  t0 = corio.now()
  local jobs = {}
  for i = 1, CHUNKS do jobs[i] = corio.spawn(corio.blocking, count_primes, chunk(i)) end
  local on_pool = 0
  for i = 1, CHUNKS do on_pool = on_pool + jobs[i]:join() end
  local pool_s = corio.now() - t0
  ticker:cancel()

  assert(on_pool == on_loop, "the pool counted differently")
  local st = corio.stats()
  print(("primes below %d: %d"):format(N, on_pool))
  print(("loop thread: %.3f s; pool of %d workers: %.3f s; speedup %.2fx")
    :format(loop_s, st.workers, pool_s, loop_s / pool_s))
  print(("meanwhile the ticker ran %d times, at worst %.1f ms late")
    :format(ticks, worst * 1e3))
end)
