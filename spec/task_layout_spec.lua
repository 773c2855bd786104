-- The task's memory layout (issue 11): what a task keeps, and where, may
-- change how it is stored but not what it does. A finished task's outcome
-- stays joinable through collections and after its runtime is gone; the
-- live-task table gives memory back after a burst and keeps every task
-- reachable while it moves; joiners parked on one task leave in any
-- order; tasks spawned into a scope keep their place in it.
local corio = require "corio"
local H = require "helper"
local proc = require "fixtures.proc"
local pcall = corio.pcall -- yields across it on PUC 5.1 too

local function full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

describe("a finished task's outcome", function()
  it("survives collections while the task is held (one result, several, an error)", function()
    local one, many, failed, none, nilres = H.run(function()
      local a = corio.spawn(function() return { "one" } end)
      local b = corio.spawn(function() return "x", { "y" }, 3 end)
      local c = corio.spawn(function() error({ code = 7 }) end)
      local d = corio.spawn(function() end)
      local e = corio.spawn(function() return nil end)
      c:wait() -- observed: not reported
      corio.sleep(1)
      for _ = 1, 3 do full_gc() end
      return a, b, c, d, e
    end)
    H.run(function()
      assert.same({ "one" }, one:join())
      local x, y, z = many:join()
      assert.equal("x", x)
      assert.same({ "y" }, y)
      assert.equal(3, z)
      local ok, err = failed:wait()
      assert.is_false(ok)
      assert.equal(7, err.value.code)
      assert.equal(0, select("#", none:join()))
      assert.equal(1, select("#", nilres:join()))
    end)
  end)

  it("keeps a single result of every type exactly", function()
    local big = math.maxinteger or 2 ^ 53
    local values = { false, true, 0, -1, big, -big, 0.1, -0.0, 1 / 0, -1 / 0, "s", "", {}, print }
    local tasks = H.run(function()
      local ts = {}
      for i, v in ipairs(values) do ts[i] = corio.spawn(function() return v end) end
      ts.nan = corio.spawn(function() return 0 / 0 end)
      ts.none = corio.spawn(function() return nil end)
      corio.sleep(1)
      return ts
    end)
    full_gc()
    H.run(function()
      for i, v in ipairs(values) do
        local got = tasks[i]:join()
        assert.equal(v, got)
        assert.equal(type(v), type(got))
        if math.type then assert.equal(math.type(v), math.type(got)) end
        if v == 0 and type(v) == "number" then assert.equal(1 / v, 1 / got) end -- -0.0
      end
      local nan = tasks.nan:join()
      assert.is_true(nan ~= nan)
      local ok, none = tasks.none:wait()
      assert.is_true(ok)
      assert.is_nil(none)
    end)
  end)

  it("is the same object each time it is joined, also after its runtime was collected", function()
    local t
    do
      local rt = corio.runtime({ clock = "virtual" })
      rt:run(function() t = corio.spawn(function() return {} end) end)
    end
    full_gc()
    full_gc()
    local r1, r2 = H.run(function() return t:join(), t:join() end)
    assert.is_table(r1)
    assert.equal(r1, r2)
  end)

  it("outlives a second load of the module in the same state", function()
    local r = proc.run("reload_core.lua")
    assert.equal("", r.stderr)
    assert.equal("ok\n", r.stdout)
    assert.equal(0, r.code)
  end)

  it("goes with the task: results of dropped tasks are collected", function()
    local weak = setmetatable({}, { __mode = "k" })
    H.run(function()
      for _ = 1, 200 do
        local r = {}
        weak[r] = true
        corio.spawn(function() return r end)
        local s = {}
        weak[s] = true
        corio.spawn(function() return s, 1 end) -- keeps its coroutine
      end
      corio.sleep(1)
    end)
    full_gc()
    full_gc()
    assert.is_nil(next(weak))
  end)
end)

