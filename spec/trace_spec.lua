-- Observability and task context: age and spawned_at in corio.tasks() and
-- corio.dump(), the corio.trace hook, corio.context() inheritance,
-- corio.log, and the yieldable corio.pcall / corio.xpcall.
--
-- Specs that look at spawned_at run their own runtime rather than H.run:
-- H.run wraps spawn, so every spawn would seem to come from helper.lua.
local corio = require "corio"
local H = require "helper"

-- Runs fn as main of a fresh virtual-clock runtime with opts (setup(rt)
-- first, if given); checks that nothing is left alive or armed.
local run = H.run_plain

-- "spec/trace_spec.lua:N" of the line after the caller's
local function next_site()
  local info = debug.getinfo(2, "Sl")
  return info.short_src .. ":" .. (info.currentline + 1)
end

local function by_name(name)
  for _, info in ipairs(corio.tasks()) do
    if info.name == name then return info end
  end
end

local function plain(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

describe("corio.tasks() age and spawned_at", function()
  it("gives each task's age in seconds since its spawn on the runtime's clock", function()
    run({}, function()
      corio.sleep(1)
      local t = corio.spawn({ name = "late" }, corio.sleep, 10)
      corio.sleep(2.5)
      assert.equal(2.5, by_name("late").age)
      assert.equal(3.5, by_name("main").age)
      t:cancel()
      t:wait()
    end)
  end)

  it("gives no spawned_at without debug mode or a trace hook", function()
    run({}, function()
      local t = corio.spawn({ name = "plain" }, corio.sleep, 1)
      corio.yield()
      assert.is_nil(by_name("plain").spawned_at)
      assert.is_nil(by_name("main").spawned_at)
      assert.is_nil(corio.dump():find("spawned at", 1, true))
      t:join()
    end)
  end)

  it("gives the source:line of the spawn call in debug mode", function()
    run({ debug = true }, function()
      local site = next_site()
      local t = corio.spawn({ name = "child" }, corio.sleep, 1)
      local s2
      local inner = corio.spawn({ name = "outer" }, function()
        s2 = next_site()
        local g = corio.spawn({ name = "grandchild" }, corio.sleep, 1)
        return g -- not a tail call: 5.1 and LuaJIT lose the caller's frame in one
      end):join()
      assert.equal(site, by_name("child").spawned_at)
      assert.equal(s2, by_name("grandchild").spawned_at)
      t:join()
      inner:join()
    end)
  end)

  it("names the caller's line for tasks that corio's combinators spawn", function()
    run({ debug = true }, function()
      -- the distinct spawned_at of every task but main
      local function child_sites()
        local set, out = {}, {}
        for _, info in ipairs(corio.tasks()) do
          if info.name ~= "main" and not set[info.spawned_at] then
            set[info.spawned_at] = true
            out[#out + 1] = info.spawned_at
          end
        end
        return out
      end
      local got = {}
      local join_site = next_site()
      corio.join(function() corio.sleep(1) end, function() got.join = child_sites() end)
      local map_site = next_site()
      corio.map({ 1, 2 }, function() got.map = got.map or child_sites(); corio.sleep(1) end)
      assert.same({ join_site }, got.join) -- join's other task
      -- the map workers' spawn is in corio's map.lua; the call is the spec's
      assert.same({ map_site }, got.map)
    end)
  end)

  it("shows age and spawned_at in each line of corio.dump()", function()
    run({ debug = true }, function()
      local site = next_site()
      local t = corio.spawn({ name = "napper" }, corio.sleep, 10)
      corio.sleep(2.5)
      local d = corio.dump()
      assert.truthy(d:find("#%d+ napper waiting on sleep %(age 2%.50* s, spawned at "
        .. plain(site) .. "%)"), d)
      assert.truthy(d:find("#%d+ main running %(age 2%.50* s, spawned at "), d)
      t:cancel()
      t:wait()
    end)
  end)

  it("names what each waiting task waits on, in tasks() and dump()", function()
    run({}, function()
      local ch, full = corio.channel(1), corio.channel(1)
      full:send(1)
      local sem = corio.semaphore(1)
      local permit = sem:acquire()
      local mu = corio.mutex()
      local guard = mu:lock()
      local ev = corio.event()
      local w = corio.watch(0)
      local ts = {
        corio.spawn({ name = "sl" }, corio.sleep, 5),
        corio.spawn({ name = "rc" }, function() ch:recv() end),
        corio.spawn({ name = "sd" }, function() full:send(2) end),
        corio.spawn({ name = "aq" }, function() sem:acquire():release() end),
        corio.spawn({ name = "lk" }, function() mu:lock():unlock() end),
        corio.spawn({ name = "ev" }, function() ev:wait() end),
        corio.spawn({ name = "wt" }, function() w:changed() end),
        corio.spawn({ name = "sc" }, function()
          corio.scope(function(s) s:spawn({ name = "kid" }, corio.sleep, 1) end)
        end),
      }
      ts[#ts + 1] = corio.spawn({ name = "jn" }, function() ts[1]:join() end)
      corio.sleep(0.25)
      local want = { sl = "sleep", rc = "channel recv", sd = "channel send", aq = "semaphore",
        lk = "mutex", ev = "event", wt = "watch", sc = "scope", jn = "join", kid = "sleep" }
      local d = corio.dump()
      for name, what in pairs(want) do
        local info = by_name(name)
        assert.equal("waiting", info.status)
        assert.equal(what, info.waiting_on)
        assert.equal(0.25, info.age)
        assert.truthy(d:find(name .. " waiting on " .. what .. " (age 0.25", 1, true), name)
      end
      assert.equal(by_name("sc").id, by_name("kid").parent)
      assert.truthy(d:find("\n  #%d+ kid waiting on sleep"), d) -- indented under sc
      ch:send(1)
      full:recv()
      permit:release()
      guard:unlock()
      ev:set()
      w:set(1)
      for _, t in ipairs(ts) do t:wait() end
    end)
  end)
end)

describe("corio.trace", function()
  it("calls the hook on spawn and done with the task's id, name, parent, status, age", function()
    local events = {}
    run({}, function()
      corio.trace(function(event, info)
        events[#events + 1] = { event, info.name, info.status, info.age }
      end)
      local t = corio.spawn({ name = "w" }, corio.sleep, 2)
      t:join()
      corio.trace(nil)
    end)
    assert.same({ { "spawn", "w", "ready", 0 }, { "done", "w", "done", 2 } }, events)
  end)

  it("reports fail with the error and cancel with the cancellation", function()
    local seen = {}
    run({}, function()
      corio.trace(function(event, info)
        if event ~= "spawn" then seen[info.name] = { event, info.status, info.error } end
      end)
      local bad = corio.spawn({ name = "bad" }, function() error({ code = 7 }) end)
      local gone = corio.spawn({ name = "gone" }, corio.sleep, 10)
      corio.yield()
      gone:cancel()
      bad:wait()
      gone:wait()
      corio.trace(nil)
    end)
    assert.equal("fail", seen.bad[1])
    assert.equal("failed", seen.bad[2])
    local e = seen.bad[3]
    assert.equal(7, (corio.is_error(e, "task") and e.value or e).code)
    assert.equal("cancel", seen.gone[1])
    assert.equal("cancelled", seen.gone[2])
    assert.is_true(corio.is_cancelled(seen.gone[3]))
  end)

  it("gives the parent id of a scope child and spawned_at while a hook is set", function()
    local kid
    local site
    run({}, function()
      corio.trace(function(event, info)
        if event == "spawn" and info.name == "kid" then kid = info end
      end)
      local scope_owner
      corio.spawn({ name = "owner" }, function()
        scope_owner = corio.current().id
        corio.scope(function(s)
          site = next_site()
          s:spawn({ name = "kid" }, function() end)
        end)
      end):join()
      corio.trace(nil)
      assert.equal(scope_owner, kid.parent)
    end)
    assert.equal(site, kid.spawned_at)
  end)

  it("traces main when set with rt:trace before run", function()
    local events = H.log()
    run({}, function() end, function(rt)
      rt:trace(function(event, info) events(event .. " " .. info.name) end)
    end)
    assert.same({ "spawn main", "done main" }, events.items)
  end)

  it("returns the previous hook and stops calling a removed one", function()
    local calls = 0
    local function hook() calls = calls + 1 end
    local function other() end
    run({}, function()
      assert.is_nil(corio.trace(hook))
      assert.equal(hook, corio.trace(other))
      assert.equal(other, corio.trace(nil))
      assert.is_nil(corio.trace(nil))
      corio.spawn(function() end):join()
    end)
    assert.equal(0, calls)
  end)

  it("passes an error raised by the hook to on_error and keeps the task running", function()
    local reported = {}
    local ok_result = run({ on_error = function(e) reported[#reported + 1] = tostring(e) end }, function()
      corio.trace(function(event)
        if event == "spawn" then error("hook broke", 0) end
      end)
      local r = corio.spawn(function() return "fine" end):join()
      corio.trace(nil)
      return r
    end)
    assert.equal("fine", ok_result)
    assert.equal(1, #reported)
    assert.truthy(reported[1]:find("hook broke", 1, true))
  end)

  it("does not re-enter the hook for what the hook itself spawns", function()
    local events = H.log()
    local helpers = {}
    run({}, function()
      corio.trace(function(event, info)
        events(event .. " " .. info.name)
        if event == "spawn" and info.name == "w" then
          helpers[#helpers + 1] = corio.spawn({ name = "from_hook" }, function() end)
        end
      end)
      corio.spawn({ name = "w" }, function() end):join()
      corio.trace(nil)
      for _, t in ipairs(helpers) do t:wait() end
    end)
    assert.equal(1, #helpers)
    for _, item in ipairs(events.items) do
      assert.falsy(item:find("from_hook", 1, true) and item:find("^spawn"), item)
    end
    assert.equal("spawn w", events.items[1])
  end)

  it("rejects a hook that is not a function", function()
    run({}, function()
      local ok, e = pcall(corio.trace, "no")
      assert.is_false(ok)
      assert.truthy(tostring(e):find("function expected", 1, true), e)
    end)
  end)
end)

describe("corio.context", function()
  it("gives a child a copy of its parent's context as it was at the spawn", function()
    H.run(function()
      local ctx = corio.context()
      ctx.req = 42
      local seen
      local t = corio.spawn(function()
        corio.sleep(1)
        seen = { req = corio.context().req, later = corio.context().later }
      end)
      ctx.later = "parent wrote after the spawn"
      t:join()
      assert.same({ req = 42 }, seen)
    end)
  end)

  it("returns the same table for the same task", function()
    H.run(function()
      assert.equal(corio.context(), corio.context())
      local a
      local t = corio.spawn(function() a = corio.context() end)
      t:join()
      assert.are_not.equal(a, corio.context())
    end)
  end)

  it("keeps what a child writes from its parent", function()
    H.run(function()
      corio.context().req = 1
      corio.spawn(function()
        corio.context().req = 2
        corio.context().own = true
      end):join()
      assert.equal(1, corio.context().req)
      assert.is_nil(corio.context().own)
    end)
  end)

  it("isolates siblings from each other", function()
    H.run(function()
      corio.context().shared = "p"
      local seen = {}
      local a = corio.spawn(function()
        corio.context().shared = "a"
        corio.sleep(2)
        seen.a = corio.context().shared
      end)
      local b = corio.spawn(function()
        corio.sleep(1)
        seen.b = corio.context().shared
        corio.context().shared = "b"
      end)
      a:join()
      b:join()
      assert.same({ a = "a", b = "p" }, seen)
    end)
  end)

  it("is inherited by scope children and grandchildren", function()
    H.run(function()
      corio.context().trace_id = "t-1"
      local got = {}
      corio.scope(function(s)
        s:spawn(function()
          corio.context().span = "child"
          got.child = corio.context().trace_id
          corio.spawn(function()
            got.grand = { corio.context().trace_id, corio.context().span }
          end):join()
        end)
      end)
      assert.equal("t-1", got.child)
      assert.same({ "t-1", "child" }, got.grand)
    end)
  end)

  it("is a shallow copy: a nested table is shared", function()
    H.run(function()
      local nested = { n = 1 }
      corio.context().user = nested
      local inner
      corio.spawn(function() inner = corio.context().user end):join()
      assert.equal(nested, inner)
    end)
  end)

  it("starts empty in a task whose parent had none", function()
    H.run(function()
      local seen
      corio.spawn(function() seen = next(corio.context()) end):join()
      assert.is_nil(seen)
    end)
  end)

  it("is the caller's own table inside corio.pcall, corio.timeout and corio.shield", function()
    -- on PUC 5.1 these run their function as a child task
    H.run(function()
      local ctx = corio.context()
      ctx.req = 7
      corio.pcall(function() corio.context().in_pcall = true end)
      corio.timeout(5, function() corio.context().in_timeout = true end)
      corio.shield(function() corio.context().in_shield = true end)
      assert.is_true(ctx.in_pcall)
      assert.is_true(ctx.in_timeout)
      assert.is_true(ctx.in_shield)
    end)
  end)

  it("fails outside a task", function()
    local ok, e = pcall(corio.context)
    assert.is_false(ok)
    assert.truthy(tostring(e):find("context", 1, true), tostring(e))
  end)
end)

describe("corio.log", function()
  local function logged(body)
    local lines, records = {}, {}
    run({ on_log = function(line, record)
      lines[#lines + 1] = line
      records[#records + 1] = record
    end }, body)
    return lines, records
  end

  it("writes one logfmt line with time, level, task, message and sorted context fields", function()
    local lines = logged(function()
      corio.sleep(1.5)
      corio.spawn({ name = "fetch" }, function()
        local ctx = corio.context()
        ctx.user, ctx.req, ctx.attempt = "bob", 42, 1
        corio.log("info", "got %d from %s", 200, "origin")
      end):join()
    end)
    assert.same({ 't=1.500 level=info task=fetch msg="got 200 from origin" attempt=1 req=42 user=bob' },
      lines)
  end)

  it("hands on_log a record with time, level, message, task and a copy of the context", function()
    local ctx
    local _, records = logged(function()
      corio.sleep(2)
      ctx = corio.context()
      ctx.req = 9
      corio.log("warn", "slow")
      ctx.req = 10
    end)
    assert.equal(1, #records)
    local r = records[1]
    assert.equal(2, r.time)
    assert.equal("warn", r.level)
    assert.equal("slow", r.message)
    assert.equal("main", r.task)
    assert.same({ req = 9 }, r.context) -- as it was, not the live table
    assert.are_not.equal(ctx, r.context)
  end)

  it("sorts the context fields by key, dotted keys after their prefix", function()
    local lines = logged(function()
      local ctx = corio.context()
      ctx["http.status"], ctx.http, ctx.b = 200, "x", 1
      corio.log("info", "m")
    end)
    assert.equal("t=0.000 level=info task=main msg=m b=1 http=x http.status=200", lines[1])
  end)

  it("quotes and escapes values that are not simple", function()
    local lines = logged(function()
      corio.context().path = "a b"
      corio.log("error", 'say "hi"\nbye')
    end)
    assert.equal('t=0.000 level=error task=main msg="say \\"hi\\"\\nbye" path="a b"', lines[1])
  end)

  it("leaves a message without arguments unformatted", function()
    local lines = logged(function() corio.log("debug", "100% done") end)
    assert.equal('t=0.000 level=debug task=main msg="100% done"', lines[1])
  end)

  it("accepts the levels trace, debug, info, warn and error", function()
    local _, records = logged(function()
      for _, l in ipairs({ "trace", "debug", "info", "warn", "error" }) do corio.log(l, "x") end
    end)
    assert.equal(5, #records)
    assert.equal("trace", records[1].level)
    assert.equal("error", records[5].level)
  end)

  it("names the calling task inside corio.pcall and corio.timeout", function()
    local _, records = logged(function()
      corio.spawn({ name = "worker" }, function()
        corio.pcall(corio.log, "info", "a")
        corio.timeout(1, corio.log, "info", "b")
      end):join()
    end)
    assert.equal("worker", records[1].task)
    assert.equal("worker", records[2].task)
  end)

  it("writes to stderr without on_log", function()
    local written = {}
    local real = io.stderr
    io.stderr = { write = function(_, ...) -- luacheck: ignore 122
      for i = 1, select("#", ...) do written[#written + 1] = select(i, ...) end
    end }
    local ok, e = pcall(run, {}, function()
      corio.context().k = "v"
      corio.log("info", "hello")
    end)
    io.stderr = real -- luacheck: ignore 122
    assert(ok, e)
    assert.equal("t=0.000 level=info task=main msg=hello k=v\n", table.concat(written))
  end)

  it("rejects a bad level or a non-string message, naming 'log'", function()
    run({ on_log = function() end }, function()
      local ok, e = pcall(corio.log, "loud", "x")
      assert.is_false(ok)
      assert.truthy(e:find("bad argument #1 to 'log'", 1, true), e)
      ok, e = pcall(corio.log, "info", 3)
      assert.is_false(ok)
      assert.truthy(e:find("bad argument #2 to 'log'", 1, true), e)
    end)
  end)
end)

describe("corio.pcall and corio.xpcall", function()
  it("let the protected function wait, on every Lua version", function()
    H.run(function()
      local r = H.pack(corio.pcall(function(a, b)
        corio.sleep(1)
        return a + b, nil, "z"
      end, 1, 2))
      assert.same({ true, 3, nil, "z", n = 4 }, r)
      assert.equal(1, corio.now())
    end)
  end)

  it("give back the error value unchanged", function()
    H.run(function()
      local err = { code = 5 }
      local ok, e = corio.pcall(function() corio.sleep(1); error(err) end)
      assert.is_false(ok)
      assert.equal(err, e)
      ok, e = corio.pcall(function() corio.yield(); error("plain", 0) end)
      assert.is_false(ok)
      assert.equal("plain", e)
    end)
  end)

  it("run the xpcall handler on the error and return its result", function()
    H.run(function()
      local ok, v = corio.xpcall(function(x)
        corio.sleep(1)
        error({ x = x })
      end, function(e) return "handled " .. e.x end, "arg")
      assert.is_false(ok)
      assert.equal("handled arg", v)
      local r = H.pack(corio.xpcall(function(...) corio.yield(); return ... end, error, 1, 2))
      assert.same({ true, 1, 2, n = 3 }, r)
    end)
  end)

  it("catch a cancellation of the calling task as a cancelled error", function()
    H.run(function()
      local got
      local t = corio.spawn(function()
        local ok, e = corio.pcall(corio.sleep, 10)
        got = { ok, corio.is_cancelled(e) }
      end)
      corio.sleep(1)
      t:cancel()
      t:wait()
      assert.same({ false, true }, got)
    end)
  end)

  it("reject a non-function", function()
    H.run(function()
      local ok, e = pcall(corio.pcall, 1)
      assert.is_false(ok)
      assert.truthy(e:find("bad argument #1 to 'pcall'", 1, true), e)
      ok, e = pcall(corio.xpcall, function() end, "h")
      assert.is_false(ok)
      assert.truthy(e:find("bad argument #2 to 'xpcall'", 1, true), e)
    end)
  end)
end)
