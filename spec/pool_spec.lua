-- The thread pool: corio.blocking(fn, ...) and corio.pool{...} (csrc/
-- pool.c). Jobs run for real on worker threads, so most specs use the real
-- clock and wide margins. A "gate" job spins until a file exists, which
-- lets a spec hold a worker busy and release it at a moment it chooses;
-- "spin" never ends unless interrupted.
local corio = require "corio"
local H = require "helper"
local proc = require "fixtures.proc"

local function real(extra)
  local o = { clock = "real" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function spin() while true do end end

-- uses about secs of CPU time, then returns "done"
local function burn(secs)
  local c = os.clock()
  while os.clock() - c < secs do end
  return "done"
end

-- spins until the file `path` exists (interruptible: a Lua loop)
local function gate(path, ret)
  while true do
    local f = io.open(path, "r")
    if f then
      f:close()
      return ret
    end
  end
end

-- a fresh path for a gate; open(path) releases it
local function gate_path()
  local path = os.tmpname()
  os.remove(path)
  return path, function()
    local f = assert(io.open(path, "w"))
    f:close()
  end
end

-- waits (real clock) until cond() is true, at most 5 s
local function eventually(cond)
  local t0 = corio.now()
  while not cond() do
    assert(corio.now() - t0 < 5, "condition not reached in 5 s")
    corio.sleep(0.001)
  end
end

local function busy() return corio.stats().workers_busy end

local function attempt(fn, ...)
  return corio.spawn(corio.blocking, fn, ...):wait()
end

describe("corio.blocking", function()
  it("runs the function in another Lua state and returns its results", function()
    _G.loop_only = "loop"
    local seen, sum, kind = H.run(function()
      return corio.blocking(function(a, b)
        return rawget(_G, "loop_only"), a + b, type(_G.coroutine)
      end, 2, 3)
    end, real())
    _G.loop_only = nil
    assert.is_nil(seen)
    assert.equal(5, sum)
    assert.equal("table", kind)
  end)

  it("lets a job require Lua and C modules through the loop's package paths", function()
    local a, b = H.run(function()
      return corio.blocking(function()
        return require("fixtures.pool_init").answer, type(require("corio.core").pool)
      end)
    end, real())
    assert.equal(42, a)
    assert.equal("function", b)
  end)

  it("requires `init` once in each worker before its first job", function()
    local counts = H.run(function()
      local ts = {}
      for i = 1, 8 do
        ts[i] = corio.spawn(corio.blocking, function()
          return rawget(_G, "pool_init_count")
        end)
      end
      local r = {}
      for i = 1, 8 do r[i] = ts[i]:join() end
      return r
    end, real { workers = 2, init = "fixtures.pool_init" })
    for i = 1, 8 do assert.equal(1, counts[i]) end
  end)

  it("reports a failing `init` to every caller, naming the module, and stays usable", function()
    local e1, e2, good = H.run(function()
      local _, a = attempt(function() return 1 end)
      local _, b = attempt(function() return 2 end)
      local p = corio.pool { workers = 1 }
      return a, b, p:run(function() return "fine" end)
    end, real { workers = 1, init = "fixtures.pool_bad_init" })
    for _, e in ipairs { e1, e2 } do
      assert.is_true(corio.is_error(e, "task"))
      assert.matches("init module 'fixtures.pool_bad_init' failed", e.message)
      assert.matches("bad init on purpose", e.message)
    end
    assert.equal("fine", good)
  end)

  it("raises the job's error as kind 'task' with the worker's message and traceback", function()
    local e = H.run(function()
      local _, err = attempt(function() local x = nil; return x.field end)
      return err
    end, real())
    assert.is_true(corio.is_error(e, "task"))
    assert.matches("pool_spec%.lua:%d+: attempt to index", e.message)
    assert.matches("stack traceback", e.traceback)
    assert.matches("pool_spec%.lua", e.traceback)
  end)

  it("accepts _ENV as the only upvalue and refuses any other", function()
    local up = 1
    local msg = H.run(function()
      assert.equal("string", corio.blocking(function() return type(_VERSION) end))
      local ok, e = H.catch(corio.blocking, function() return up end)
      assert.is_false(ok)
      return tostring(e)
    end, real())
    assert.matches("bad argument #1 to '[%w.]*blocking'", msg)
    assert.matches("upvalue 'up'", msg)
  end)

  it("checks its arguments and where it is called", function()
    local msgs = H.run(function()
      local r = {}
      for i, args in ipairs { { nil }, { 42 }, { print } } do
        local ok, e = H.catch(corio.blocking, args[1])
        assert.is_false(ok)
        r[i] = tostring(e)
      end
      return r
    end, real())
    assert.matches("bad argument #1 to '[%w.]*blocking' %(function expected, got nil%)", msgs[1])
    assert.matches("bad argument #1 to '[%w.]*blocking' %(function expected, got number%)", msgs[2])
    assert.matches("bad argument #1 to '[%w.]*blocking' %(Lua function expected, got C function%)", msgs[3])
    assert.has_error(function() corio.blocking(function() end) end,
      "blocking: no corio runtime is running (call it inside corio.run)")
  end)

  it("runs many tasks on few workers and loses no result", function()
    local sum, st = H.run(function()
      local ts = {}
      for i = 1, 2000 do ts[i] = corio.spawn(corio.blocking, function(x) return x * 2 end, i) end
      local s = 0
      for i = 1, 2000 do s = s + ts[i]:join() end
      return s, corio.stats()
    end, real { workers = 2, queue = 16 })
    assert.equal(2000 * 2001, sum)
    assert.is_true(st.workers >= 1 and st.workers <= 2)
    assert.equal(2000, st.jobs_done)
    assert.equal(0, st.jobs_queued)
    assert.equal(0, st.workers_busy)
  end)

  it("starts workers lazily and shows waiting tasks as waiting on 'blocking'", function()
    local path, open = gate_path()
    local before, during, info = H.run(function()
      local b = corio.stats()
      local t = corio.spawn({ name = "job" }, corio.blocking, gate, path, "out")
      eventually(function() return busy() == 1 end)
      local d = corio.stats()
      local w
      for _, ti in ipairs(corio.tasks()) do
        if ti.name == "job" then w = ti end
      end
      open()
      t:join()
      return b, d, w
    end, real { workers = 3 })
    os.remove(path)
    assert.equal(0, before.workers)
    assert.equal(1, during.workers)
    assert.equal(1, during.workers_busy)
    assert.equal("waiting", info.status)
    assert.equal("blocking", info.waiting_on)
  end)

  it("reuses one worker's state: its globals persist from job to job", function()
    local a, b, c = H.run(function()
      local function count() _G.n = (_G.n or 0) + 1; return _G.n end
      return corio.blocking(count), corio.blocking(count), corio.blocking(count)
    end, real { workers = 1 })
    assert.same({ 1, 2, 3 }, { a, b, c })
  end)

  it("runs more distinct functions than a worker caches", function()
    local ok = H.run(function()
      for i = 1, 300 do
        local f = assert((loadstring or load)("return " .. i .. ", ..."))
        local a, b = corio.blocking(f, "x")
        if a ~= i or b ~= "x" then return false end
      end
      return true
    end, real { workers = 1 })
    assert.is_true(ok)
  end)

  it("waits while the queue is full (backpressure) and keeps FIFO order", function()
    local path, open = gate_path()
    local log, queued = H.run(function()
      local l = H.log()
      local p = corio.pool { workers = 1, queue = 2 }
      local first = corio.spawn(p.run, p, gate, path, 0)
      eventually(function() return busy() == 1 end)
      local ts = {}
      for i = 1, 5 do
        ts[i] = corio.spawn(function() l(p:run(function(x) return x end, i)) end)
      end
      H.settle()
      local q = corio.stats().jobs_queued
      open()
      first:join()
      for i = 1, 5 do ts[i]:join() end
      p:close()
      return l.items, q
    end, real())
    os.remove(path)
    assert.equal(5, queued)
    assert.same({ 1, 2, 3, 4, 5 }, log)
  end)

  it("removes a queued job when its waiter is cancelled (it never runs)", function()
    local path, open = gate_path()
    local mark = os.tmpname()
    os.remove(mark)
    local st, err = H.run(function()
      local p = corio.pool { workers = 1, queue = 4 }
      local first = corio.spawn(p.run, p, gate, path)
      eventually(function() return busy() == 1 end)
      local victim = corio.spawn(p.run, p, function(m)
        io.open(m, "w"):close()
      end, mark)
      H.settle()
      victim:cancel()
      local _, e = victim:wait()
      local s = corio.stats()
      open()
      first:join()
      assert.equal("again", p:run(function() return "again" end))
      p:close()
      return s, e
    end, real())
    os.remove(path)
    assert.is_true(corio.is_cancelled(err))
    assert.equal(0, st.jobs_queued)
    assert.is_nil(io.open(mark, "r"), "the cancelled job ran")
  end)

  it("interrupts a running job at a timeout, within milliseconds, and reuses the worker", function()
    local late, again, st = H.run(function()
      local t0 = corio.now()
      local ok, e = H.catch(corio.timeout, 0.05, corio.blocking, spin)
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(e))
      local l = corio.now() - t0 - 0.05
      return l, corio.blocking(function() return "again" end), corio.stats()
    end, real { workers = 1 })
    assert.is_true(late < 0.03, "timeout raised " .. late .. " s late")
    assert.equal("again", again)
    assert.equal(1, st.workers)
  end)

  it("interrupts a job that swallows errors with pcall", function()
    local ok, again = H.run(function()
      local r = H.catch(corio.timeout, 0.05, corio.blocking, function()
        while true do pcall(function() while true do end end) end
      end)
      return r, corio.blocking(function() return "again" end)
    end, real { workers = 1 })
    assert.is_false(ok)
    assert.equal("again", again)
  end)

  it("interrupts a job looping inside a coroutine it made", function()
    local a, b, again = H.run(function()
      local r1 = H.catch(corio.timeout, 0.05, corio.blocking, function()
        coroutine.resume(coroutine.create(function() while true do end end))
        return "escaped"
      end)
      local r2 = H.catch(corio.timeout, 0.05, corio.blocking, function()
        coroutine.wrap(function() while true do end end)()
        return "escaped"
      end)
      return r1, r2, corio.blocking(function()
        local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
        return gen() + gen() + gen()
      end)
    end, real { workers = 1 })
    assert.is_false(a)
    assert.is_false(b)
    assert.equal(6, again)
  end)

  it("cancels the waiter at once even when the job sits in a C call", function()
    local elapsed, again = H.run(function()
      local t0 = corio.now()
      H.catch(corio.timeout, 0.02, corio.blocking, function() os.execute("sleep 0.3") end)
      local e = corio.now() - t0
      return e, corio.blocking(function() return "after" end)
    end, real { workers = 1 })
    assert.is_true(elapsed < 0.2, "waited " .. elapsed .. " s")
    assert.equal("after", again)
  end)

  it("keeps timers on time while every worker is busy", function()
    local worst = H.run(function()
      local ts = { corio.spawn(corio.blocking, spin) }
      eventually(function() return busy() == 1 end)
      local w = 0
      for _ = 1, 10 do
        local t0 = corio.now()
        corio.sleep(0.01)
        local l = corio.now() - t0 - 0.01
        if l > w then w = l end
      end
      ts[1]:cancel()
      return w
    end, real { workers = 1 })
    -- wide: on a loaded machine the OS may run the spinning worker first
    assert.is_true(worst < 0.05, "a timer fired " .. worst .. " s late")
  end)

  it("is not a deadlock to wait only on a job", function()
    local path, open = gate_path()
    local r = H.run(function()
      corio.spawn(function()
        corio.blocking(function() for _ = 1, 1e6 do end end)
        open()
      end)
      return corio.blocking(gate, path, "released")
    end, real { workers = 2 })
    os.remove(path)
    assert.equal("released", r)
  end)

  it("survives a storm of cancellations at every stage of a job", function()
    local ok_count, st = H.run(function()
      math.randomseed(7)
      local p = corio.pool { workers = 2, queue = 4 }
      local ts = {}
      for i = 1, 300 do
        local limit, work = math.random() * 0.004, math.random() * 0.003
        ts[i] = corio.spawn(corio.timeout, limit, p.run, p, burn, work)
        if i % 7 == 0 then ts[i]:cancel() end
        if i % 50 == 0 then corio.sleep(0.001) end
      end
      local n = 0
      for i = 1, 300 do
        if ts[i]:wait() then n = n + 1 end
      end
      assert.equal("done", p:run(burn, 0))
      eventually(function() return busy() == 0 end)
      local s = corio.stats()
      p:close()
      return n, s
    end, real())
    assert.is_true(ok_count < 300)
    assert.equal(0, st.jobs_queued)
    assert.equal(0, st.workers_busy)
  end)

  it("works on a virtual-clock runtime, time standing still while a job runs", function()
    local r, dt = H.run(function()
      local t0 = corio.now()
      local v = corio.blocking(burn, 0.02)
      return v, corio.now() - t0
    end)
    assert.equal("done", r)
    assert.equal(0, dt)
  end)

  it("does not let virtual time jump past a running job to a timer", function()
    local ok, r = pcall(H.run, function()
      return corio.timeout(5, corio.blocking, burn, 0.02)
    end)
    assert.is_true(ok, tostring(r))
    assert.equal("done", r)
  end)
end)

