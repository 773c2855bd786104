-- corio.join, corio.try_join, corio.select: run functions concurrently in
-- a nursery of the caller, on the virtual clock.
local corio = require "corio"
local H = require "helper"

local pack, unpack = H.pack, H.unpack

-- The line after the one that calls it (for asserting tracebacks).
local function next_line()
  return debug.getinfo(2, "l").currentline + 1
end

-- A function that sleeps secs then returns its other arguments.
local function after(secs, ...)
  local r = pack(...)
  return function()
    corio.sleep(secs)
    return unpack(r, 1, r.n)
  end
end

-- The spec, the same for join and select, that an enclosing timeout cuts
-- combine(after(5), after(7)) short at its deadline.
local function it_is_bounded_by_a_timeout(combine)
  it("is bounded by an enclosing timeout", function()
    H.run(function()
      local ok, e = H.catch(corio.timeout, 1, combine, after(5), after(7))
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(e))
      assert.equal(1, corio.now())
    end)
  end)
end

describe("corio.join", function()
  it("returns one {true, results...} table per function, in argument order", function()
    H.run(function()
      local a, b, c = corio.join(after(3, "a", nil, "a3"), after(1, "b"), after(2))
      assert.same({ true, "a", nil, "a3" }, { a[1], a[2], a[3], a[4], a[5] })
      assert.same({ true, "b" }, { b[1], b[2], b[3] })
      assert.same({ true }, { c[1], c[2] })
    end)
  end)

  it("runs the functions concurrently and returns when the last has finished", function()
    H.run(function()
      corio.join(after(3), after(1), after(2))
      assert.equal(3, corio.now())
    end)
  end)

  it("gives {false, err} for a failure and lets the others run to the end", function()
    H.run(function()
      local line
      local a, b = corio.join(function()
        corio.sleep(1)
        line = next_line()
        error("boom")
      end, after(5, "b"))
      assert.is_false(a[1])
      local e = a[2]
      assert.equal("task", e.kind)
      assert.matches("combinators_spec.lua:" .. line .. ": boom", e.message, 1, true)
      assert.matches("combinators_spec.lua:" .. line .. ": boom", e.value, 1, true)
      assert.matches("combinators_spec.lua:" .. line, e.traceback, 1, true)
      assert.same({ true, "b" }, { b[1], b[2], b[3] })
      assert.equal(5, corio.now())
    end)
  end)

  it("does not raise when every function fails", function()
    H.run(function()
      local a, b = corio.join(function() error("x", 0) end, function() error("y", 0) end)
      assert.is_false(a[1])
      assert.is_false(b[1])
      assert.equal("x", a[2].value)
      assert.equal("y", b[2].value)
    end)
  end)

  it("returns nothing for no functions", function()
    H.run(function()
      assert.equal(0, select("#", corio.join()))
    end)
  end)

  it("cancels every function and raises the cancellation when its task is cancelled", function()
    H.run(function()
      local log = H.log()
      local t = corio.spawn(function()
        corio.join(after(5), after(7))
        log("unreachable")
      end)
      corio.sleep(1)
      t:cancel()
      local ok, e = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(e))
      assert.same({}, log.items)
      assert.equal(1, corio.now())
      assert.equal(1, corio.stats().alive)
    end)
  end)

  it_is_bounded_by_a_timeout(corio.join)

  it("rejects a non-function argument naming 'join' and its position", function()
    H.run(function()
      local ok, e = pcall(corio.join, after(1), "nope")
      assert.is_false(ok)
      assert.matches("bad argument #2 to 'join'", tostring(e), 1, true)
    end)
  end)
end)

