-- corio.watch: a value that tasks can watch for changes.
local corio = require "corio"

local H = require "helper"

describe("corio.watch", function()
  it("holds a value: get returns the last one set", function()
    local w = corio.watch(1)
    assert.equal(1, w:get())
    assert.is_true(w:set("two"))
    assert.equal("two", w:get())
    assert.is_true(w:set(nil))
    assert.is_nil(w:get())
    assert.is_nil(corio.watch():get())
  end)

  it("wakes every changed() waiter with the next value set", function()
    H.run(function()
      local w = corio.watch(0)
      local got = {}
      local tasks = {}
      for i = 1, 3 do
        tasks[i] = corio.spawn(function() got[i] = w:changed() end)
      end
      H.settle()
      for i = 1, 3 do assert.equal("waiting", tasks[i]:status()) end
      w:set(42)
      for i = 1, 3 do tasks[i]:join() end
      assert.same({ 42, 42, 42 }, got)
    end)
  end)

  it("waits for the next set, not the current value", function()
    H.run(function()
      local w = corio.watch("v1")
      w:set("v2")
      local t = corio.spawn(function() return w:changed() end)
      H.settle()
      assert.equal("waiting", t:status())
      w:set("v3")
      assert.equal("v3", t:join())
    end)
  end)

  it("delivers nil as a value (check the second result for an error)", function()
    H.run(function()
      local w = corio.watch(1)
      local t = corio.spawn(function() return select("#", w:changed()), w:get() end)
      H.settle()
      w:set(nil)
      local n, v = t:join()
      assert.equal(1, n)
      assert.is_nil(v)
    end)
  end)

  it("returns nil and a timeout error when changed times out", function()
    H.run(function()
      local w = corio.watch(1)
      local v, err = w:changed({ timeout = 2.5 })
      assert.is_nil(v)
      assert.is_true(corio.is_timeout(err))
      assert.equal(2.5, corio.now())
      assert.equal(1, w:get())
    end)
  end)

  it("wakes waiters with a closed error on close; changed and set fail after it", function()
    H.run(function()
      local w = corio.watch("last")
      local t = corio.spawn(function() return w:changed() end)
      H.settle()
      w:close()
      w:close() -- closing twice is harmless
      local v, err = t:join()
      assert.is_nil(v)
      assert.equal("closed", err.kind)
      v, err = w:changed()
      assert.is_nil(v)
      assert.equal("closed", err.kind)
      local ok
      ok, err = w:set("new")
      assert.is_nil(ok)
      assert.equal("closed", err.kind)
      assert.equal("last", w:get())
      assert.is_true(w:is_closed())
    end)
  end)

  it("raises the cancellation in a waiter cancelled before, during or in the same tick as set", function()
    H.run(function()
      local w = corio.watch(0)
      local before = corio.spawn(function() return w:changed() end)
      before:cancel()
      local during = corio.spawn(function() return w:changed() end)
      local same = corio.spawn(function() return w:changed() end)
      local other = corio.spawn(function() return w:changed() end)
      H.settle()
      during:cancel()
      w:set(7)
      same:cancel()
      for _, t in ipairs({ before, during, same }) do
        local ok, err = t:wait()
        assert.is_false(ok)
        assert.is_true(corio.is_cancelled(err))
      end
      assert.equal(7, other:join())
      assert.equal(7, w:get())
    end)
  end)

  it("signals shutdown to many workers", function()
    H.run(function()
      local stop = corio.watch(false)
      local done = 0
      local workers = {}
      for i = 1, 4 do
        workers[i] = corio.spawn(function()
          while not stop:get() do
            local v = stop:changed({ timeout = 10 })
            if v then break end
          end
          done = done + 1
        end)
      end
      corio.sleep(1)
      stop:set(true)
      for i = 1, 4 do workers[i]:join() end
      assert.equal(4, done)
      assert.equal(1, corio.now())
    end)
  end)

  it("raises clear errors on bad arguments", function()
    H.run(function()
      local w = corio.watch(1)
      local ok, err = pcall(function() local _ = w:changed(3) end)
      assert.is_false(ok)
      assert.matches("options table expected", tostring(err))
      ok, err = pcall(function() local _ = w.get({}) end)
      assert.is_false(ok)
      assert.matches("corio.Watch expected", tostring(err))
    end)
  end)

  it("has a readable name and tostring", function()
    local w = corio.watch(1)
    assert.equal("corio.Watch", getmetatable(w).__name)
    assert.matches("^corio.Watch: .*version 0", tostring(w))
    w:set(2)
    assert.matches("version 1", tostring(w))
  end)

  it("names the watch as what a parked waiter waits on", function()
    H.run(function()
      local w = corio.watch(0)
      local t = corio.spawn(function() w:changed() end)
      H.settle()
      local seen = {}
      for _, info in ipairs(corio.tasks()) do seen[info.id] = info.waiting_on end
      assert.equal("watch", seen[t.id])
      w:set(1)
      t:join()
    end)
  end)

end)
