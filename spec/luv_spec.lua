-- corio.luv.attach: a started runtime driven by a luv loop (the luv
-- module of this Lua; Debian's lua-luv has it for 5.1, 5.3, 5.4 and
-- LuaJIT loads the 5.1 one). Every uv.run here is bounded by a watchdog
-- timer that stops the loop.
local corio = require "corio"
local H = require "helper"
local proc = require "fixtures.proc"

local has_luv, uv = pcall(require, "luv")

-- Runs the luv loop until it has no active handles, or fails after secs.
local function run_loop(secs)
  local fired = false
  local dog = uv.new_timer()
  dog:start(secs * 1000, 0, function()
    fired = true
    uv.stop()
  end)
  dog:unref() -- the loop ends when only the watchdog is left
  uv.run()
  if not dog:is_closing() then dog:close() end
  uv.run("nowait") -- let the close finish
  assert(not fired, "luv loop still running after " .. secs .. " s")
end

describe("corio.luv.attach", function()
  if not has_luv then
    pending("luv is not installed for " .. _VERSION .. " (Debian: lua-luv)")
    return
  end

  it("runs tasks, timers and a TCP echo while the luv loop's own timer ticks", function()
    local res
    dofile("spec/fixtures/luv_host.lua")(corio, uv, function(...) res = H.pack(...) end)
    run_loop(30)
    assert.is_not_nil(res, "on_done was not called")
    assert.is_true(res[1], tostring(res[2]))
    local s = res[2]
    assert.equal(210, s.sleeps)
    assert.equal("echo 1,echo 2,echo 3", s.echoed)
    assert.is_true(s.ticks_during_sleep >= 5, "host ticks " .. s.ticks_during_sleep)
    assert.is_true(s.spins >= 1)
    assert.is_true(s.elapsed >= 0.1 and s.elapsed < 20, "elapsed " .. s.elapsed)
  end)

  it("hands main's results to on_done", function()
    local rt = corio.runtime()
    rt:start(function(a) corio.sleep(0.01) return a, nil, "z" end, "a")
    local res
    local h = corio.luv.attach(rt, { uv = uv, on_done = function(...) res = H.pack(...) end })
    assert.is_false(h.done)
    run_loop(10)
    assert.is_true(h.done)
    assert.equal(4, res.n)
    assert.same({ true, "a", nil, "z" }, { res[1], res[2], res[3], res[4] })
    assert.is_false(rt:started())
    H.finish(rt, { true, n = 1 })
    rt:close()
  end)

  it("hands a failure of main to on_done as false, err", function()
    local rt = corio.runtime()
    rt:start(function() corio.sleep(0.001) error("main broke", 0) end)
    local res
    corio.luv.attach(rt, { on_done = function(...) res = H.pack(...) end, uv = uv })
    run_loop(10)
    assert.is_false(res[1])
    assert.is_true(corio.is_error(res[2], "task"))
    assert.equal("main broke", res[2].value)
    rt:close()
  end)

  it("without on_done raises a failure of main from the luv callback", function()
    local r = proc.run("luv_raise.lua")
    assert.matches("main broke loudly", r.stderr)
    assert.equal("", r.stdout) -- "not reached" is not
    assert.not_equal(0, r.code)
  end)

  it("close cancels the run, runs the tasks' cleanup and ends the luv loop", function()
    local rt = corio.runtime()
    local cleaned = 0
    rt:start(function()
      corio.scope(function(s)
        for _ = 1, 4 do
          s:spawn(function()
            if not H.can_pcall_yield then return corio.sleep(3600) end
            local ok = pcall(corio.sleep, 3600)
            if not ok then cleaned = cleaned + 1 end
          end)
        end
      end)
    end)
    local res
    local h = corio.luv.attach(rt, { uv = uv, on_done = function(...) res = H.pack(...) end })
    local t = uv.new_timer()
    t:start(20, 0, function() t:close(); h:close() end)
    run_loop(10) -- ends: close released every handle
    assert.is_true(h.done)
    assert.is_false(res[1])
    assert.is_true(corio.is_error(res[2], "cancelled"))
    if H.can_pcall_yield then assert.equal(4, cleaned) end
    H.finish(rt, { true, n = 1 })
  end)

  it("detach leaves the run going; the host can step it to the end", function()
    local rt = corio.runtime({ clock = "virtual" })
    rt:start(function() corio.sleep(60) return "late" end)
    local called = false
    local h = corio.luv.attach(rt, { uv = uv, on_done = function() called = true end })
    h:detach()
    run_loop(10) -- no handle left: returns at once
    assert.is_true(rt:started())
    while rt:step() do end
    assert.same({ true, "late" }, { rt:result() })
    assert.is_false(called)
    rt:close()
  end)

  it("drives a virtual-clock runtime: time jumps, the host is not held", function()
    local rt = corio.runtime({ clock = "virtual" })
    rt:start(function()
      for _ = 1, 10 do corio.sleep(3600) end
      return corio.now()
    end)
    local res
    corio.luv.attach(rt, { uv = uv, on_done = function(...) res = H.pack(...) end })
    local t0 = uv.hrtime()
    run_loop(10)
    assert.same({ true, 36000 }, { res[1], res[2] })
    assert.is_true((uv.hrtime() - t0) / 1e9 < 5)
    rt:close()
  end)

  it("wakes for corio timers from the backend fd alone (Linux timerfd)", function()
    -- no timer of attach's own: a host that only polls the fd
    local rt = corio.runtime()
    rt:start(function() corio.sleep(0.03) return "woke" end)
    assert.is_true(rt:step()) -- main sleeps; the wake-up is armed
    local poll = uv.new_poll(rt:backend_fd())
    local steps = 0
    poll:start("r", function()
      steps = steps + 1
      if not rt:step() then poll:stop(); poll:close() end
    end)
    run_loop(10)
    assert.same({ true, "woke" }, { rt:result() })
    assert.is_true(steps >= 1 and steps < 100, "steps " .. steps)
    rt:close()
  end)

  it("raises naming attach on wrong arguments or a runtime not started", function()
    local rt = corio.runtime()
    assert.error_matches(function() corio.luv.attach(42) end,
      "bad argument #1 to 'attach' %(corio.Runtime expected, got number%)")
    assert.error_matches(function() corio.luv.attach(rt) end,
      "attach: the runtime is not started")
    rt:start(function() end)
    assert.error_matches(function() corio.luv.attach(rt, 5) end,
      "bad argument #2 to 'attach' %(options table expected, got number%)")
    assert.error_matches(function() corio.luv.attach(rt, { nope = 1 }) end,
      "bad option 'nope' to 'attach'")
    assert.error_matches(function() corio.luv.attach(rt, { on_done = 1 }) end,
      "bad option 'on_done' to 'attach' %(function expected")
    rt:close()
  end)
end)
