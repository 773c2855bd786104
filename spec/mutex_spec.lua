-- corio.mutex: a fair (FIFO) lock owned by the task that locked it.
local corio = require "corio"

local H = require "helper"

-- H.run (a fresh runtime on the virtual clock, a watchdog, and a check
-- that nothing is left running), with a failed assertion inside coming
-- out as itself rather than wrapped in a task error.
local function run(fn)
  local ok, err = pcall(H.run, fn)
  if not ok then
    if type(err) == "table" and err.value ~= nil then err = err.value end
    error(err, 0)
  end
end

local function settle()
  for _ = 1, 4 do corio.yield() end
end

local is_54 = _VERSION == "Lua 5.4"

describe("corio.mutex", function()
  it("locks, reports it and unlocks", function()
    run(function()
      local m = corio.mutex()
      assert.is_false(m:is_locked())
      local g = m:lock()
      assert.is_true(m:is_locked())
      g:unlock()
      assert.is_false(m:is_locked())
      g:unlock() -- unlocking twice is harmless
      assert.is_false(m:is_locked())
    end)
  end)

  it("hands the lock to waiters in FIFO order", function()
    run(function()
      local m = corio.mutex()
      local g = m:lock()
      local order = {}
      local tasks = {}
      for i = 1, 5 do
        tasks[i] = corio.spawn(function()
          local h = m:lock()
          order[#order + 1] = i
          corio.sleep(1)
          h:unlock()
        end)
      end
      settle()
      g:unlock()
      for i = 1, 5 do tasks[i]:join() end
      assert.same({ 1, 2, 3, 4, 5 }, order)
      assert.is_false(m:is_locked())
    end)
  end)

  it("never lets two tasks hold it at once", function()
    run(function()
      local m = corio.mutex()
      local inside, peak = 0, 0
      local tasks = {}
      for i = 1, 20 do
        tasks[i] = corio.spawn(function()
          m:with(function()
            inside = inside + 1
            if inside > peak then peak = inside end
            corio.sleep(i % 2 + 1)
            inside = inside - 1
          end)
        end)
      end
      for i = 1, 20 do tasks[i]:join() end
      assert.equal(1, peak)
    end)
  end)

  it("raises a clear error when a task that does not hold it unlocks", function()
    run(function()
      local m = corio.mutex()
      local g = m:lock()
      local t = corio.spawn(function() g:unlock() end)
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.matches("held by another task", tostring(err))
      assert.is_true(m:is_locked())
      g:unlock()
    end)
  end)

  it("raises instead of deadlocking when the holder locks again", function()
    run(function()
      local m = corio.mutex()
      local g = m:lock()
      local ok, err = pcall(function() local _ = m:lock() end)
      assert.is_false(ok)
      assert.matches("not reentrant", tostring(err))
      g:unlock()
    end)
  end)

  it("try_lock takes a free mutex and returns nil on a held one", function()
    run(function()
      local m = corio.mutex()
      local g = m:try_lock()
      assert.is_truthy(g)
      assert.is_nil(m:try_lock())
      g:unlock()
      assert.is_truthy(m:try_lock())
    end)
  end)

  it("does not let try_lock overtake a queued waiter", function()
    run(function()
      local m = corio.mutex()
      local g = m:lock()
      local t = corio.spawn(function() m:lock():unlock() end)
      settle()
      g:unlock() -- handed straight to the waiter
      assert.is_nil(m:try_lock())
      t:join()
      assert.is_false(m:is_locked())
    end)
  end)

  it("with() unlocks on return, on error and on cancellation", function()
    run(function()
      local m = corio.mutex()
      assert.equal(7, m:with(function(x) corio.sleep(1); return x end, 7))
      assert.is_false(m:is_locked())

      local t = corio.spawn(function()
        m:with(function() corio.sleep(1); error("boom") end)
      end)
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.matches("boom", tostring(err))
      assert.is_false(m:is_locked())

      t = corio.spawn(function() m:with(function() corio.sleep(100) end) end)
      settle()
      assert.is_true(m:is_locked())
      t:cancel()
      ok, err = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(err))
      assert.is_false(m:is_locked())
    end)
  end)

  it("returns nil and a timeout error when lock times out", function()
    run(function()
      local m = corio.mutex()
      local g = m:lock()
      local t = corio.spawn(function() return m:lock({ timeout = 1.5 }) end)
      local h, err = t:join()
      assert.is_nil(h)
      assert.is_true(corio.is_timeout(err))
      assert.equal(1.5, corio.now())
      g:unlock()
      assert.is_false(m:is_locked())
    end)
  end)

  it("raises the cancellation at lock when cancelled before it ran", function()
    run(function()
      local m = corio.mutex()
      local t = corio.spawn(function() return m:lock() end)
      t:cancel()
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(err))
      assert.is_false(m:is_locked())
    end)
  end)

  it("removes a waiter cancelled while parked, and the next one gets the lock", function()
    run(function()
      local m = corio.mutex()
      local g = m:lock()
      local a = corio.spawn(function() m:lock() end)
      local b = corio.spawn(function() local h = m:lock(); h:unlock(); return "b" end)
      settle()
      a:cancel()
      assert.is_false((a:wait()))
      g:unlock()
      assert.equal("b", b:join())
      assert.is_false(m:is_locked())
    end)
  end)

  it("passes the lock on when its new owner is cancelled in the same tick", function()
    run(function()
      local m = corio.mutex()
      local g = m:lock()
      local a = corio.spawn(function() m:lock() end)
      local b = corio.spawn(function() local h = m:lock(); h:unlock(); return "b" end)
      settle()
      g:unlock() -- a now owns it but has not run ...
      a:cancel() -- ... and is cancelled: the lock goes to b
      local ok, err = a:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(err))
      assert.equal("b", b:join())
      assert.is_false(m:is_locked())
    end)
  end)

  it("unlocks when a forgotten guard is garbage-collected", function()
    run(function()
      local m = corio.mutex()
      do local _ = m:lock() end
      collectgarbage()
      collectgarbage()
      assert.is_false(m:is_locked())
    end)
  end)

  it("unlocks a <close> guard at the end of its scope (Lua 5.4)", function()
    if not is_54 then return pending("<close> needs Lua 5.4") end
    local f = assert(load([[
      local m = ...
      do
        local g <close> = m:lock()
        assert(m:is_locked())
      end
      return m:is_locked()
    ]]))
    run(function() assert.is_false(f(corio.mutex())) end)
  end)

  it("reports a parked locker as waiting", function()
    run(function()
      local m = corio.mutex()
      local g = m:lock()
      local t = corio.spawn(function() m:lock():unlock() end)
      settle()
      assert.equal("waiting", t:status())
      g:unlock()
      t:join()
    end)
  end)

  it("raises clear errors on bad arguments", function()
    run(function()
      local m = corio.mutex()
      local ok, err = pcall(function() local _ = m:lock({ bad = 1 }) end)
      assert.is_false(ok)
      assert.matches("bad option 'bad' to 'lock'", tostring(err))
      ok, err = pcall(function() local _ = m:lock(5) end)
      assert.is_false(ok)
      assert.matches("options table expected", tostring(err))
      ok, err = pcall(function() local _ = m.lock(corio.semaphore(1)) end)
      assert.is_false(ok)
      assert.matches("corio.Mutex expected", tostring(err))
      ok, err = pcall(function() local _ = m:with() end)
      assert.is_false(ok)
      assert.matches("function expected", tostring(err))
    end)
  end)

  it("has a readable name and tostring", function()
    local m = corio.mutex()
    assert.equal("corio.Mutex", getmetatable(m).__name)
    assert.matches("^corio.Mutex: .*unlocked", tostring(m))
    local g = m:try_lock()
    assert.equal("corio.MutexGuard", getmetatable(g).__name)
    assert.matches("^corio.Mutex: .*locked", tostring(m))
    assert.matches("^corio.MutexGuard: ", tostring(g))
    g:unlock()
  end)

  it("names the mutex as what a parked locker waits on", function()
    run(function()
      local m = corio.mutex()
      local g = m:lock()
      local t = corio.spawn(function() m:lock():unlock() end)
      settle()
      local seen = {}
      for _, info in ipairs(corio.tasks()) do seen[info.id] = info.waiting_on end
      assert.equal("mutex", seen[t.id])
      g:unlock()
      t:join()
    end)
  end)

end)
