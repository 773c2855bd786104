-- Coroutine reuse (issue 11): on Lua 5.3+ a task that returned normally
-- gives its coroutine back to the runtime, and the next spawn runs on it.
-- The reuse must be invisible to the tasks: each sees its own coroutine
-- while it runs, results stay joinable, and nothing of one task (hooks,
-- to-be-closed variables) reaches the next. On 5.1/LuaJIT every task has
-- its own coroutine; the same specs hold there trivially.
local corio = require "corio"
local H = require "helper"

local REUSES = _VERSION ~= "Lua 5.1"

-- Runs `first` in a task to the end, then `second` in a new task, which
-- (where coroutines are reused) runs on first's coroutine. Returns both
-- tasks and both coroutines.
local function one_after_other(first, second)
  local ca, cb
  local a, b = H.run(function()
    local a = corio.spawn(function(...)
      ca = coroutine.running()
      return first(...)
    end)
    a:wait()
    local b = corio.spawn(function(...)
      cb = coroutine.running()
      return second(...)
    end)
    b:wait()
    return a, b
  end)
  return a, b, ca, cb
end

describe("coroutine reuse", function()
  it("runs the next task on a finished task's coroutine (5.3+)", function()
    local _, _, ca, cb = one_after_other(function() end, function() end)
    if REUSES then
      assert.equal(ca, cb)
    else
      assert.are_not.equal(ca, cb)
    end
  end)

  it("lets coroutine.running() inside a task return that task's coroutine while it runs", function()
    local seen = {}
    H.run(function()
      for i = 1, 50 do
        local t = corio.spawn(function()
          local co = coroutine.running()
          corio.yield()
          -- after other tasks ran (and finished) meanwhile, still ours
          seen[#seen + 1] = co == coroutine.running() and coroutine.status(co) == "running"
        end)
        if i % 2 == 0 then t:join() end
      end
    end)
    assert.equal(50, #seen)
    for i = 1, 50 do assert.is_true(seen[i]) end
  end)

  it("keeps a finished task's single result joinable after its coroutine ran another task", function()
    local a, b = one_after_other(function() return { tag = "a" } end,
      function() return "b" end)
    H.run(function()
      assert.same({ tag = "a" }, a:join())
      assert.equal("b", b:join())
      local ok, v = a:wait()
      assert.is_true(ok)
      assert.same({ tag = "a" }, v)
    end)
  end)

  it("keeps a nil result and no result distinct", function()
    local a, b = one_after_other(function() return nil end, function() end)
    H.run(function()
      assert.equal(1, select("#", a:join()))
      assert.equal(0, select("#", b:join()))
      assert.equal(2, select("#", a:wait()))
      assert.equal(1, select("#", b:wait()))
    end)
  end)

  it("keeps several results joinable (such a coroutine is not reused)", function()
    local a, _, ca, cb = one_after_other(function() return 1, 2, 3 end,
      function() end)
    assert.are_not.equal(ca, cb)
    H.run(function()
      assert.same({ 1, 2, 3 }, { a:join() })
    end)
  end)

  it("never reuses the coroutine of a task that failed or was cancelled", function()
    local _, _, ca, cb = one_after_other(function() error("boom") end,
      function() end)
    assert.are_not.equal(ca, cb)
    local cc, cd
    H.run(function()
      local t = corio.spawn(function()
        cc = coroutine.running()
        corio.sleep(10)
      end)
      corio.yield()
      t:cancel()
      t:wait()
      corio.spawn(function() cd = coroutine.running() end):join()
    end)
    assert.are_not.equal(cc, cd)
  end)

  it("does not carry a debug hook into the next task", function()
    if rawget(_G, "jit") then return pending("LuaJIT's hooks are global, not per coroutine") end
    local hook_in_b
    local calls = 0
    local function count() calls = calls + 1 end
    one_after_other(function()
      debug.sethook(count, "l")
    end, function()
      hook_in_b = debug.gethook() -- (spec/helper.lua's watchdog, if any)
      local x = 0
      for i = 1, 10 do x = x + i end
      return x
    end)
    assert.are_not.equal(count, hook_in_b)
    -- the hook saw the first task's last lines only, not the loop
    assert.is_true(calls < 5)
  end)

  it("closes a task's to-be-closed variables once, not again in the next task (5.4)", function()
    if not H.lua54 then return pending("no <close> before Lua 5.4") end
    local chunk = assert(load([[
      local corio, closed = ...
      return function()
        local x <close> = setmetatable({}, { __close = function() closed.n = closed.n + 1 end })
        corio.yield()
        return x ~= nil
      end
    ]]))
    local closed = { n = 0 }
    local body = chunk(corio, closed)
    local a = one_after_other(body, function() corio.yield() end)
    assert.equal(1, closed.n)
    H.run(function() assert.is_true(a:join()) end)
  end)

  it("gives a task on a reused coroutine a fresh stack: deep recursion after deep recursion", function()
    local function depth(n) if n == 0 then return 0 end return 1 + depth(n - 1) end
    local a, b = one_after_other(function() return depth(10000) end,
      function() return depth(10000) end)
    H.run(function()
      assert.equal(10000, a:join())
      assert.equal(10000, b:join())
    end)
  end)

  it("reuses at most a bounded number of coroutines, and 100k short tasks leave nothing alive", function()
    local n = 0
    H.run(function()
      for _ = 1, 100 do
        local ts = {}
        for i = 1, 1000 do ts[i] = corio.spawn(function() n = n + 1 end) end
        for i = 1, 1000 do ts[i]:join() end
      end
      assert.equal(0, corio.stats().alive - 1) -- main only
    end)
    assert.equal(100000, n)
  end)
end)
