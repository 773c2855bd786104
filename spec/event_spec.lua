-- corio.event: a flag that tasks can wait for.
local corio = require "corio"

local H = require "helper"

describe("corio.event", function()
  it("starts clear, and wait returns at once once it is set", function()
    H.run(function()
      local ev = corio.event()
      assert.is_false(ev:is_set())
      ev:set()
      assert.is_true(ev:is_set())
      local t0 = corio.now()
      assert.is_true(ev:wait())
      assert.equal(t0, corio.now())
    end)
  end)

  it("wakes every waiter on set", function()
    H.run(function()
      local ev = corio.event()
      local woke = {}
      local tasks = {}
      for i = 1, 5 do
        tasks[i] = corio.spawn(function()
          assert.is_true(ev:wait())
          woke[#woke + 1] = i
        end)
      end
      H.settle()
      assert.same({}, woke)
      for i = 1, 5 do assert.equal("waiting", tasks[i]:status()) end
      ev:set()
      ev:set() -- setting twice is harmless
      for i = 1, 5 do tasks[i]:join() end
      assert.same({ 1, 2, 3, 4, 5 }, woke)
    end)
  end)

  it("makes later waits block again after clear", function()
    H.run(function()
      local ev = corio.event()
      ev:set()
      ev:clear()
      assert.is_false(ev:is_set())
      local ok, err = ev:wait({ timeout = 1 })
      assert.is_nil(ok)
      assert.is_true(corio.is_timeout(err))
      assert.equal(1, corio.now())
    end)
  end)

  it("returns nil and a timeout error when wait times out, and a later set wakes the others", function()
    H.run(function()
      local ev = corio.event()
      local a = corio.spawn(function() return ev:wait({ timeout = 1 }) end)
      local b = corio.spawn(function() return ev:wait() end)
      corio.sleep(2)
      local ok, err = a:join()
      assert.is_nil(ok)
      assert.equal("timeout", err.kind)
      ev:set()
      assert.is_true(b:join())
    end)
  end)

  it("raises the cancellation in a waiter cancelled before, during or in the same tick as set", function()
    H.run(function()
      local ev = corio.event()
      local before = corio.spawn(function() return ev:wait() end)
      before:cancel()
      local during = corio.spawn(function() return ev:wait() end)
      local same = corio.spawn(function() return ev:wait() end)
      local other = corio.spawn(function() return ev:wait() end)
      H.settle()
      during:cancel()
      ev:set()
      same:cancel() -- woken by set, not yet run
      for _, t in ipairs({ before, during, same }) do
        local ok, err = t:wait()
        assert.is_false(ok)
        assert.is_true(corio.is_cancelled(err))
      end
      assert.is_true(other:join())
      assert.is_true(ev:is_set())
    end)
  end)

  it("raises clear errors on bad arguments", function()
    H.run(function()
      local ev = corio.event()
      local ok, err = pcall(function() local _ = ev:wait({ timeout = "soon" }) end)
      assert.is_false(ok)
      assert.matches("bad option 'timeout' to 'wait'", tostring(err))
      ok, err = pcall(function() local _ = ev.set(42) end)
      assert.is_false(ok)
      assert.matches("corio.Event expected", tostring(err))
    end)
    local ev = corio.event()
    local ok, err = pcall(function() local _ = ev:wait() end)
    assert.is_false(ok)
    assert.matches("not inside a corio task", tostring(err))
  end)

  it("has a readable name and tostring", function()
    local ev = corio.event()
    assert.equal("corio.Event", getmetatable(ev).__name)
    assert.matches("^corio.Event: .*clear", tostring(ev))
    ev:set()
    assert.matches("^corio.Event: .*set", tostring(ev))
  end)

  it("names the event as what a parked waiter waits on", function()
    H.run(function()
      local ev = corio.event()
      local t = corio.spawn(function() ev:wait() end)
      H.settle()
      local seen = {}
      for _, info in ipairs(corio.tasks()) do seen[info.id] = info.waiting_on end
      assert.equal("event", seen[t.id])
      ev:set()
      t:join()
    end)
  end)

end)
