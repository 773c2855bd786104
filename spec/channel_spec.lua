-- corio.channel: bounded MPMC FIFO with backpressure, cancel-safe.
local corio = require "corio"

local H = require "helper"

-- PUC Lua 5.1 cannot yield from a `for` iterator.
local iter_can_wait = not (_VERSION == "Lua 5.1" and not rawget(_G, "jit"))

-- Receives until the channel is closed and drained (works everywhere).
local function drain(ch)
  local out = {}
  while true do
    local v = ch:recv()
    if v == nil then return out end
    out[#out + 1] = v
  end
end

describe("corio.channel", function()
  it("delivers values in FIFO order", function()
    H.run(function()
      local ch = corio.channel(3)
      assert.is_true(ch:send(1))
      assert.is_true(ch:send("two"))
      assert.is_true(ch:send({ 3 }))
      assert.equal(3, ch:len())
      assert.equal(1, ch:recv())
      assert.equal("two", ch:recv())
      assert.same({ 3 }, ch:recv())
      assert.equal(0, ch:len())
    end)
  end)

  it("makes send wait while the channel is full (backpressure)", function()
    H.run(function()
      local ch = corio.channel(2)
      local sent = 0
      local p = corio.spawn(function()
        for i = 1, 5 do
          ch:send(i)
          sent = i
        end
      end)
      H.settle()
      assert.equal(2, sent)
      assert.equal("waiting", p:status())
      assert.equal(2, ch:len())
      assert.equal(1, ch:recv())
      H.settle()
      assert.equal(3, sent)
      assert.equal(2, ch:len())
      local got = { ch:recv(), ch:recv(), ch:recv(), ch:recv() }
      assert.same({ 2, 3, 4, 5 }, got)
      p:join()
    end)
  end)

  it("makes recv wait while the channel is empty", function()
    H.run(function()
      local ch = corio.channel(1)
      local c = corio.spawn(function() return ch:recv() end)
      H.settle()
      assert.equal("waiting", c:status())
      ch:send("x")
      assert.equal(0, ch:len()) -- handed straight to the waiting receiver
      assert.equal("x", c:join())
    end)
  end)

  it("serves waiting senders in FIFO order", function()
    H.run(function()
      local ch = corio.channel(1)
      ch:send(0)
      for i = 1, 5 do corio.spawn(function() ch:send(i) end) end
      H.settle()
      local got = {}
      for _ = 0, 5 do got[#got + 1] = ch:recv() end
      assert.same({ 0, 1, 2, 3, 4, 5 }, got)
    end)
  end)

  it("serves waiting receivers in FIFO order", function()
    H.run(function()
      local ch = corio.channel(4)
      local got = {}
      local tasks = {}
      for i = 1, 4 do
        tasks[i] = corio.spawn(function() got[i] = ch:recv() end)
      end
      H.settle()
      for v = 10, 13 do ch:send(v) end
      for i = 1, 4 do tasks[i]:join() end
      assert.same({ 10, 11, 12, 13 }, got)
    end)
  end)

  it("has non-blocking try_send and try_recv", function()
    H.run(function()
      local ch = corio.channel(1)
      assert.is_nil(ch:try_recv())
      assert.is_true(ch:try_send("a"))
      assert.is_false(ch:try_send("b"))
      assert.equal("a", ch:try_recv())
      assert.is_nil(ch:try_recv())
      ch:close()
      local ok, err = ch:try_send("c")
      assert.is_nil(ok)
      assert.equal("closed", err.kind)
      local v
      v, err = ch:try_recv()
      assert.is_nil(v)
      assert.equal("closed", err.kind)
    end)
  end)

  it("works without a task for try_send and try_recv", function()
    local ch = corio.channel(2)
    assert.is_true(ch:try_send(1))
    assert.equal(1, ch:try_recv())
  end)

  it("still delivers buffered values after close, then returns a closed error", function()
    H.run(function()
      local ch = corio.channel(3)
      ch:send(1)
      ch:send(2)
      ch:close()
      ch:close() -- closing twice is harmless
      assert.is_true(ch:is_closed())
      local ok, err = ch:send(3)
      assert.is_nil(ok)
      assert.equal("closed", err.kind)
      assert.equal(1, ch:recv())
      assert.equal(2, ch:recv())
      local v
      v, err = ch:recv()
      assert.is_nil(v)
      assert.equal("closed", err.kind)
      v, err = ch:recv({ timeout = 1 })
      assert.is_nil(v)
      assert.equal("closed", err.kind)
      assert.equal(0, corio.now())
    end)
  end)

  it("ends a for loop over iter() at close", function()
    if not iter_can_wait then
      return pending("PUC Lua 5.1 cannot yield from a for iterator")
    end
    H.run(function()
      local ch = corio.channel(2)
      corio.spawn(function()
        for i = 1, 10 do ch:send(i) end
        ch:close()
      end)
      local got = {}
      for v in ch:iter() do got[#got + 1] = v end
      assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, got)
    end)
  end)

  it("wakes waiting receivers with a closed error on close", function()
    H.run(function()
      local ch = corio.channel(1)
      local tasks = {}
      for i = 1, 3 do tasks[i] = corio.spawn(function() return ch:recv() end) end
      H.settle()
      ch:close()
      for i = 1, 3 do
        local v, err = tasks[i]:join()
        assert.is_nil(v)
        assert.equal("closed", err.kind)
      end
    end)
  end)

  it("wakes waiting senders with a closed error on close; their values are not delivered", function()
    H.run(function()
      local ch = corio.channel(1)
      ch:send("kept")
      local s = corio.spawn(function() return ch:send("dropped") end)
      H.settle()
      ch:close()
      local ok, err = s:join()
      assert.is_nil(ok)
      assert.equal("closed", err.kind)
      assert.same({ "kept" }, drain(ch))
    end)
  end)

  it("refuses nil as a value", function()
    H.run(function()
      local ch = corio.channel(1)
      local ok, err = pcall(function() local _ = ch:send(nil) end)
      assert.is_false(ok)
      assert.matches("nil cannot be sent", tostring(err))
      ok, err = pcall(function() local _ = ch:try_send() end)
      assert.is_false(ok)
      assert.matches("nil cannot be sent", tostring(err))
      assert.equal(0, ch:len())
    end)
  end)

  it("sends false and tables like any other value", function()
    H.run(function()
      local ch = corio.channel(2)
      local t = {}
      ch:send(false)
      ch:send(t)
      assert.is_false(ch:recv())
      assert.equal(t, ch:recv())
    end)
  end)

  it("reports its capacity and checks it", function()
    assert.equal(64, corio.channel(64):capacity())
    assert.equal(0, corio.channel(0):capacity())
    assert.has_error(function() corio.channel(-1) end)
    assert.has_error(function() corio.channel() end)
    assert.has_error(function() corio.channel("big") end)
    assert.has_error(function() corio.channel(2 ^ 40) end)
  end)

  it("makes capacity 0 a rendezvous: send waits for a receiver", function()
    H.run(function()
      local ch = corio.channel(0)
      assert.is_false(ch:try_send(1))
      local done = false
      local s = corio.spawn(function()
        ch:send("hello")
        done = true
      end)
      H.settle()
      assert.is_false(done)
      assert.equal("waiting", s:status())
      assert.equal("hello", ch:recv())
      s:join()
      assert.is_true(done)
      local r = corio.spawn(function() return ch:recv() end)
      H.settle()
      assert.is_true(ch:try_send("direct"))
      assert.equal("direct", r:join())
      local v, err = ch:recv({ timeout = 1 })
      assert.is_nil(v)
      assert.is_true(corio.is_timeout(err))
    end)
  end)

  it("returns nil and a timeout error when send times out, without enqueueing", function()
    H.run(function()
      local ch = corio.channel(1)
      ch:send("a")
      local ok, err = ch:send("b", { timeout = 1 })
      assert.is_nil(ok)
      assert.is_true(corio.is_timeout(err))
      assert.equal(1, corio.now())
      ch:close()
      assert.same({ "a" }, drain(ch))
    end)
  end)

  it("returns nil and a timeout error when recv times out", function()
    H.run(function()
      local ch = corio.channel(1)
      local v, err = ch:recv({ timeout = 0.25 })
      assert.is_nil(v)
      assert.is_true(corio.is_timeout(err))
      assert.equal(0.25, corio.now())
      ch:send(1) -- the timed-out receiver took no place in line
      assert.equal(1, ch:len())
    end)
  end)

  it("does not enqueue the value of a send cancelled before or while it waits", function()
    H.run(function()
      local ch = corio.channel(1)
      ch:send("first")
      local before = corio.spawn(function() return ch:send("before") end)
      before:cancel()
      local during = corio.spawn(function() return ch:send("during") end)
      local after = corio.spawn(function() return ch:send("after") end)
      H.settle()
      during:cancel()
      for _, t in ipairs({ before, during }) do
        local ok, err = t:wait()
        assert.is_false(ok)
        assert.is_true(corio.is_cancelled(err))
      end
      assert.equal("first", ch:recv())
      assert.is_true(after:join())
      ch:close()
      assert.same({ "after" }, drain(ch))
    end)
  end)

  it("reports a send whose value was taken in the same tick as sent, despite a cancel", function()
    H.run(function()
      local ch = corio.channel(1)
      ch:send("first")
      local s = corio.spawn(function()
        local ok = ch:send("second")
        return ok, corio.is_cancelled(select(2, pcall(corio.yield)))
      end)
      H.settle()
      assert.equal("first", ch:recv()) -- "second" moves into the buffer
      s:cancel()                       -- before s runs: the send stands
      local ok, cancelled_later = s:join()
      assert.is_true(ok)
      if not (_VERSION == "Lua 5.1" and not rawget(_G, "jit")) then
        -- (PUC 5.1 cannot wait inside pcall)
        assert.is_true(cancelled_later)
      end
      ch:close()
      assert.same({ "second" }, drain(ch))
    end)
  end)

  it("loses no value when recv is cancelled before, while or after it waits", function()
    H.run(function()
      local ch = corio.channel(2)
      local before = corio.spawn(function() return ch:recv() end)
      before:cancel()
      local during = corio.spawn(function() return ch:recv() end)
      local same = corio.spawn(function() return ch:recv() end)
      H.settle()
      during:cancel()
      ch:send("v1") -- handed to `same` ...
      same:cancel() -- ... cancelled before it ran: v1 goes back
      ch:send("v2")
      for _, t in ipairs({ before, during, same }) do
        local ok, err = t:wait()
        assert.is_false(ok)
        assert.is_true(corio.is_cancelled(err))
      end
      ch:close()
      assert.same({ "v1", "v2" }, drain(ch))
    end)
  end)

  it("hands a value taken back from a cancelled receiver to the next receiver", function()
    H.run(function()
      local ch = corio.channel(1)
      local a = corio.spawn(function() return ch:recv() end)
      local b = corio.spawn(function() return ch:recv() end)
      H.settle()
      ch:send("x")
      a:cancel()
      assert.equal("x", b:join())
      assert.is_false((a:wait()))
      assert.equal(0, ch:len())
    end)
  end)

  it("puts a taken-back value ahead of values sent after it", function()
    H.run(function()
      local ch = corio.channel(3)
      local a = corio.spawn(function() return ch:recv() end)
      H.settle()
      ch:send(1) -- to a
      ch:send(2)
      ch:send(3)
      a:cancel()
      assert.is_false((a:wait()))
      ch:close()
      assert.same({ 1, 2, 3 }, drain(ch))
    end)
  end)

  it("lets a receiver keep its value when the buffer filled up before its cancellation", function()
    H.run(function()
      local ch = corio.channel(1)
      local r = corio.spawn(function()
        local v = ch:recv()
        return v, corio.is_cancelled(select(2, pcall(corio.yield)))
      end)
      H.settle()
      ch:send("mine") -- handed to r
      ch:send("next") -- fills the buffer
      r:cancel()      -- nowhere to put "mine" back: r keeps it
      local v, cancelled_later = r:join()
      assert.equal("mine", v)
      if not (_VERSION == "Lua 5.1" and not rawget(_G, "jit")) then
        assert.is_true(cancelled_later)
      end
      assert.equal("next", ch:recv())
    end)
  end)

  it("reports waiting senders and receivers as waiting", function()
    H.run(function()
      local ch = corio.channel(0)
      local s = corio.spawn(function() ch:send(1) end)
      H.settle()
      assert.equal("waiting", s:status())
      ch:recv()
      s:join()
      local r = corio.spawn(function() ch:recv() end)
      H.settle()
      assert.equal("waiting", r:status())
      ch:send(2)
      r:join()
    end)
  end)

  it("carries many messages between many producers and consumers", function()
    H.run(function()
      local ch = corio.channel(4)
      local producers, consumers = {}, {}
      local seen, count = {}, 0
      for p = 1, 5 do
        producers[p] = corio.spawn(function()
          for i = 1, 200 do ch:send(p * 1000 + i) end
        end)
      end
      for c = 1, 3 do
        consumers[c] = corio.spawn(function()
          local last = {}
          while true do
            local v = ch:recv()
            if v == nil then return end
            local p, i = math.floor(v / 1000), v % 1000
            assert.is_nil(seen[v])
            -- each producer's values arrive in order
            assert.is_true((last[p] or 0) < i)
            last[p] = i
            seen[v] = true
            count = count + 1
          end
        end)
      end
      for p = 1, 5 do producers[p]:join() end
      ch:close()
      for c = 1, 3 do consumers[c]:join() end
      assert.equal(1000, count)
    end)
  end)

  local function pump(n, cap)
    local ch = corio.channel(cap)
    local p = corio.spawn(function()
      for i = 1, n do ch:send(i) end
      ch:close()
    end)
    local sum = 0
    while true do
      local v = ch:recv()
      if v == nil then break end
      sum = sum + v
    end
    p:join()
    return sum
  end

  it("does not grow the heap while messages flow through it", function()
    H.run(function()
      pump(2000, 64) -- warm up: stacks, registry, ready queue
      collectgarbage()
      collectgarbage()
      local before = collectgarbage("count")
      collectgarbage("stop")
      local n = 20000
      assert.equal(n * (n + 1) / 2, pump(n, 64))
      local grown = collectgarbage("count") - before
      collectgarbage("restart")
      -- with the collector stopped, every allocation shows: the channel
      -- and its two tasks, not the 20000 messages
      assert.is_true(grown < 64, ("heap grew by %.1f KiB"):format(grown))
    end)
  end)

  it("passes 1M messages through a capacity-64 channel in bounded memory", function()
    H.run(function()
      pump(1000, 64)
      collectgarbage()
      collectgarbage()
      local before = collectgarbage("count")
      local n = 1000000
      assert.equal(n * (n + 1) / 2, pump(n, 64))
      collectgarbage()
      collectgarbage()
      local grown = collectgarbage("count") - before
      assert.is_true(grown < 64, ("heap grew by %.1f KiB"):format(grown))
    end)
  end)

  it("raises clear errors on bad arguments", function()
    H.run(function()
      local ch = corio.channel(1)
      local ok, err = pcall(function() local _ = ch:recv("soon") end)
      assert.is_false(ok)
      assert.matches("options table expected", tostring(err))
      ok, err = pcall(function() local _ = ch:send(1, { timeout = "x" }) end)
      assert.is_false(ok)
      assert.matches("bad option 'timeout' to 'send'", tostring(err))
      ok, err = pcall(function() local _ = ch.len(corio.semaphore(1)) end)
      assert.is_false(ok)
      assert.matches("corio.Channel expected", tostring(err))
    end)
    local ch = corio.channel(1)
    local ok, err = pcall(function() local _ = ch:recv() end)
    assert.is_false(ok)
    assert.matches("not inside a corio task", tostring(err))
  end)

  it("has a readable name and tostring", function()
    local ch = corio.channel(8)
    ch:try_send(1)
    assert.equal("corio.Channel", getmetatable(ch).__name)
    assert.matches("^corio.Channel: .*1/8", tostring(ch))
    ch:close()
    assert.matches("closed", tostring(ch))
  end)

  it("names 'channel send' and 'channel recv' as what parked tasks wait on", function()
    H.run(function()
      local a, b = corio.channel(0), corio.channel(0)
      local s = corio.spawn(function() a:send(1) end)
      local r = corio.spawn(function() b:recv() end)
      H.settle()
      local seen = {}
      for _, info in ipairs(corio.tasks()) do seen[info.id] = info.waiting_on end
      assert.equal("channel send", seen[s.id])
      assert.equal("channel recv", seen[r.id])
      a:recv()
      b:send(2)
      s:join()
      r:join()
    end)
  end)

end)
