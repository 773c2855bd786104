-- Calls in the wrong place: awaits outside a task, awaits inside a user's
-- own coroutine or under a C call, a plain coroutine.yield inside a task,
-- and a task waiting for itself. Each is a clear error naming the function,
-- or a documented, sane behaviour; never a crash or a hang.
local corio = require "corio"
local H = require "helper"

local function error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return tostring(err)
end

describe("an await outside a task", function()
  local finished -- a finished task of a runtime that is no longer running
  setup(function()
    finished = H.run(function() return corio.spawn(function() end) end)
  end)

  local calls = {
    { "sleep", function() corio.sleep(1) end },
    { "yield", function() corio.yield() end },
    { "join", function() finished:join() end },
    { "wait", function() finished:wait() end },
    { "timeout", function() corio.timeout(1, function() end) end },
    { "shield", function() corio.shield(function() end) end },
    { "scope", function() corio.scope(function() end) end },
    { "join", function() corio.join(function() end) end },
    { "try_join", function() corio.try_join(function() end) end },
    { "select", function() corio.select(function() end) end },
    { "spawn", function() corio.spawn(function() end) end },
  }
  for _, c in ipairs(calls) do
    local fname, call = c[1], c[2]
    it("is a clear error naming " .. fname, function()
      local msg = error_of(call)
      assert.truthy(msg:find(fname, 1, true), msg)
      assert.truthy(msg:find("corio", 1, true), msg)
    end)
  end
end)

describe("an await inside a user's own coroutine in a task", function()
  local calls = {
    { "sleep", function() corio.sleep(1) end },
    { "yield", function() corio.yield() end },
    { "join", function(t) t:join() end },
    { "wait", function(t) t:wait() end },
    { "timeout", function() corio.timeout(1, corio.sleep, 1) end },
    { "scope", function() corio.scope(function() end) end },
  }
  for _, c in ipairs(calls) do
    local fname, call = c[1], c[2]
    it("is a clear error naming " .. fname .. ", and the task goes on unharmed", function()
      local ok, msg, after = H.run(function()
        local other = corio.spawn(corio.sleep, 1)
        local co = coroutine.create(call)
        local r, e = coroutine.resume(co, other)
        corio.sleep(2) -- the task itself can still wait
        other:join()
        return r, tostring(e), corio.now()
      end)
      assert.is_false(ok)
      assert.truthy(msg:find(fname, 1, true), msg)
      assert.truthy(msg:find("coroutine", 1, true), msg)
      assert.equal(2, after)
    end)
  end

  it("does not stop the coroutine from spawning tasks or reading the clock", function()
    local r = H.run(function()
      local co = coroutine.wrap(function()
        local t = corio.spawn(function() return "from nested" end)
        coroutine.yield(corio.now())
        return t
      end)
      assert(co() == 0)
      return co():join()
    end)
    assert.equal("from nested", r)
  end)
end)