describe("corio.pool", function()
  it("keeps slow jobs from starving quick ones on another pool", function()
    local path, open = gate_path()
    local quick_s = H.run(function()
      local slow = corio.pool { workers = 1 }
      local quick = corio.pool { workers = 1 }
      local s = corio.spawn(slow.run, slow, gate, path)
      eventually(function() return busy() == 1 end)
      local t0 = corio.now()
      assert.equal(7, quick:run(function() return 7 end))
      local q = corio.now() - t0
      open()
      s:join()
      slow:close()
      quick:close()
      return q
    end, real())
    os.remove(path)
    assert.is_true(quick_s < 0.2)
  end)

  it("raises a 'closed' error on run after close, and to callers waiting at close", function()
    local e_wait, e_after = H.run(function()
      local p = corio.pool { workers = 1 }
      local t = corio.spawn(p.run, p, spin)
      eventually(function() return busy() == 1 end)
      p:close()
      p:close()
      local _, ew = t:wait()
      local _, ea = corio.spawn(p.run, p, function() end):wait()
      return ew, ea
    end, real())
    assert.is_true(corio.is_error(e_wait, "closed"))
    assert.is_true(corio.is_error(e_after, "closed"))
    assert.matches("closed", e_after.message)
  end)

  it("validates its options", function()
    H.run(function()
      assert.has_error(function() corio.pool { workers = 0 } end,
        "bad option 'workers' to 'pool' (number from 1 to 1e6 expected)")
      assert.has_error(function() corio.pool { size = 1 } end,
        "bad option 'size' to 'pool' (unknown option)")
      local p = corio.pool { workers = 1, queue = 1, init = "fixtures.pool_init" }
      assert.matches("corio.Pool", tostring(p))
      p:close()
      assert.equal("corio.Pool(closed)", tostring(p))
    end)
    assert.has_error(function() corio.runtime { init = 5 } end,
      "bad option 'init' to 'runtime' (string expected, got number)")
  end)
end)

describe("pool teardown", function()
  for _, mode in ipairs { "exit", "close", "gc", "stuck" } do
    it("neither crashes, leaks nor hangs (" .. mode .. ")", function()
      local r = proc.run("pool_teardown.lua", mode)
      assert.equal("", r.stderr)
      assert.equal(0, r.code)
    end)
  end
end)

describe("corio.blocking's function cache", function()
  it("always runs the function passed, past the loop side's cache bound (ids are never reused)", function()
    local wrong = H.run(function()
      local p = corio.pool({ workers = 1 })
      local bad = 0
      for _ = 1, 2500 do -- 5000 new closures: past the 4096 bound
        if p:run(function() return "A" end) ~= "A" then bad = bad + 1 end
        if p:run(function() return "B" end) ~= "B" then bad = bad + 1 end
      end
      p:close()
      return bad
    end, { clock = "real" })
    assert.equal(0, wrong)
  end)
end)
