-- corio.scope: a nursery. Children started with s:spawn cannot outlive it;
-- the first failure cancels the rest and is re-raised after all finished.
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

local function need_pcall_yield()
  if not H.can_pcall_yield then
    pending("Lua 5.1 cannot yield across pcall")
    return false
  end
  return true
end

-- The line after the one that calls it (for asserting tracebacks).
local function next_line()
  return debug.getinfo(2, "l").currentline + 1
end

describe("corio.scope", function()
  it("returns the body's results once every child has finished", function()
    run(function()
      local log = H.log()
      local r = pack(corio.scope(function(s)
        s:spawn(function() corio.sleep(3) log("slow") end)
        s:spawn(function() corio.sleep(1) log("fast") end)
        return "a", nil, "c"
      end))
      log("returned")
      assert.equal(3, r.n)
      assert.same({ "a", nil, "c" }, { r[1], r[2], r[3] })
      assert.same({ "fast", "slow", "returned" }, log.items)
      assert.equal(3, corio.now())
    end)
  end)

  it("passes the scope and the extra arguments to the body", function()
    run(function()
      local got = pack(corio.scope(function(s, ...)
        return type(s.spawn), select("#", ...), ...
      end, 1, nil, "x"))
      assert.same({ "function", 3, 1, nil, "x" }, { got[1], got[2], got[3], got[4], got[5] })
    end)
  end)

  it("runs its children concurrently", function()
    run(function()
      corio.scope(function(s)
        for i = 1, 10 do s:spawn(corio.sleep, i) end
      end)
      assert.equal(10, corio.now())
    end)
  end)

  it("passes arguments to a child and returns its task", function()
    run(function()
      local t
      corio.scope(function(s)
        t = s:spawn(function(a, b) corio.sleep(1) return a + b end, 2, 3)
        assert.equal("corio.Task", (getmetatable(t) or {}).__name)
      end)
      assert.equal("done", t:status())
      assert.equal(5, t:join())
    end)
  end)

  it("gives a child the name passed in the options, as corio.spawn does", function()
    run(function()
      local t, seen
      corio.scope(function(s)
        t = s:spawn({ name = "worker" }, function() seen = corio.current().name end)
      end)
      assert.equal("worker", t.name)
      assert.equal("worker", seen)
    end)
  end)

  it("rejects an unknown spawn option and a non-function child", function()
    run(function()
      corio.scope(function(s)
        local ok, e = pcall(s.spawn, s, { nmae = "x" }, function() end)
        assert.is_false(ok)
        assert.matches("nmae", tostring(e), 1, true)
        ok, e = pcall(s.spawn, s, 42)
        assert.is_false(ok)
        assert.matches("function expected", tostring(e), 1, true)
      end)
    end)
  end)

  it("leaves no child running once it has returned", function()
    run(function()
      local kids = {}
      corio.scope(function(s)
        for i = 1, 5 do kids[i] = s:spawn(corio.sleep, i / 10) end
      end)
      for i = 1, 5 do assert.equal("done", kids[i]:status()) end
      assert.equal(1, corio.stats().alive) -- main only
    end)
  end)

  it("refuses to spawn into a scope that has closed", function()
    run(function()
      local saved
      corio.scope(function(s) saved = s end)
      local ok, e = pcall(saved.spawn, saved, function() end)
      assert.is_false(ok)
      assert.matches("closed", tostring(e), 1, true)
    end)
  end)

  describe("failure", function()
    it("cancels the other children and the body at the first child failure", function()
      run(function()
        local log = H.log()
        local sibling
        local ok, e = catch(corio.scope, function(s)
          s:spawn(function() corio.sleep(1) error("boom") end)
          sibling = s:spawn(corio.sleep, 5)
          corio.sleep(10)
          log("body not cancelled")
        end)
        assert.is_false(ok)
        assert.equal(1, corio.now())
        assert.equal("cancelled", sibling:status())
        assert.same({}, log.items)
        assert.equal("task", e.kind)
      end)
    end)

    it("re-raises the first failure only after the other children's cleanup has finished", function()
      run(function()
        local log = H.log()
        local ok, e = catch(corio.scope, function(s)
          s:spawn(function() corio.sleep(1) error("boom", 0) end)
          s:spawn(function()
            corio.sleep(0.5)
            corio.shield(function() corio.sleep(2) log("cleanup") end)
            corio.sleep(10)
          end)
        end)
        log("raised")
        assert.is_false(ok)
        assert.equal("boom", e.value)
        assert.same({ "cleanup", "raised" }, log.items)
        assert.equal(2.5, corio.now())
      end)
    end)

    it("re-raises the child's task error with the original message, value, task name and traceback", function()
      run(function()
        local line
        local function explode()
          corio.sleep(1)
          line = next_line()
          error("kaboom")
        end
        local ok, e = catch(corio.scope, function(s)
          s:spawn({ name = "bomb" }, explode)
        end)
        assert.is_false(ok)
        assert.equal("task", e.kind)
        assert.equal("bomb", e.task)
        local where = "scope_spec.lua:" .. line .. ": kaboom"
        assert.is_string(e.value)
        assert.matches(where, e.value, 1, true)
        assert.matches(where, e.message, 1, true)
        assert.is_string(e.traceback)
        assert.matches("scope_spec.lua:" .. line, e.traceback, 1, true)
        assert.matches("bomb", tostring(e), 1, true)
      end)
    end)

    it("keeps a table error value itself as err.value", function()
      run(function()
        local obj = { code = 42 }
        local ok, e = catch(corio.scope, function(s)
          s:spawn(function() error(obj) end)
        end)
        assert.is_false(ok)
        assert.equal(obj, e.value)
      end)
    end)

    it("attaches failures that happen after the first to err.others", function()
      run(function()
        local ok, e = catch(corio.scope, function(s)
          s:spawn(function() corio.sleep(1) error("first", 0) end)
          s:spawn(function()
            corio.shield(function()
              corio.sleep(2)
              error("second", 0) -- fails during the cancellation
            end)
          end)
          s:spawn(corio.sleep, 10) -- only cancelled
        end)
        assert.is_false(ok)
        assert.equal("first", e.value)
        assert.is_table(e.others)
        assert.equal(1, #e.others)
        assert.equal("second", e.others[1].value)
        assert.equal(2, corio.now())
      end)
    end)

    it("records two children failing in the same tick, first to run first", function()
      run(function()
        local ok, e = catch(corio.scope, function(s)
          s:spawn(function() error("a", 0) end)
          s:spawn(function() error("b", 0) end)
        end)
        assert.is_false(ok)
        assert.equal("a", e.value)
        assert.equal(1, #e.others)
        assert.equal("b", e.others[1].value)
        assert.equal(0, corio.now())
      end)
    end)

    it("cancels the children and re-raises the body's own error after their cleanup", function()
      run(function()
        local kid
        local line
        local ok, e = catch(corio.scope, function(s)
          kid = s:spawn(corio.sleep, 5)
          corio.sleep(1)
          line = next_line()
          error("body failed")
        end)
        assert.is_false(ok)
        assert.equal("cancelled", kid:status())
        assert.equal(1, corio.now())
        local msg = type(e) == "table" and e.message or e
        assert.matches("scope_spec.lua:" .. line .. ": body failed", msg, 1, true)
      end)
    end)

    it("re-raises an error thrown by a child's cleanup code during the cancellation", function()
      if not need_pcall_yield() then return end
      run(function()
        local ok, e = pcall(corio.scope, function(s)
          s:spawn(function()
            local ok2 = pcall(corio.sleep, 5)
            if not ok2 then error("cleanup failed", 0) end
          end)
          corio.sleep(1)
          s:cancel()
        end)
        assert.is_false(ok)
        assert.equal("cleanup failed", e.value)
        assert.equal(1, corio.now())
      end)
    end)

    it("re-raises an error thrown by a child's <close> handler during the cancellation (Lua 5.4)", function()
      if not H.lua54 then
        pending("<close> needs Lua 5.4")
        return
      end
      run(function()
        local child = assert(load([[
          local corio = ...
          return function()
            local guard <close> = setmetatable({}, { __close = function()
              error("close failed", 0)
            end })
            corio.sleep(5)
          end
        ]]))(corio)
        local ok, e = pcall(corio.scope, function(s)
          s:spawn(child)
          corio.sleep(1)
          s:cancel()
        end)
        assert.is_false(ok)
        assert.equal("close failed", e.value)
        assert.equal(1, corio.now())
      end)
    end)
  end)

  describe("s:cancel()", function()
    it("cancels every child and the body, and the scope returns nothing", function()
      run(function()
        local kids = {}
        local reached = false
        local r = pack(corio.scope(function(s)
          kids[1] = s:spawn(corio.sleep, 5)
          kids[2] = s:spawn(function() corio.sleep(0.5) corio.sleep(5) end)
          corio.sleep(1)
          s:cancel()
          corio.sleep(1)
          reached = true
        end))
        assert.equal(0, r.n)
        assert.is_false(reached)
        assert.equal(1, corio.now())
        assert.equal("cancelled", kids[1]:status())
        assert.equal("cancelled", kids[2]:status())
      end)
    end)

    it("can be called by a child, which cancels its siblings and the body", function()
      run(function()
        local kids = {}
        corio.scope(function(s)
          kids[1] = s:spawn(corio.sleep, 5)
          kids[2] = s:spawn(function() corio.sleep(2) s:cancel() end)
          corio.sleep(10)
        end)
        assert.equal(2, corio.now())
        assert.equal("cancelled", kids[1]:status())
        assert.equal("done", kids[2]:status())
      end)
    end)

    it("returns the body's results when the body had returned before the cancel", function()
      run(function()
        local r = pack(corio.scope(function(s)
          s:spawn(corio.sleep, 5)
          s:spawn(function() corio.sleep(1) s:cancel() end)
          return "kept"
        end))
        assert.same({ n = 1, "kept" }, r)
        assert.equal(1, corio.now())
      end)
    end)

    it("does not reach outside the scope: the task running it goes on", function()
      run(function()
        corio.scope(function(s) s:cancel() corio.sleep(1) end)
        corio.sleep(2)
        assert.equal(2, corio.now())
      end)
    end)

    it("is reported by s:cancelled()", function()
      run(function()
        corio.scope(function(s)
          assert.is_false(s:cancelled())
          s:cancel()
          assert.is_true(s:cancelled())
        end)
      end)
    end)

    it("also cancels the children of nested scopes", function()
      run(function()
        local inner
        corio.scope(function(s)
          s:spawn(function()
            corio.scope(function(s2) inner = s2:spawn(corio.sleep, 10) end)
          end)
          corio.sleep(1)
          s:cancel()
        end)
        assert.equal("cancelled", inner:status())
        assert.equal(1, corio.now())
      end)
    end)
  end)

  describe("when the task running it is cancelled", function()
    it("cancels every child while the body waits", function()
      run(function()
        local kids = {}
        local t = corio.spawn(function()
          corio.scope(function(s)
            kids[1] = s:spawn(corio.sleep, 5)
            kids[2] = s:spawn(corio.sleep, 7)
            corio.sleep(10)
          end)
        end)
        corio.sleep(1)
        t:cancel()
        local ok, e = t:wait()
        assert.is_false(ok)
        assert.is_true(corio.is_cancelled(e))
        assert.equal(1, corio.now())
        assert.equal("cancelled", kids[1]:status())
        assert.equal("cancelled", kids[2]:status())
      end)
    end)

    it("cancels every child after the body has returned, and the scope raises the cancellation", function()
      run(function()
        local kid
        local after = false
        local t = corio.spawn(function()
          corio.scope(function(s) kid = s:spawn(corio.sleep, 10) end)
          after = true
        end)
        corio.sleep(1)
        t:cancel()
        local ok, e = t:wait()
        assert.is_false(ok)
        assert.is_true(corio.is_cancelled(e))
        assert.equal("cancelled", t:status())
        assert.equal("cancelled", kid:status())
        assert.is_false(after)
        assert.equal(1, corio.now())
      end)
    end)

    it("cancels the grandchildren in a scope opened by a child", function()
      run(function()
        local grandchild
        local t = corio.spawn(function()
          corio.scope(function(s)
            s:spawn(function()
              corio.scope(function(s2) grandchild = s2:spawn(corio.sleep, 10) end)
            end)
            corio.sleep(10)
          end)
        end)
        corio.sleep(1)
        t:cancel()
        t:wait()
        assert.equal("cancelled", grandchild:status())
        assert.equal(1, corio.now())
      end)
    end)

    it("keeps a child's failure when the task is cancelled after the child ended, before the scope resumed", function()
      run(function()
        local t = corio.spawn(function()
          corio.scope(function(s)
            s:spawn(function() corio.sleep(1) error("boom", 0) end)
          end)
        end)
        corio.yield()
        corio.yield() -- the child has armed its timer: it fires first at 1
        corio.spawn(function() corio.sleep(1) t:cancel() end)
        local ok, e = t:wait()
        assert.is_false(ok)
        assert.equal("failed", t:status())
        assert.equal("task", e.kind)
        assert.equal("boom", e.value)
        assert.equal(1, corio.now())
      end)
    end)

    it("waits for the children's cleanup before the task finishes", function()
      run(function()
        local log = H.log()
        local t = corio.spawn(function()
          corio.scope(function(s)
            s:spawn(function()
              corio.sleep(0.5)
              corio.shield(function() corio.sleep(3) log("cleanup") end)
            end)
            corio.sleep(10)
          end)
        end)
        corio.sleep(1)
        t:cancel()
        local ok = t:wait()
        log("finished")
        assert.is_false(ok)
        assert.same({ "cleanup", "finished" }, log.items)
        assert.equal(3.5, corio.now())
      end)
    end)
  end)

  it("raises the cancellation of an enclosing scope on exit even when nothing inside awaited it", function()
    run(function()
      local log = H.log()
      corio.scope(function(outer)
        outer:spawn(function()
          corio.scope(function(s)
            s:spawn(corio.sleep, 10)
          end)
          log("inner scope returned")
        end)
        corio.sleep(1)
        outer:cancel()
      end)
      assert.same({}, log.items)
      assert.equal(1, corio.now())
    end)
  end)

  it("can nest scopes in scopes many levels deep and leaves nothing alive", function()
    run(function()
      local leaves = 0
      local function tree(depth)
        if depth == 0 then
          corio.sleep(depth + 1)
          leaves = leaves + 1
          return
        end
        corio.scope(function(s)
          s:spawn(tree, depth - 1)
          s:spawn(tree, depth - 1)
        end)
      end
      tree(6)
      assert.equal(64, leaves)
      assert.equal(1, corio.now())
      assert.equal(1, corio.stats().alive)
    end)
  end)

  describe("arguments", function()
    it("rejects a non-function body naming 'scope'", function()
      run(function()
        local ok, e = pcall(corio.scope, "nope")
        assert.is_false(ok)
        assert.matches("bad argument #1 to 'scope'", tostring(e), 1, true)
      end)
    end)

    it("raises a clear error outside a task", function()
      local ok, e = pcall(corio.scope, function() end)
      assert.is_false(ok)
      assert.matches("scope", tostring(e), 1, true)
    end)
  end)
end)
