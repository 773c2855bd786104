-- Tasks: spawn, join, wait, status, id, name, corio.current(), ownership,
-- FIFO scheduling, and 100k of them at once.
local corio = require "corio"
local H = require "helper"

describe("corio.spawn", function()
  it("runs the function with its arguments, nils included", function()
    local got = H.run(function()
      local t = corio.spawn(function(...) return H.pack(...) end, nil, 2, nil)
      return t:join()
    end)
    assert.equal(3, got.n)
    assert.same({ nil, 2, nil }, { got[1], got[2], got[3] })
  end)

  it("returns before the task runs; the task starts when the spawner waits", function()
    local log = H.log()
    local status
    H.run(function()
      local t = corio.spawn(function() log("task") end)
      status = t:status()
      log("spawned")
      corio.yield()
      log("after yield")
    end)
    assert.equal("ready", status)
    assert.same({ "spawned", "task", "after yield" }, log.items)
  end)

  it("passes many arguments and results through spawn and join", function()
    local n = 200
    local args = {}
    for i = 1, n do args[i] = i end
    local r = H.pack(H.run(function()
      return corio.spawn(function(...) return ... end, H.unpack(args, 1, n)):join()
    end))
    assert.equal(n, r.n)
    assert.equal(1, r[1])
    assert.equal(n, r[n])
  end)

  it("names a task from its options, and defaults the name to task#<id>", function()
    local named, unnamed = H.run(function()
      local a = corio.spawn({ name = "fetch" }, function() end)
      local b = corio.spawn(function() end)
      return a, b
    end)
    assert.equal("fetch", named.name)
    assert.equal("task#" .. unnamed.id, unnamed.name)
  end)

  it("gives every task a distinct, increasing integer id", function()
    local ids = H.run(function()
      local out = { corio.current().id }
      for i = 2, 5 do out[i] = corio.spawn(function() end).id end
      return out
    end)
    for i = 1, #ids do
      assert.equal("number", type(ids[i]))
      assert.equal(math.floor(ids[i]), ids[i])
      if i > 1 then assert.truthy(ids[i] > ids[i - 1]) end
    end
  end)

  it("makes tasks owned by the runtime: a task outlives the task that spawned it", function()
    local parent_status, child_status
    local r = H.run(function()
      local parent = corio.spawn(function()
        return corio.spawn(function() corio.sleep(5) return "child done" end)
      end)
      local child = parent:join()
      parent_status = parent:status()
      child_status = child:status()
      return child:join()
    end)
    assert.equal("done", parent_status)
    assert.equal("waiting", child_status)
    assert.equal("child done", r)
  end)

  it("does not cancel a task's children when it fails", function()
    local r = H.run(function()
      local child
      local parent = corio.spawn(function()
        child = corio.spawn(function() corio.sleep(1) return "survived" end)
        error("parent fails")
      end)
      assert.is_false((parent:wait()))
      return child:join()
    end)
    assert.equal("survived", r)
  end)
end)

describe("a task", function()
  it("reports ready, running, waiting, done, failed and cancelled", function()
    local s = {}
    H.run(function()
      local t = corio.spawn(function()
        s.running = corio.current():status()
        corio.sleep(1)
      end)
      s.ready = t:status()
      corio.yield()
      s.waiting = t:status()
      t:join()
      s.done = t:status()
      local f = corio.spawn(function() error("x") end)
      f:wait()
      s.failed = f:status()
      local c = corio.spawn(corio.sleep, 10)
      corio.yield()
      c:cancel()
      c:wait()
      s.cancelled = c:status()
    end)
    assert.same({
      ready = "ready", running = "running", waiting = "waiting",
      done = "done", failed = "failed", cancelled = "cancelled",
    }, s)
  end)

  it("is what corio.current returns while it runs", function()
    local t, inside = H.run(function()
      local inner
      local u = corio.spawn(function() inner = corio.current() end)
      u:join()
      return u, inner
    end)
    assert.is_true(rawequal(t, inside))
  end)

  it("has a tostring naming its class, id, name and status", function()
    local t = H.run(function()
      local u = corio.spawn({ name = "worker" }, function() end)
      u:join()
      return u
    end)
    local s = tostring(t)
    assert.truthy(s:find("corio.Task", 1, true))
    assert.truthy(s:find(tostring(t.id), 1, true))
    assert.truthy(s:find("worker", 1, true))
    assert.truthy(s:find("done", 1, true))
  end)
end)

