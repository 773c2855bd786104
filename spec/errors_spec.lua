-- The one error type: kind, message, code, traceback, task, __tostring;
-- corio.is_cancelled / is_timeout / is_error; task errors as join and wait
-- deliver them.
local corio = require "corio"
local H = require "helper"

-- The error a task ended with, taken without pcall (works on Lua 5.1).
local function task_error(opts, fn)
  return H.run(function()
    local t = corio.spawn(opts, fn)
    local ok, err = t:wait()
    assert(not ok, "the task did not fail")
    return err
  end)
end

local function failing_worker()
  error("worker broke")
end

describe("a task error", function()
  it("is a corio error of kind task carrying the message and the task's name", function()
    local err = task_error({ name = "fetcher" }, failing_worker)
    assert.is_true(corio.is_error(err))
    assert.is_true(corio.is_error(err, "task"))
    assert.equal("task", err.kind)
    assert.truthy(err.message:find("worker broke", 1, true))
    assert.equal("fetcher", err.task)
  end)

  it("carries the traceback of the task that failed", function()
    local err = task_error({ name = "fetcher" }, failing_worker)
    assert.equal("string", type(err.traceback))
    assert.truthy(err.traceback:find("stack traceback", 1, true))
    assert.truthy(err.traceback:find("errors_spec.lua", 1, true))
  end)

  it("names the default task name when the task has none", function()
    local id
    local err = H.run(function()
      local t = corio.spawn(failing_worker)
      id = t.id
      local _, e = t:wait()
      return e
    end)
    assert.equal("task#" .. id, err.task)
  end)

  it("prints as one readable line with kind, message and task name", function()
    local err = task_error({ name = "fetcher" }, failing_worker)
    local s = tostring(err)
    assert.is_nil(s:find("\n", 1, true))
    assert.truthy(s:find("^task: "))
    assert.truthy(s:find("worker broke", 1, true))
    assert.truthy(s:find("fetcher", 1, true))
  end)

  it("keeps a non-string error value in err.value", function()
    local value = { code = 7 }
    local err = task_error({}, function() error(value) end)
    assert.equal("task", err.kind)
    assert.is_true(rawequal(value, err.value))
    assert.equal("string", type(err.message))
  end)

  it("is a readable error object even when the task raised nil", function()
    local err = task_error({}, function() error() end)
    assert.equal("task", err.kind)
    assert.truthy(err.message:find("nil", 1, true))
    assert.equal("string", type(tostring(err)))
  end)

  it("is raised by join as the same object wait returns", function()
    if not H.can_pcall_yield then pending("5.1 cannot yield across pcall") return end
    local raised, returned = H.run(function()
      local t = corio.spawn({ name = "j" }, function()
        corio.sleep(1)
        error("joined boom")
      end)
      local ok, e = pcall(t.join, t)
      assert(not ok)
      local _, w = t:wait()
      return e, w
    end)
    assert.is_true(rawequal(raised, returned))
    assert.equal("j", raised.task)
  end)

  it("keeps the name and traceback of the task that first failed when passed through joins", function()
    local err = H.run(function()
      local a = corio.spawn({ name = "origin" }, function()
        corio.sleep(1)
        failing_worker()
      end)
      local b = corio.spawn({ name = "relay" }, function() return a:join() end)
      local _, e = b:wait()
      return e
    end)
    assert.equal("origin", err.task)
    assert.truthy(err.message:find("worker broke", 1, true))
    local line = debug.getinfo(failing_worker, "S").linedefined + 1
    assert.truthy(err.traceback:find("errors_spec.lua:" .. line .. ":", 1, true), err.traceback)
  end)

  it("keeps the identity and kind of a corio error the task raised", function()
    local inner
    local err = task_error({ name = "timed" }, function()
      local ok, e = corio.spawn(function() corio.timeout(1, corio.sleep, 5) end):wait()
      assert(not ok)
      inner = e
      error(e)
    end)
    assert.is_true(rawequal(inner, err))
    assert.is_true(corio.is_timeout(err))
    assert.equal("timeout", err.kind)
  end)

  it("runs the task's <close> variables when it fails (Lua 5.4)", function()
    if not H.lua54 then pending("<close> needs Lua 5.4") return end
    local log = H.log()
    local body = assert(load([[
      local log = ...
      return function()
        local r <close> = setmetatable({}, { __close = function(_, e)
          log(e ~= nil and "closed with error" or "closed")
        end })
        error("fails with a resource open")
      end
    ]]))(log)
    local err = task_error({}, body)
    assert.same({ "closed with error" }, log.items)
    assert.truthy(err.message:find("fails with a resource open", 1, true))
  end)

  it("from main is raised by run with main's traceback", function()
    local rt = corio.runtime({ clock = "virtual" })
    local ok, err = pcall(rt.run, rt, function() failing_worker() end)
    assert.is_false(ok)
    assert.is_true(corio.is_error(err, "task"))
    assert.truthy(err.message:find("worker broke", 1, true))
    assert.truthy(err.traceback:find("errors_spec.lua", 1, true))
  end)
end)

describe("error kinds", function()
  local cancelled, timeout, failed
  setup(function()
    cancelled, timeout, failed = H.run(function()
      local c = corio.spawn(corio.sleep, 10)
      c:cancel()
      local _, ce = c:wait()
      local _, te = corio.spawn(corio.timeout, 1, corio.sleep, 2):wait()
      local _, fe = corio.spawn(error, "x"):wait()
      return ce, te, fe
    end)
  end)

  it("share one metatable whose __tostring gives one line", function()
    local mt = getmetatable(cancelled)
    assert.equal(mt, getmetatable(timeout))
    assert.equal(mt, getmetatable(failed))
    assert.equal("function", type(mt.__tostring))
    for _, e in ipairs({ cancelled, timeout, failed }) do
      local s = tostring(e)
      assert.truthy(s:find("^" .. e.kind .. ": "), s)
      assert.is_nil(s:find("\n", 1, true))
    end
  end)

  it("have a kind and a message", function()
    assert.equal("cancelled", cancelled.kind)
    assert.equal("timeout", timeout.kind)
    assert.equal("task", failed.kind)
    for _, e in ipairs({ cancelled, timeout, failed }) do
      assert.equal("string", type(e.message))
      assert.truthy(#e.message > 0)
    end
  end)

  it("are told apart by is_cancelled and is_timeout", function()
    assert.is_true(corio.is_cancelled(cancelled))
    assert.is_false(corio.is_cancelled(timeout))
    assert.is_false(corio.is_cancelled(failed))
    assert.is_true(corio.is_timeout(timeout))
    assert.is_false(corio.is_timeout(cancelled))
    assert.is_false(corio.is_timeout(failed))
  end)

  it("are not confused with plain values", function()
    for _, v in ipairs({ "cancelled", "timeout", 42, true, {}, print }) do
      assert.is_false(corio.is_cancelled(v))
      assert.is_false(corio.is_timeout(v))
      assert.is_false(corio.is_error(v))
    end
    assert.is_false(corio.is_cancelled(nil))
    assert.is_false(corio.is_timeout())
  end)

  it("are matched by is_error with and without a kind", function()
    assert.is_true(corio.is_error(cancelled))
    assert.is_true(corio.is_error(cancelled, "cancelled"))
    assert.is_false(corio.is_error(cancelled, "timeout"))
    assert.is_true(corio.is_error(failed, "task"))
  end)
end)