describe("corio.try_join", function()
  it("returns the first result of each function, in argument order", function()
    H.run(function()
      local r = pack(corio.try_join(after(2, "a", "ignored"), after(1, "b"), after(3, nil, "x")))
      assert.equal(3, r.n)
      assert.same({ "a", "b", nil }, { r[1], r[2], r[3] })
      assert.equal(3, corio.now())
    end)
  end)

  it("cancels the rest at the first error and raises it once their cleanup has run", function()
    H.run(function()
      local log = H.log()
      local slow
      local ok, e = H.catch(corio.try_join,
        function() corio.sleep(1) error("boom", 0) end,
        function()
          corio.sleep(0.5)
          corio.shield(function() corio.sleep(2) log("cleanup") end)
          corio.sleep(10)
          log("unreachable")
        end,
        function() slow = corio.current() corio.sleep(10) end)
      log("raised")
      assert.is_false(ok)
      assert.equal("task", e.kind)
      assert.equal("boom", e.value)
      assert.same({ "cleanup", "raised" }, log.items)
      assert.equal(2.5, corio.now())
      assert.equal("cancelled", slow:status())
    end)
  end)

  it("keeps the original message and the traceback of where the error was raised", function()
    H.run(function()
      local line
      local ok, e = H.catch(corio.try_join, after(5), function()
        corio.sleep(1)
        line = next_line()
        error("deep failure")
      end)
      assert.is_false(ok)
      local where = "combinators_spec.lua:" .. line
      assert.matches(where .. ": deep failure", e.message, 1, true)
      assert.matches(where .. ": deep failure", e.value, 1, true)
      assert.matches(where, e.traceback, 1, true)
    end)
  end)

  it("raises the first error in time, not in argument order, when two fail", function()
    H.run(function()
      local ok, e = H.catch(corio.try_join,
        function() corio.sleep(2) error("late", 0) end,
        function() corio.sleep(1) error("early", 0) end)
      assert.is_false(ok)
      assert.equal("early", e.value)
      assert.equal(1, corio.now())
    end)
  end)

  it("raises the first of two failures and attaches the second to err.others", function()
    H.run(function()
      local ok, e = H.catch(corio.try_join,
        function() corio.sleep(1) error("first", 0) end,
        function()
          corio.shield(function() corio.sleep(2) error("second", 0) end)
        end)
      assert.is_false(ok)
      assert.equal("first", e.value)
      assert.is_table(e.others)
      assert.equal("second", e.others[1].value)
      assert.equal(2, corio.now())
    end)
  end)

  it("raises one error when two fail in the same tick, the other in err.others", function()
    H.run(function()
      local ok, e = H.catch(corio.try_join,
        function() error("a", 0) end,
        function() error("b", 0) end)
      assert.is_false(ok)
      assert.equal("a", e.value)
      assert.equal("b", e.others[1].value)
    end)
  end)

  it("raises an error thrown by a cancelled function's cleanup code", function()
    if not H.need_pcall_yield(pending) then return end
    H.run(function()
      local ok, e = pcall(corio.try_join,
        function() corio.sleep(1) error("first", 0) end,
        function()
          local ok2 = pcall(corio.sleep, 5)
          if not ok2 then error("cleanup failed", 0) end
        end)
      assert.is_false(ok)
      assert.equal("first", e.value)
      assert.equal("cleanup failed", e.others[1].value)
    end)
  end)

  it("cancels every function and raises the cancellation when its task is cancelled", function()
    H.run(function()
      local t = corio.spawn(function() return corio.try_join(after(5, 1), after(7, 2)) end)
      corio.sleep(1)
      t:cancel()
      local ok, e = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(e))
      assert.equal(1, corio.now())
    end)
  end)

  it("returns nothing for no functions", function()
    H.run(function()
      assert.equal(0, select("#", corio.try_join()))
    end)
  end)

  it("rejects a non-function argument naming 'try_join'", function()
    H.run(function()
      local ok, e = pcall(corio.try_join, 1)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'try_join'", tostring(e), 1, true)
    end)
  end)
end)

