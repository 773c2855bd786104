-- Bad arguments to every function of the core and its Lua layer: each is a
-- Lua error that names the function and the argument (or option) and blames
-- the caller's line; never a crash.
local corio = require "corio"
local H = require "helper"

local nan = 0 / 0
local PRE53 = _VERSION == "Lua 5.1"
local function fn() end

-- { description, call, fragments the message must contain... }
-- Each call is written in this file so the error must blame this file.
local inside = {
  { "spawn with no function", function() corio.spawn() end, "#1", "'spawn'" },
  { "spawn with a number", function() corio.spawn(42) end, "#1", "'spawn'", "function expected" },
  { "spawn with options but no function", function() corio.spawn({ name = "x" }) end, "#2", "'spawn'" },
  { "spawn with a non-string name", function() corio.spawn({ name = 42 }, fn) end, "'name'", "'spawn'" },
  { "spawn with an unknown option", function() corio.spawn({ nmae = "x" }, fn) end, "'nmae'", "'spawn'" },
  { "sleep with no duration", function() corio.sleep() end, "#1", "'sleep'" },
  { "sleep with a string", function() corio.sleep("soon") end, "#1", "'sleep'" },
  { "sleep with a negative duration", function() corio.sleep(-1) end, "#1", "'sleep'" },
  { "sleep with NaN", function() corio.sleep(nan) end, "#1", "'sleep'" },
  { "join on a non-task", function(t) t.join(42) end, "#1", "'join'", "corio.Task" },
  { "wait on a non-task", function(t) t.wait({}) end, "#1", "'wait'", "corio.Task" },
  { "cancel on a non-task", function(t) t.cancel("x") end, "#1", "'cancel'", "corio.Task" },
  { "status on a non-task", function(t) t.status(nil) end, "#1", "'status'", "corio.Task" },
  { "timeout with a string duration", function() corio.timeout("1", fn) end, "#1", "'timeout'" },
  { "timeout with a negative duration", function() corio.timeout(-1, fn) end, "#1", "'timeout'" },
  { "timeout with NaN", function() corio.timeout(nan, fn) end, "#1", "'timeout'" },
  { "timeout with no function", function() corio.timeout(1) end, "#2", "'timeout'" },
  { "shield with a non-function", function() corio.shield(42) end, "#1", "'shield'" },
  { "scope with a non-function", function() corio.scope("body") end, "#1", "'scope'" },
  { "join with a non-function", function() corio.join(fn, 42) end, "#2", "'join'" },
  { "try_join with a non-function", function() corio.try_join(42) end, "#1", "'try_join'" },
  { "select with no function", function() corio.select() end, "#1", "'select'" },
  { "select with a non-function", function() corio.select(fn, {}) end, "#2", "'select'" },
  { "stats on a task", function(t) H.rt.stats(t) end, "#1", "'stats'", "corio.Runtime" },
  { "tasks on a task", function(t) H.rt.tasks(t) end, "#1", "'tasks'", "corio.Runtime" },
  { "dump on a task", function(t) H.rt.dump(t) end, "#1", "'dump'", "corio.Runtime" },
}

local outside = {
  { "runtime with a non-table", function() corio.runtime("fast") end, "#1", "'runtime'" },
  { "runtime with an unknown option", function() corio.runtime({ wokers = 2 }) end, "'wokers'", "'runtime'" },
  { "runtime with an unknown clock", function() corio.runtime({ clock = "fake" }) end, "'clock'", "'runtime'" },
  { "runtime with a non-string clock", function() corio.runtime({ clock = 1 }) end, "'clock'", "'runtime'" },
  { "runtime with zero workers", function() corio.runtime({ workers = 0 }) end, "'workers'", "'runtime'" },
  { "runtime with string workers", function() corio.runtime({ workers = "4" }) end, "'workers'", "'runtime'" },
  { "runtime with a negative queue", function() corio.runtime({ queue = -1 }) end, "'queue'", "'runtime'" },
  { "runtime with a huge max_io", function() corio.runtime({ max_io = 1e12 }) end, "'max_io'", "'runtime'" },
  { "runtime with NaN max_io", function() corio.runtime({ max_io = nan }) end, "'max_io'", "'runtime'" },
  { "runtime with a zero io_timeout", function() corio.runtime({ io_timeout = 0 }) end, "'io_timeout'", "'runtime'" },
  { "runtime with a NaN io_timeout", function() corio.runtime({ io_timeout = nan }) end, "'io_timeout'", "'runtime'" },
  { "runtime with a non-function on_error", function() corio.runtime({ on_error = 1 }) end, "'on_error'", "'runtime'" },
  { "rt:run with no function", function() corio.runtime():run() end, "'run'", "function expected" },
  { "rt:run with a number", function() corio.runtime():run(42) end, "'run'", "function expected" },
  { "run on a non-runtime", function() corio.runtime().run(42, fn) end, "#1", "'run'", "corio.Runtime" },
  { "corio.run with a non-function", function() corio.run("main") end, "#1", "'run'" },
  { "is_error with a non-string kind", function() corio.is_error({}, {}) end, "#2", "'is_error'" },
}

local function check(msg, fragments)
  assert.equal("string", type(msg), "the error is not a message string")
  for i = 1, #fragments do
    assert.truthy(msg:find(fragments[i], 1, true), msg .. "  -- lacks " .. fragments[i])
  end
  -- the caller's line is blamed, not corio's insides. On Lua 5.1 and
  -- LuaJIT a function that can wait is reached through a small Lua wrapper
  -- (5.1 C functions cannot continue after a yield), so its argument
  -- errors point at that wrapper's line instead (documented in README).
  if PRE53 and msg:find("^corio:%d+:") then return end
  assert.truthy(msg:find("^[^:]*arguments_spec%.lua:%d+:"), msg)
end

describe("inside a task, a bad call of", function()
  for _, case in ipairs(inside) do
    it(case[1] .. " raises an error naming the function and argument", function()
      local ok, msg = H.run(function()
        local t = corio.spawn(function() end)
        return pcall(case[2], t)
      end)
      assert.is_false(ok)
      check(msg, { select(3, H.unpack(case)) })
    end)
  end
end)

describe("outside a task, a bad call of", function()
  for _, case in ipairs(outside) do
    it(case[1] .. " raises an error naming the function and argument", function()
      local ok, msg = pcall(case[2])
      assert.is_false(ok)
      check(msg, { select(3, H.unpack(case)) })
    end)
  end
end)
