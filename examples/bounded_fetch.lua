-- Bounded concurrency: 200 simulated requests with at most 8 in flight
-- (corio.semaphore + sem:with), each under its own deadline (corio.timeout).
-- corio.sleep stands in for the network; a few requests are too slow and
-- time out, and their permits still come back.
--
--   .ci/with 5.4 lua examples/bounded_fetch.lua   (also 5.3 and LuaJIT)
local corio = require "corio"

local N, LIMIT, DEADLINE = 200, 8, 0.05

-- Seeded durations, the same on every Lua version (Park-Miller generator):
-- most take 2-10 ms, about one in twenty takes 100-150 ms (past DEADLINE).
local seed = 20240601
local function rand() seed = seed * 16807 % 2147483647; return seed / 2147483647 end
local durations, expect_slow, busy = {}, 0, 0
for i = 1, N do
  durations[i] = rand() < 0.05 and 0.1 + rand() * 0.05 or 0.002 + rand() * 0.008
  if durations[i] > DEADLINE then expect_slow = expect_slow + 1 end
  busy = busy + math.min(durations[i], DEADLINE) -- time a permit is held
end

local in_flight, peak = 0, 0

local function request(i)
  in_flight = in_flight + 1
  peak = math.max(peak, in_flight)
  local ok, err = pcall(corio.sleep, durations[i]) -- the "I/O"
  in_flight = in_flight - 1                        -- runs on timeout too
  if not ok then error(err, 0) end                 -- re-raise the cancellation
  return "response " .. i
end

corio.run(function()
  local sem = corio.semaphore(LIMIT)
  local t0 = corio.now()
  local tasks = {}
  for i = 1, N do
    -- the deadline starts once a permit is held: queueing is not the server's fault
    tasks[i] = corio.spawn({ name = "req" .. i }, function()
      return sem:with(corio.timeout, DEADLINE, request, i)
    end)
  end

  local ok_n, timed_out = 0, 0
  for i = 1, N do
    local ok, res = tasks[i]:wait()
    if ok then
      assert(res == "response " .. i)
      ok_n = ok_n + 1
    elseif corio.is_timeout(res) then
      timed_out = timed_out + 1
    else
      error(res, 0) -- anything else is a bug
    end
  end
  local wall = corio.now() - t0

  print(("%d requests: %d succeeded, %d timed out after %.0f ms (expected %d)")
    :format(N, ok_n, timed_out, DEADLINE * 1000, expect_slow))
  print(("peak in flight: %d (limit %d); permits free at the end: %d")
    :format(peak, LIMIT, sem:available()))
  print(("wall time %.3f s; %.3f s of request time, so at least %.3f s with %d at once")
    :format(wall, busy, busy / LIMIT, LIMIT))

  assert(ok_n + timed_out == N and timed_out == expect_slow and expect_slow > 0)
  assert(peak <= LIMIT, "more requests in flight than the semaphore allows")
  assert(peak == LIMIT, "the limit was never reached")
  assert(in_flight == 0 and sem:available() == LIMIT, "a permit was lost")
  assert(wall >= busy / LIMIT - 0.005, "finished faster than 8 at a time could")
  assert(wall < busy / 2, "requests did not overlap")
end)
