-- A reliable job queue on Redis, worked by several processes: the way
-- past one machine with an engine you already run.
--
--   lua examples/redis_queue.lua [port]   -- coordinator (starts its own
--                                         -- redis-server without a port)
--
-- The coordinator pushes jobs onto a Redis list and starts worker
-- processes (this script again, with "worker"). Each worker moves jobs
-- with BRPOPLPUSH from the queue into its own processing list (so a job
-- is never only in a worker's memory), runs at most 4 at a time (a
-- semaphore), each attempt under a deadline and retried with backoff
-- (corio.retry), and acknowledges a finished job (shielded from
-- cancellation) by removing it from its processing list. On SIGTERM a
-- worker stops pulling, gives running jobs a grace period, cancels the
-- rest and pushes what is left in its processing list back onto the
-- queue. The coordinator stops the first workers halfway, lets a second
-- set drain the queue, and checks that every job was done exactly once.
-- Uses redis-lua (Debian lua-redis) on corio.socket.
local corio = require "corio"
local socket = require "corio.socket"

local JOBS, WORKERS, PER_WORKER = 60, 3, 4

local function load_redis()
  local ok, redis = pcall(require, "redis")
  if ok then return redis end
  -- Debian installs redis-lua (one pure-Lua file) for 5.1 to 5.3 only
  local f = loadfile("/usr/share/lua/5.3/redis.lua")
  return f and f() or nil
end

local function connect(port)
  local redis = assert(load_redis(), "redis-lua (Debian lua-redis) is not installed")
  return redis.connect({ socket = assert(socket.connect("127.0.0.1", port)) })
end

local function bye(r)
  corio.pcall(r.quit, r)
  r.network.socket:close()
end

---------------------------------------------------------------- worker

-- One attempt of a job "<n>:<kind>": "flaky" fails its first attempt,
-- "slow" overruns the deadline on its first attempt.
local function work(kind, attempt)
  if kind == "flaky" and attempt == 1 then error("transient failure", 0) end
  corio.sleep((kind == "slow" and attempt == 1) and 5 or 0.05)
end

local function worker(port, id, prefix)
  local queue, processing = prefix .. "jobs", prefix .. "processing:" .. id
  local stop = corio.shutdown() -- SIGTERM turns it true
  local stats = { done = 0, retried = 0, requeued = 0 }
  local slots = corio.semaphore(PER_WORKER)

  -- an acknowledgement is never half done: shielded from cancellation
  local function ack(job, list)
    corio.shield(function()
      local r = connect(port)
      if list then r:lpush(prefix .. list, job) end
      r:sadd(prefix .. "done", job)
      r:hincrby(prefix .. "completions", job, 1)
      r:lrem(processing, 1, job)
      bye(r)
    end)
  end

  local function run(job, permit)
    local _, kind = job:match("^(%d+):(%a+)$")
    local ok, err = corio.pcall(corio.retry, function(attempt)
      return corio.timeout(0.3, work, kind, attempt) -- the per-job deadline
    end, { retries = 3, base = 0.05, jitter = false,
           on_retry = function() stats.retried = stats.retried + 1 end })
    permit:release()
    if corio.is_cancelled(err) then error(err, 0) end -- shutting down
    if not ok then -- out of attempts: set aside for a human
      io.stderr:write(("worker %s: job %s failed: %s\n"):format(id, job, tostring(err)))
    end
    ack(job, not ok and "failed" or nil)
    stats.done = stats.done + 1
  end

  corio.scope(function(jobs)
    local puller = corio.spawn(function()
      local r = connect(port)
      while true do
        local permit = slots:acquire()
        local job = r:brpoplpush(queue, processing, 1)
        if job then
          jobs:spawn(run, job, permit)
        else
          permit:release()
          if arg[4] == "drain" and slots:available() == PER_WORKER then break end
        end
      end
      bye(r)
    end)
    corio.select(function() puller:wait() end, function() stop:changed({ timeout = 60 }) end)
    puller:cancel()  -- a cancelled BRPOPLPUSH closes its connection
    puller:wait()
    -- grace period for running jobs, then they are cancelled
    corio.pcall(corio.timeout, 0.3, function()
      while slots:available() < PER_WORKER do corio.sleep(0.02) end
    end)
    jobs:cancel()
  end)
  -- whatever is still in the processing list goes back to the queue
  local r = connect(port)
  while r:rpoplpush(processing, queue) do stats.requeued = stats.requeued + 1 end
  bye(r)
  print(("worker %s: done %d, retried %d, requeued %d")
    :format(id, stats.done, stats.retried, stats.requeued))