describe("corio.current", function()
  it("is the main task inside main", function()
    local cur, status = H.run(function()
      return corio.current(), corio.current():status()
    end)
    assert.equal("userdata", type(cur))
    assert.equal("running", status)
  end)

  it("is nil outside a runtime", function()
    assert.is_nil(corio.current())
  end)
end)

describe("t:join", function()
  it("returns the same results when called twice, and to every joiner", function()
    local same = H.run(function()
      local tbl = {}
      local t = corio.spawn(function() corio.sleep(1) return tbl, 7 end)
      local got = {}
      local joiners = {}
      for i = 1, 3 do
        joiners[i] = corio.spawn(function() got[i] = H.pack(t:join()) end)
      end
      for i = 1, 3 do joiners[i]:join() end
      local a1, b1 = t:join()
      local a2, b2 = t:join()
      local ok = rawequal(a1, tbl) and rawequal(a2, tbl) and b1 == 7 and b2 == 7
      for i = 1, 3 do
        ok = ok and got[i].n == 2 and rawequal(got[i][1], tbl) and got[i][2] == 7
      end
      return ok
    end)
    assert.is_true(same)
  end)

  it("raises the task's error, the same object each time", function()
    if not H.can_pcall_yield then pending("5.1 cannot yield across pcall") return end
    local e1, e2, e3 = H.run(function()
      local t = corio.spawn(function() corio.sleep(1) error("task broke") end)
      local ok1, err1 = pcall(t.join, t)
      local ok2, err2 = pcall(t.join, t)
      assert(not ok1 and not ok2)
      local _, err3 = t:wait()
      return err1, err2, err3
    end)
    assert.truthy(tostring(e1):find("task broke", 1, true))
    assert.is_true(rawequal(e1, e2))
    assert.is_true(rawequal(e1, e3))
  end)

  it("parks the joiner until the task finishes", function()
    local t_join = H.run(function()
      local t = corio.spawn(corio.sleep, 3)
      t:join()
      return corio.now()
    end)
    assert.equal(3, t_join)
  end)
end)

describe("t:wait", function()
  it("returns true and the results of a task that succeeded", function()
    local r = H.pack(H.run(function()
      return corio.spawn(function() return "a", nil, "c" end):wait()
    end))
    assert.equal(4, r.n)
    assert.same({ true, "a", nil, "c" }, { r[1], r[2], r[3], r[4] })
  end)

  it("returns false and the error of a task that failed, without raising", function()
    local ok, err = H.run(function()
      return corio.spawn(function() error("waited boom") end):wait()
    end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("waited boom", 1, true))
  end)

  it("returns false and a cancellation error for a cancelled task", function()
    local ok, err = H.run(function()
      local t = corio.spawn(corio.sleep, 10)
      t:cancel()
      return t:wait()
    end)
    assert.is_false(ok)
    assert.is_true(corio.is_cancelled(err))
  end)
end)

describe("scheduling", function()
  it("runs ready tasks in the order they were spawned", function()
    local log = H.log()
    H.run(function()
      local ts = {}
      for i = 1, 10 do ts[i] = corio.spawn(function() log(i) end) end
      for i = 1, 10 do ts[i]:join() end
    end)
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, log.items)
  end)

  it("runs 100k tasks that each yield once and joins every result", function()
    local n = 100000
    local start = os.clock()
    local sum, st = H.run(function()
      local ts = {}
      for i = 1, n do
        ts[i] = corio.spawn(function(x) corio.yield() return x end, i)
      end
      local s = 0
      for i = 1, n do s = s + ts[i]:join() end
      return s, corio.stats()
    end)
    assert.equal(n * (n + 1) / 2, sum)
    assert.equal(n, st.done)
    assert.truthy(os.clock() - start < 10, "100k tasks took too long")
  end)

  it("parks 100k sleeping tasks at once and wakes them in deadline order", function()
    local n = 100000
    local order, peak, finish = H.run(function()
      local woke = {}
      local function sleeper(i)
        corio.sleep(((i * 7919) % 1000) / 100)
        woke[#woke + 1] = i
      end
      for i = 1, n do corio.spawn(sleeper, i) end
      corio.yield()
      local alive = corio.stats().alive
      corio.sleep(100)
      return woke, alive, corio.now()
    end)
    assert.equal(n + 1, peak)
    assert.equal(100, finish)
    assert.equal(n, #order)
    local ok = true
    for k = 2, n do
      local a, b = order[k - 1], order[k]
      local da, db = (a * 7919) % 1000, (b * 7919) % 1000
      -- by deadline; equal deadlines in the order the tasks slept
      if da > db or (da == db and a > b) then ok = false break end
    end
    assert.is_true(ok, "tasks woke out of deadline order")
  end)
end)
