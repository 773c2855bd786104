-- The cqueues anchor: the subset of corio's API that the workloads use
-- (run, spawn, join, yield, sleep, now, semaphore, channel), written on
-- cqueues and cqueues.condition the way a competent cqueues user would.
-- Joins, the semaphore and the channel wait on conditions, and signal
-- only when someone waits. A task error aborts the run.
local cqueues = require "cqueues"
local condition = require "cqueues.condition"

local M = {}

local pack, unpack = table.pack, table.unpack
local cq = false -- the controller of the running M.run

M.now = cqueues.monotime
M.sleep = cqueues.sleep
M.yield = cqueues.poll -- poll() with nothing to wait for: back of the queue

-- Tasks -----------------------------------------------------------------

local Task = {}
Task.__index = Task

local function finish(task, ...)
  task.done = true
  if select("#", ...) > 0 then task.res = pack(...) end
  local c = task.cond
  if c then c:signal() end
end

local function trampoline(task, fn, ...)
  finish(task, fn(...))
end

function M.spawn(fn, ...)
  local task = setmetatable({ done = false, res = false, cond = false }, Task)
  cq:wrap(trampoline, task, fn, ...)
  return task
end

function Task:join()
  if not self.done then
    local c = self.cond
    if not c then
      c = condition.new()
      self.cond = c
    end
    repeat c:wait() until self.done
  end
  local r = self.res
  if r then return unpack(r, 1, r.n) end
end

-- Run: step until main is done; tasks it leaves behind are dropped. -------

function M.run(main, ...)
  local outer = cq
  cq = cqueues.new()
  local task = M.spawn(main, ...)
  while not task.done do
    if cq:empty() then error("deadlock: main waits and no task is left", 2) end
    local ok, err = cq:step()
    if not ok then error(err, 0) end
  end
  cq = outer
  local r = task.res
  if r then return unpack(r, 1, r.n) end
end

-- Semaphore: FIFO condition; a release hands its permit to one waiter ----

local Sem = {}
Sem.__index = Sem

function M.semaphore(n)
  return setmetatable({ n = n, waiting = 0, handed = 0,
                        cond = condition.new() }, Sem)
end

-- The permit is the semaphore itself: `p:release()` works as in corio.
function Sem:acquire()
  local n = self.n
  if n > 0 then -- waiters exist only while n == 0
    self.n = n - 1
    return self
  end
  self.waiting = self.waiting + 1
  repeat self.cond:wait() until self.handed > 0
  self.handed = self.handed - 1
  return self
end

function Sem:release()
  if self.waiting > 0 then
    self.waiting = self.waiting - 1
    self.handed = self.handed + 1
    self.cond:signal(1)
  else
    self.n = self.n + 1
  end
end

-- Channel: ring buffer, "not full" and "not empty" conditions -------------

local Chan = {}
Chan.__index = Chan

function M.channel(cap)
  assert(cap >= 1, "capacity must be at least 1")
  return setmetatable({ cap = cap, buf = {}, head = 1, count = 0,
                        nsend = 0, nrecv = 0, notfull = condition.new(),
                        notempty = condition.new() }, Chan)
end

function Chan:send(v)
  local cap = self.cap
  while self.count >= cap do
    self.nsend = self.nsend + 1
    self.notfull:wait()
    self.nsend = self.nsend - 1
  end
  local count = self.count
  self.buf[(self.head - 1 + count) % cap + 1] = v
  self.count = count + 1
  if self.nrecv > 0 then self.notempty:signal(1) end
  return true
end

function Chan:recv()
  while self.count == 0 do
    self.nrecv = self.nrecv + 1
    self.notempty:wait()
    self.nrecv = self.nrecv - 1
  end
  local buf, head = self.buf, self.head
  local v = buf[head]
  buf[head] = false
  self.head = head % self.cap + 1
  self.count = self.count - 1
  if self.nsend > 0 then self.notfull:signal(1) end
  return v
end

return M
