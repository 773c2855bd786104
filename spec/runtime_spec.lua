-- corio.runtime{...}, rt:run(main, ...) and corio.run(main, ...): what run
-- returns and raises, how it ends the tasks main left behind, how it
-- reports failures nobody joined, and that it can run again.
local corio = require "corio"
local H = require "helper"
local proc = require "fixtures.proc"

describe("corio.runtime", function()
  it("creates a runtime object whose tostring names its class and clock", function()
    local rt = corio.runtime({ clock = "virtual" })
    assert.truthy(tostring(rt):find("corio.Runtime", 1, true))
    assert.truthy(tostring(rt):find("virtual", 1, true))
    assert.truthy(tostring(corio.runtime()):find("real", 1, true))
  end)

  it("accepts every documented option", function()
    local rt = corio.runtime({
      workers = 2, queue = 16, io_timeout = 5, max_io = 8, clock = "virtual",
      on_error = function() end,
    })
    assert.equal(42, rt:run(function() return 42 end))
  end)
end)

describe("rt:run", function()
  it("returns every result of main, nils included", function()
    local r = H.pack(H.run(function() return 1, nil, "three", nil end))
    assert.equal(4, r.n)
    assert.same({ 1, nil, "three", nil }, { r[1], r[2], r[3], r[4] })
  end)

  it("returns nothing when main returns nothing", function()
    assert.equal(0, select("#", H.run(function() end)))
  end)

  it("passes its extra arguments to main", function()
    local r = H.pack(H.run(function(...)
      return select("#", ...), ...
    end, nil, "a", nil, 3))
    assert.equal(3, r[1])
    assert.same({ "a", nil, 3 }, { r[2], r[3], r[4] })
  end)

  it("raises main's error", function()
    local err = H.run_error(function() error("main broke") end)
    assert.truthy(tostring(err):find("main broke", 1, true))
  end)

  it("raises a corio error from main as the same object, kind kept", function()
    local raised
    local err = H.run_error(function()
      local t = corio.spawn(corio.sleep, 10)
      t:cancel()
      local _, e = t:wait()
      raised = e
      error(e)
    end)
    assert.equal(raised, err)
    assert.is_true(corio.is_cancelled(err))
  end)

  it("cancels the tasks main left running and waits for them before returning", function()
    local left = {}
    local r = H.run(function()
      for i = 1, 3 do left[i] = corio.spawn(corio.sleep, 100) end
      corio.yield()
      return "main done"
    end)
    assert.equal("main done", r)
    for i = 1, 3 do assert.equal("cancelled", left[i]:status()) end
    local st = H.rt:stats()
    assert.equal(0, st.alive)
    assert.equal(3, st.cancelled)
  end)

  it("runs the cleanup of the tasks main left running before returning", function()
    if not H.can_pcall_yield then pending("5.1 cannot yield across pcall") return end
    local log = H.log()
    H.run(function()
      corio.spawn(function()
        local ok, err = pcall(corio.sleep, 100)
        log(ok == false and corio.is_cancelled(err) and "cleanup saw cancel" or "wrong")
      end)
      corio.yield()
      log("main returns")
    end)
    assert.same({ "main returns", "cleanup saw cancel" }, log.items)
  end)

  it("waits for cleanup that itself waits, inside a shield, before returning", function()
    if not H.can_pcall_yield then pending("5.1 cannot yield across pcall") return end
    local log = H.log()
    local t_end
    H.run(function()
      corio.spawn(function()
        pcall(corio.sleep, 100)
        corio.shield(function()
          corio.sleep(2)
          t_end = corio.now()
          log("cleanup finished")
        end)
      end)
      corio.sleep(1)
    end)
    assert.same({ "cleanup finished" }, log.items)
    assert.equal(3, t_end)
  end)

  it("starts a task main left never started, and cancels it at its first await", function()
    local log = H.log()
    local t
    H.run(function()
      t = corio.spawn(function()
        log("started")
        corio.sleep(1)
        log("slept")
      end)
    end)
    assert.same({ "started" }, log.items)
    assert.equal("cancelled", t:status())
  end)

  it("cancels the tasks left running when main fails, and still raises main's error", function()
    local t
    local err = H.run_error(function()
      t = corio.spawn(corio.sleep, 100)
      corio.yield()
      error("main failed")
    end)
    assert.truthy(tostring(err):find("main failed", 1, true))
    assert.equal("cancelled", t:status())
  end)

  it("does not report tasks it cancelled at the end as failures", function()
    local reports = 0
    H.run(function()
      corio.spawn(corio.sleep, 100)
      corio.yield()
    end, { on_error = function() reports = reports + 1 end })
    assert.equal(0, reports)
  end)

  it("runs again on the same runtime after main failed", function()
    local rt = corio.runtime({ clock = "virtual" })
    assert.has_error(function() rt:run(function() error("first") end) end)
    assert.equal("second", rt:run(function()
      corio.sleep(1)
      return "second"
    end))
  end)

  it("runs again on the same runtime after it returned", function()
    local rt = corio.runtime({ clock = "virtual" })
    for i = 1, 3 do
      assert.equal(i, rt:run(function(x)
        local t = corio.spawn(function() corio.sleep(1) return x end)
        return t:join()
      end, i))
    end
  end)

  it("raises a clear error when called inside a running task", function()
    local errs = {}
    H.run(function()
      local other = corio.runtime({ clock = "virtual" })
      local ok1, e1 = pcall(other.run, other, function() end)
      local ok2, e2 = pcall(H.rt.run, H.rt, function() end)
      local ok3, e3 = pcall(corio.run, function() end)
      errs = { ok1, e1, ok2, e2, ok3, e3 }
      corio.sleep(1) -- the outer run goes on unharmed
    end)
    for i = 1, 5, 2 do
      assert.is_false(errs[i])
      assert.truthy(tostring(errs[i + 1]):find("run", 1, true))
      assert.truthy(tostring(errs[i + 1]):find("already running", 1, true))
    end
  end)
end)

