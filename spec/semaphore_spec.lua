-- corio.semaphore: fair (FIFO) counting semaphore, cancel-safe.
local corio = require "corio"

local H = require "helper"

local is_54 = _VERSION == "Lua 5.4"
-- On 5.1 and LuaJIT an awaiting C function is called through a Lua
-- wrapper, so Lua's argument errors name the wrapper's local instead.
local function NAME(n) return _VERSION == "Lua 5.1" and "[%w_]+" or n end

describe("corio.semaphore", function()
  it("grants permits at once while enough are available", function()
    H.run(function()
      local sem = corio.semaphore(3)
      local a = sem:acquire()
      local b = sem:acquire(2)
      assert.is_truthy(a and b)
      assert.equal(0, sem:available())
      a:release()
      assert.equal(1, sem:available())
      b:release()
      assert.equal(3, sem:available())
    end)
  end)

  it("serves waiters strictly in FIFO order", function()
    H.run(function()
      local sem = corio.semaphore(1)
      local held = sem:acquire()
      local order = {}
      for i = 1, 5 do
        corio.spawn(function()
          local p = sem:acquire()
          order[#order + 1] = i
          corio.sleep(1)
          p:release()
        end)
      end
      H.settle()
      held:release()
      corio.sleep(10)
      assert.same({ 1, 2, 3, 4, 5 }, order)
      assert.equal(1, sem:available())
    end)
  end)

  it("lets a large request at the head block smaller ones behind it", function()
    H.run(function()
      local sem = corio.semaphore(3)
      local p = sem:acquire(2) -- 1 left
      local order = {}
      local big = corio.spawn(function()
        local q = sem:acquire(3)
        order[#order + 1] = "big"
        q:release()
      end)
      H.settle()
      local small = corio.spawn(function()
        local q = sem:acquire(1) -- would fit, but must not overtake
        order[#order + 1] = "small"
        q:release()
      end)
      H.settle()
      assert.same({}, order)
      assert.equal("waiting", small:status())
      p:release()
      big:join()
      small:join()
      assert.same({ "big", "small" }, order)
    end)
  end)

  it("does not let try_acquire overtake queued waiters", function()
    H.run(function()
      local sem = corio.semaphore(2)
      local p = sem:acquire(2)
      corio.spawn(function() sem:acquire(2):release() end)
      H.settle()
      p:release()
      -- the waiter was granted both permits directly
      assert.is_nil(sem:try_acquire())
      H.settle()
      local q = sem:try_acquire(2)
      assert.is_truthy(q)
      assert.is_nil(sem:try_acquire())
      q:release()
      assert.equal(2, sem:available())
    end)
  end)

  it("refuses try_acquire while a larger request is queued", function()
    H.run(function()
      local sem = corio.semaphore(2)
      local p = sem:acquire()
      local t = corio.spawn(function() sem:acquire(2):release() end)
      H.settle()
      assert.equal(1, sem:available())
      assert.is_nil(sem:try_acquire(1))
      p:release()
      t:join()
    end)
  end)

  it("makes release idempotent", function()
    H.run(function()
      local sem = corio.semaphore(2)
      local p = sem:acquire(2)
      p:release()
      p:release()
      p:release()
      assert.equal(2, sem:available())
    end)
  end)

  it("returns a forgotten permit when it is garbage-collected", function()
    H.run(function()
      local sem = corio.semaphore(1)
      do local _ = sem:acquire() end
      assert.equal(0, sem:available())
      collectgarbage()
      collectgarbage()
      assert.equal(1, sem:available())
    end)
  end)

  it("conserves permits when forgotten ones are collected by an aggressive collector", function()
    H.run(function()
      local sem = corio.semaphore(3)
      local pause = collectgarbage("setpause", 0) -- a GC step at every allocation
      local tasks = {}
      for i = 1, 200 do
        tasks[i] = corio.spawn(function()
          local k = i % 3 + 1
          if i % 2 == 0 then
            sem:acquire(k) -- forgotten: comes back through __gc
          else
            sem:acquire(k):release()
          end
          corio.yield()
        end)
      end
      for i = 1, 200 do
        while tasks[i]:status() ~= "done" do
          collectgarbage()
          corio.yield()
        end
      end
      collectgarbage("setpause", pause)
      collectgarbage()
      collectgarbage()
      assert.equal(3, sem:available())
    end)
  end)

  it("releases a <close> permit at the end of its scope (Lua 5.4)", function()
    if not is_54 then return pending("<close> needs Lua 5.4") end
    local f = assert(load([[
      local corio, sem = ...
      do
        local p <close> = sem:acquire()
        assert(sem:available() == 0)
      end
      return sem:available()
    ]]))
    H.run(function()
      local sem = corio.semaphore(1)
      assert.equal(1, f(corio, sem))
    end)
  end)

  it("with() returns fn's results and releases the permit", function()
    H.run(function()
      local sem = corio.semaphore(1)
      local a, b = sem:with(function(x, y)
        assert.equal(0, sem:available())
        corio.sleep(1)
        return x + y, "ok"
      end, 1, 2)
      assert.equal(3, a)
      assert.equal("ok", b)
      assert.equal(1, sem:available())
    end)
  end)

  it("with() releases the permit when fn raises, and re-raises", function()
    H.run(function()
      local sem = corio.semaphore(1)
      local t = corio.spawn(function()
        sem:with(function()
          corio.sleep(1)
          error({ kind = "mine" })
        end)
      end)
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.equal("mine", err.value and err.value.kind or err.kind)
      assert.equal(1, sem:available())
    end)
  end)

  it("with() releases the permit when the task is cancelled inside fn", function()
    H.run(function()
      local sem = corio.semaphore(1)
      local t = corio.spawn(function()
        sem:with(function() corio.sleep(100) end)
      end)
      H.settle()
      assert.equal(0, sem:available())
      t:cancel()
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(err))
      assert.equal(1, sem:available())
    end)
  end)

  it("with() raises the closed error on a closed semaphore", function()
    H.run(function()
      local sem = corio.semaphore(1)
      sem:close()
      local t = corio.spawn(function() sem:with(function() end) end)
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.equal("closed", err.kind)
    end)
  end)

  it("grows with add() and wakes the waiters that now fit", function()
    H.run(function()
      local sem = corio.semaphore(0)
      local got, permits = {}, {}
      for i = 1, 3 do
        corio.spawn(function()
          -- kept: a collected permit would come back (CORIO_GC_TORTURE)
          permits[i] = sem:acquire()
          got[#got + 1] = i
        end)
      end
      H.settle()
      assert.same({}, got)
      sem:add(2)
      H.settle()
      assert.same({ 1, 2 }, got)
      sem:add(1)
      H.settle()
      assert.same({ 1, 2, 3 }, got)
      assert.equal(3, #permits)
      assert.equal(0, sem:available())
    end)
  end)

  it("wakes every waiter with a closed error on close, and fails later acquires", function()
    H.run(function()
      local sem = corio.semaphore(1)
      local held = sem:acquire()
      local results = {}
      for i = 1, 3 do
        corio.spawn(function()
          local p, err = sem:acquire()
          results[i] = { p, err and err.kind }
        end)
      end
      H.settle()
      sem:close()
      sem:close() -- closing twice is harmless
      H.settle()
      for i = 1, 3 do
        assert.is_nil(results[i][1])
        assert.equal("closed", results[i][2])
      end
      local p, err = sem:acquire()
      assert.is_nil(p)
      assert.equal("closed", err.kind)
      p, err = sem:try_acquire()
      assert.is_nil(p)
      assert.equal("closed", err.kind)
      -- a permit held across close can still be released
      held:release()
      assert.equal(1, sem:available())
    end)
  end)

  it("returns nil and a timeout error when acquire times out, leaving the queue", function()
    H.run(function()
      local sem = corio.semaphore(1)
      local held = sem:acquire()
      local t0 = corio.now()
      local p, err = sem:acquire({ timeout = 2 })
      assert.is_nil(p)
      assert.is_true(corio.is_timeout(err))
      assert.equal(2, corio.now() - t0)
      held:release()
      -- the timed-out request does not hold a place in the queue
      assert.equal(1, sem:available())
      local q = sem:acquire(1, { timeout = 1 })
      assert.is_truthy(q)
      q:release()
    end)
  end)

  it("treats timeout = 0 as: take it now or fail now", function()
    H.run(function()
      local sem = corio.semaphore(1)
      local p = assert(sem:acquire({ timeout = 0 }))
      local q, err = sem:acquire({ timeout = 0 })
      assert.is_nil(q)
      assert.is_true(corio.is_timeout(err))
      assert.equal(0, corio.now())
      p:release()
      assert.equal(1, sem:available())
    end)
  end)

  it("lets smaller waiters proceed when a large head waiter times out", function()
    H.run(function()
      local sem = corio.semaphore(2)
      local p = sem:acquire()
      local big_err
      corio.spawn(function()
        local _, err = sem:acquire(2, { timeout = 1 })
        big_err = err
      end)
      H.settle()
      local small = corio.spawn(function() return sem:acquire() ~= nil end)
      H.settle()
      assert.equal("waiting", small:status())
      corio.sleep(2)
      assert.is_true(corio.is_timeout(big_err))
      assert.is_true(small:join())
      p:release()
    end)
  end)

  it("lets smaller waiters proceed when a large head waiter is cancelled", function()
    H.run(function()
      local sem = corio.semaphore(2)
      local p = sem:acquire()
      local big = corio.spawn(function() sem:acquire(2) end)
      H.settle()
      local small = corio.spawn(function() return sem:acquire() ~= nil end)
      H.settle()
      big:cancel()
      assert.is_true(small:join())
      assert.equal("cancelled", big:status())
      p:release()
    end)
  end)

  it("raises the cancellation at acquire when cancelled before it ran", function()
    H.run(function()
      local sem = corio.semaphore(1)
      local t = corio.spawn(function() return sem:acquire() end)
      t:cancel()
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(err))
      assert.equal(1, sem:available())
    end)
  end)

  it("removes a waiter cancelled while parked from the queue", function()
    H.run(function()
      local sem = corio.semaphore(1)
      local held = sem:acquire()
      local a = corio.spawn(function() return sem:acquire() end)
      local got = {}
      local b = corio.spawn(function()
        local p = sem:acquire()
        got[#got + 1] = "b"
        p:release()
      end)
      H.settle()
      assert.equal("waiting", a:status())
      a:cancel()
      local ok, err = a:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(err))
      held:release()
      b:join()
      assert.same({ "b" }, got)
      assert.equal(1, sem:available())
    end)
  end)

  it("gives a permit granted to a task cancelled in the same tick to the next waiter", function()
    H.run(function()
      local sem = corio.semaphore(1)
      local held = sem:acquire()
      local a = corio.spawn(function() return sem:acquire() end)
      local b_got
      local b = corio.spawn(function()
        local p = sem:acquire()
        b_got = true
        p:release()
      end)
      H.settle()
      held:release() -- grants to a (woken, not yet run) ...
      a:cancel()     -- ... which is cancelled before it runs
      local ok, err = a:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(err))
      b:join()
      assert.is_true(b_got)
      assert.equal(1, sem:available())
    end)
  end)

  it("keeps permits conserved when a granted task is cancelled and nobody waits", function()
    H.run(function()
      local sem = corio.semaphore(2)
      local held = sem:acquire(2)
      local a = corio.spawn(function() return sem:acquire(2) end)
      H.settle()
      held:release()
      a:cancel()
      a:wait()
      collectgarbage()
      assert.equal(2, sem:available())
    end)
  end)

  it("reports a parked acquirer as waiting", function()
    H.run(function()
      local sem = corio.semaphore(0)
      local t = corio.spawn(function() sem:acquire() end)
      H.settle()
      assert.equal("waiting", t:status())
      sem:add(1)
      t:join()
      assert.equal("done", t:status())
    end)
  end)

  it("raises clear errors on bad arguments", function()
    assert.has_error(function() corio.semaphore() end)
    assert.has_error(function() corio.semaphore(-1) end)
    assert.has_error(function() corio.semaphore("x") end)
    H.run(function()
      local sem = corio.semaphore(1)
      -- called as methods in a Lua function (not through pcall directly,
      -- not as tail calls) so that Lua can name the function
      local function fails(pattern, fn)
        local ok, err = pcall(fn)
        assert.is_false(ok)
        assert.matches(pattern, tostring(err))
      end
      fails("bad argument #%d to '" .. NAME "acquire" .. "' %(permit count must be",
        function() local _ = sem:acquire(0) end)
      fails("bad argument #%d to '" .. NAME "acquire" .. "' %(number expected, got string%)",
        function() local _ = sem:acquire("many") end)
      fails("bad option 'timeot' to 'acquire' %(unknown option%)",
        function() local _ = sem:acquire(1, { timeot = 1 }) end)
      fails("bad option 'timeout' to 'acquire'",
        function() local _ = sem:acquire(1, { timeout = -1 }) end)
      fails("corio.Semaphore expected, got string",
        function() local _ = sem.acquire("not a semaphore") end)
      fails("bad argument #%d to 'add'", function() local _ = sem:add(-1) end)
      fails("bad argument #1 to 'with' %(function expected",
        function() local _ = sem:with(42) end)
    end)
  end)

  it("refuses to wait outside a task", function()
    local sem = corio.semaphore(1)
    local ok, err = pcall(sem.acquire, sem)
    assert.is_false(ok)
    assert.matches("not inside a corio task", tostring(err))
    -- try_acquire needs no task
    local p = sem:try_acquire()
    assert.is_truthy(p)
    p:release()
  end)

  it("has a readable name and tostring", function()
    local sem = corio.semaphore(2)
    assert.matches("^corio.Semaphore: .*2 available", tostring(sem))
    local p = sem:try_acquire()
    assert.matches("^corio.Permit: .*1 held", tostring(p))
    p:release()
    assert.matches("released", tostring(p))
    assert.equal("corio.Semaphore", getmetatable(sem).__name)
    assert.equal("corio.Permit", getmetatable(p).__name)
  end)

  it("can be used from many runtimes in turn", function()
    local sem = corio.semaphore(1)
    for _ = 1, 2 do
      H.run(function()
        local p = sem:acquire()
        local t = corio.spawn(function() sem:acquire():release() end)
        H.settle()
        p:release()
        t:join()
      end)
    end
    assert.equal(1, sem:available())
  end)

  it("bounds concurrency: never more than n holders at once", function()
    H.run(function()
      local sem = corio.semaphore(3)
      local inside, peak = 0, 0
      local tasks = {}
      for i = 1, 50 do
        tasks[i] = corio.spawn(function()
          sem:with(function()
            inside = inside + 1
            if inside > peak then peak = inside end
            corio.sleep(i % 3 + 1)
            inside = inside - 1
          end)
        end)
      end
      for i = 1, 50 do tasks[i]:join() end
      assert.equal(3, peak)
      assert.equal(3, sem:available())
    end)
  end)

  if not H.can_pcall_yield then
    -- PUC 5.1 runs with()'s fn as a child task (corio's yieldable pcall):
    -- the properties above hold there too; nothing else to skip.
    it("runs with() on PUC Lua 5.1 through corio's yieldable pcall", function()
      H.run(function()
        local sem = corio.semaphore(1)
        assert.equal(5, sem:with(function() corio.sleep(1); return 5 end))
        assert.equal(1, sem:available())
      end)
    end)
  end

  it("names the semaphore as what a parked acquirer waits on", function()
    H.run(function()
      local sem = corio.semaphore(0)
      local t = corio.spawn(function() sem:acquire() end)
      H.settle()
      local seen = {}
      for _, info in ipairs(corio.tasks()) do seen[info.id] = info.waiting_on end
      assert.equal("semaphore", seen[t.id])
      sem:add(1)
      t:join()
    end)
  end)

end)
