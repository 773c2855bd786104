-- Robustness of the core (runtime, tasks, scopes, combinators) against
-- hostile but plausible use, from an adversarial review. Each `it` states
-- the behaviour users rely on; scenarios that could crash the process run
-- in a child interpreter (spec/fixtures/robustness_core.lua).
local corio = require "corio"
local H = require "helper"
local proc = require "fixtures.proc"

-- A task that has been cancelled and has finished.
local function cancelled_task()
  local t = corio.spawn(corio.sleep, 10)
  corio.yield()
  t:cancel()
  t:wait()
  return t
end

describe("re-entering run", function()
  it("from on_error while run reports a failure after main returned neither crashes nor loses main's results",
    function()
      local r = proc.run("robustness_core.lua", "rerun_in_on_error")
      assert.equal(0, r.code, r.stderr)
      assert.truthy(r.stdout:find("outer run: true outer", 1, true), r.stdout .. r.stderr)
      assert.truthy(r.stdout:find("fixture done", 1, true), r.stdout .. r.stderr)
    end)
end)

describe("a task error value", function()
  it("that is a number is kept as that number in err.value, not turned into a string", function()
    local e = H.run(function()
      -- level 0: on 5.1 error(42) would itself prepend a position
      local _, err = corio.spawn(function() error(42, 0) end):wait()
      return err
    end)
    assert.equal("number", type(e.value))
    assert.equal(42, e.value)
    if math.type then assert.equal("integer", math.type(e.value)) end
  end)

  it("that is a table whose __tostring raises is still reported as a task error", function()
    local bad = setmetatable({}, { __tostring = function() error("tostring broke") end })
    local e = H.run(function()
      local _, err = corio.spawn(function() error(bad) end):wait()
      return err
    end)
    assert.is_true(corio.is_error(e, "task"))
    assert.equal(bad, e.value)
    assert.is_string(tostring(e))
  end)

  it("that is nil, a function or a userdata is still a readable task error", function()
    H.run(function()
      for _, v in ipairs({ print, io.stdout }) do
        local _, err = corio.spawn(function() error(v) end):wait()
        assert.is_true(corio.is_error(err, "task"))
        assert.equal(v, err.value)
      end
      local _, err = corio.spawn(function() error(nil) end):wait()
      assert.is_true(corio.is_error(err, "task"))
    end)
  end)
end)

describe("the default report of a failure nobody joined", function()
  it("names the error's message, also when the error is not a string", function()
    local r = proc.run("robustness_core.lua", "report_nonstring")
    assert.equal(0, r.code, r.stderr)
    local lines = {}
    for line in r.stderr:gmatch("[^\n]+") do
      local name = line:match("in task '([^']+)'")
      if name then lines[name] = line end
    end
    assert.truthy(lines.timeouter, r.stderr)
    assert.truthy(lines.timeouter:find("timed out", 1, true), r.stderr)
    assert.truthy(lines.tabler, r.stderr)
    assert.truthy(lines.tabler:find("table value", 1, true) or lines.tabler:find("custom table error", 1, true),
      r.stderr)
    if H.lua54 then
      assert.truthy(lines.closer, r.stderr)
      assert.truthy(lines.closer:find("replaced by close handler", 1, true), r.stderr)
    end
  end)

  it("is still printed when on_error raises a table whose __tostring raises", function()
    local r = proc.run("robustness_core.lua", "bad_handler_table")
    assert.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("run returned: ok", 1, true), r.stdout .. r.stderr)
    assert.truthy(r.stderr:find("boom from failer", 1, true), r.stderr)
  end)
end)