describe("corio.run", function()
  it("runs main on a fresh runtime and returns its results", function()
    local a, b = corio.run(function(x, y)
      local t = corio.spawn(function() return x * 2 end)
      return t:join(), y
    end, 21, "y")
    assert.equal(42, a)
    assert.equal("y", b)
  end)

  it("raises main's error", function()
    local ok, err = pcall(corio.run, function() error("run broke") end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("run broke", 1, true))
  end)

  it("works again after it returned or raised", function()
    pcall(corio.run, function() error("x") end)
    assert.equal(1, corio.run(function() return 1 end))
    assert.equal(2, corio.run(function() return 2 end))
  end)
end)

describe("failures nobody joined", function()
  it("are passed once to on_error, and run still returns main's results", function()
    local got = {}
    local r = H.run(function()
      corio.spawn({ name = "lost" }, function() error("lost boom") end)
      corio.sleep(1)
      return "main ok"
    end, { on_error = function(e) got[#got + 1] = e end })
    assert.equal("main ok", r)
    assert.equal(1, #got)
    assert.equal("task", got[1].kind)
    assert.equal("lost", got[1].task)
    assert.truthy(tostring(got[1].message):find("lost boom", 1, true))
    assert.equal("string", type(got[1].traceback))
  end)

  it("are each reported once when several tasks fail", function()
    local names = {}
    H.run(function()
      for i = 1, 3 do
        corio.spawn({ name = "f" .. i }, function() error("boom " .. i) end)
      end
      corio.sleep(1)
    end, { on_error = function(e) names[#names + 1] = e.task end })
    table.sort(names)
    assert.same({ "f1", "f2", "f3" }, names)
  end)

  it("are not reported when the task was joined or waited", function()
    local reports = 0
    H.run(function()
      local a = corio.spawn(function() error("a") end)
      local b = corio.spawn(function() error("b") end)
      corio.sleep(1)
      assert.is_false((b:wait()))
      local ok = a:wait()
      assert.is_false(ok)
    end, { on_error = function() reports = reports + 1 end })
    assert.equal(0, reports)
  end)

  it("are not reported when a joiner was already parked on the task", function()
    local reports = 0
    H.run(function()
      local a = corio.spawn(function() corio.sleep(1) error("a") end)
      assert.is_false((a:wait()))
    end, { on_error = function() reports = reports + 1 end })
    assert.equal(0, reports)
  end)

  it("are reported once even when the task object is collected during run", function()
    local reports = 0
    H.run(function()
      corio.spawn(function() error("collected") end)
      corio.sleep(1)
      collectgarbage("collect")
      collectgarbage("collect")
      corio.sleep(1)
    end, { on_error = function() reports = reports + 1 end })
    assert.equal(1, reports)
  end)

  it("go to stderr by default, naming the task and the error, without ending the process", function()
    local r = proc.run("report.lua", "default")
    assert.equal(0, r.code)
    assert.truthy(r.stdout:find("run returned: ok", 1, true))
    local first = r.stderr:match("^[^\n]*")
    assert.truthy(first:find("failer", 1, true), r.stderr)
    assert.truthy(first:find("boom from failer", 1, true), r.stderr)
    local _, count = r.stderr:gsub("boom from failer", "")
    assert.truthy(count >= 1)
    local _, reports = r.stderr:gsub("'failer'", "")
    assert.equal(1, reports, r.stderr)
  end)

  it("still reach stderr when the on_error handler itself fails", function()
    local r = proc.run("report.lua", "bad_handler")
    assert.equal(0, r.code)
    assert.truthy(r.stdout:find("run returned: ok", 1, true))
    assert.truthy(r.stderr:find("handler broke", 1, true), r.stderr)
    assert.truthy(r.stderr:find("boom from failer", 1, true), r.stderr)
  end)
end)

describe("the end of run", function()
  it("also cancels tasks spawned by the cleanup of tasks it is cancelling", function()
    if not H.need_pcall_yield(pending) then return end
    local log = H.log()
    H.run(function()
      corio.spawn(function()
        pcall(corio.sleep, 5) -- waiting when main returns: cancelled
        corio.spawn(function() -- spawned during the cleanup
          log("respawned")
          corio.sleep(1000)
          log("never")
        end)
      end)
      corio.yield()
    end)
    assert.same({ "respawned" }, log.items)
    assert.equal(0, H.rt:stats().alive)
  end)
end)
