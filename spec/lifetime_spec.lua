-- Lifetimes: dropping tasks and runtimes is safe, parked tasks stay alive
-- while nobody holds them, and closing the Lua state with parked tasks
-- neither crashes nor leaks (checked in a child process; the ASan run of
-- CI runs that child under the sanitizers too).
local corio = require "corio"
local H = require "helper"
local proc = require "fixtures.proc"

local function full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

local function count(weak)
  local n = 0
  for _ in pairs(weak) do n = n + 1 end
  return n
end

describe("a finished task nobody holds", function()
  it("is collected, even when nobody joined it", function()
    local left = H.run(function()
      local weak = setmetatable({}, { __mode = "v" })
      for i = 1, 10000 do
        weak[i] = corio.spawn(function(x) corio.yield() return { x } end, i)
      end
      corio.sleep(1) -- every task has finished by now
      full_gc()
      return count(weak)
    end)
    assert.equal(0, left)
  end)

  it("gives its memory back when many are dropped unjoined", function()
    -- H.run_plain: H.run's watchdog sets a debug hook in every task, and
    -- PUC 5.1's table of per-coroutine hooks keeps growing with 20000
    -- coroutines (megabytes that are not corio's)
    local growth = H.run_plain(nil, function()
      full_gc()
      local before = collectgarbage("count")
      for _ = 1, 20000 do
        corio.spawn(function() corio.yield() return string.rep("x", 100) end)
      end
      corio.sleep(1)
      full_gc()
      return collectgarbage("count") - before
    end)
    -- 20000 leaked tasks would hold several megabytes
    assert.truthy(growth < 1024, "memory grew by " .. growth .. " KB")
  end)

  it("that failed is reported once when collected during run", function()
    local reports = 0
    H.run(function()
      for _ = 1, 100 do corio.spawn(function() error("dropped") end) end
      corio.sleep(1)
      full_gc()
      corio.sleep(1)
    end, { on_error = function() reports = reports + 1 end })
    assert.equal(100, reports)
  end)
end)

describe("a parked task nobody holds", function()
  it("is not collected and still wakes up", function()
    local log = H.log()
    H.run(function()
      local weak = setmetatable({}, { __mode = "v" })
      weak[1] = corio.spawn(function()
        corio.sleep(1)
        log("woke")
      end)
      corio.yield()
      full_gc()
      log(weak[1] ~= nil and "still there" or "collected")
      corio.sleep(2)
    end)
    assert.same({ "still there", "woke" }, log.items)
  end)

  it("parked in join is not collected either", function()
    local r = H.run(function()
      local result
      local target = corio.spawn(function() corio.sleep(1) return "target" end)
      corio.spawn(function() result = target:join() end)
      corio.yield()
      full_gc()
      corio.sleep(2)
      return result
    end)
    assert.equal("target", r)
  end)
end)

describe("a task object that outlives its runtime", function()
  it("keeps its status, ignores cancel, and refuses join outside a run", function()
    local rt = corio.runtime({ clock = "virtual" })
    local t = rt:run(function()
      local u = corio.spawn(function() return "kept" end)
      u:join()
      return u
    end)
    rt = nil -- luacheck: ignore 311
    full_gc()
    assert.equal("done", t:status())
    assert.has_no.errors(function() t:cancel() end)
    assert.equal("done", t:status())
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("join", 1, true))
  end)
end)

describe("a runtime", function()
  it("can be dropped without ever running", function()
    for _ = 1, 100 do corio.runtime() end
    assert.has_no.errors(full_gc)
  end)

  local function fd_counter()
    local f = io.open("/proc/self/stat")
    if not f then return nil end
    local pid = f:read("*l"):match("^(%d+)")
    f:close()
    return function()
      local p = assert(io.popen("ls /proc/" .. pid .. "/fd | wc -l"))
      local n = tonumber(p:read("*a"))
      p:close()
      return n
    end
  end

  it("closes its event loop when collected: no file descriptor is left open", function()
    local open_fds = fd_counter()
    if not open_fds then pending("needs /proc") return end
    full_gc()
    local before = open_fds()
    for i = 1, 200 do
      local rt = corio.runtime({ clock = i % 2 == 0 and "real" or "virtual" })
      rt:run(function() corio.sleep(0.0001) end)
    end
    full_gc()
    local after = open_fds()
    assert.truthy(after - before <= 2, ("fds: %d before, %d after"):format(before, after))
  end)

  it("made by corio.run releases its file descriptors when run returns, without waiting for the GC", function()
    local open_fds = fd_counter()
    if not open_fds then pending("needs /proc") return end
    full_gc()
    local before = open_fds()
    collectgarbage("stop")
    local ok, err = pcall(function()
      for i = 1, 300 do
        corio.run(function() corio.sleep(0) end)
        if i % 3 == 0 then pcall(corio.run, function() error("x") end) end
      end
    end)
    local after = open_fds()
    collectgarbage("restart")
    assert.truthy(ok, err)
    assert.truthy(after - before <= 2, ("fds: %d before, %d after"):format(before, after))
  end)

  it("releases its file descriptors at rt:close(), after which run is an error", function()
    local open_fds = fd_counter()
    if not open_fds then pending("needs /proc") return end
    full_gc()
    local before = open_fds()
    collectgarbage("stop")
    local rts = {}
    for i = 1, 50 do
      rts[i] = corio.runtime()
      assert.equal(7, rts[i]:run(function() return 7 end))
      rts[i]:close()
      rts[i]:close() -- closing twice is harmless
    end
    local after = open_fds()
    collectgarbage("restart")
    assert.truthy(after - before <= 2, ("fds: %d before, %d after"):format(before, after))
    local ok, err = pcall(rts[1].run, rts[1], function() end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("closed", 1, true), tostring(err))
  end)
end)

describe("closing the Lua state", function()
  local function check(mode)
    local r = proc.run("close_state.lua", mode)
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
  end

  it("with tasks parked in sleep, join and a timeout, ready or never started, neither crashes nor prints", function()
    check("parked")
  end)

  it("from main itself, with tasks parked, neither crashes nor prints", function()
    check("main")
  end)

  it("on the real clock, with the event loop's timer armed, neither crashes nor prints", function()
    check("real")
  end)

  it("reports a failed task nobody joined instead of losing its error", function()
    if _VERSION == "Lua 5.1" and not rawget(_G, "jit") then
      pending("os.exit cannot close the state on Lua 5.1")
      return
    end
    local r = proc.run("close_state.lua", "failed")
    assert.equal(0, r.code)
    assert.truthy(r.stderr:find("boom from failer", 1, true), r.stderr)
  end)
end)