describe("a scope", function()
  it("does not return while a task spawned into it is running, even one spawned after its last child finished",
    function()
      local log = H.log()
      H.run(function()
        local s_ref
        local outsider = corio.spawn(function()
          while not s_ref do corio.yield() end
          corio.yield()
          corio.yield()
          corio.sleep(1) -- wakes right after the scope's only child finished
          local ok = pcall(s_ref.spawn, s_ref, function()
            corio.sleep(5)
            log("late child done")
          end)
          log(ok and "late spawn accepted" or "late spawn refused")
        end)
        corio.scope(function(s)
          s:spawn(function() corio.sleep(1) end)
          s_ref = s
        end)
        log("scope returned")
        outsider:join()
        corio.sleep(10)
      end)
      -- either the scope refuses the spawn (it is closing), or it waits
      if log.items[1] == "late spawn accepted" then
        assert.same({ "late spawn accepted", "late child done", "scope returned" }, log.items)
      else
        assert.same({ "late spawn refused", "scope returned" }, log.items)
      end
    end)

  it("whose body raised a plain string does not lose a later child failure", function()
    if not H.need_pcall_yield(pending) then return end
    local reported = {}
    local e = H.run(function()
      local ok, err = pcall(corio.scope, function(s)
        s:spawn(function()
          pcall(corio.sleep, 1)
          error("child failure after the body")
        end)
        error("body failure")
      end)
      assert.is_false(ok)
      return err
    end, { on_error = function(err) reported[#reported + 1] = tostring(err) end })
    local found = false
    if type(e) == "table" and type(e.others) == "table" then
      for _, o in ipairs(e.others) do
        if tostring(o):find("child failure after the body", 1, true) then found = true end
      end
    end
    for _, msg in ipairs(reported) do
      if msg:find("child failure after the body", 1, true) then found = true end
    end
    assert.is_true(found, "the child's failure was neither in err.others nor reported")
  end)

  it("fails when a child raises the cancellation error of another task it joined", function()
    local ok = H.run(function()
      local t = cancelled_task()
      return (H.catch(corio.scope, function(s)
        s:spawn(function() t:join() end)
        return "scope returned normally"
      end))
    end)
    assert.is_false(ok)
  end)
end)

describe("combinators whose functions raise a cancellation error that is not theirs", function()
  it("try_join raises it instead of returning nil for that function", function()
    local ok = H.run(function()
      local t = cancelled_task()
      return (H.catch(corio.try_join,
        function() return t:join() end,
        function() corio.sleep(1) return "b" end))
    end)
    assert.is_false(ok)
  end)

  it("select raises it, not an internal error, when no function finished normally", function()
    local ok, err = H.run(function()
      local t = cancelled_task()
      return H.catch(corio.select, function() return t:join() end)
    end)
    assert.is_false(ok)
    assert.is_true(corio.is_error(err), tostring(err))
    assert.falsy(tostring(err):find("attempt to index", 1, true))
  end)
end)

describe("an error escaping the scheduler (a __gc error on Lua 5.1/5.3)", function()
  it("does not leave run returned with tasks still alive", function()
    local r = proc.run("robustness_core.lua", "gc_error")
    assert.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("alive=0", 1, true), r.stdout .. r.stderr)
  end)
end)

describe("a joiner whose stack is nearly full", function()
  it("does not make run return with tasks alive, nor crash the process when the runtime is collected", function()
    if _VERSION == "Lua 5.1" then return end -- unpack cannot fill a 5.1 stack
    local r = proc.run("robustness_core.lua", "stack_full_join")
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find("alive=0", 1, true), r.stdout .. r.stderr)
    assert.truthy(r.stdout:find("fixture done", 1, true), r.stdout .. r.stderr)
  end)
end)

describe("the virtual clock", function()
  it("finishes a finite sleep of 1e10 seconds instead of treating it as forever", function()
    local now = H.run(function()
      corio.sleep(1e10)
      return corio.now()
    end)
    assert.is_true(now >= 1e10)
  end)

  it("finishes two sleeps of 8e9 seconds in a row (within its 584-year range)", function()
    local now = H.run(function()
      for _ = 1, 2 do corio.sleep(8e9) end
      return corio.now()
    end)
    assert.is_true(now >= 1.6e10)
  end)

  it("treats a deadline past its 64-bit nanosecond range (about 584 years) as never, as documented", function()
    local err = H.run_error(function()
      for _ = 1, 3 do corio.sleep(8e9) end
    end)
    assert.equal("deadlock", err.kind)
  end)
end)

describe("robustness that holds", function()
  it("deeply nested timeouts, shields and scopes fail with a clear error, not a crash", function()
    H.run(function()
      local function nest(n)
        if n == 0 then corio.sleep(1) return "bottom" end
        if n % 3 == 0 then return corio.shield(nest, n - 1) end
        if n % 3 == 1 then return corio.scope(function() return nest(n - 1) end) end
        return corio.timeout(5, nest, n - 1)
      end
      -- too deep for the C stack on PUC Lua: a clear error; LuaJIT copes
      local ok, e = H.catch(nest, 3000)
      if ok then
        assert.equal("bottom", e)
      else
        assert.truthy(tostring(e):find("overflow", 1, true), tostring(e))
      end
      assert.equal("bottom", nest(60))
      assert.equal(0, corio.stats().timers)
    end)
  end)

  it("a chain of thousands of nested scopes across tasks is cancelled promptly", function()
    H.run(function()
      local function level(n)
        if n == 0 then corio.sleep(100) return end
        corio.scope(function(s) s:spawn(level, n - 1) end)
      end
      local t = corio.spawn(level, 2000)
      corio.sleep(1)
      t:cancel()
      local ok, e = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(e))
    end)
  end)

  it("many arguments and results pass through spawn, join, timeout and select", function()
    local N = _VERSION == "Lua 5.1" and 7000 or 100000 -- 5.1/LuaJIT: unpack limit
    local big = {}
    for i = 1, N do big[i] = i end
    H.run(function()
      local t = corio.spawn(function(...) corio.sleep(1) return select("#", ...) end, H.unpack(big))
      assert.equal(N, t:join())
      local u = corio.spawn(function() corio.sleep(1) return H.unpack(big) end)
      assert.equal(N, select("#", u:join()))
      assert.equal(N, select("#", corio.timeout(5, function() corio.sleep(1) return H.unpack(big) end)))
      assert.equal(N + 1, select("#", corio.select(function() corio.sleep(1) return H.unpack(big) end)))
    end)
  end)

  it("on_error that yields, waits, or raises does not disturb run", function()
    for _, handler in ipairs({
      function() coroutine.yield() end,
      function() corio.sleep(1) end,
      function() error(setmetatable({}, { __tostring = function() error("x") end })) end,
      function() corio.run(function() return 1 end) end,
    }) do
      local r = H.run(function()
        corio.spawn(function() error("unjoined") end)
        corio.sleep(1)
        collectgarbage()
        corio.sleep(1)
        return "main ok"
      end, { on_error = handler })
      assert.equal("main ok", r)
    end
  end)

  it("a task's coroutine closed or resumed from another task makes that task fail cleanly", function()
    if _VERSION == "Lua 5.1" then
      pending("5.1 and LuaJIT have no continuation to tell who resumed the task")
      return
    end
    H.run(function()
      local co
      local victim = corio.spawn(function()
        co = coroutine.running()
        corio.sleep(5)
      end)
      corio.yield()
      assert.is_false((coroutine.resume(co)))
      local ok, e = victim:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_error(e, "task"))
      if coroutine.close then
        local co2
        local target = corio.spawn(function() corio.sleep(2) return "t" end)
        local joiner = corio.spawn(function() co2 = coroutine.running() return target:join() end)
        corio.yield()
        assert.is_true(coroutine.close(co2))
        assert.is_false((joiner:wait()))
        assert.equal("t", select(2, target:wait()))
      end
    end)
  end)

  it("waits from a __gc, a string.gsub callback or a table.sort comparator are clear errors", function()
    H.run(function()
      local t = corio.spawn(function() return "x" end)
      local ok, e = pcall(string.gsub, "abc", "%w", function() return t:join() end)
      assert.is_false(ok)
      assert.truthy(tostring(e):find("join", 1, true))
      ok, e = pcall(table.sort, { 3, 1, 2 }, function(a, b) corio.yield() return a < b end)
      assert.is_false(ok)
      assert.truthy(tostring(e):find("yield", 1, true))
      if _VERSION == "Lua 5.1" then return end -- no __gc on tables
      local victims = {}
      for i = 1, 20 do victims[i] = corio.spawn(corio.sleep, 100) end
      for i = 1, 500 do
        setmetatable({}, { __gc = function()
          pcall(corio.sleep, 0)
          pcall(corio.spawn, function() end)
          victims[i % 20 + 1]:cancel()
        end })
      end
      collectgarbage()
      collectgarbage()
      for i = 1, 20 do
        local vok, ve = victims[i]:wait()
        assert.is_false(vok)
        assert.is_true(corio.is_cancelled(ve))
      end
    end)
  end)

  it("extreme durations are accepted: sleep(math.huge) waits until cancelled, timeout(1e-300) expires", function()
    H.run(function()
      local t = corio.spawn(corio.sleep, math.huge)
      corio.sleep(1)
      t:cancel()
      assert.is_true(corio.is_cancelled(select(2, t:wait())))
      local ok, e = H.catch(corio.timeout, 1e-300, corio.sleep, 1)
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(e))
      assert.equal(5, corio.timeout(math.huge, function() corio.sleep(3) return 5 end))
      assert.equal(5, corio.timeout(0, function() return 5 end))
    end)
  end)

  it("objects of a finished runtime are safe to use from another runtime", function()
    local saved_scope, saved_task
    H.run(function()
      saved_task = corio.spawn(function() return "fromA" end)
      corio.scope(function(s) saved_scope = s end)
      corio.sleep(1)
    end)
    H.run(function()
      assert.equal("fromA", saved_task:join())
      local ok, e = pcall(saved_scope.spawn, saved_scope, function() end)
      assert.is_false(ok)
      assert.truthy(tostring(e):find("closed", 1, true))
      saved_scope:cancel()
      saved_task:cancel()
      assert.equal("done", saved_task:status())
    end)
  end)
end)