describe("a generator coroutine inside a task", function()
  it("yields to its consumer, not to the scheduler", function()
    local log = H.log()
    H.run(function()
      corio.spawn(function() log("other task") end)
      local gen = coroutine.wrap(function()
        for i = 1, 3 do coroutine.yield(i) end
      end)
      local v = gen()
      while v do
        log(v)
        v = gen()
      end
      log("generator done")
      corio.yield()
    end)
    assert.same({ 1, 2, 3, "generator done", "other task" }, log.items)
  end)

  it("can be stepped between awaits of the task", function()
    local got = H.run(function()
      local gen = coroutine.wrap(function()
        for i = 1, 3 do coroutine.yield(i) end
      end)
      local out = {}
      for _ = 1, 3 do
        out[#out + 1] = gen()
        corio.sleep(1)
      end
      out[#out + 1] = corio.now()
      return out
    end)
    assert.same({ 1, 2, 3, 3 }, got)
  end)
end)

describe("a plain coroutine.yield inside a task", function()
  it("acts like corio.yield: the task goes to the back of the ready queue", function()
    local log = H.log()
    H.run(function()
      local a = corio.spawn(function()
        for i = 1, 3 do
          log("a" .. i)
          coroutine.yield()
        end
      end)
      local b = corio.spawn(function()
        for i = 1, 3 do
          log("b" .. i)
          corio.yield()
        end
      end)
      a:join()
      b:join()
    end)
    assert.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, log.items)
  end)

  it("returns nothing, whatever values it was given", function()
    local n = H.run(function()
      return select("#", coroutine.yield("ignored", 2, nil))
    end)
    assert.equal(0, n)
  end)

  it("does not advance the virtual clock", function()
    assert.equal(0, H.run(function()
      for _ = 1, 10 do coroutine.yield() end
      return corio.now()
    end))
  end)

  it("passes through a pcall in the task (Lua 5.2+, LuaJIT)", function()
    if not H.can_pcall_yield then pending("5.1 cannot yield across pcall") return end
    local log = H.log()
    H.run(function()
      corio.spawn(function() log("other") end)
      local ok = pcall(function()
        log("before")
        coroutine.yield()
        log("after")
      end)
      log(ok)
    end)
    assert.same({ "before", "other", "after", true }, log.items)
  end)
end)

describe("an await under a C call", function()
  it("inside a string.gsub callback is a clear error naming the function", function()
    local ok, msg = H.run(function()
      return pcall(string.gsub, "x", "x", function() corio.sleep(1) end)
    end)
    assert.is_false(ok)
    assert.truthy(tostring(msg):find("sleep", 1, true), tostring(msg))
  end)

  it("inside a table.sort comparator is a clear error naming the function", function()
    local ok, msg = H.run(function()
      return pcall(table.sort, { 3, 1, 2 }, function(a, b)
        corio.yield()
        return a < b
      end)
    end)
    assert.is_false(ok)
    assert.truthy(tostring(msg):find("yield", 1, true), tostring(msg))
  end)

  it("inside pcall is a clear error on Lua 5.1 and works elsewhere", function()
    local ok, msg, now = H.run(function()
      local o, e = pcall(corio.sleep, 1)
      return o, e, corio.now()
    end)
    if H.can_pcall_yield then
      assert.is_true(ok)
      assert.equal(1, now)
    else
      assert.is_false(ok)
      assert.truthy(tostring(msg):find("sleep", 1, true), tostring(msg))
      assert.truthy(tostring(msg):find("pcall", 1, true), tostring(msg))
    end
  end)
end)

describe("a task waiting for itself", function()
  it("is a clear error from join", function()
    local ok, err = H.run(function()
      return corio.spawn(function() corio.current():join() end):wait()
    end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("join", 1, true), tostring(err))
    assert.truthy(tostring(err):find("itself", 1, true), tostring(err))
  end)

  it("is a clear error from wait", function()
    local ok, err = H.run(function()
      return corio.spawn(function() corio.current():wait() end):wait()
    end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("wait", 1, true), tostring(err))
    assert.truthy(tostring(err):find("itself", 1, true), tostring(err))
  end)
end)

describe("a waiting task resumed by coroutine.resume from elsewhere", function()
  it("raises a clear error there instead of returning made-up results, and the runtime carries on", function()
    if _VERSION == "Lua 5.1" then
      pending("5.1 and LuaJIT have no continuation to tell who resumed the task")
      return
    end
    local result = H.run(function()
      local co
      local sem = corio.semaphore(0)
      local victim = corio.spawn(function()
        co = coroutine.running()
        return sem:acquire()
      end)
      corio.yield()
      local ok, err = coroutine.resume(co, "made-up")
      assert.is_false(ok)
      assert.truthy(tostring(err):find("coroutine.resume", 1, true), tostring(err))
      sem:add(1) -- the victim is gone: its permit must not wedge anything
      local vok = victim:wait()
      assert.is_false(vok)
      local p = sem:acquire({ timeout = 1 })
      assert.truthy(p, "the permit given to the dead task came back")
      p:release()
      return "carried on"
    end)
    assert.equal("carried on", result)
  end)
end)