end

----------------------------------------------------------- coordinator

local function free_port()
  local l = assert(corio.tcp.listen("127.0.0.1", 0))
  local port = l:port()
  l:close()
  return port
end

local function start_redis()
  local port = free_port()
  local pr = assert(corio.process({ "redis-server", "--bind", "127.0.0.1", "--port", tostring(port),
    "--save", "", "--appendonly", "no" }, { stdout = "null", stderr = "null" }))
  for _ = 1, 100 do
    local c = corio.tcp.connect("127.0.0.1", port, { timeout = 1 })
    if c then
      c:close()
      return pr, port
    end
    corio.sleep(0.05)
  end
  error("redis-server did not start")
end

local function start_workers(port, prefix, first, n, mode)
  local lua = arg[-1] or "lua"
  local ws = {}
  for i = first, first + n - 1 do
    ws[#ws + 1] = assert(corio.process({ lua, arg[0], "worker", tostring(port), tostring(i), mode, prefix },
      { stderr = "inherit" }))
  end
  return ws
end

local function finish(ws)
  for _, w in ipairs(ws) do
    io.write(w.stdout:read("a", { timeout = 10 }) or "")
    local st = assert(w:wait({ timeout = 10 }))
    assert(st.code == 0, "a worker failed")
    w:close()
  end
end

local function coordinator(port)
  local server
  if not port then server, port = start_redis() end
  local prefix = ("corio:queue:%d:"):format(corio.getpid())
  local r = connect(port)
  local kinds = { "plain", "plain", "flaky", "plain", "slow" }
  for i = 1, JOBS do r:lpush(prefix .. "jobs", i .. ":" .. kinds[i % #kinds + 1]) end
  print(("queued %d jobs; %d workers, %d jobs each at a time"):format(JOBS, WORKERS, PER_WORKER))

  local ws = start_workers(port, prefix, 1, WORKERS, "serve")
  while tonumber(r:scard(prefix .. "done")) < JOBS / 2 do corio.sleep(0.05) end
  print("halfway: SIGTERM to the workers")
  for _, w in ipairs(ws) do w:kill("SIGTERM") end
  finish(ws)

  print("second set of workers drains the queue")
  finish(start_workers(port, prefix, WORKERS + 1, 2, "drain"))

  local done = tonumber(r:scard(prefix .. "done"))
  local counts = r:hvals(prefix .. "completions")
  local once = 0
  for _, c in ipairs(counts) do if tonumber(c) == 1 then once = once + 1 end end
  print(("%d of %d jobs done, %d exactly once, %d left queued"):format(done, JOBS, once,
    tonumber(r:llen(prefix .. "jobs"))))
  local ok = done == JOBS and once == JOBS
  r:del(prefix .. "jobs", prefix .. "done", prefix .. "completions")
  bye(r)
  if server then
    server:kill("SIGTERM")
    server:wait({ timeout = 5 })
    server:close()
  end
  return ok
end

if arg[1] == "worker" then
  corio.run(worker, tonumber(arg[2]), arg[3], arg[5])
  os.exit(0)
end

local port = tonumber(arg[1])
if not port then
  local found = os.execute("command -v redis-server >/dev/null 2>&1")
  if not (found == true or found == 0) then
    print("redis-server is not installed: nothing to show (apt-get install redis-server)")
    os.exit(0)
  end
end
if not load_redis() then
  print("redis-lua is not installed: nothing to show (apt-get install lua-redis)")
  os.exit(0)
end
local ok = corio.run(function()
  return corio.timeout(20, coordinator, port)
end)
print(ok and "ok" or "FAILED")
os.exit(ok and 0 or 1)
