-- Errors are never lost: every failure path reaches a joiner, a scope or
-- the runtime's error handler (on_error; stderr when there is none or it
-- fails itself), exactly once, with the original message.
local corio = require "corio"
local H = require "helper"
local proc = require "fixtures.proc"

local PUC51 = _VERSION == "Lua 5.1" and not rawget(_G, "jit")

-- Runs fn in a virtual-clock runtime whose on_error collects reports;
-- returns the reports (tostring of each) and fn's pcall outcome.
local function collect(fn, opts)
  local reports = {}
  local o = { on_error = function(e) reports[#reports + 1] = tostring(e) end }
  for k, v in pairs(opts or {}) do o[k] = v end
  local r = H.pack(pcall(H.run, fn, o))
  return reports, r
end

local function has(list, text)
  local n = 0
  for _, s in ipairs(list) do
    if tostring(s):find(text, 1, true) then n = n + 1 end
  end
  return n
end

describe("errors are never lost:", function()
  it("a failed task nobody joins reaches on_error exactly once, with its name", function()
    local reports, r = collect(function()
      corio.spawn({ name = "lonely" }, function() error("unjoined failure") end)
      corio.sleep(1)
      return "main"
    end)
    assert.is_true(r[1])
    assert.equal("main", r[2])
    assert.equal(1, #reports)
    assert.equal(1, has(reports, "unjoined failure"))
    assert.equal(1, has(reports, "lonely"))
  end)

  it("a failed task that is joined reaches its joiner and not on_error", function()
    local reports, r = collect(function()
      local t = corio.spawn(function() error("joined failure") end)
      local ok, err = t:wait()
      assert.is_false(ok)
      return tostring(err)
    end)
    assert.is_true(r[1])
    assert.truthy(r[2]:find("joined failure", 1, true))
    assert.equal(0, #reports)
  end)

  it("an error raised by cleanup during cancellation reaches the joiner instead of the cancellation", function()
    if not H.need_pcall_yield(pending) then return end
    local reports, r = collect(function()
      local t = corio.spawn(function()
        pcall(corio.sleep, 10) -- the cancellation lands here
        error("cleanup failed")
      end)
      corio.yield()
      t:cancel()
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.is_false(corio.is_cancelled(err))
      return tostring(err)
    end)
    assert.is_true(r[1], tostring(r[2]))
    assert.truthy(r[2]:find("cleanup failed", 1, true), r[2])
    assert.equal(0, #reports)
  end)

  it("an error raised by cleanup during cancellation of an unjoined task reaches on_error", function()
    if not H.need_pcall_yield(pending) then return end
    local reports, r = collect(function()
      local t = corio.spawn({ name = "cleaner" }, function()
        pcall(corio.sleep, 10)
        error("cleanup failed unjoined")
      end)
      corio.yield()
      t:cancel()
      corio.sleep(1)
    end)
    assert.is_true(r[1], tostring(r[2]))
    assert.equal(1, #reports)
    assert.equal(1, has(reports, "cleanup failed unjoined"))
  end)

  it("an error raised by a <close> variable during cancellation reaches the joiner (Lua 5.4)", function()
    if not H.lua54 then return pending("<close> needs Lua 5.4") end
    local body = assert(load([[
      local corio = ...
      local guard <close> = setmetatable({}, { __close = function()
        error("close handler failed")
      end })
      corio.sleep(10)
    ]]))
    local reports, r = collect(function()
      local t = corio.spawn(body, corio)
      corio.yield()
      t:cancel()
      local ok, err = t:wait()
      assert.is_false(ok)
      return tostring(err)
    end)
    assert.is_true(r[1], tostring(r[2]))
    assert.truthy(r[2]:find("close handler failed", 1, true), r[2])
    assert.equal(0, #reports)
  end)

  it("a child's cleanup error in a failing scope is in err.others, after the first failure", function()
    if not H.need_pcall_yield(pending) then return end
    local reports, r = collect(function()
      local ok, err = pcall(corio.scope, function(s)
        s:spawn(function()
          pcall(corio.sleep, 10) -- cancelled by the sibling's failure
          error("child cleanup failed")
        end)
        s:spawn(function() corio.sleep(1) error("first failure") end)
      end)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("first failure", 1, true), tostring(err))
      assert.equal(1, #err.others)
      return tostring(err.others[1])
    end)
    assert.is_true(r[1], tostring(r[2]))
    assert.truthy(r[2]:find("child cleanup failed", 1, true), r[2])
    assert.equal(0, #reports)
  end)

  it("a child's failure while its scope is being cancelled by a timeout is raised, not swallowed", function()
    if not H.need_pcall_yield(pending) then return end
    local reports, r = collect(function()
      local ok, err = pcall(corio.timeout, 1, function()
        corio.scope(function(s)
          s:spawn(function()
            pcall(corio.sleep, 10)
            error("failed while cancelled")
          end)
          corio.sleep(10)
        end)
      end)
      assert.is_false(ok)
      return tostring(err)
    end)
    assert.is_true(r[1], tostring(r[2]))
    assert.truthy(r[2]:find("failed while cancelled", 1, true), r[2])
    assert.equal(0, #reports)
  end)

  it("failures after a string first failure (no err.others to hold them) reach on_error", function()
    if not H.need_pcall_yield(pending) then return end
    local reports, r = collect(function()
      local ok, err = pcall(corio.scope, function(s)
        s:spawn(function()
          pcall(corio.sleep, 10)
          error("later child failure")
        end)
        corio.yield()
        error("body failed first", 0)
      end)
      assert.is_false(ok)
      return tostring(err)
    end)
    assert.is_true(r[1], tostring(r[2]))
    assert.truthy(r[2]:find("body failed first", 1, true), r[2])
    assert.equal(1, #reports)
    assert.equal(1, has(reports, "later child failure"))
  end)

  it("a detached task that fails after main returned reaches on_error", function()
    local reports, r = collect(function()
      corio.spawn({ name = "late" }, function()
        corio.shield(function()
          corio.sleep(5)
          error("failed after main returned")
        end)
      end)
      return "main done"
    end)
    assert.is_true(r[1], tostring(r[2]))
    assert.equal("main done", r[2])
    assert.equal(1, #reports)
    assert.equal(1, has(reports, "failed after main returned"))
  end)

  it("regression: main returning does not cancel a shielded block's scope children (nor, on 5.1, its body)", function()
    local log = H.log()
    local reports, r = collect(function()
      corio.spawn({ name = "late" }, function()
        corio.shield(function()
          corio.scope(function(s)
            s:spawn(function()
              corio.sleep(5) -- must not be cancelled: it is shielded
              log("child slept")
              error("shielded child failed")
            end)
          end)
        end)
      end)
      corio.yield()
      return "main done"
    end)
    assert.is_true(r[1], tostring(r[2]))
    assert.same({ "child slept" }, log.items)
    assert.equal(1, #reports)
    assert.equal(1, has(reports, "shielded child failed"))
  end)

  it("a detached task whose cleanup fails when main returns reaches on_error", function()
    if not H.need_pcall_yield(pending) then return end
    local reports, r = collect(function()
      corio.spawn({ name = "late" }, function()
        pcall(corio.sleep, 5) -- cancelled as main returns
        error("cleanup after main failed")
      end)
      corio.yield()
    end)
    assert.is_true(r[1], tostring(r[2]))
    assert.equal(1, #reports)
    assert.equal(1, has(reports, "cleanup after main failed"))
  end)

  it("regression: 20,000 tasks failing unobserved in one batch are each reported once, in linear time", function()
    -- giving each failed task a __gc metatable made Lua 5.3/5.4 walk the
    -- list of every object made since that task: 8,000 took 6 s
    local t0 = os.clock()
    local reports, r = collect(function()
      local keep = {}
      for i = 1, 20000 do keep[i] = corio.spawn(error, "batch failure") end
      corio.yield()
      keep = nil -- luacheck: ignore 311
      collectgarbage()
      collectgarbage()
      corio.sleep(1)
    end)
    assert.is_true(r[1], tostring(r[2]))
    assert.equal(20000, #reports)
    local cpu = os.clock() - t0
    assert.truthy(cpu < 5, ("took %.1f s of CPU"):format(cpu))
  end)

  it("an error in a trace hook reaches on_error", function()
    local reports, r = collect(function()
      corio.trace(function(ev) if ev == "spawn" then error("trace hook broke") end end)
      corio.spawn(function() end):join()
      corio.trace(nil)
    end)
    assert.is_true(r[1], tostring(r[2]))
    assert.truthy(has(reports, "trace hook broke") >= 1)
  end)

  it("a failing pool init reaches the job's caller", function()
    local reports, r = collect(function()
      local p = corio.pool({ workers = 1, init = "fixtures.pool_bad_init" })
      local ok, err = pcall(p.run, p, function() return 1 end)
      p:close()
      assert.is_false(ok)
      return tostring(err)
    end, { clock = "real" })
    assert.is_true(r[1], tostring(r[2]))
    assert.truthy(r[2]:find("bad init on purpose", 1, true), r[2])
    assert.equal(0, #reports)
  end)

  it("a failing pool init in a job nobody joins reaches on_error", function()
    local reports, r = collect(function()
      local p = corio.pool({ workers = 1, init = "fixtures.pool_bad_init" })
      corio.spawn({ name = "job" }, p.run, p, function() return 1 end)
      corio.sleep(0.5)
      p:close()
    end, { clock = "real" })
    assert.is_true(r[1], tostring(r[2]))
    assert.equal(1, #reports)
    assert.equal(1, has(reports, "bad init on purpose"))
  end)

  it("a failing runtime init reaches the caller of corio.blocking", function()
    local reports, r = collect(function()
      local ok, err = pcall(corio.blocking, function() return 1 end)
      assert.is_false(ok)
      return tostring(err)
    end, { clock = "real", workers = 1, init = "fixtures.pool_bad_init" })
    assert.is_true(r[1], tostring(r[2]))
    assert.truthy(r[2]:find("bad init on purpose", 1, true), r[2])
    assert.equal(0, #reports)
  end)

  it("an error raised by on_error itself goes to stderr with the original error, and run goes on", function()
    local r = proc.run("errors_lost.lua", "handler")
    assert.equal(0, r.code)
    assert.equal("main ok\n", r.stdout)
    assert.truthy(r.stderr:find("the handler broke", 1, true), r.stderr)
    assert.truthy(r.stderr:find("original failure", 1, true), r.stderr)
  end)

  it("without on_error, an unjoined failure is one stderr line naming the task", function()
    local r = proc.run("errors_lost.lua", "default")
    assert.equal(0, r.code)
    assert.equal("main ok\n", r.stdout)
    local n = select(2, r.stderr:gsub("default report", ""))
    assert.equal(1, n)
    assert.truthy(r.stderr:find("failer", 1, true), r.stderr)
  end)

  it("an unjoined failure is reported even when the state closes right after it", function()
    if PUC51 then return pending("os.exit cannot close the state on Lua 5.1") end
    local r = proc.run("errors_lost.lua", "exit")
    assert.equal(0, r.code)
    local n = select(2, r.stderr:gsub("failed before exit", ""))
    assert.equal(1, n)
  end)
end)