describe("corio.select", function()
  it("returns the index and all results of the first function to finish", function()
    H.run(function()
      local r = pack(corio.select(after(3, "slow"), after(1, "fast", nil, 3), after(2, "mid")))
      assert.equal(4, r.n)
      assert.same({ 2, "fast", nil, 3 }, { r[1], r[2], r[3], r[4] })
      assert.equal(1, corio.now())
    end)
  end)

  it("cancels the others, and their cleanup has run before it returns", function()
    H.run(function()
      local log = H.log()
      local other
      local i = corio.select(after(1, "win"), function()
        other = corio.current()
        corio.sleep(0.5)
        corio.shield(function() corio.sleep(2) log("cleanup") end)
        corio.sleep(10)
        log("unreachable")
      end)
      log("returned")
      assert.equal(1, i)
      assert.same({ "cleanup", "returned" }, log.items)
      assert.equal("cancelled", other:status())
      assert.equal(2.5, corio.now())
      assert.equal(1, corio.stats().alive)
    end)
  end)

  it("runs a loser's pcall cleanup with the cancellation before it returns", function()
    if not H.need_pcall_yield(pending) then return end
    H.run(function()
      local log = H.log()
      corio.select(after(1), function()
        local ok, e = pcall(corio.sleep, 5)
        log(ok and "slept" or (corio.is_cancelled(e) and "cancelled" or tostring(e)))
        error(e, 0)
      end)
      assert.same({ "cancelled" }, log.items)
      assert.equal(1, corio.now())
    end)
  end)

  it("raises the error of the first function to finish and cancels the others", function()
    H.run(function()
      local other
      local ok, e = H.catch(corio.select, function()
        corio.sleep(1)
        error("first failed", 0)
      end, function()
        other = corio.current()
        corio.sleep(2)
        return "too late"
      end)
      assert.is_false(ok)
      assert.equal("first failed", e.value)
      assert.equal("cancelled", other:status())
      assert.equal(1, corio.now())
    end)
  end)

  it("raises an error a loser throws while it is being cancelled, once it has finished", function()
    H.run(function()
      local ok, e = H.catch(corio.select, after(1, "win"), function()
        corio.shield(function() corio.sleep(2) end)
        error("failed in cleanup", 0) -- no await between: not cancelled yet
      end)
      assert.is_false(ok)
      assert.equal("failed in cleanup", e.value)
      assert.equal(2, corio.now())
    end)
  end)

  it("picks exactly one winner among functions that finish in the same tick", function()
    H.run(function()
      local finished = H.log()
      local fns = {}
      for k = 1, 4 do
        fns[k] = function()
          corio.sleep(1)
          finished(k)
          return "r" .. k
        end
      end
      local r = pack(corio.select(unpack(fns)))
      assert.equal(2, r.n)
      assert.is_number(r[1])
      assert.equal("r" .. r[1], r[2])
      -- the winner is one that did finish, and it is the first that did
      assert.is_true(#finished.items >= 1)
      assert.equal(finished.items[1], r[1])
      assert.equal(1, corio.now())
      assert.equal(1, corio.stats().alive)
    end)
  end)

  it("picks the first in order among functions that finish without waiting", function()
    H.run(function()
      local r = pack(corio.select(function() return "a" end, function() return "b" end))
      assert.same({ n = 2, 1, "a" }, r)
      assert.equal(0, corio.now())
    end)
  end)

  it("raises an error thrown by a loser's cleanup code", function()
    if not H.need_pcall_yield(pending) then return end
    H.run(function()
      local ok, e = pcall(corio.select, after(1, "win"), function()
        local ok2 = pcall(corio.sleep, 5)
        if not ok2 then error("cleanup failed", 0) end
      end)
      assert.is_false(ok)
      assert.equal("cleanup failed", e.value)
    end)
  end)

  it("cancels every function and raises the cancellation when its task is cancelled", function()
    H.run(function()
      local t = corio.spawn(function() return corio.select(after(5, 1), after(7, 2)) end)
      corio.sleep(1)
      t:cancel()
      local ok, e = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(e))
      assert.equal(1, corio.now())
      assert.equal(1, corio.stats().alive)
    end)
  end)

  it_is_bounded_by_a_timeout(corio.select)

  it("rejects being called with no functions", function()
    H.run(function()
      local ok, e = pcall(corio.select)
      assert.is_false(ok)
      assert.matches("select", tostring(e), 1, true)
    end)
  end)
end)
