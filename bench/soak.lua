-- Soak: long runs of the core lifecycles in one runtime, checking that the
-- Lua heap, the process's RSS and its open descriptors stay flat.
--
--   lua5.4 bench/soak.lua [SCALE]       (`make soak`: SCALE 1)
--
-- At SCALE 1: 1,000,000 task lifecycles (a quarter each: spawn and return,
-- join, cancel while parked, fail and wait), 1,000,000 corio.blocking pool
-- jobs, and 100,000 loopback TCP connections (connect, one round trip,
-- close). CI runs SCALE 0.1 (.ci/test.sh). Each phase runs in rounds;
-- after the first tenth (the warm-up) the heap (collectgarbage("count")
-- after full collections), the RSS (/proc/self/statm) and the number of
-- entries of /proc/self/fd are sampled after every round. The run fails
-- (exit 1) when, at the end, the heap or the RSS grew more than 5% over
-- the warm-up sample (with a small absolute slack: 256 KiB heap, 2 MiB
-- RSS, for the noise of the allocator at small scales), or the
-- descriptor count changed. Prints one line per phase with the numbers.
local corio = require "corio"

local SCALE = tonumber(arg[1] or "1") or 1
local ROUNDS = 20
local TASKS = math.floor(1000000 * SCALE)
local JOBS = math.floor(1000000 * SCALE)
local CONNS = math.floor(100000 * SCALE)
local LIMIT = 0.05

local function full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

local PAGE = 4096
local function rss_kb()
  local f = io.open("/proc/self/statm", "r")
  if not f then return 0 end
  local _, res = f:read("*l"):match("^(%d+)%s+(%d+)")
  f:close()
  return tonumber(res) * PAGE / 1024
end

local function fds()
  local names = corio.fs.list("/proc/self/fd")
  return names and #names or -1
end

local function sample()
  full_gc()
  return { heap = collectgarbage("count"), rss = rss_kb(), fds = fds() }
end

local failures = 0

-- Runs round(i, per) ROUNDS times, per = total / ROUNDS, sampling after
-- each round past the warm-up (the first ROUNDS / 10). Growth compares the
-- highest sample of the second half with the highest of the first: a
-- table's array doubling makes single samples jump both ways, a leak makes
-- the peaks climb.
local function phase(name, total, round)
  local per = math.max(1, math.floor(total / ROUNDS))
  local t0 = os.clock()
  local wall0 = corio.now()
  local samples = {}
  for i = 1, ROUNDS do
    round(i, per)
    if i > math.floor(ROUNDS / 10) then samples[#samples + 1] = sample() end
  end
  local half = math.floor(#samples / 2)
  local function peak(from, to, k)
    local m = -math.huge
    for j = from, to do m = math.max(m, samples[j][k]) end
    return m
  end
  local h1, h2 = peak(1, half, "heap"), peak(half + 1, #samples, "heap")
  local r1, r2 = peak(1, half, "rss"), peak(half + 1, #samples, "rss")
  local f1, f2 = samples[1].fds, samples[#samples].fds
  local gh, gr = (h2 - h1) / h1, (r2 - r1) / r1
  local ok = (gh <= LIMIT or h2 - h1 < 256) and (gr <= LIMIT or r2 - r1 < 2048)
    and f1 == f2
  if not ok then failures = failures + 1 end
  print(("%-6s %-6s %8d in %5.1f s (cpu %5.1f s)  heap %6.0f -> %6.0f KiB (%+5.1f%%)"
    .. "  rss %6.0f -> %6.0f KiB (%+5.1f%%)  fds %d -> %d")
    :format(ok and "ok" or "GROWTH", name, per * ROUNDS, corio.now() - wall0, os.clock() - t0,
      h1, h2, gh * 100, r1, r2, gr * 100, f1, f2))
  io.stdout:flush()
end

local function tasks_round(_, per)
  local q = math.floor(per / 4)
  -- spawn and return (nobody joins: collected)
  for _ = 1, q do corio.spawn(function(x) return x end, 1) end
  -- spawn and join
  local ts = {}
  for i = 1, q do ts[i] = corio.spawn(function(x) corio.yield() return x end, i) end
  for i = 1, q do assert(ts[i]:join() == i) end
  -- cancel while parked
  for i = 1, q do ts[i] = corio.spawn(corio.sleep, 3600) end
  corio.yield()
  for i = 1, q do ts[i]:cancel() end
  for i = 1, q do assert(not ts[i]:wait()) end
  -- fail, observed by wait
  for i = 1, q do ts[i] = corio.spawn(error, "soak failure") end
  for i = 1, q do assert(not ts[i]:wait()) end
  corio.yield()
end

local function square(x) return x * x end
local CALLERS = 64
local function jobs_round(_, per)
  corio.scope(function(s)
    local each = math.floor(per / CALLERS)
    for _ = 1, CALLERS do
      s:spawn(function()
        for i = 1, each do
          assert(corio.blocking(square, i) == i * i)
        end
      end)
    end
  end)
end

local srv, port
local CLIENTS = 32
local function conns_round(_, per)
  corio.scope(function(s)
    local each = math.floor(per / CLIENTS)
    for _ = 1, CLIENTS do
      s:spawn(function()
        for i = 1, each do
          local c = assert(corio.tcp.connect("127.0.0.1", port, { timeout = 30 }))
          assert(c:write(i .. "\n"))
          assert(c:read("l", { timeout = 30 }) == tostring(i))
          c:close()
        end
      end)
    end
  end)
end

local function serve()
  corio.scope(function(s)
    while true do
      local c = srv:accept({ timeout = 3600 })
      if c then
        s:spawn(function()
          local line = c:read("l", { timeout = 30 })
          if line then c:write(line .. "\n") end
          c:close()
        end)
      end
    end
  end)
end

print(("soak at scale %g: %d task lifecycles, %d pool jobs, %d TCP connections"):format(
  SCALE, TASKS, JOBS, CONNS))
corio.runtime({ on_error = function() end }):run(function()
  phase("tasks", TASKS, tasks_round)
  phase("pool", JOBS, jobs_round)
  srv = assert(corio.tcp.listen("127.0.0.1", 0, { backlog = 1024 }))
  port = srv:port()
  local server = corio.spawn(serve)
  phase("tcp", CONNS, conns_round)
  server:cancel()
  server:wait()
  srv:close()
end)
print(failures == 0 and "soak: flat" or ("soak: %d phase(s) grew"):format(failures))
os.exit(failures == 0 and 0 or 1)
