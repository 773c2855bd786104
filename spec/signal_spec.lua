-- corio.signal waits for a signal; corio.shutdown gives the watch that
-- turns true on SIGINT/SIGTERM (checked with real signals sent to child
-- processes running corio).
local corio = require "corio"

local H = require "helper"
local proc = require "fixtures.proc"

local REAL = { clock = "real" }

local function run(fn, opts) return H.run(fn, opts or REAL) end

local function kill(sig, pid)
  local r = corio.exec({ "kill", "-" .. sig, tostring(pid) })
  assert(r.code == 0, r.stderr)
end

-- Runs a fixture in a child interpreter through corio.exec (so the spec
-- can signal it meanwhile); returns the task giving exec's result.
local function start_fixture(name, ...)
  local argv = { "env", "LUA_PATH=" .. package.path, "LUA_CPATH=" .. package.cpath,
    proc.interpreter(), proc.dir .. "/" .. name, ... }
  return corio.spawn(function() return corio.exec(argv, { timeout = 30 }) end)
end

-- Waits (bounded) for the fixture to write its pid.
local function wait_pid(pidfile)
  for _ = 1, 500 do
    local f = io.open(pidfile)
    if f then
      local pid = tonumber(f:read("*l"))
      f:close()
      if pid then
        os.remove(pidfile)
        return pid
      end
    end
    corio.sleep(0.01)
  end
  error("the fixture did not start")
end

describe("corio.signal", function()
  it("returns the signal's name when the process receives it", function()
    run(function()
      local t = corio.spawn(function() return corio.signal("SIGUSR1") end)
      H.settle()
      assert.equal("signal", corio.tasks()[2].waiting_on)
      kill("USR1", corio.getpid())
      assert.equal("SIGUSR1", t:join())
    end)
  end)

  it("wakes every task waiting for the signal with one delivery", function()
    run(function()
      local tasks = {}
      for i = 1, 3 do tasks[i] = corio.spawn(function() return corio.signal("SIGUSR2") end) end
      local other = corio.spawn(function() return corio.signal("SIGHUP", { timeout = 0.3 }) end)
      H.settle()
      kill("USR2", corio.getpid())
      for i = 1, 3 do assert.equal("SIGUSR2", tasks[i]:join()) end
      local v, err = other:join()
      assert.is_nil(v)
      assert.equal("timeout", err.kind)
    end)
  end)

  it("keeps a signal that comes between two waits for the next one, instead of dying of it", function()
    run(function()
      local t = corio.spawn(function() return corio.signal("SIGUSR1") end)
      H.settle()
      kill("USR1", corio.getpid())
      assert.equal("SIGUSR1", t:join())
      -- nobody waits now: SIGUSR1's default action would end the process
      kill("USR1", corio.getpid())
      kill("USR1", corio.getpid())
      corio.sleep(0.05)
      assert.equal("SIGUSR1", corio.signal("SIGUSR1", { timeout = 1 })) -- at once
      local v, err = corio.signal("SIGUSR1", { timeout = 0.05 }) -- both counted as one
      assert.is_nil(v)
      assert.equal("timeout", err.kind)
    end)
  end)

  it("times out with nil and an error of kind timeout, and can be cancelled", function()
    run(function()
      local v, err = corio.signal("SIGUSR1", { timeout = 0.05 })
      assert.is_nil(v)
      assert.equal("timeout", err.kind)
      local t = corio.spawn(function() return corio.signal("SIGUSR1") end)
      H.settle()
      t:cancel()
      local ok, e = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(e))
    end)
  end)

  it("does not count an idle signal watcher as a wake source: a real deadlock is still reported", function()
    local err = H.run_error(function()
      assert.is_nil(corio.signal("SIGUSR1", { timeout = 0.01 }))
      corio.event():wait() -- nothing can set it
    end, REAL)
    assert.equal("deadlock", err.kind)
  end)

  it("raises on an unknown signal name and outside a task", function()
    run(function()
      local ok, err = pcall(function() return corio.signal("SIGNOPE") end)
      assert.is_false(ok)
      assert.matches("unknown signal name 'SIGNOPE'", err)
      ok, err = pcall(function() return corio.signal(15) end)
      assert.is_false(ok)
      assert.matches("unknown signal name '15'", err)
    end)
    assert.has_error(function() corio.signal("SIGHUP") end)
  end)
end)

describe("corio.shutdown", function()
  it("gives one watch per run, false until a signal comes", function()
    run(function()
      local sd = corio.shutdown()
      assert.equal(sd, corio.shutdown())
      assert.is_false(sd:get())
      assert.equal(1, corio.stats().handles > 0 and 1 or 0)
    end)
    -- the run is over: its watcher is closed (H.run checks the handles)
    run(function() assert.is_false(corio.shutdown():get()) end)
  end)

  for _, sig in ipairs({ "TERM", "INT" }) do
    it("turns true on SIG" .. sig .. " sent to a process waiting on it, which then exits 0", function()
      local pidfile = os.tmpname()
      run(function()
        local t = start_fixture("shutdown_wait.lua", pidfile, "once")
        kill(sig, wait_pid(pidfile))
        local r = t:join()
        assert.equal(0, r.code, r.stderr)
        assert.equal("shutdown true true\nexit\n", r.stdout)
      end)
    end)
  end

  it("lets a second SIGTERM kill the process with the default action", function()
    local pidfile = os.tmpname()
    run(function()
      local t = start_fixture("shutdown_wait.lua", pidfile, "double")
      local pid = wait_pid(pidfile)
      kill("TERM", pid)
      assert.equal(pid, wait_pid(pidfile)) -- the first one was seen
      kill("TERM", pid)
      local r = t:join()
      assert.equal("SIGTERM", r.signal, r.stderr)
      assert.equal("shutdown true true\n", r.stdout)
    end)
  end)

  it("gives the default SIGTERM action back when its run returns", function()
    local pidfile = os.tmpname()
    run(function()
      local t = start_fixture("shutdown_wait.lua", pidfile, "after")
      kill("TERM", wait_pid(pidfile))
      local r = t:join()
      assert.equal("SIGTERM", r.signal, r.stderr)
      assert.equal("default action restored?\n", r.stdout)
    end)
  end)
end)
