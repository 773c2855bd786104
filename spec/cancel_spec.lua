-- t:cancel(): cancellation is an error raised at the task's current or
-- next await; it is sticky, harmless on tasks in any state, and lets the
-- task's cleanup (pcall handlers, <close> variables) run.
local corio = require "corio"
local H = require "helper"

-- Every await point of the core, as a task body; `other` is a task that
-- stays parked for 200 s, for the points that wait on another task.
local await_points = {
  { "sleep", function() corio.sleep(100) end },
  { "sleep(0)", function() while true do corio.sleep(0) end end },
  { "yield", function() while true do corio.yield() end end },
  { "join", function(other) other:join() end },
  { "wait", function(other) other:wait() end },
  { "a timeout's body", function() corio.timeout(50, corio.sleep, 100) end },
  { "a plain coroutine.yield followed by sleep", function()
    coroutine.yield()
    corio.sleep(100)
  end },
}

describe("t:cancel()", function()
  for _, point in ipairs(await_points) do
    local name, body = point[1], point[2]

    it("makes a task parked in " .. name .. " end cancelled at once", function()
      local ok, err, status, other_status, at = H.run(function()
        local other = corio.spawn(corio.sleep, 200)
        local t = corio.spawn(body, other)
        for _ = 1, 3 do corio.yield() end -- t parks (or keeps yielding)
        t:cancel()
        local o, e = t:wait()
        local s, os_, now = t:status(), other:status(), corio.now()
        other:cancel()
        other:wait()
        return o, e, s, os_, now
      end)
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(err))
      assert.equal("cancelled", err.kind)
      assert.equal("cancelled", status)
      assert.equal("waiting", other_status) -- waiting on a task is not cancelling it
      assert.equal(0, at) -- at once: the clock never moved towards a deadline
    end)

    it("raises a cancellation that pcall catches at " .. name, function()
      if not H.can_pcall_yield then pending("5.1 cannot yield across pcall") return end
      local caught = H.run(function()
        local other = corio.spawn(corio.sleep, 200)
        local got
        local t = corio.spawn(function()
          local ok, e = pcall(body, other)
          got = not ok and corio.is_cancelled(e)
        end)
        for _ = 1, 3 do corio.yield() end
        t:cancel()
        t:wait()
        other:cancel()
        return got
      end)
      assert.is_true(caught)
    end)
  end

  it("returns at once and returns nothing; the canceller goes on first", function()
    local log = H.log()
    local nret = H.run(function()
      local t = corio.spawn(function()
        corio.sleep(100)
        log("not reached")
      end)
      corio.yield()
      local n = select("#", t:cancel())
      log("canceller goes on")
      t:wait()
      log("victim ended")
      return n
    end)
    assert.equal(0, nret)
    assert.same({ "canceller goes on", "victim ended" }, log.items)
  end)

  it("starts a task cancelled before it first ran, and raises at its first await", function()
    local log = H.log()
    local ok, err = H.run(function()
      local t = corio.spawn(function(resource)
        log("started with " .. resource)
        corio.sleep(1)
        log("not reached")
      end, "a resource")
      t:cancel()
      return t:wait()
    end)
    assert.same({ "started with a resource" }, log.items)
    assert.is_false(ok)
    assert.is_true(corio.is_cancelled(err))
  end)

  it("lets a task cancelled before it first ran clean up what it was handed", function()
    if not H.can_pcall_yield then pending("5.1 cannot yield across pcall") return end
    local log = H.log()
    H.run(function()
      local t = corio.spawn(function(resource)
        local ok, e = pcall(corio.sleep, 1)
        if not ok and corio.is_cancelled(e) then log("released " .. resource) end
      end, "r1")
      t:cancel()
      t:wait()
    end)
    assert.same({ "released r1" }, log.items)
  end)

  it("lets a task cancelled before it ran finish normally when it never awaits", function()
    local r, status = H.run(function()
      local t = corio.spawn(function() return 42 end)
      t:cancel()
      return t:join(), t:status()
    end)
    assert.equal(42, r)
    assert.equal("done", status)
  end)

  it("is harmless on a task that finished", function()
    local r = H.run(function()
      local done = corio.spawn(function() return "result" end)
      local failed = corio.spawn(function() error("original") end)
      local cancelled = corio.spawn(corio.sleep, 10)
      corio.yield()
      cancelled:cancel()
      cancelled:wait()
      done:cancel()
      failed:cancel()
      cancelled:cancel()
      local _, ferr = failed:wait()
      local _, cerr = cancelled:wait()
      return {
        done = done:status(), failed = failed:status(),
        cancelled = cancelled:status(), result = done:join(),
        failed_is_cancel = corio.is_cancelled(ferr),
        failed_msg = tostring(ferr):find("original", 1, true) ~= nil,
        cancelled_is_cancel = corio.is_cancelled(cerr),
      }
    end)
    assert.same({
      done = "done", failed = "failed", cancelled = "cancelled",
      result = "result", failed_is_cancel = false, failed_msg = true,
      cancelled_is_cancel = true,
    }, r)
  end)

  it("on the running task itself returns, and its next await raises", function()
    local log = H.log()
    local ok, err = H.run(function()
      local t = corio.spawn(function()
        corio.current():cancel()
        log("still running")
        local x = 0
        for i = 1, 100 do x = x + i end
        log("computed " .. x)
        corio.yield()
        log("not reached")
      end)
      return t:wait()
    end)
    assert.same({ "still running", "computed 5050" }, log.items)
    assert.is_false(ok)
    assert.is_true(corio.is_cancelled(err))
  end)

  it("on a task that yielded makes its yield raise", function()
    local log = H.log()
    local status = H.run(function()
      local t = corio.spawn(function()
        log("before yield")
        corio.yield()
        log("not reached")
      end)
      corio.yield() -- t runs and yields: it is ready again, behind main
      t:cancel()
      t:wait()
      return t:status()
    end)
    assert.same({ "before yield" }, log.items)
    assert.equal("cancelled", status)
  end)

  it("on a task whose sleep ended but which has not run yet stops it at an await", function()
    local log = H.log()
    local status = H.run(function()
      local victim
      corio.spawn(function()
        corio.sleep(1)
        victim:cancel() -- victim is due at 1 too, woken but not run yet
      end)
      victim = corio.spawn(function()
        corio.sleep(1)
        log("woke")
        corio.yield()
        log("not reached")
      end)
      victim:wait()
      return victim:status()
    end)
    assert.equal("cancelled", status)
    assert.is_nil(log.items[2])
  end)

  it("twice is the same as once", function()
    local ok, err, status = H.run(function()
      local t = corio.spawn(corio.sleep, 10)
      corio.yield()
      t:cancel()
      t:cancel()
      local o, e = t:wait()
      return o, e, t:status()
    end)
    assert.is_false(ok)
    assert.is_true(corio.is_cancelled(err))
    assert.equal("cancelled", status)
  end)

  it("is sticky: a task that swallows it is cancelled again at each next await", function()
    if not H.can_pcall_yield then pending("5.1 cannot yield across pcall") return end
    local log = H.log()
    local status = H.run(function()
      local t = corio.spawn(function()
        local ok1, e1 = pcall(corio.sleep, 100)
        log(not ok1 and corio.is_cancelled(e1))
        log("runs on after swallowing")
        local ok2, e2 = pcall(corio.yield)
        log(not ok2 and corio.is_cancelled(e2))
        local ok3, e3 = pcall(corio.sleep, 0)
        log(not ok3 and corio.is_cancelled(e3))
        corio.sleep(1)
        log("not reached")
      end)
      corio.yield()
      t:cancel()
      t:wait()
      return t:status()
    end)
    assert.same({ true, "runs on after swallowing", true, true }, log.items)
    assert.equal("cancelled", status)
  end)

  it("lets a task that swallows it and returns without awaiting again finish done", function()
    if not H.can_pcall_yield then pending("5.1 cannot yield across pcall") return end
    local r, status = H.run(function()
      local t = corio.spawn(function()
        pcall(corio.sleep, 100)
        return "returned anyway"
      end)
      corio.yield()
      t:cancel()
      return t:join(), t:status()
    end)
    assert.equal("returned anyway", r)
    assert.equal("done", status)
  end)

  it("runs the <close> variables of the cancelled task (Lua 5.4)", function()
    if not H.lua54 then pending("<close> needs Lua 5.4") return end
    local log = H.log()
    local make = assert(load([[
      local corio, log = ...
      return function()
        local res <close> = setmetatable({}, { __close = function(_, e)
          log(corio.is_cancelled(e) and "closed by cancellation" or "closed")
        end })
        corio.sleep(100)
      end
    ]]))
    local status = H.run(function()
      local t = corio.spawn(make(corio, log))
      corio.yield()
      t:cancel()
      t:wait()
      return t:status()
    end)
    assert.same({ "closed by cancellation" }, log.items)
    assert.equal("cancelled", status)
  end)

  it("does not cancel the task that the cancelled task was joining", function()
    local r = H.run(function()
      local target = corio.spawn(function() corio.sleep(2) return "target done" end)
      local joiner = corio.spawn(function() return target:join() end)
      corio.sleep(1)
      joiner:cancel()
      joiner:wait()
      return target:join()
    end)
    assert.equal("target done", r)
  end)

  it("does not cancel the tasks the cancelled task started with corio.spawn", function()
    local r, child_status = H.run(function()
      local child
      local parent = corio.spawn(function()
        child = corio.spawn(function() corio.sleep(2) return "child done" end)
        corio.sleep(10)
      end)
      corio.sleep(1)
      parent:cancel()
      parent:wait()
      local s = child:status()
      return child:join(), s
    end)
    assert.equal("child done", r)
    assert.equal("waiting", child_status)
  end)

  it("hands the cancellation to the task's joiner without cancelling the joiner", function()
    local ok, err, later = H.run(function()
      local t = corio.spawn(corio.sleep, 10)
      corio.spawn(function()
        corio.sleep(1)
        t:cancel()
      end)
      local o, e = t:wait()
      corio.sleep(1) -- the joiner itself can still wait
      return o, e, corio.now()
    end)
    assert.is_false(ok)
    assert.is_true(corio.is_cancelled(err))
    assert.equal(2, later)
  end)

  it("of main by another task makes run raise the cancellation", function()
    local err = H.run_error(function()
      local main = corio.current()
      corio.spawn(function() main:cancel() end)
      corio.sleep(10)
    end)
    assert.is_true(corio.is_cancelled(err))
  end)

  it("disarms the cancelled task's timer", function()
    local timers = H.run(function()
      local t = corio.spawn(corio.sleep, 10)
      corio.yield()
      local before = corio.stats().timers
      t:cancel()
      t:wait()
      return { before, corio.stats().timers }
    end)
    assert.same({ 1, 0 }, timers)
  end)
end)
