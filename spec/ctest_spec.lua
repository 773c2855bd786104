-- corio.test, the busted helper: runs a spec body in a fresh runtime on
-- the virtual clock and fails it on a leaked task, an unobserved failure,
-- a deadline (runtime clock) or a CPU limit, with a task dump.
--
-- Most specs call the function corio.test returns directly, inside pcall,
-- to look at how it fails; a few use it for real as busted's `it` body.
local corio = require "corio"
local ctest = require "corio.test"
local proc = require "fixtures.proc"

-- Runs ctest(body, opts) and returns the message it failed with.
local function failure(body, opts)
  local ok, e = pcall(ctest(body, opts))
  assert(not ok, "corio.test did not fail")
  return e
end

local function has(s, part)
  assert.is_string(s)
  assert.truthy(s:find(part, 1, true), ("%q not found in:\n%s"):format(part, s))
end

describe("corio.test", function()
  it("runs the body in a runtime on the virtual clock", ctest(function()
    local t0 = corio.now()
    corio.sleep(50)
    assert.equal(50, corio.now() - t0)
    assert.equal(0, t0)
  end))

  it("lets the body spawn, join and time out as in any runtime", ctest(function()
    local t = corio.spawn(function() corio.sleep(2); return "joined" end)
    assert.equal("joined", t:join())
    local ok, e = corio.pcall(corio.timeout, 1, corio.sleep, 5)
    assert.is_false(ok)
    assert.is_true(corio.is_timeout(e))
  end, { timeout = 10 }))

  it("returns a function that passes its arguments to the body and returns its results", function()
    local f = ctest(function(a, b) corio.sleep(1); return a + b, "x" end)
    assert.is_function(f)
    local r1, r2 = f(2, 3)
    assert.equal(5, r1)
    assert.equal("x", r2)
  end)

  it("gives each call a fresh runtime", function()
    local ids = {}
    local f = ctest(function()
      corio.sleep(1)
      ids[#ids + 1] = corio.now()
      corio.context().seen = (corio.context().seen or 0) + 1
      return corio.context().seen
    end)
    assert.equal(1, f())
    assert.equal(1, f())
    assert.same({ 1, 1 }, ids) -- each starts at time 0
  end)

  it("uses the real clock with clock = 'real'", function()
    local f = ctest(function()
      local t0 = corio.now()
      corio.sleep(0.02)
      return t0, corio.now() - t0
    end, { clock = "real" })
    local t0, dt = f()
    assert.is_true(t0 > 0) -- the virtual clock starts at 0
    assert.is_true(dt >= 0.015)
  end)

  it("passes other options to corio.runtime", function()
    local f = ctest(function()
      local a = corio.spawn(corio.sleep, 1)
      local b = corio.spawn(function() end) -- max_tasks = 2: waits for a
      local at = corio.now()
      b:join()
      a:join()
      return at
    end, { max_tasks = 2 })
    assert.equal(1, f())
  end)

  it("re-raises the body's error as is", function()
    local err = { code = 3 }
    local ok, e = pcall(ctest(function() corio.sleep(1); error(err) end))
    assert.is_false(ok)
    assert.equal(err, e)
    ok, e = pcall(ctest(function() error("plain", 0) end))
    assert.is_false(ok)
    assert.equal("plain", e)
  end)

  it("re-raises the original error of a failed assertion in a joined task", function()
    local ok, e = pcall(ctest(function()
      corio.spawn(function() assert.equal(1, 2) end):join()
    end))
    assert.is_false(ok)
    assert.is_false(corio.is_error(e))
    has(tostring(e.message or e), "Expected objects to be equal")
  end)

  it("fails when a task is still alive after the body returns, with a dump", function()
    local e = failure(function()
      corio.spawn({ name = "forgotten" }, function() corio.event():wait() end)
      corio.sleep(1)
    end)
    has(e, "still alive")
    has(e, "forgotten waiting on event")
  end)

  it("fails when a task failed and nobody observed it", function()
    local e = failure(function()
      corio.spawn({ name = "lost" }, function() error("lost it", 0) end)
      corio.sleep(1)
    end)
    has(e, "nobody observed")
    has(e, "lost it")
  end)

  it("still calls a user on_error for an unobserved failure", function()
    local reported = {}
    local e = failure(function()
      corio.spawn(function() error("x1", 0) end)
      corio.sleep(1)
    end, { on_error = function(err) reported[#reported + 1] = err end })
    has(e, "nobody observed")
    assert.equal(1, #reported)
  end)

  it("does not complain about a failure the body observed", ctest(function()
    local t = corio.spawn(function() error("seen", 0) end)
    local ok, e = t:wait()
    assert.is_false(ok)
    assert.truthy(tostring(e):find("seen", 1, true))
  end))

  it("fails past opts.timeout seconds of the runtime's clock, with a dump", function()
    local e = failure(function()
      local ev = corio.event()
      corio.spawn({ name = "stuck" }, function() ev:wait() end)
      -- a timer far off keeps this from being a deadlock
      ev:wait({ timeout = 100 })
    end, { timeout = 5 })
    has(e, "past its deadline of 5 s")
    has(e, "stuck waiting on event (age 5")
  end)

  it("has a deadline of 60 s by default", function()
    local e = failure(function() corio.sleep(1e6) end)
    has(e, "past its deadline of 60 s")
  end)

  it("shows in the dump what the body itself was waiting on at the deadline", function()
    local e = failure(function()
      corio.event():wait({ timeout = 100 })
    end, { timeout = 2 })
    has(e, "past its deadline of 2 s")
    has(e, "main waiting on event")
  end)

  it("reports the body's own timeout as that timeout, not as its deadline", function()
    local ok, e = pcall(ctest(function()
      corio.timeout(1, corio.sleep, 5) -- not caught by the body
    end))
    assert.is_false(ok)
    assert.is_true(corio.is_timeout(e), tostring(e))
  end)

  it("fails a task that never waits after opts.wall seconds of CPU, with a dump", function()
    local e = failure(function()
      corio.spawn({ name = "spin" }, function()
        -- bounded, so that a watchdog that never fires fails the spec
        -- rather than hanging it
        local t0 = os.clock()
        while os.clock() - t0 < 2 do end
      end):join()
    end, { wall = 0.2 })
    has(e, "more than 0.2 s of CPU time")
    has(e, "spin running")
  end)

  -- LuaJIT runs no count hook inside a compiled loop
  it("stops a tight loop that never calls anything, on every Lua version", function()
    local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
    for _, where in ipairs({ "main", "task" }) do
      local cmd = ("LUA_PATH=%s LUA_CPATH=%s timeout -k 1 3 %s %s %s 2>&1; echo \"exit=$?\"")
        :format(q(package.path), q(package.cpath), q(proc.interpreter()),
          q(proc.dir .. "/ctest_spin.lua"), where)
      local p = assert(io.popen(cmd, "r"))
      local out = p:read("*a")
      p:close()
      has(out, "false\n")
      has(out, "more than 0.3 s of CPU time")
      has(out, "exit=0")
    end
  end)

  it("fails tasks that keep yielding so that virtual time cannot advance", function()
    local e = failure(function()
      local t0 = os.clock()
      while os.clock() - t0 < 2 do corio.yield() end
    end, { wall = 0.2 })
    has(e, "more than 0.2 s of CPU time")
  end)

  it("restores corio.spawn and Scope:spawn after a run, even a failed one", function()
    local spawn = corio.spawn
    local scope_spawn = debug.getregistry()["corio.Scope"].__index.spawn
    pcall(ctest(function() error("x") end))
    ctest(function() end)()
    assert.equal(spawn, corio.spawn)
    assert.equal(scope_spawn, debug.getregistry()["corio.Scope"].__index.spawn)
  end)

  it("records the spec's line, not its own, as where a task was spawned", function()
    local line = debug.getinfo(1, "l").currentline + 3
    local site = ctest(function()
      local info
      local t = corio.spawn({ name = "mine" }, corio.sleep, 1)
      for _, i in ipairs(corio.tasks()) do
        if i.name == "mine" then info = i end
      end
      t:join()
      return info.spawned_at
    end, { debug = true })()
    assert.equal("spec/ctest_spec.lua:" .. line, site)
  end)

  it("rejects a body that is not a function", function()
    local ok, e = pcall(ctest, "body")
    assert.is_false(ok)
    has(e, "bad argument #1 to 'corio.test' (function expected, got string)")
  end)
end)

describe("corio.test (review regressions)", function()
  it("reports a body that can never wake up as a deadlock, with what it waits on", function()
    local e = failure(function() corio.event():wait() end)
    has(e, "corio.test: deadlock")
    has(e, "main waiting on event")
  end)

  it("puts back the caller's debug hook (a coverage tool's) when it is done", function()
    local function hook() end
    debug.sethook(hook, "", 1000000)
    ctest(function() corio.sleep(1) end)()
    local h, _, count = debug.gethook()
    debug.sethook()
    assert.equal(hook, h)
    assert.equal(1000000, count)
  end)
end)
