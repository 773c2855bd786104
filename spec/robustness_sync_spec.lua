-- Robustness of the synchronisation primitives and channels (adversarial
-- review): odd lifetimes, finalizers at awkward moments, closing the Lua
-- state with parked tasks, and the README's promises that a forgotten
-- permit or guard comes back. Each `it` states the correct behaviour.
local corio = require "corio"
local H = require "helper"
local proc = require "fixtures.proc"

local function full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

-- Registry entries that are not luaL_ref free-list links (numbers).
local function registry_objects()
  full_gc()
  local n = 0
  for _, v in pairs(debug.getregistry()) do
    if type(v) ~= "number" then n = n + 1 end
  end
  return n
end

describe("closing the Lua state with tasks parked on sync primitives", function()
  for _, mode in ipairs({ "permit", "guard", "all" }) do
    it("neither crashes nor reports anything (" .. mode .. ")", function()
      -- LuaJIT: the held permit's (guard's) __gc grants it to the parked
      -- waiter during lua_close, which makes a new permit userdata with a
      -- __gc; LuaJIT finalizes it in a later round, after package's
      -- _LOADLIB finalizer has unloaded corio/core.so: SIGSEGV.
      local r = proc.run("sync_close.lua", mode)
      assert.are.equal(0, r.code, "exit code " .. tostring(r.code) .. "; stderr: " .. r.stderr)
      assert.are.equal("", r.stderr)
    end)
  end
end)

describe("a mutex guard held in a <close> variable", function()
  it("is unlocked, and the task's own error kept, when the task dies by an error", function()
    if not H.lua54 then pending("<close> needs Lua 5.4") return end
    -- load() so that the file still parses on 5.1-5.3
    local body = assert(load([[
      local m, boom = ...
      local g <close> = m:lock()
      error(boom, 0)
    ]]))
    H.run(function()
      local m = corio.mutex()
      local ok, err = corio.spawn(body, m, "boom"):wait()
      assert.is_false(ok)
      -- the scheduler closes the guard after the task ended; the guard's
      -- __close must not insist that the "current task" is its owner
      assert.are.equal("boom", err.value)
      assert.is_false(m:is_locked())
      assert.is_truthy(m:lock({ timeout = 1 }))
    end, { on_error = function() end })
  end)

  it("is unlocked, and the task ends \"cancelled\", when the task is cancelled while holding it", function()
    if not H.lua54 then pending("<close> needs Lua 5.4") return end
    local body = assert(load([[
      local m, corio = ...
      local g <close> = m:lock()
      corio.sleep(10)
    ]]))
    H.run(function()
      local m = corio.mutex()
      local t = corio.spawn(body, m, corio)
      H.settle()
      assert.is_true(m:is_locked())
      t:cancel()
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(err), tostring(err))
      assert.are.equal("cancelled", t:status())
      assert.is_false(m:is_locked())
    end)
  end)
end)

describe("a forgotten permit", function()
  it("comes back before run declares a deadlock (a collection would wake the waiter)", function()
    local got = H.run(function()
      local sem = corio.semaphore(1)
      corio.spawn(function()
        local p = sem:acquire() -- never released: the README promises __gc gives it back
        return p and nil
      end):join()
      -- nothing allocates from here on, so no collection happens by itself;
      -- the waiter is not dead-locked: a full GC releases the permit
      local p = sem:acquire()
      return p ~= nil
    end)
    assert.is_true(got)
  end)

  it("comes back through __gc (after an explicit collection)", function()
    local avail = H.run(function()
      local sem = corio.semaphore(1)
      corio.spawn(function() local p = sem:acquire() return p and nil end):join()
      full_gc()
      return sem:available()
    end)
    assert.are.equal(1, avail)
  end)
end)

describe("semaphore capacity limit", function()
  it("never lets the permit total (available + held) exceed 2^53-1", function()
    local max = 2 ^ 53 - 1
    local ok_add, avail = H.run(function()
      local s = corio.semaphore(max)
      local p = s:acquire(2 ^ 31 - 1)
      -- available is now max - (2^31-1): add() must count the held permit
      local ok = pcall(s.add, s, 2 ^ 31 - 1)
      p:release()
      return ok, s:available()
    end)
    assert.is_false(ok_add)
    assert.is_true(avail <= max)
  end)
end)

describe("permits and guards outliving their run", function()
  it("a permit kept past run can be released outside any run and in a later run", function()
    local sem = corio.semaphore(1)
    local p1, p2
    H.run(function() p1 = sem:acquire() end)
    p1:release()
    assert.are.equal(1, sem:available())
    H.run(function() p2 = sem:acquire() end)
    local avail = H.run(function()
      local t = corio.spawn(function() return sem:acquire() end)
      H.settle()
      p2:release()
      local q = t:join()
      q:release()
      return sem:available()
    end)
    assert.are.equal(1, avail)
  end)

  it("a permit released after its semaphore was closed and collected is harmless", function()
    H.run(function()
      local s = corio.semaphore(3)
      local p = s:acquire(2)
      s:close()
      local none, err = s:acquire()
      assert.is_nil(none)
      assert.are.equal("closed", err.kind)
      s = nil -- luacheck: ignore 311
      full_gc()
      p:release()
      p:release()
    end)
  end)

  it("a guard whose mutex was collected can still be unlocked", function()
    H.run(function()
      local g = corio.mutex():lock()
      full_gc()
      g:unlock()
      g:unlock()
    end)
  end)
end)

