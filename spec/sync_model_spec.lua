-- Seeded randomised tests: each primitive against a plain Lua model.
--
-- A trial drives the real primitive and its model with the same random
-- sequence of operations (spawn a waiter with or without a timeout,
-- release, cancel a waiter, cancel one in the same tick as its wake-up,
-- let time pass, close) and, after every step, compares what each task
-- saw with what the model says it must see. Invariants checked besides:
-- permits are conserved, no value is lost or duplicated, FIFO order.
-- CORIO_SEED=n runs only that seed (to replay a failure).
local corio = require "corio"

local H = require "helper"

-- Park-Miller: the same sequence on every Lua version (exact in doubles).
local function rng(seed)
  local state = seed % 2147483646 + 1
  return function(lo, hi)
    state = state * 16807 % 2147483647
    return lo + state % (hi - lo + 1)
  end
end

local SEEDS = {}
if os.getenv("CORIO_SEED") then
  SEEDS[1] = tonumber(os.getenv("CORIO_SEED"))
else
  for s = 1, 30 do SEEDS[s] = s end
end
local STEPS = 80

local function remove_item(list, x)
  for i = 1, #list do
    if list[i] == x then
      table.remove(list, i)
      return i
    end
  end
end

-- A timeout for a new waiter: none, or a half-second offset (main only
-- sleeps whole seconds, so no deadline ties with main's own timer).
local function pick_timeout(R)
  if R(1, 3) == 1 then return R(0, 3) + 0.5 end
end

-- Queued entries whose deadline is due by `target`, in firing order.
local function due(queue, target)
  local out = {}
  for _, a in ipairs(queue) do
    if a.deadline and a.deadline <= target then out[#out + 1] = a end
  end
  table.sort(out, function(x, y)
    if x.deadline ~= y.deadline then return x.deadline < y.deadline end
    return x.id < y.id
  end)
  return out
end

local function ctx(seed, a)
  return ("seed %d, task %d"):format(seed, a and a.id or 0)
end

-- Actor a against the model after a step: still waiting, cancelled, or
-- finished as the model says (a.m), with the value it wants when that
-- outcome is `valued` (the outcome that carries a value, if any).
local function check_actor(seed, step, a, valued)
  local w = ctx(seed, a) .. ", step " .. step
  if a.m == "queued" then
    assert.equal("waiting", a.task:status(), w)
  elseif a.m == "cancelled" then
    assert.equal("cancelled", a.task:status(), w)
  else
    assert.equal(a.m, a.r, w)
    if valued and a.m == valued then assert.equal(a.want, a.got, w) end
  end
end

------------------------------------------------------------ semaphore

-- P: {new(cap), take(obj, k, opts), release(h), max_k}
local function lock_trial(P, seed)
  local R = rng(seed)
  H.run(function()
    local cap = P.mutex and 1 or R(1, 4)
    local obj = P.new(cap)
    local avail, queue, actors = cap, {}, {}
    local grants_model, grants_real = {}, {}
    local closed = false

    local function grant()
      while queue[1] and avail >= queue[1].k do
        local a = table.remove(queue, 1)
        avail = avail - a.k
        a.m = "held"
        grants_model[#grants_model + 1] = a.id
      end
    end
    local function leave(a, why)
      remove_item(queue, a)
      a.m = why
      grant()
    end

    local function spawn()
      local a = { id = #actors + 1, k = P.mutex and 1 or R(1, cap),
                  ev = corio.event() }
      local timeout = pick_timeout(R)
      actors[a.id] = a
      a.task = corio.spawn(function()
        local h, err = P.take(obj, a.k, timeout and { timeout = timeout })
        if not h then
          a.r = err.kind
          return
        end
        a.r = "held"
        grants_real[#grants_real + 1] = a.id
        a.ev:wait()
        P.release(h)
        if a.then_cancel then a.then_cancel.task:cancel() end
        a.r = "released"
      end)
      if closed then
        a.m = "closed"
      elseif #queue == 0 and avail >= a.k then
        avail = avail - a.k
        a.m = "held"
        grants_model[#grants_model + 1] = a.id
      else
        a.m = "queued"
        a.deadline = timeout and corio.now() + timeout
        queue[#queue + 1] = a
      end
    end

    local function holders()
      local hs = {}
      for _, a in ipairs(actors) do if a.m == "held" then hs[#hs + 1] = a end end
      return hs
    end

    -- a holder releases; with `same_tick`, it cancels a queued task in
    -- the same tick (maybe the one its release has just granted)
    local function release(same_tick)
      local hs = holders()
      if #hs == 0 then return end
      local a = hs[R(1, #hs)]
      avail = avail + a.k
      a.m = "released"
      if same_tick and #queue > 0 then
        local q = queue[R(1, math.min(2, #queue))]
        a.then_cancel = q
        remove_item(queue, q)
        q.m = "cancelled"
      end
      grant()
      a.ev:set()
    end

    local function cancel()
      if #queue == 0 then return end
      local q = queue[R(1, #queue)]
      q.task:cancel()
      leave(q, "cancelled")
    end

    local function advance()
      local target = corio.now() + R(1, 2)
      for _, a in ipairs(due(queue, target)) do
        if a.m == "queued" then leave(a, "timeout") end
      end
      corio.sleep(target - corio.now())
    end

    local function close()
      closed = true
      for _, a in ipairs(queue) do a.m = "closed" end
      queue = {}
      P.close(obj)
    end

    local function check(step)
      local where = ctx(seed, nil) .. ", step " .. step
      assert.equal(avail, P.available(obj), where)
      local sum = avail
      for _, a in ipairs(actors) do
        check_actor(seed, step, a)
        if a.m == "held" then sum = sum + a.k end
      end
      assert.equal(P.capacity and P.capacity() or cap, sum, where .. ": permits conserved")
      assert.same(grants_model, grants_real, where .. ": FIFO grant order")
    end

    for step = 1, STEPS do
      local op = R(1, 20)
      if op <= 7 then spawn()
      elseif op <= 11 then release(false)
      elseif op <= 13 then release(true)
      elseif op <= 15 then cancel()
      elseif op <= 19 then advance()
      elseif not closed and step > STEPS / 2 and P.close then close()
      end
      H.settle(6)
      check(step)
    end
    -- wind down: every holder releases (waiters granted meanwhile too)
    while #holders() > 0 do
      for _, a in ipairs(holders()) do
        avail = avail + a.k
        a.m = "released"
        grant()
        a.ev:set()
      end
      H.settle(6)
    end
    check(STEPS + 1)
  end)
end

local SEM = {
  new = function(cap) return corio.semaphore(cap) end,
  take = function(s, k, opts) return s:acquire(k, opts) end,
  release = function(p) p:release() end,
  available = function(s) return s:available() end,
  close = function(s) s:close() end,
}

local MUTEX = {
  mutex = true,
  new = function() return corio.mutex() end,
  take = function(m, _, opts) return m:lock(opts) end,
  release = function(g) g:unlock() end,
  available = function(m) return m:is_locked() and 0 or 1 end,
}

-------------------------------------------------------- event, watch

-- The waiters of an event or a watch all wake together and consume
-- nothing, so one model serves both; W adapts the API.
local function broadcast_trial(W, seed)
  local R = rng(seed)
  H.run(function()
    local obj = W.new()
    local queue, actors = {}, {}
    local is_set, closed, value = false, false, 0

    local function spawn()
      local a = { id = #actors + 1 }
      local timeout = pick_timeout(R)
      actors[a.id] = a
      a.task = corio.spawn(function()
        local v, err = W.wait(obj, timeout and { timeout = timeout })
        if err then a.r = err.kind else a.r, a.got = "woken", v end
      end)
      if closed then
        a.m = "closed"
      elseif W.event and is_set then
        a.m, a.want = "woken", true
      else
        a.m = "queued"
        a.deadline = timeout and corio.now() + timeout
        queue[#queue + 1] = a
      end
    end

    local function fire(same_tick)
      if closed then return end
      value = value + 1
      is_set = true
      local victim = same_tick and queue[R(1, #queue + 1)]
      for _, a in ipairs(queue) do
        a.m, a.want = "woken", W.event and true or value
      end
      queue = {}
      W.fire(obj, value)
      if victim then
        victim.task:cancel() -- woken, not yet run: the cancellation wins
        victim.m = "cancelled"
      end
    end

    local function step_op(step)
      local op = R(1, 20)
      if op <= 8 then spawn()
      elseif op <= 11 then fire(false)
      elseif op <= 13 then fire(true)
      elseif op <= 14 and W.event then
        is_set = false
        obj:clear()
      elseif op <= 16 then
        if #queue > 0 then
          local q = table.remove(queue, R(1, #queue))
          q.task:cancel()
          q.m = "cancelled"
        end
      elseif op <= 19 then
        local target = corio.now() + R(1, 2)
        for _, a in ipairs(due(queue, target)) do
          remove_item(queue, a)
          a.m = "timeout"
        end
        corio.sleep(target - corio.now())
      elseif W.close and not closed and step > STEPS / 2 then
        closed = true
        for _, a in ipairs(queue) do a.m = "closed" end
        queue = {}
        W.close(obj)
      end
    end

    for step = 1, STEPS do
      step_op(step)
      H.settle(6)
      for _, a in ipairs(actors) do check_actor(seed, step, a, "woken") end
      if W.event then assert.equal(is_set, obj:is_set()) end
    end
  end)
end

local EVENT = {
  event = true,
  new = function() return corio.event() end,
  wait = function(e, opts) return e:wait(opts) end,
  fire = function(e) e:set() end,
}

local WATCH = {
  new = function() return corio.watch(0) end,
  wait = function(w, opts) return w:changed(opts) end,
  fire = function(w, v) w:set(v) end,
  close = function(w) w:close() end,
}

------------------------------------------------------------- channel

local function channel_trial(seed)
  local R = rng(seed)
  H.run(function()
    local cap = R(0, 3)
    local ch = corio.channel(cap)
    local buf, senders, receivers, actors = {}, {}, {}, {}
    local closed, next_v = false, 0
    local accepted, received = {}, {}

    local function hand(r, v) -- the model hands v to receiver r
      r.m, r.want = "got", v
    end
    local function offer(v)
      if receivers[1] then
        hand(table.remove(receivers, 1), v)
      elseif #buf < cap then
        buf[#buf + 1] = v
      else
        return false
      end
      accepted[#accepted + 1] = v
      return true
    end
    local function take()
      local v
      if buf[1] then
        v = table.remove(buf, 1)
        if senders[1] then
          local s = table.remove(senders, 1)
          s.m = "sent"
          buf[#buf + 1] = s.v
          accepted[#accepted + 1] = s.v
        end
      elseif senders[1] then
        local s = table.remove(senders, 1)
        s.m = "sent"
        v = s.v
        accepted[#accepted + 1] = v
      end
      return v
    end

    local function spawn_sender()
      next_v = next_v + 1
      local a = { id = #actors + 1, v = next_v }
      local timeout = pick_timeout(R)
      actors[a.id] = a
      a.task = corio.spawn(function()
        local ok, err = ch:send(a.v, timeout and { timeout = timeout })
        a.r = ok and "sent" or err.kind
      end)
      if closed then
        a.m = "closed"
      elseif offer(a.v) then
        a.m = "sent"
      else
        a.m = "queued"
        a.deadline = timeout and corio.now() + timeout
        senders[#senders + 1] = a
      end
    end

    local function spawn_receiver()
      local a = { id = #actors + 1, recv = true }
      local timeout = pick_timeout(R)
      actors[a.id] = a
      a.task = corio.spawn(function()
        local v, err = ch:recv(timeout and { timeout = timeout })
        if v ~= nil then
          a.r, a.got = "got", v
          received[#received + 1] = v
        else
          a.r = err.kind
        end
      end)
      local v = take()
      if v ~= nil then
        hand(a, v)
      elseif closed then
        a.m = "closed"
      else
        a.m = "queued"
        a.deadline = timeout and corio.now() + timeout
        receivers[#receivers + 1] = a
      end
    end

    local function try_send(same_tick)
      next_v = next_v + 1
      local r = same_tick and receivers[1]
      local ok, err = ch:try_send(next_v)
      if closed then
        assert.is_nil(ok)
        assert.equal("closed", err.kind)
        return
      end
      assert.equal(offer(next_v), ok, ctx(seed) .. ": try_send")
      if r then
        -- more values may be accepted before the cancellation arrives
        for _ = 1, R(0, 2) do
          next_v = next_v + 1
          assert.equal(offer(next_v), ch:try_send(next_v), ctx(seed))
        end
        -- r was handed the value; cancelled before it runs it gives the
        -- value back: to the next receiver, else to the ring's front,
        -- else (ring full) it keeps it and the cancellation waits
        r.task:cancel()
        if receivers[1] then
          hand(table.remove(receivers, 1), r.want)
          r.m = "cancelled"
        elseif #buf < cap then
          table.insert(buf, 1, r.want)
          r.m = "cancelled"
        end
      end
    end

    local function try_recv(same_tick)
      local s = same_tick and senders[1]
      local v, err = ch:try_recv()
      local want = take()
      assert.equal(want, v, ctx(seed) .. ": try_recv")
      if v ~= nil then received[#received + 1] = v end
      if want == nil and closed then assert.equal("closed", err.kind) end
      if s then
        s.task:cancel() -- its value was accepted: the send stands
      end
    end

    local function cancel()
      local all = {}
      for _, a in ipairs(senders) do all[#all + 1] = a end
      for _, a in ipairs(receivers) do all[#all + 1] = a end
      if #all == 0 then return end
      local a = all[R(1, #all)]
      a.task:cancel()
      remove_item(a.recv and receivers or senders, a)
      a.m = "cancelled"
    end

    local function advance()
      local target = corio.now() + R(1, 2)
      local q = {}
      for _, a in ipairs(senders) do q[#q + 1] = a end
      for _, a in ipairs(receivers) do q[#q + 1] = a end
      for _, a in ipairs(due(q, target)) do
        remove_item(a.recv and receivers or senders, a)
        a.m = "timeout"
      end
      corio.sleep(target - corio.now())
    end

    local function close()
      closed = true
      for _, a in ipairs(senders) do a.m = "closed" end
      for _, a in ipairs(receivers) do a.m = "closed" end
      senders, receivers = {}, {}
      ch:close()
    end

    local function check(step)
      local where = ctx(seed) .. ", step " .. step
      assert.equal(#buf, ch:len(), where .. ": len")
      for _, a in ipairs(actors) do check_actor(seed, step, a, "got") end
    end

    for step = 1, STEPS do
      local op = R(1, 24)
      if op <= 6 then spawn_sender()
      elseif op <= 12 then spawn_receiver()
      elseif op <= 14 then try_send(false)
      elseif op <= 15 then try_send(true)
      elseif op <= 17 then try_recv(false)
      elseif op <= 18 then try_recv(true)
      elseif op <= 20 then cancel()
      elseif op <= 23 then advance()
      elseif not closed and step > STEPS * 2 / 3 then close()
      end
      H.settle(6)
      check(step)
    end
    -- drain: every accepted value is received exactly once
    if not closed then close() end
    H.settle(6)
    while true do
      local v = ch:try_recv()
      if v == nil then break end
      received[#received + 1] = v
    end
    table.sort(accepted)
    table.sort(received)
    assert.same(accepted, received, ctx(seed) .. ": no value lost or duplicated")
  end)
end

describe("a seeded random trial against a plain Lua model", function()
  it("keeps a semaphore FIFO-fair, conserving permits through cancels, timeouts and close", function()
    for _, seed in ipairs(SEEDS) do lock_trial(SEM, seed) end
  end)

  it("keeps a mutex FIFO-fair and exclusive through cancels and timeouts", function()
    for _, seed in ipairs(SEEDS) do lock_trial(MUTEX, seed) end
  end)

  it("wakes every event waiter on set, except those cancelled or timed out", function()
    for _, seed in ipairs(SEEDS) do broadcast_trial(EVENT, seed) end
  end)

  it("gives every watch waiter the next value set, or a timeout, cancellation or closed error", function()
    for _, seed in ipairs(SEEDS) do broadcast_trial(WATCH, seed) end
  end)

  it("keeps a channel FIFO, losing and duplicating no value through cancels, timeouts and close", function()
    for _, seed in ipairs(SEEDS) do channel_trial(seed) end
  end)
end)
