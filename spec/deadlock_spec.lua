-- Deadlock is an error, not a hang: when every task waits and nothing can
-- wake any of them, run raises an error of kind "deadlock" listing the
-- tasks and what each waits on.
local corio = require "corio"
local H = require "helper"

-- run's error, without H.run's re-raise of wrapped values
local function run_error(fn, opts)
  local rt = corio.runtime(opts or { clock = "virtual" })
  local ok, err = pcall(rt.run, rt, fn)
  assert(not ok, "run did not raise")
  return err, rt
end

describe("a deadlock", function()
  it("is raised by run as an error of kind deadlock when tasks join each other", function()
    local err = run_error(function()
      local main = corio.current()
      local t = corio.spawn({ name = "partner" }, function() main:join() end)
      t:join()
    end)
    assert.is_true(corio.is_error(err, "deadlock"))
    assert.equal("deadlock", err.kind)
  end)

  it("lists every task with what it waits on", function()
    local err = run_error(function()
      local main = corio.current()
      corio.spawn({ name = "sleeper_forever" }, corio.sleep, math.huge)
      local t = corio.spawn({ name = "partner" }, function() main:join() end)
      t:join()
    end)
    local msg = err.message
    assert.truthy(msg:find("partner", 1, true), msg)
    assert.truthy(msg:find("sleeper_forever", 1, true), msg)
    assert.truthy(msg:find("join", 1, true), msg)
    assert.truthy(msg:find("sleep", 1, true), msg)
    -- one line per task (main, partner, sleeper_forever)
    local lines = 0
    for line in msg:gmatch("[^\n]+") do
      if line:find("waiting on", 1, true) then lines = lines + 1 end
    end
    assert.equal(3, lines, msg)
  end)

  it("is raised when the only task sleeps forever", function()
    local err = run_error(function() corio.sleep(math.huge) end)
    assert.is_true(corio.is_error(err, "deadlock"))
    assert.truthy(err.message:find("sleep", 1, true))
  end)

  it("is not raised while a timer can still wake a task", function()
    local r = H.run(function()
      local t = corio.spawn(function() corio.sleep(1000) return "woke" end)
      return t:join()
    end)
    assert.equal("woke", r)
  end)

  it("cancels the deadlocked tasks and runs their cleanup before run raises", function()
    if not H.can_pcall_yield then pending("5.1 cannot yield across pcall") return end
    local log = H.log()
    local err, rt = run_error(function()
      corio.spawn({ name = "stuck" }, function()
        local ok, e = pcall(corio.sleep, math.huge)
        log(not ok and corio.is_cancelled(e) and "stuck cleaned up" or "wrong")
      end)
      corio.sleep(math.huge)
    end)
    assert.is_true(corio.is_error(err, "deadlock"))
    assert.same({ "stuck cleaned up" }, log.items)
    assert.equal(0, rt:stats().alive)
  end)

  it("leaves no task alive and no timer armed", function()
    local t
    local err, rt = run_error(function()
      t = corio.spawn(corio.sleep, math.huge)
      t:join()
    end)
    assert.is_true(corio.is_error(err, "deadlock"))
    assert.equal("cancelled", t:status())
    local st = rt:stats()
    assert.equal(0, st.alive)
    assert.equal(0, st.timers)
  end)

  it("abandons a task whose cleanup waits forever again, and still raises", function()
    if not H.can_pcall_yield then pending("5.1 cannot yield across pcall") return end
    local reports, stubborn = 0, nil
    local err, rt = run_error(function()
      stubborn = corio.spawn({ name = "stubborn" }, function()
        pcall(corio.sleep, math.huge)
        corio.shield(function() corio.sleep(math.huge) end)
      end)
      corio.sleep(math.huge)
    end, { clock = "virtual", on_error = function() reports = reports + 1 end })
    assert.is_true(corio.is_error(err, "deadlock"))
    local st = rt:stats()
    assert.equal(0, st.alive)
    -- abandoned is cancelled, not failed: nothing to report
    assert.equal("cancelled", stubborn:status())
    assert.equal(0, st.failed)
    assert.equal(0, reports)
  end)

  it("does not stop the runtime from running again", function()
    local err, rt = run_error(function() corio.sleep(math.huge) end)
    assert.is_true(corio.is_error(err, "deadlock"))
    assert.equal("again", rt:run(function()
      corio.sleep(1)
      return "again"
    end))
  end)
end)
