-- corio.yield: how tasks interleave. Ready tasks run FIFO; yield puts the
-- caller at the back of the ready queue.
local corio = require "corio"
local H = require "helper"

local function round_robin(log, name, n, pause)
  return function()
    for i = 1, n do
      log(name .. i)
      pause()
    end
  end
end

describe("corio.yield", function()
  it("interleaves tasks that yield in round-robin order", function()
    local log = H.log()
    H.run(function()
      local ts = {}
      for _, name in ipairs({ "a", "b", "c" }) do
        ts[#ts + 1] = corio.spawn(round_robin(log, name, 3, corio.yield))
      end
      for _, t in ipairs(ts) do t:join() end
    end)
    assert.same({ "a1", "b1", "c1", "a2", "b2", "c2", "a3", "b3", "c3" }, log.items)
  end)

  it("puts the caller behind every task that was ready before it yielded", function()
    local log = H.log()
    H.run(function()
      corio.spawn(function() log("a") end)
      corio.spawn(function() log("b") end)
      log("main before")
      corio.yield()
      log("main after")
    end)
    assert.same({ "main before", "a", "b", "main after" }, log.items)
  end)

  it("runs a task spawned before another yields ahead of the yielder", function()
    local log = H.log()
    H.run(function()
      local a = corio.spawn(function()
        log("a1")
        corio.spawn(function() log("c1") end)
        corio.yield()
        log("a2")
      end)
      local b = corio.spawn(function()
        log("b1")
        corio.yield()
        log("b2")
      end)
      a:join()
      b:join()
    end)
    assert.same({ "a1", "b1", "c1", "a2", "b2" }, log.items)
  end)

  it("returns nothing", function()
    local n = H.run(function() return select("#", corio.yield()) end)
    assert.equal(0, n)
  end)

  it("returns at once when no other task is ready", function()
    local now = H.run(function()
      for _ = 1, 1000 do corio.yield() end
      return corio.now()
    end)
    assert.equal(0, now)
  end)

  it("lets a task that never yields run to its end before others start", function()
    local log = H.log()
    H.run(function()
      local a = corio.spawn(function()
        log("a start")
        local x = 0
        for i = 1, 10000 do x = x + i end
        log("a end")
      end)
      local b = corio.spawn(function() log("b") end)
      a:join()
      b:join()
    end)
    assert.same({ "a start", "a end", "b" }, log.items)
  end)

  it("lets a task spin on yield until another task makes progress", function()
    local spins = H.run(function()
      local flag, n = false, 0
      local waiter = corio.spawn(function()
        while not flag do
          n = n + 1
          corio.yield()
        end
      end)
      corio.spawn(function()
        for _ = 1, 5 do corio.yield() end
        flag = true
      end)
      waiter:join()
      return n
    end)
    -- FIFO: the waiter checks once before each of the setter's six turns
    assert.equal(6, spins)
  end)

  it("does not advance the virtual clock", function()
    local before, after = H.run(function()
      local b = corio.now()
      corio.spawn(function() for _ = 1, 10 do corio.yield() end end)
      for _ = 1, 20 do corio.yield() end
      return b, corio.now()
    end)
    assert.equal(0, before)
    assert.equal(0, after)
  end)
end)
