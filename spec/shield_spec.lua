-- corio.shield: fn runs to completion even when the task or a scope around
-- it is cancelled; the cancellation is delivered at the next await after
-- the shield returns (Trio's rule). Deadlines inside the shield still apply.
local corio = require "corio"
local H = require "helper"

local pack, unpack = H.pack, H.unpack

-- H.run, but a failed assertion inside comes out as itself rather than
-- wrapped in the main task's error object.
local function run(fn)
  local ok, e = pcall(H.run, fn)
  if ok then return end
  if type(e) == "table" and e.kind == "task" and e.value ~= nil then e = e.value end
  error(e, 0)
end

-- Calls fn(...) and returns true, results... or false, err: pcall where a
-- pcall can wait, else (PUC Lua 5.1) a task that is waited for. The error
-- is what fn raised, unchanged. Not for a cancellation of the caller.
local function catch(fn, ...)
  if H.can_pcall_yield then return pcall(fn, ...) end
  local args, name = pack(...), nil
  local r = corio.join(function()
    name = corio.current().name
    return fn(unpack(args, 1, args.n))
  end)
  if r[1] then return unpack(r, 1, r.n) end
  local e = r[2]
  -- the join child wrapped a non-corio error value: give back the value
  if type(e) == "table" and e.kind == "task" and e.task == name then e = e.value end
  return false, e
end

describe("corio.shield", function()
  it("returns fn's results and passes it the extra arguments", function()
    run(function()
      local r = pack(corio.shield(function(a, b)
        corio.sleep(1)
        return b, nil, a
      end, "a", "b"))
      assert.equal(3, r.n)
      assert.same({ "b", nil, "a" }, { r[1], r[2], r[3] })
      assert.equal(1, corio.now())
    end)
  end)

  it("lets fn's own error through unchanged", function()
    run(function()
      local obj = {}
      local ok, e = catch(corio.shield, function() corio.sleep(1) error(obj) end)
      assert.is_false(ok)
      assert.equal(obj, e)
    end)
  end)

  it("runs fn to completion in a cancelled task and delivers the cancellation at the next await after it", function()
    run(function()
      local log = H.log()
      local t = corio.spawn(function()
        local r = corio.shield(function()
          corio.sleep(2)
          log("shield done")
          log(corio.now())
          return "kept"
        end)
        log(r) -- runs: no await between the shield's return and here
        corio.sleep(1)
        log("unreachable")
      end)
      corio.sleep(1)
      t:cancel()
      assert.equal("waiting", t:status())
      local ok, e = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(e))
      assert.equal("cancelled", t:status())
      assert.same({ "shield done", 2, "kept" }, log.items)
      assert.equal(2, corio.now())
    end)
  end)

  it("does not raise the pending cancellation from the shield's own return", function()
    run(function()
      local returned = false
      local t = corio.spawn(function()
        corio.shield(corio.sleep, 2)
        returned = true
        corio.yield()
      end)
      corio.sleep(1)
      t:cancel()
      t:wait()
      assert.is_true(returned)
      assert.equal("cancelled", t:status())
    end)
  end)

  it("keeps every await inside fn uncancelled, not only the first", function()
    run(function()
      local log = H.log()
      local t = corio.spawn(function()
        corio.shield(function()
          for i = 1, 3 do
            corio.sleep(1)
            log(i)
          end
          corio.yield()
          log("yielded")
        end)
      end)
      corio.sleep(0.5)
      t:cancel()
      t:wait()
      assert.same({ 1, 2, 3, "yielded" }, log.items)
      assert.equal(3, corio.now())
    end)
  end)

  it("runs to completion inside a timeout, which raises at the next await after the shield", function()
    run(function()
      local log = H.log()
      local ok, e = catch(corio.timeout, 1, function()
        log(corio.shield(function()
          corio.sleep(3)
          return "kept"
        end))
        log(corio.now())
        corio.sleep(1)
        log("unreachable")
      end)
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(e))
      assert.same({ "kept", 3 }, log.items)
      assert.equal(3, corio.now())
    end)
  end)

  it("applies a deadline set inside the shield", function()
    run(function()
      local ok, e = catch(corio.shield, function()
        return corio.timeout(1, corio.sleep, 5)
      end)
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(e))
      assert.equal(1, corio.now())
    end)
  end)

  it("applies a deadline set inside the shield while the cancelled task waits", function()
    run(function()
      local t = corio.spawn(function()
        return corio.shield(function()
          local ok, e = catch(corio.timeout, 2, corio.sleep, 5)
          return ok, e
        end)
      end)
      corio.sleep(0.5)
      t:cancel()
      -- the task is cancelled at 0.5 but its shielded wait ends at the inner
      -- deadline (2), neither earlier nor at the end of the sleep (5)
      local ok, inner_ok, inner_err = t:wait()
      assert.equal(2, corio.now())
      assert.is_true(ok)
      assert.is_false(inner_ok)
      assert.is_true(corio.is_timeout(inner_err))
    end)
  end)

  it("protects the children of a scope opened inside it", function()
    run(function()
      local kid
      local t = corio.spawn(function()
        corio.shield(function()
          corio.scope(function(s) kid = s:spawn(corio.sleep, 3) end)
        end)
        corio.yield()
      end)
      corio.sleep(1)
      t:cancel()
      local ok, e = t:wait()
      assert.equal("done", kid:status())
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(e))
      assert.equal(3, corio.now())
    end)
  end)

  it("protects a scope child from the scope's s:cancel()", function()
    run(function()
      local log = H.log()
      corio.scope(function(s)
        s:spawn(function()
          corio.shield(function() corio.sleep(2) log("shielded done") end)
          corio.sleep(5)
          log("unreachable")
        end)
        corio.sleep(1)
        s:cancel()
      end)
      assert.same({ "shielded done" }, log.items)
      assert.equal(2, corio.now())
    end)
  end)

  it("still lets a scope inside the shield be cancelled", function()
    run(function()
      local kid
      corio.shield(function()
        corio.scope(function(s)
          kid = s:spawn(corio.sleep, 5)
          corio.sleep(1)
          s:cancel()
        end)
      end)
      assert.equal("cancelled", kid:status())
      assert.equal(1, corio.now())
    end)
  end)

  it("keeps every wait inside it running past an enclosing deadline that expires meanwhile", function()
    run(function()
      local log = H.log()
      local t = corio.spawn(function()
        corio.timeout(1, function()
          corio.shield(function()
            corio.sleep(2) -- passes the outer deadline
            log("first sleep done")
            corio.sleep(2)
            log("second sleep done")
          end)
        end)
      end)
      -- (whether the timeout then raises, although fn never awaited after
      -- its deadline, is Trio's cancelled_caught question: not asserted)
      t:wait()
      assert.same({ "first sleep done", "second sleep done" }, log.items)
      assert.equal(4, corio.now())
    end)
  end)

  it("rejects a non-function naming 'shield'", function()
    run(function()
      local ok, e = pcall(corio.shield, nil)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'shield'", tostring(e), 1, true)
    end)
  end)
end)
