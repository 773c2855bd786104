-- corio.timeout: a cancel scope with a deadline on the runtime's timer heap.
-- All timing runs on the virtual clock, so every time asserted is exact.
local corio = require "corio"
local H = require "helper"

local pack = H.pack

describe("corio.timeout", function()
  it("returns all of fn's results, nils included, when fn finishes before the deadline", function()
    H.run(function()
      local r = pack(corio.timeout(5, function(a, b)
        corio.sleep(2)
        return a, nil, b, nil
      end, "x", "y"))
      assert.equal(4, r.n)
      assert.same({ "x", nil, "y", nil }, { r[1], r[2], r[3], r[4] })
      assert.equal(2, corio.now())
    end)
  end)

  it("raises a 'timeout' error exactly at the deadline when fn is still waiting", function()
    H.run(function()
      local ok, e = H.catch(corio.timeout, 1, corio.sleep, 5)
      assert.is_false(ok)
      assert.equal(1, corio.now())
      assert.equal("timeout", e.kind)
      assert.is_true(corio.is_timeout(e))
      assert.is_false(corio.is_cancelled(e))
      assert.is_true(corio.is_error(e, "timeout"))
      assert.is_string(e.message)
      assert.matches("timeout", tostring(e), 1, true)
    end)
  end)

  it("is catchable with the caller's own pcall", function()
    if not H.need_pcall_yield(pending) then return end
    H.run(function()
      local ok, e = pcall(corio.timeout, 0.5, corio.sleep, 5)
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(e))
      assert.equal(0.5, corio.now())
    end)
  end)

  it("names the duration in the timeout error's message", function()
    H.run(function()
      local _, e = H.catch(corio.timeout, 0.25, corio.sleep, 5)
      assert.is_true(corio.is_timeout(e))
      assert.matches("0.25", e.message, 1, true)
    end)
  end)

  it("passes the extra arguments to fn", function()
    H.run(function()
      local got = pack(corio.timeout(1, function(...) return select("#", ...), ... end, 1, nil, 3))
      assert.same({ 3, 1, nil, 3 }, { got[1], got[2], got[3], got[4] })
    end)
  end)

  it("cancels fn at the deadline and runs its cleanup before it raises", function()
    if not H.need_pcall_yield(pending) then return end
    H.run(function()
      local log = H.log()
      local ok, e = pcall(corio.timeout, 1, function()
        local ok2, e2 = pcall(corio.sleep, 5)
        log(ok2 and "slept" or (corio.is_cancelled(e2) and "cancelled" or tostring(e2)))
        log(corio.now())
        if not ok2 then error(e2, 0) end
      end)
      log("timeout raised")
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(e))
      assert.same({ "cancelled", 1, "timeout raised" }, log.items)
      assert.equal(1, corio.now())
    end)
  end)

  it("closes fn's to-be-closed variables before it raises (Lua 5.4)", function()
    if not H.lua54 then
      pending("<close> needs Lua 5.4")
      return
    end
    H.run(function()
      local log = H.log()
      local body = assert(load([[
        local corio, log = ...
        return function()
          local guard <close> = setmetatable({}, { __close = function(_, err)
            log(corio.is_cancelled(err) and "closed on cancel" or "closed")
          end })
          corio.sleep(5)
        end
      ]]))(corio, log)
      local ok, e = pcall(corio.timeout, 1, body)
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(e))
      assert.same({ "closed on cancel" }, log.items)
    end)
  end)

  it("cancels fn again at its next await when fn swallows the cancellation", function()
    if not H.need_pcall_yield(pending) then return end
    H.run(function()
      local log = H.log()
      local ok, e = pcall(corio.timeout, 1, function()
        pcall(corio.sleep, 5) -- swallowed
        log("swallowed")
        log(corio.now())
        local ok2, e2 = pcall(corio.sleep, 3)
        log(corio.is_cancelled(e2) and "cancelled again" or tostring(ok2))
        log(corio.now())
        error(e2, 0)
      end)
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(e))
      assert.same({ "swallowed", 1, "cancelled again", 1 }, log.items)
      assert.equal(1, corio.now())
    end)
  end)

  it("lets an error raised by fn before the deadline through unchanged", function()
    H.run(function()
      local boom = setmetatable({ what = "boom" }, {})
      local ok, e = H.catch(corio.timeout, 5, function()
        corio.sleep(1)
        error(boom)
      end)
      assert.is_false(ok)
      assert.equal(boom, e)
      assert.equal(1, corio.now())

      local line
      ok, e = H.catch(corio.timeout, 5, function()
        line = debug.getinfo(1, "l").currentline + 1
        error("plain message")
      end)
      assert.is_false(ok)
      assert.equal("string", type(e))
      assert.matches("timeout_spec.lua:" .. line .. ": plain message", e, 1, true)
    end)
  end)

  it("lets an error raised by cleanup code during the cancellation through instead of converting it", function()
    if not H.need_pcall_yield(pending) then return end
    H.run(function()
      local ok, e = pcall(corio.timeout, 1, function()
        local ok2 = pcall(corio.sleep, 5)
        if not ok2 then error("cleanup failed", 0) end
      end)
      assert.is_false(ok)
      assert.equal("cleanup failed", e)
      assert.equal(1, corio.now())
    end)
  end)

  it("lets an error raised by a <close> handler during the cancellation through (Lua 5.4)", function()
    if not H.lua54 then
      pending("<close> needs Lua 5.4")
      return
    end
    H.run(function()
      local body = assert(load([[
        local corio = ...
        return function()
          local guard <close> = setmetatable({}, { __close = function()
            error("close failed", 0)
          end })
          corio.sleep(5)
        end
      ]]))(corio)
      local ok, e = pcall(corio.timeout, 1, body)
      assert.is_false(ok)
      assert.equal("close failed", e)
      assert.equal(1, corio.now())
    end)
  end)

  it("passes a cancellation of the task through as a cancellation, not a timeout", function()
    H.run(function()
      local t = corio.spawn(function()
        corio.timeout(5, corio.sleep, 10)
      end)
      corio.sleep(1)
      t:cancel()
      local ok, e = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(e))
      assert.is_false(corio.is_timeout(e))
      assert.equal("cancelled", t:status())
      assert.equal(1, corio.now())
    end)
  end)

  it("disarms its deadline when fn returns early, so later waits are not cut short", function()
    H.run(function()
      assert.equal("done", corio.timeout(1, function()
        corio.sleep(0.5)
        return "done"
      end))
      assert.equal(0, corio.stats().timers)
      corio.sleep(5)
      assert.equal(5.5, corio.now())
    end)
  end)

  it("returns fn's results from timeout(0, fn) when fn never waits", function()
    H.run(function()
      assert.same({ 1, 2 }, { corio.timeout(0, function() return 1, 2 end) })
      assert.equal(0, corio.now())
      assert.equal(0, corio.stats().timers)
    end)
  end)

  it("raises at once from timeout(0, fn) when fn waits", function()
    H.run(function()
      local reached = false
      local ok, e = H.catch(corio.timeout, 0, function()
        corio.sleep(1)
        reached = true
      end)
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(e))
      assert.is_false(reached)
      assert.equal(0, corio.now())
    end)
  end)

  it("puts its deadline on the runtime's timer heap only while fn runs", function()
    H.run(function()
      local inside
      corio.timeout(1, function() inside = corio.stats().timers end)
      assert.equal(1, inside)
      assert.equal(0, corio.stats().timers)
    end)
  end)

  it("costs no timer and no memory beyond the scope record around a call that never waits", function()
    H.run(function()
      local function f(x) return x end
      for _ = 1, 1000 do corio.timeout(1, f, 1) end -- warm-up
      collectgarbage()
      collectgarbage()
      local before = collectgarbage("count")
      for i = 1, 10000 do
        assert(corio.timeout(1, f, i) == i)
      end
      assert.equal(0, corio.stats().timers)
      collectgarbage()
      collectgarbage()
      local grown = collectgarbage("count") - before
      assert.is_true(grown < 16, "memory grew by " .. grown .. " KB over 10000 timeouts")
    end)
  end)

  it("allocates no more than the scope record per call that never waits", function()
    if not H.can_pcall_yield then
      pending("on Lua 5.1 the protected call runs as a child task")
      return
    end
    H.run(function()
      local function f(x) return x end
      for _ = 1, 1000 do corio.timeout(1, f, 1) end
      collectgarbage()
      collectgarbage()
      collectgarbage("stop")
      local before = collectgarbage("count")
      for i = 1, 10000 do corio.timeout(1, f, i) end
      local per_call = (collectgarbage("count") - before) * 1024 / 10000
      collectgarbage("restart")
      -- the scope record is a userdata of about 150 bytes; a table, closure
      -- or coroutine per call would push this well above the bound
      assert.is_true(per_call < 320, "allocated " .. per_call .. " bytes per timeout")
    end)
  end)

  describe("nested", function()
    it("raises the inner timeout at the inner deadline and leaves the outer one running (inner first)", function()
      H.run(function()
        local r = corio.timeout(5, function()
          local ok, e = H.catch(corio.timeout, 1, corio.sleep, 10)
          assert.is_false(ok)
          assert.is_true(corio.is_timeout(e))
          assert.matches("after 1", e.message, 1, true)
          assert.equal(1, corio.now())
          corio.sleep(2) -- the outer deadline (5) is still ahead
          return "outer done"
        end)
        assert.equal("outer done", r)
        assert.equal(3, corio.now())
        assert.equal(0, corio.stats().timers)
      end)
    end)

    it("raises the outer timeout at the outer deadline through a longer inner one (outer first)", function()
      H.run(function()
        local after_inner = false
        local ok, e = H.catch(corio.timeout, 1, function()
          corio.timeout(5, corio.sleep, 10)
          after_inner = true
        end)
        assert.is_false(ok)
        assert.is_true(corio.is_timeout(e))
        assert.matches("after 1", e.message, 1, true)
        assert.is_false(after_inner)
        assert.equal(1, corio.now())
      end)
    end)

    it("gives the inner timeout's caller a cancellation, not a timeout, when the outer deadline is first", function()
      if not H.need_pcall_yield(pending) then return end
      H.run(function()
        local inner_err
        local ok, e = pcall(corio.timeout, 1, function()
          local ok2, e2 = pcall(corio.timeout, 5, corio.sleep, 10)
          assert.is_false(ok2)
          inner_err = e2
          error(e2, 0)
        end)
        assert.is_false(ok)
        assert.is_true(corio.is_cancelled(inner_err))
        assert.is_false(corio.is_timeout(inner_err))
        assert.is_true(corio.is_timeout(e))
      end)
    end)

    it("raises one timeout at the shared instant when both deadlines are equal", function()
      H.run(function()
        local after_inner = false
        local ok, e = H.catch(corio.timeout, 2, function()
          corio.sleep(1)
          corio.timeout(1, corio.sleep, 10) -- due at 2, like the outer
          after_inner = true
        end)
        assert.is_false(ok)
        assert.is_true(corio.is_timeout(e))
        assert.is_false(after_inner)
        assert.equal(2, corio.now())
        assert.equal(0, corio.stats().timers)
      end)
    end)

    it("converts the inner expiry at an equal deadline and delivers the outer one at the next await", function()
      if not H.need_pcall_yield(pending) then return end
      H.run(function()
        local log = H.log()
        local ok, e = pcall(corio.timeout, 2, function()
          corio.sleep(1)
          local ok2, e2 = pcall(corio.timeout, 1, corio.sleep, 10)
          log(ok2 and "inner ok" or e2.kind)
          corio.sleep(1)
          log("unreachable")
        end)
        assert.is_false(ok)
        assert.is_true(corio.is_timeout(e))
        assert.same({ "timeout" }, log.items)
        assert.equal(2, corio.now())
      end)
    end)

    it("applies the earliest enclosing deadline through several levels", function()
      H.run(function()
        local ok, e = H.catch(corio.timeout, 10, function()
          return corio.timeout(3, function()
            return corio.timeout(20, corio.sleep, 100)
          end)
        end)
        assert.is_false(ok)
        assert.is_true(corio.is_timeout(e))
        assert.matches("after 3", e.message, 1, true)
        assert.equal(3, corio.now())
      end)
    end)
  end)

  describe("around a scope", function()
    it("cancels the scope's children at the deadline, waits for them, then raises", function()
      H.run(function()
        local kids = {}
        local ok, e = H.catch(corio.timeout, 1, function()
          corio.scope(function(s)
            kids[1] = s:spawn(corio.sleep, 5)
            kids[2] = s:spawn(function() corio.sleep(0.5) corio.sleep(7) end)
            corio.sleep(10)
          end)
        end)
        assert.is_false(ok)
        assert.is_true(corio.is_timeout(e))
        assert.equal(1, corio.now())
        assert.equal("cancelled", kids[1]:status())
        assert.equal("cancelled", kids[2]:status())
        assert.equal(1, corio.stats().alive) -- main only
      end)
    end)

    it("raises a timeout even when the scope's body had already returned", function()
      H.run(function()
        local kid
        local after = false
        local ok, e = H.catch(corio.timeout, 1, function()
          corio.scope(function(s)
            kid = s:spawn(corio.sleep, 5)
            return "body done"
          end)
          after = true
        end)
        assert.is_false(ok)
        assert.is_true(corio.is_timeout(e))
        assert.is_false(after)
        assert.equal("cancelled", kid:status())
        assert.equal(1, corio.now())
      end)
    end)

    it("applies the deadline to a child's own awaits, including inside a longer inner timeout", function()
      H.run(function()
        local kid
        local ok, e = H.catch(corio.timeout, 2, function()
          corio.scope(function(s)
            kid = s:spawn(function() corio.timeout(50, corio.sleep, 100) end)
          end)
        end)
        assert.is_false(ok)
        assert.is_true(corio.is_timeout(e))
        assert.matches("after 2", e.message, 1, true)
        assert.equal("cancelled", kid:status())
        assert.equal(2, corio.now())
      end)
    end)

    it("waits for the children's cleanup before it raises", function()
      H.run(function()
        local log = H.log()
        local ok, e = H.catch(corio.timeout, 1, function()
          corio.scope(function(s)
            s:spawn(function()
              corio.sleep(0.5)
              corio.shield(function()
                corio.sleep(2)
                log("cleanup done")
                log(corio.now())
              end)
              corio.sleep(10)
            end)
          end)
        end)
        log("raised")
        log(corio.now())
        assert.is_false(ok)
        assert.is_true(corio.is_timeout(e))
        assert.same({ "cleanup done", 2.5, "raised", 2.5 }, log.items)
      end)
    end)

    it("does not apply to a task started with corio.spawn, which is outside the scope", function()
      H.run(function()
        local free
        local ok, e = H.catch(corio.timeout, 1, function()
          free = corio.spawn(function() corio.sleep(3) return "free" end)
          corio.sleep(5)
        end)
        assert.is_false(ok)
        assert.is_true(corio.is_timeout(e))
        assert.equal("free", free:join())
        assert.equal(3, corio.now())
      end)
    end)
  end)

  describe("arguments", function()
    it("rejects a negative, NaN or non-number duration naming 'timeout'", function()
      H.run(function()
        for _, bad in ipairs({ -1, 0 / 0, "1", false }) do
          local ok, e = pcall(corio.timeout, bad, function() end)
          assert.is_false(ok)
          assert.matches("timeout", tostring(e), 1, true)
        end
      end)
    end)

    it("rejects a non-function body naming 'timeout'", function()
      H.run(function()
        local ok, e = pcall(corio.timeout, 1, 42)
        assert.is_false(ok)
        assert.matches("bad argument #2 to 'timeout'", tostring(e), 1, true)
      end)
    end)

    it("raises a clear error outside a task", function()
      local ok, e = pcall(corio.timeout, 1, function() end)
      assert.is_false(ok)
      assert.matches("timeout", tostring(e), 1, true)
    end)
  end)
end)
