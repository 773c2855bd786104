-- What a runtime tells about itself: corio.stats() / rt:stats() counters,
-- corio.tasks() with what each task waits on, corio.dump().
local corio = require "corio"
local H = require "helper"

local function find_task(list, id)
  for _, info in ipairs(list) do
    if info.id == id then return info end
  end
end

describe("corio.stats", function()
  it("counts spawned, alive, done, failed and cancelled tasks", function()
    local during = H.run(function()
      local ok = corio.spawn(function() return 1 end)
      local bad = corio.spawn(function() error("x") end)
      local gone = corio.spawn(corio.sleep, 10)
      local parked = corio.spawn(corio.sleep, 5)
      corio.yield()
      gone:cancel()
      ok:join()
      bad:wait()
      gone:wait()
      local st = corio.stats()
      parked:join()
      return st
    end)
    assert.equal(5, during.spawned) -- main included
    assert.equal(2, during.alive)   -- main and parked
    assert.equal(1, during.done)
    assert.equal(1, during.failed)
    assert.equal(1, during.cancelled)
    local after = H.rt:stats()
    assert.equal(5, after.spawned)
    assert.equal(0, after.alive)
    assert.equal(3, after.done) -- ok, parked and main
    assert.equal(1, after.failed)
    assert.equal(1, after.cancelled)
  end)

  it("counts the ready tasks and the armed timers", function()
    local st = H.run(function()
      for _ = 1, 3 do corio.spawn(function() end) end
      local s1 = corio.stats()
      corio.spawn(corio.sleep, 1)
      corio.spawn(corio.sleep, 2)
      corio.yield()
      corio.yield()
      local s2 = corio.stats()
      corio.sleep(3)
      return { s1.ready, s2.ready, s2.timers }
    end)
    assert.same({ 3, 0, 2 }, st)
  end)

  it("is the same as rt:stats() of the running runtime", function()
    local a, b = H.run(function()
      corio.spawn(function() end)
      return corio.stats(), H.rt:stats()
    end)
    assert.same(a, b)
  end)

  it("outside a runtime returns a table", function()
    assert.equal("table", type(corio.stats()))
  end)
end)

describe("corio.tasks", function()
  it("lists each live task with id, name, status and what it waits on", function()
    local list, ids = H.run(function()
      local s = corio.spawn({ name = "sleeper" }, corio.sleep, 10)
      local j = corio.spawn({ name = "joiner" }, function() s:join() end)
      corio.yield()
      local r = corio.spawn({ name = "ready" }, function() end)
      local l = corio.tasks()
      s:cancel()
      j:wait()
      return l, { main = corio.current().id, s = s.id, j = j.id, r = r.id }
    end)
    local s, j, r, m = find_task(list, ids.s), find_task(list, ids.j),
      find_task(list, ids.r), find_task(list, ids.main)
    assert.same({ "sleeper", "waiting", "sleep" }, { s.name, s.status, s.waiting_on })
    assert.same({ "joiner", "waiting", "join" }, { j.name, j.status, j.waiting_on })
    assert.same({ "ready", "ready" }, { r.name, r.status })
    assert.is_nil(r.waiting_on)
    assert.equal("running", m.status)
    assert.is_nil(m.waiting_on)
    assert.equal(4, #list)
  end)

  it("leaves out tasks that have finished", function()
    local list, done_id = H.run(function()
      local t = corio.spawn(function() end)
      t:join()
      return corio.tasks(), t.id
    end)
    assert.is_nil(find_task(list, done_id))
    assert.equal(1, #list)
  end)

  it("outside a runtime returns an empty list", function()
    assert.same({}, corio.tasks())
  end)
end)

describe("corio.dump", function()
  it("shows each live task's id, name, status and what it waits on", function()
    local text, sid, jid = H.run(function()
      local s = corio.spawn({ name = "napper" }, corio.sleep, 10)
      local j = corio.spawn({ name = "watcher" }, function() s:join() end)
      corio.yield()
      local d = corio.dump()
      s:cancel()
      j:wait()
      return d, s.id, j.id
    end)
    assert.equal("string", type(text))
    local napper = text:match("[^\n]*napper[^\n]*")
    local watcher = text:match("[^\n]*watcher[^\n]*")
    assert.truthy(napper, text)
    assert.truthy(watcher, text)
    assert.truthy(napper:find(tostring(sid), 1, true), text)
    assert.truthy(napper:find("waiting", 1, true), text)
    assert.truthy(napper:find("sleep", 1, true), text)
    assert.truthy(watcher:find(tostring(jid), 1, true), text)
    assert.truthy(watcher:find("join", 1, true), text)
  end)

  it("outside a runtime returns a string", function()
    assert.equal("string", type(corio.dump()))
  end)
end)
