-- The host-loop mode without luv: rt:start, rt:step, rt:result,
-- rt:started, rt:backend_fd, rt:backend_timeout driven by hand-written
-- host loops (the luv-driven ones are in luv_spec.lua and neovim_spec.lua).
local corio = require "corio"
local H = require "helper"
local proc = require "fixtures.proc"

-- The host's own wait: a separate runtime sleeping ms milliseconds (the
-- hosted runtime is idle between steps, so another one may run).
local function host_sleep(ms)
  corio.runtime():run(function() corio.sleep(ms / 1000) end)
end

-- Steps rt to the end like a host loop would, waiting what
-- backend_timeout says (at most cap ms when it says -1: only I/O can
-- bring work, and this host cannot poll the fd). Returns the number of
-- steps that returned true.
local function drive(rt, cap, max_steps)
  local n = 0
  while rt:step() do
    n = n + 1
    assert(n < (max_steps or 10000), "host loop did not finish")
    local ms = rt:backend_timeout()
    assert(math.type == nil or math.type(ms) == "integer")
    assert(ms >= -1)
    if ms > 0 then host_sleep(math.min(ms, 1000))
    elseif ms < 0 then host_sleep(cap or 1) end
  end
  return n
end

-- Asserts what H.run asserts after a run: nothing left alive or open.
local function assert_clean(rt)
  H.finish(rt, { true, n = 1 })
end

