-- The luv anchor: a coroutine scheduler written by hand on luv, the way a
-- careful luv user would, exposing the subset of corio's API that the
-- workloads use (run, spawn, join, yield, sleep, now, semaphore, channel),
-- and work(fn) for the thread pool workload.
--
-- Design: a FIFO ready queue run in batches (two arrays swapped, so a
-- batch never grows while it runs), then `uv.run("nowait")` to fire due
-- timers; `uv.run("once")` blocks only when nothing is ready. Tasks are
-- never resumed from inside a libuv callback: callbacks only queue them.
-- Sleep uses pooled uv timers (one handle and one closure per pool slot,
-- reused), semaphore and channel hand permits/values directly to the
-- first waiter. A task error aborts the run: enough for benchmarks.
local uv = require "luv"

local M = {}

local co_create, co_resume = coroutine.create, coroutine.resume
local co_yield, co_status = coroutine.yield, coroutine.status
local pack, unpack = table.pack, table.unpack
local ceil = math.ceil

local current = false            -- the task being resumed
local rq_t, rq_v, rq_n = {}, {}, 0 -- ready tasks and the values to resume with
local spare_t, spare_v = {}, {}

local function wake(task, v)
  local n = rq_n + 1
  rq_n = n
  rq_t[n], rq_v[n] = task, v
end

-- FIFO queue of tasks: array slots [head, tail].
local function queue() return { head = 1, tail = 0 } end

local function qpush(q, x)
  local t = q.tail + 1
  q.tail = t
  q[t] = x
end

local function qpop(q)
  local h = q.head
  if h > q.tail then return nil end
  local x = q[h]
  q[h] = nil
  if h == q.tail then q.head, q.tail = 1, 0 else q.head = h + 1 end
  return x
end

-- Tasks ---------------------------------------------------------------

local Task = {}
Task.__index = Task

local function finish(task, ...)
  task.done = true
  if select("#", ...) > 0 then task.res = pack(...) end
  local j = task.joiner
  if j then
    wake(j)
    local more = task.more
    if more then for i = 1, #more do wake(more[i]) end end
  end
end

local function after_resume(task, ok, ...)
  if not ok then error(debug.traceback(task.co, (...)), 0) end
  if co_status(task.co) == "dead" then finish(task, ...) end
end

local function step(task, v)
  current = task
  after_resume(task, co_resume(task.co, v))
end

local function run_batch()
  local bt, bv, n = rq_t, rq_v, rq_n
  rq_t, rq_v, rq_n = spare_t, spare_v, 0
  for i = 1, n do
    local task, v = bt[i], bv[i]
    bt[i], bv[i] = nil, nil
    step(task, v)
  end
  spare_t, spare_v = bt, bv
  current = false
end

function M.spawn(fn, ...)
  if select("#", ...) > 0 then
    local f, args = fn, pack(...)
    fn = function() return f(unpack(args, 1, args.n)) end
  end
  -- four preallocated fields; rarely used ones (more, val) are added later
  local task = setmetatable({ co = co_create(fn), done = false, res = false,
                              joiner = false }, Task)
  wake(task)
  return task
end

function Task:join()
  if not self.done then
    if not self.joiner then
      self.joiner = current
    else
      self.more = self.more or {}
      self.more[#self.more + 1] = current
    end
    co_yield()
  end
  local r = self.res
  if r then return unpack(r, 1, r.n) end
end

function M.yield()
  wake(current)
  co_yield()
end

function M.now() return uv.hrtime() * 1e-9 end

-- Sleep: pooled one-shot timers ----------------------------------------

local free, nfree = {}, 0

local function new_slot()
  local slot = { timer = uv.new_timer(), task = false }
  slot.fire = function()
    local task = slot.task
    slot.task = false
    nfree = nfree + 1
    free[nfree] = slot
    wake(task)
  end
  return slot
end

function M.sleep(secs)
  local slot
  if nfree > 0 then
    slot = free[nfree]
    free[nfree] = nil
    nfree = nfree - 1
  else
    slot = new_slot()
  end
  slot.task = current
  -- the loop's cached time goes stale while a batch runs; refresh it so
  -- the timer does not fire early (libuv timers have 1 ms resolution)
  uv.update_time()
  slot.timer:start(ceil(secs * 1000), 0, slot.fire)
  co_yield()
end

-- Run -------------------------------------------------------------------

-- Drop what main left behind: close every handle and reset the queues.
local function reset()
  uv.walk(function(h) if not h:is_closing() then h:close() end end)
  uv.run("default")
  free, nfree = {}, 0
  rq_t, rq_v, rq_n, spare_t, spare_v = {}, {}, 0, {}, {}
  current = false
end

function M.run(main, ...)
  local task = M.spawn(main, ...)
  while not task.done do
    if rq_n > 0 then
      run_batch()
      uv.run("nowait")
    elseif not uv.run("once") and rq_n == 0 then
      reset()
      error("deadlock: every task waits and nothing can wake one", 2)
    end
  end
  reset()
  local r = task.res
  if r then return unpack(r, 1, r.n) end
end

-- Thread pool: uv.new_work, one work object per function ----------------

-- work(fn) -> call(...): runs fn(id, ...) on libuv's thread pool and
-- returns what follows the id in its results. luv's after-callback gets
-- only the results, so the id threads the waiting task through the job.
function M.work(fn)
  local waiting, next_id = {}, 0
  local w = uv.new_work(fn, function(id, ...)
    local task = waiting[id]
    waiting[id] = nil
    wake(task, pack(...))
  end)
  return function(...)
    next_id = next_id + 1
    waiting[next_id] = current
    w:queue(next_id, ...)
    local r = co_yield()
    return unpack(r, 1, r.n)
  end
end

-- Semaphore: FIFO, a release hands its permit to the first waiter --------

local Sem = {}
Sem.__index = Sem

function M.semaphore(n)
  return setmetatable({ n = n, waiters = queue() }, Sem)
end

-- The permit is the semaphore itself: `p:release()` works as in corio.
function Sem:acquire()
  local n = self.n
  if n > 0 then -- waiters exist only while n == 0
    self.n = n - 1
    return self
  end
  qpush(self.waiters, current)
  co_yield()
  return self
end

function Sem:release()
  local w = qpop(self.waiters)
  if w then wake(w) else self.n = self.n + 1 end
end

-- Channel: bounded ring buffer plus FIFO queues of parked tasks ----------

local Chan = {}
Chan.__index = Chan

function M.channel(cap)
  assert(cap >= 1, "capacity must be at least 1")
  return setmetatable({ cap = cap, buf = {}, head = 1, count = 0,
                        senders = queue(), receivers = queue() }, Chan)
end

function Chan:send(v)
  local r = qpop(self.receivers) -- receivers wait only while empty
  if r then
    wake(r, v)
    return true
  end
  local count, cap = self.count, self.cap
  if count < cap then
    self.buf[(self.head - 1 + count) % cap + 1] = v
    self.count = count + 1
    return true
  end
  local me = current
  me.val = v
  qpush(self.senders, me)
  co_yield()
  return true
end

function Chan:recv()
  local count = self.count
  if count == 0 then
    qpush(self.receivers, current)
    return co_yield()
  end
  local buf, head, cap = self.buf, self.head, self.cap
  local v = buf[head]
  buf[head] = false
  head = head % cap + 1
  self.head = head
  local s = qpop(self.senders) -- the buffer was full: refill the slot
  if s then
    buf[(head - 1 + count - 1) % cap + 1] = s.val
    s.val = nil
    wake(s)
  else
    self.count = count - 1
  end
  return v
end

return M