describe("the live-task table", function()
  it("keeps every task reachable when it shrinks after a burst", function()
    local report = H.run(function()
      local gates, tasks = {}, {}
      for i = 1, 6000 do
        gates[i] = corio.event()
        tasks[i] = corio.spawn(function()
          gates[i]:wait()
          return i, corio.current()
        end)
      end
      corio.yield()
      -- all but every 50th end: fewer than a quarter are left, so the
      -- table is rebuilt and the survivors move
      for i = 1, 6000 do
        if i % 50 ~= 0 then gates[i]:set() end
      end
      for i = 1, 6000 do
        if i % 50 ~= 0 then tasks[i]:join() end
      end
      local listed = {}
      for _, info in ipairs(corio.tasks()) do listed[#listed + 1] = info.id end
      tasks[100]:cancel()
      for i = 50, 6000, 50 do
        if i ~= 100 then gates[i]:set() end
      end
      local seen = {}
      for i = 50, 6000, 50 do
        local ok, v, cur = tasks[i]:wait()
        if i == 100 then
          seen[#seen + 1] = (not ok and corio.is_cancelled(v)) and "cancelled" or "?"
        else
          seen[#seen + 1] = (ok and v == i and cur == tasks[i]) and "ok" or "bad " .. i
        end
      end
      return { listed = listed, seen = seen, alive = corio.stats().alive }
    end)
    -- main, then the 120 survivors in spawn order
    assert.equal(121, #report.listed)
    for k = 2, #report.listed do
      assert.truthy(report.listed[k] > report.listed[k - 1], "tasks() out of spawn order")
    end
    assert.equal(120, #report.seen)
    for k, s in ipairs(report.seen) do
      assert.equal(k == 2 and "cancelled" or "ok", s)
    end
    assert.equal(1, report.alive)
  end)

  it("gives memory back once a burst of parked tasks has ended", function()
    local growth = H.run_plain(nil, function()
      full_gc()
      local before = collectgarbage("count")
      do
        local ev = corio.event()
        local ts = {}
        for i = 1, 30000 do ts[i] = corio.spawn(function() ev:wait() end) end
        corio.yield()
        ev:set()
        for i = 1, 30000 do ts[i]:join() end
      end
      full_gc()
      return collectgarbage("count") - before
    end)
    -- 30000 slots held would be about 1 MB (2 MB on Lua 5.4)
    assert.truthy(growth < 400, "memory grew by " .. growth .. " KB")
  end)
end)

describe("a parked task nobody holds", function()
  it("stays whole when its coroutine is closed by hand and collections run (5.4)", function()
    if not coroutine.close then
      pending("needs coroutine.close (Lua 5.4)")
      return
    end
    local reports = {}
    local r = H.run(function()
      local cos = {}
      for i = 1, 50 do
        corio.spawn(function() -- handle dropped at once
          cos[i] = coroutine.running()
          corio.sleep(1)
        end)
      end
      corio.yield()
      for i = 1, 50 do coroutine.close(cos[i]) end
      for _ = 1, 3 do full_gc() end
      corio.sleep(2) -- their timers fire on what is left of them
      for _ = 1, 3 do full_gc() end
      return corio.stats()
    end, { on_error = function(e) reports[#reports + 1] = e end })
    assert.equal(1, r.alive)
    assert.equal(50, r.failed)
    assert.equal(50, #reports)
  end)
end)

describe("joiners of one task", function()
  -- three tasks join one target; some are cancelled while parked, in
  -- every order; the others get the result
  local orders = {
    { 1 }, { 2 }, { 3 }, { 1, 2 }, { 2, 1 }, { 1, 3 }, { 3, 1 }, { 2, 3 }, { 3, 2 },
    { 1, 2, 3 }, { 3, 2, 1 }, { 2, 1, 3 },
  }
  for _, order in ipairs(orders) do
    it("leave in order " .. table.concat(order, ","), function()
      local got = H.run(function()
        local gate = corio.event()
        local target = corio.spawn(function()
          gate:wait()
          return "done"
        end)
        local joiners, got = {}, {}
        for k = 1, 3 do
          joiners[k] = corio.spawn(function()
            local ok, v = pcall(target.join, target)
            got[k] = ok and v or "cancelled"
          end)
        end
        corio.yield()
        for _, k in ipairs(order) do
          joiners[k]:cancel()
          corio.yield()
        end
        gate:set()
        for k = 1, 3 do joiners[k]:wait() end
        return got
      end)
      local cancelled = {}
      for _, k in ipairs(order) do cancelled[k] = true end
      for k = 1, 3 do
        assert.equal(cancelled[k] and "cancelled" or "done", got[k])
      end
    end)
  end
end)

describe("a task spawned into a scope", function()
  it("is reached by its scope's cancellation inside scopes of its own, and not through a shield", function()
    local out = H.run(function()
      local out = {}
      pcall(corio.timeout, 1, function()
        corio.scope(function(sc)
          sc:spawn(function()
            local ok = pcall(corio.timeout, 100, function() corio.sleep(50) end)
            out.inner = ok and "finished" or "cancelled"
          end)
          sc:spawn(function()
            corio.shield(function() corio.sleep(2) end)
            out.shielded = "finished"
          end)
          sc:spawn(function()
            local ok = pcall(corio.sleep, 50)
            out.plain = ok and "finished" or "cancelled"
          end)
        end)
      end)
      return out
    end)
    assert.equal("cancelled", out.inner)
    assert.equal("finished", out.shielded)
    assert.equal("cancelled", out.plain)
  end)
end)