describe("host loop", function()
  it("start returns before main runs; main runs at the first step", function()
    local rt = corio.runtime()
    local ran = false
    assert.is_nil(rt:start(function() ran = true end))
    assert.is_false(ran)
    assert.is_true(rt:started())
    assert.equal(0, rt:backend_timeout()) -- main is ready
    assert.is_false(rt:step()) -- ran to its end in one step
    assert.is_true(ran)
    assert.is_false(rt:started())
    assert.is_true(rt:result())
    assert_clean(rt)
    rt:close()
  end)

  it("passes main's arguments and results through, holes included", function()
    local rt = corio.runtime()
    rt:start(function(a, b, c)
      corio.sleep(0.01)
      return a, nil, b + c, nil
    end, "x", 2, 3)
    drive(rt)
    local r = H.pack(rt:result())
    assert.equal(5, r.n)
    assert.same({ true, "x", nil, 5, nil }, { r[1], r[2], r[3], r[4], r[5] })
    -- result can be read again, like t:wait()
    assert.equal(5, select("#", rt:result()))
    rt:close()
  end)

  it("gives false, err when main fails, as t:wait() does", function()
    local rt = corio.runtime()
    rt:start(function() corio.sleep(0.001) error("boom", 0) end)
    drive(rt)
    local ok, err = rt:result()
    assert.is_false(ok)
    assert.is_true(corio.is_error(err, "task"))
    assert.equal("boom", err.value)
    assert.equal("main", err.task)
    rt:close()
  end)

  it("step returns true while main is pending and false exactly once done", function()
    local rt = corio.runtime({ clock = "virtual" })
    local main_done = false
    rt:start(function()
      for _ = 1, 3 do corio.sleep(1) end
      main_done = true
    end)
    local trues = 0
    while rt:step() do
      assert.is_false(main_done)
      trues = trues + 1
      assert(trues < 100)
    end
    assert.is_true(main_done)
    assert.is_true(trues >= 3)
    -- after the end step keeps saying false and runs nothing
    assert.is_false(rt:step())
    assert.is_false(rt:step())
    assert.equal(-1, rt:backend_timeout())
    rt:close()
  end)

  it("raises naming the method when called in the wrong state", function()
    local rt = corio.runtime()
    assert.error_matches(function() rt:step() end, "step: the runtime was not started")
    assert.error_matches(function() rt:result() end, "result: the runtime was not started")
    assert.equal(-1, rt:backend_timeout())
    assert.is_false(rt:started())
    rt:start(function() corio.sleep(0.01) end)
    assert.error_matches(function() rt:result() end, "result: main has not finished")
    assert.error_matches(function() rt:start(function() end) end,
      "start: the runtime is already started")
    assert.error_matches(function() rt:run(function() end) end,
      "run: the runtime was started by rt:start")
    assert.error_matches(function() rt:start() end,
      "bad argument #1 to 'start' %(function expected")
    assert.error_matches(function() rt.step(42) end,
      "bad argument #1 to 'step' %(corio.Runtime expected")
    drive(rt)
    assert.is_true(rt:result())
    rt:close()
    assert.error_matches(function() rt:start(function() end) end,
      "start: runtime is closed")
    assert.error_matches(function() rt:backend_fd() end,
      "backend_fd: runtime is closed")
  end)

  it("refuses step, start and close from inside a running task", function()
    local rt = corio.runtime()
    local other = corio.runtime()
    other:start(function() corio.sleep(1) end)
    rt:start(function()
      local e1 = select(2, pcall(rt.step, rt))
      local e2 = select(2, pcall(rt.close, rt))
      local e3 = select(2, pcall(other.step, other))
      local e4 = select(2, pcall(corio.runtime().start, corio.runtime(), function() end))
      return e1, e2, e3, e4
    end)
    drive(rt)
    local ok, e1, e2, e3, e4 = rt:result()
    assert.is_true(ok)
    assert.matches("step: called from inside a running corio runtime", e1)
    assert.matches("close: called from inside a running corio runtime", e2)
    assert.matches("step: called from inside a running corio runtime", e3)
    assert.matches("start: a corio runtime is running", e4)
    other:close()
    rt:close()
  end)

  it("refuses step from an on_error handler that runs inside a step", function()
    local rt
    local seen
    rt = corio.runtime({ on_error = function()
      seen = select(2, pcall(rt.step, rt))
    end })
    rt:start(function() corio.spawn(function() error("unjoined", 0) end) end)
    drive(rt)
    assert.matches("step: called from inside a running corio runtime", seen)
    rt:close()
  end)

  it("real-clock timers fire when backend_timeout says, never early", function()
    local rt = corio.runtime()
    local t0
    rt:start(function()
      t0 = corio.now()
      corio.sleep(0.03)
      return corio.now() - t0
    end)
    assert.is_true(rt:step()) -- main now sleeps
    local ms = rt:backend_timeout()
    assert.is_true(ms >= 25 and ms <= 31, "backend_timeout " .. ms)
    assert.is_true(rt:step()) -- called early: nothing to do yet
    assert.is_true(rt:backend_timeout() <= ms)
    drive(rt)
    local ok, slept = rt:result()
    assert.is_true(ok)
    assert.is_true(slept >= 0.03 and slept < 1, "slept " .. slept)
    rt:close()
  end)

  it("jumps the virtual clock from step as run does", function()
    local rt = corio.runtime({ clock = "virtual" })
    rt:start(function()
      local s = corio.scope(function(sc)
        for i = 1, 10 do sc:spawn(function() corio.sleep(3600 * i) end) end
      end)
      return corio.now(), s
    end)
    local steps = drive(rt)
    local ok, now = rt:result()
    assert.is_true(ok)
    assert.equal(36000, now)
    assert.is_true(steps <= 30, "steps " .. steps)
    rt:close()
  end)

  it("a step runs at most one batch of tasks, so the host is not starved", function()
    local rt = corio.runtime()
    local spins = 0
    rt:start(function()
      corio.scope(function(s)
        for _ = 1, 3 do
          s:spawn(function()
            for _ = 1, 100 do spins = spins + 1; corio.yield() end
          end)
        end
      end)
    end)
    local steps, last = 0, -1
    while rt:step() do
      steps = steps + 1
      if last > 0 and spins < 300 then -- (5.1: a scope body is a task)
        assert.is_true(spins > last) -- every step made progress
        assert.equal(0, rt:backend_timeout()) -- always more ready
      end
      last = spins
      assert(steps < 1000)
    end
    assert.is_true(steps >= 100, "steps " .. steps)
    assert.equal(300, spins)
    assert.is_true(rt:result())
    rt:close()
  end)

  it("ends with false, err 'deadlock' when nothing can ever wake main", function()
    local rt = corio.runtime()
    rt:start(function()
      corio.semaphore(0):acquire()
    end)
    assert.is_true(drive(rt) <= 2) -- found, then main's cancellation runs
    local ok, err = rt:result()
    assert.is_false(ok)
    assert.is_true(corio.is_error(err, "deadlock"))
    assert.matches("main waiting on semaphore", err.message)
    assert_clean(rt)
    rt:close()
  end)

  it("cancels tasks left running when main returns, as run does", function()
    local rt = corio.runtime()
    local bg
    rt:start(function()
      bg = corio.spawn(function() corio.sleep(3600) end)
      corio.sleep(0.001)
      return "main done"
    end)
    drive(rt)
    assert.same({ true, "main done" }, { rt:result() })
    assert.equal("cancelled", bg:status())
    assert_clean(rt)
    rt:close()
  end)

  it("reports unobserved failures through on_error during a step", function()
    local reported = {}
    local rt = corio.runtime({ on_error = function(e) reported[#reported + 1] = e end })
    rt:start(function()
      corio.spawn(function() error("lost", 0) end)
      corio.sleep(0.001)
    end)
    drive(rt)
    assert.is_true(rt:result())
    assert.equal(1, #reported)
    assert.equal("lost", reported[1].value)
    rt:close()
  end)

  it("host code may cancel a task between steps; the next step delivers it", function()
    local rt = corio.runtime()
    local t
    rt:start(function()
      t = corio.spawn(function() corio.sleep(3600) end)
      return t:wait()
    end)
    assert.is_true(rt:step())
    assert.is_true(rt:step())
    assert.is_true(rt:backend_timeout() > 1000) -- both parked for long
    t:cancel()
    assert.equal(0, rt:backend_timeout())
    drive(rt)
    local ok, tok, err = rt:result()
    assert.is_true(ok)
    assert.is_false(tok)
    assert.is_true(corio.is_error(err, "cancelled"))
    rt:close()
  end)

  it("close of a started runtime cancels every task, runs their cleanup and frees it all", function()
    local rt = corio.runtime()
    local cleanup = 0
    local srv
    rt:start(function()
      srv = assert(corio.tcp.listen("127.0.0.1", 0))
      corio.scope(function(s)
        for _ = 1, 5 do
          s:spawn(function()
            if not H.can_pcall_yield then return corio.sleep(3600) end
            local ok = pcall(corio.sleep, 3600)
            if not ok then cleanup = cleanup + 1 end
          end)
        end
        s:spawn(function()
          local c = assert(srv:accept({ timeout = 3600 }))
          corio.sleep(3600) -- holding the connection open
          c:close()
        end)
        s:spawn(function()
          local c = assert(corio.tcp.connect("127.0.0.1", srv:port()))
          c:read("l", { timeout = 3600 }) -- the peer never writes
        end)
      end)
    end)
    for _ = 1, 20 do rt:step() host_sleep(1) end
    assert.is_true(rt:started())
    rt:close()
    assert.is_false(rt:started())
    assert.is_false(rt:step())
    local ok, err = rt:result()
    assert.is_false(ok)
    assert.is_true(corio.is_error(err, "cancelled"))
    if H.can_pcall_yield then assert.equal(5, cleanup) end
    assert_clean(rt)
    assert.error_matches(function() rt:backend_fd() end, "runtime is closed")
    srv:close()
  end)

  it("close before the first step cancels main at its first wait", function()
    local rt = corio.runtime()
    local ran, reached = false, false
    rt:start(function()
      ran = true -- a cancelled task runs to its first checkpoint, as in run
      corio.sleep(1)
      reached = true
    end)
    rt:close()
    assert.is_true(ran)
    assert.is_false(reached)
    local ok, err = rt:result()
    assert.is_false(ok)
    assert.is_true(corio.is_error(err, "cancelled"))
    assert_clean(rt)
  end)

  it("can be stepped from inside a plain coroutine of the host", function()
    local rt = corio.runtime({ clock = "virtual" })
    rt:start(function()
      local a = corio.spawn(function() corio.sleep(2) return 2 end)
      corio.sleep(1)
      return a:join() + 1
    end)
    local host = coroutine.wrap(function()
      while rt:step() do coroutine.yield("more") end
      return "over"
    end)
    local n = 0
    repeat n = n + 1 until host() == "over" or n > 100
    assert.same({ true, 3 }, { rt:result() })
    rt:close()
  end)

  it("runs a loopback TCP echo to the end", function()
    local rt = corio.runtime()
    rt:start(function()
      local srv = assert(corio.tcp.listen("127.0.0.1", 0))
      local got = corio.scope(function(s)
        s:spawn(function()
          local c = assert(srv:accept({ timeout = 10 }))
          local line = c:read("L", { timeout = 10 })
          assert(c:write(line))
          c:close()
        end)
        local c = assert(corio.tcp.connect("127.0.0.1", srv:port(), { timeout = 10 }))
        assert(c:write("hello host\n"))
        local line = c:read("l", { timeout = 10 })
        c:close()
        return line
      end)
      srv:close()
      return got
    end)
    drive(rt, 1, 5000)
    assert.same({ true, "hello host" }, { rt:result() })
    assert_clean(rt)
    rt:close()
  end)

  it("backend_fd is a file descriptor number that stays the same", function()
    local rt = corio.runtime()
    local fd = rt:backend_fd()
    assert.is_true(fd >= 0)
    rt:start(function() corio.sleep(0.001) end)
    drive(rt)
    assert.equal(fd, rt:backend_fd())
    rt:close()
  end)

  it("a runtime can run, be started again, and run again after a hosted run", function()
    local rt = corio.runtime({ clock = "virtual" })
    assert.equal(1, rt:run(function() return 1 end))
    rt:start(function() corio.sleep(5) return 2 end)
    drive(rt)
    assert.same({ true, 2 }, { rt:result() })
    assert.equal(3, rt:run(function() return 3 end))
    rt:start(function() return 4 end)
    drive(rt)
    assert.same({ true, 4 }, { rt:result() })
    rt:close()
  end)

  it("two started runtimes can be stepped in turn by one host", function()
    local a, b = corio.runtime(), corio.runtime()
    local log = {}
    a:start(function() for i = 1, 3 do log[#log + 1] = "a" .. i; corio.sleep(0.002) end end)
    b:start(function() for i = 1, 3 do log[#log + 1] = "b" .. i; corio.sleep(0.002) end end)
    local more_a, more_b, n = true, true, 0
    while more_a or more_b do
      if more_a then more_a = a:step() end
      if more_b then more_b = b:step() end
      host_sleep(1)
      n = n + 1
      assert(n < 1000)
    end
    assert.is_true(a:result())
    assert.is_true(b:result())
    assert.equal(6, #log)
    a:close()
    b:close()
  end)

  it("closing the Lua state between two steps neither crashes, leaks nor prints", function()
    local r = proc.run("host_close_state.lua", "between")
    assert.equal("", r.stderr)
    assert.equal("stepped\n", r.stdout)
    assert.equal(0, r.code)
  end)

  it("closing the Lua state from a task during a step neither crashes, leaks nor prints", function()
    if _VERSION == "Lua 5.1" then
      pending("os.exit cannot close the state on Lua 5.1 and LuaJIT")
      return
    end
    local r = proc.run("host_close_state.lua", "inside")
    assert.equal("", r.stderr)
    assert.equal("", r.stdout)
    assert.equal(0, r.code)
  end)

  it("a started runtime is anchored: collecting garbage does not finalize it", function()
    local rt = corio.runtime()
    rt:start(function() corio.sleep(3600) end)
    rt:step()
    local weak = setmetatable({ rt }, { __mode = "v" })
    rt = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.is_not_nil(weak[1])
    weak[1]:close() -- (the spec still frees it; lua_close is the fallback)
  end)
end)