describe("channels across runtimes", function()
  it("keep buffered values from one run to the next; parked senders of the first run are gone", function()
    local ch = corio.channel(2)
    H.run(function()
      ch:send(1)
      ch:send(2)
      corio.spawn(function() ch:send(3) end) -- parked when main returns: cancelled
      H.settle()
    end)
    assert.are.equal(2, ch:len())
    local a, b, c = H.run(function() return ch:recv(), ch:recv(), ch:try_recv() end)
    assert.are.same({ 1, 2 }, { a, b })
    assert.is_nil(c)
  end)
end)

describe("channel close racing a cancelled receiver", function()
  it("loses no value: a rendezvous receiver cancelled after the handoff keeps it", function()
    local a, v, b1, b2 = H.run(function()
      local c = corio.channel(0)
      local r1 = corio.spawn(function() return c:recv() end)
      local r2 = corio.spawn(function() return c:recv() end)
      H.settle()
      assert.is_true(c:try_send("v"))
      c:close()
      r1:cancel()
      local ok1, got = r1:wait()
      local ok2, x, err = r2:wait()
      return ok1, got, ok2 and x, err and err.kind
    end)
    assert.is_true(a)
    assert.are.equal("v", v)
    assert.is_nil(b1)
    assert.are.equal("closed", b2)
  end)
end)

describe("permit conservation under finalizers", function()
  it("no permit is lost or duplicated when __gc handlers release permits during grants", function()
    if not H.lua54 and _VERSION ~= "Lua 5.3" then pending("table __gc needs 5.2+") return end
    local CAP = 6
    local sem = corio.semaphore(CAP)
    local held, stop = {}, false
    local pause = collectgarbage("setpause", 0)
    local stepmul = collectgarbage("setstepmul", 200)
    local function gcop()
      if stop then return end
      if #held > 0 and #held % 2 == 0 then
        table.remove(held):release()
      else
        local p = sem:try_acquire()
        if p then held[#held + 1] = p end
      end
    end
    local function garbage() setmetatable({}, { __gc = function() pcall(gcop) end }) end
    local ok, err = pcall(H.run, function()
      corio.scope(function(s)
        for i = 1, 150 do
          s:spawn(function()
            for _ = 1, 5 do
              garbage()
              local p = sem:acquire(i % 3 + 1, { timeout = 0.01 })
              garbage()
              if p then
                corio.yield()
                if i % 2 == 0 then p:release() end -- odd: forgotten, __gc returns it
              end
            end
          end)
        end
      end)
    end)
    stop = true
    collectgarbage("setpause", pause)
    collectgarbage("setstepmul", stepmul)
    assert(ok, tostring(err))
    for _, p in ipairs(held) do p:release() end
    held = {}
    full_gc()
    assert.are.equal(CAP, sem:available())
  end)
end)

describe("registry references", function()
  it("do not grow over many parks, cancels, timeouts and closes", function()
    local function work()
      H.run(function()
        local sem, m = corio.semaphore(1), corio.mutex()
        local ch, ch0 = corio.channel(1), corio.channel(0)
        local ev, w = corio.event(), corio.watch(1)
        for i = 1, 50 do
          local p = sem:acquire()
          local t = corio.spawn(function() sem:acquire():release() end)
          local t2 = corio.spawn(function() return sem:acquire({ timeout = 0.001 }) end)
          corio.yield()
          t:cancel()
          corio.sleep(0.002)
          p:release()
          t:wait()
          t2:wait()
          ch:send(i)
          local s1 = corio.spawn(function() ch:send({ i }) end)
          local s2 = corio.spawn(function() ch0:send({ i }, { timeout = 0.001 }) end)
          corio.yield()
          s1:cancel()
          s1:wait()
          corio.sleep(0.002)
          s2:wait()
          assert(ch:recv() == i)
          local r = corio.spawn(function() return ch0:recv() end)
          corio.yield()
          ch0:send("x")
          r:cancel()
          r:wait()
          local g = m:lock()
          local l = corio.spawn(function() m:lock():unlock() end)
          corio.yield()
          l:cancel()
          l:wait()
          g:unlock()
          local e = corio.spawn(function() ev:wait() end)
          local ww = corio.spawn(function() w:changed() end)
          corio.yield()
          e:cancel()
          ww:cancel()
          e:wait()
          ww:wait()
        end
        local c2 = corio.channel(0)
        local snd = corio.spawn(function() return c2:send("v") end)
        corio.yield()
        c2:close()
        snd:wait()
      end)
    end
    work()
    local before = registry_objects()
    for _ = 1, 3 do work() end
    assert.are.equal(before, registry_objects())
  end)
end)
