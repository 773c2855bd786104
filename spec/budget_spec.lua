-- The task budget: runtime option max_tasks (spawn waits past it:
-- backpressure, FIFO, a cancellation point), and rt:config().
--
-- These specs run their own runtime rather than H.run: H.run wraps spawn
-- in a pcall, across which PUC 5.1 cannot wait.
local corio = require "corio"
local H = require "helper"

-- fn runs as main of a fresh virtual-clock runtime with opts (H.finish
-- checks that nothing is left behind); returns fn's results.
local run = H.run_plain

local function find(name)
  for _, info in ipairs(corio.tasks()) do
    if info.name == name then return info end
  end
end

describe("max_tasks", function()
  it("makes spawn wait, past the limit, until a task ends (main counts as one)", function()
    run({ max_tasks = 3 }, function()
      local a = corio.spawn(corio.sleep, 5)
      local b = corio.spawn(corio.sleep, 2)
      assert.equal(0, corio.now()) -- two spawns fit beside main
      local c = corio.spawn(function() return corio.now() end)
      assert.equal(2, corio.now()) -- the third waited for b to end
      assert.equal(2, c:join())
      a:join()
      b:join()
    end)
  end)

  it("never lets more than max_tasks tasks be alive", function()
    run({ max_tasks = 5 }, function()
      local most, tasks = 0, {}
      for i = 1, 40 do
        tasks[i] = corio.spawn(function()
          local n = corio.stats().alive
          if n > most then most = n end
          corio.sleep(i % 3 + 1)
        end)
      end
      for i = 1, 40 do tasks[i]:join() end
      assert.equal(5, most)
      assert.equal(41, corio.stats().spawned)
    end)
  end)

  it("shows a waiting spawner in corio.tasks() as waiting on the task budget", function()
    run({ max_tasks = 3 }, function()
      local a = corio.spawn(corio.sleep, 1)
      local w = corio.spawn({ name = "spawner" }, function()
        return corio.spawn(corio.sleep, 1)
      end)
      corio.yield()
      corio.yield()
      local info = find("spawner")
      assert.equal("waiting", info.status)
      assert.equal("task budget", info.waiting_on)
      assert.truthy(corio.dump():find("spawner waiting on task budget", 1, true))
      local child = w:join()
      child:join()
      a:join()
      assert.equal(2, corio.now())
    end)
  end)

  it("lets the first of several waiting spawners through when a slot frees", function()
    run({ max_tasks = 3 }, function()
      local a = corio.spawn(corio.sleep, 1)
      local got
      local w = corio.spawn(function()
        corio.spawn(function() end)
        got = corio.now()
      end)
      corio.yield() -- w queues for a slot
      corio.spawn(function() end) -- main queues behind w
      assert.equal(1, got)
      w:join()
      a:join()
    end)
  end)

  it("hands freed slots to waiting spawners first come, first served", function()
    run({ max_tasks = 4 }, function()
      local log = H.log()
      local function spawner(name)
        return corio.spawn(function()
          local t = corio.spawn(corio.sleep, 1)
          log(name .. " at " .. ("%g"):format(corio.now()))
          t:join()
          corio.sleep(5)
        end)
      end
      local w1 = spawner("w1")
      local w2 = spawner("w2")
      local a = corio.spawn(corio.sleep, 1) -- the last slot
      corio.sleep(0.5) -- w1 then w2 queue for a slot
      local m = corio.spawn(function() end) -- main queues behind them
      log("main at " .. ("%g"):format(corio.now()))
      -- a ends at 1 -> w1's child (1 s), ends at 2 -> w2's child, ends at 3
      assert.same({ "w1 at 1", "w2 at 2", "main at 3" }, log.items)
      m:join()
      a:join()
      w1:join()
      w2:join()
    end)
  end)

  it("also makes a scope's s:spawn wait for a slot", function()
    run({ max_tasks = 2 }, function()
      local starts = {}
      local ok = corio.pcall(corio.scope, function(s)
        for i = 1, 3 do
          s:spawn(function()
            starts[i] = corio.now()
            corio.sleep(1)
          end)
        end
      end)
      assert.is_true(ok)
      assert.same({ 0, 1, 2 }, starts)
    end)
  end)

  it("is a cancellation point: a cancelled waiting spawner raises and spawns nothing", function()
    run({ max_tasks = 3 }, function()
      local ran = false
      local a = corio.spawn(corio.sleep, 5)
      local w = corio.spawn(function()
        corio.spawn(function() ran = true end)
        error("spawn returned")
      end)
      corio.sleep(1)
      assert.equal("task budget", find(w.name).waiting_on)
      local spawned = corio.stats().spawned
      w:cancel()
      w:wait()
      assert.equal("cancelled", w:status())
      corio.sleep(10)
      assert.is_false(ran)
      assert.equal(spawned, corio.stats().spawned)
      a:join()
    end)
  end)

  it("loses no slot when a waiting spawner is cancelled", function()
    run({ max_tasks = 3 }, function()
      local a = corio.spawn(corio.sleep, 2)
      local w = corio.spawn(corio.spawn, function() end)
      corio.sleep(1)
      w:cancel()
      w:wait()
      -- a still holds one slot, main one: one is free again
      local t = corio.spawn(function() return corio.now() end)
      assert.equal(1, t:join())
      local t2 = corio.spawn(corio.sleep, 3)
      local t3 = corio.spawn(function() return corio.now() end) -- waits for a
      assert.equal(2, t3:join())
      t2:join()
      a:join()
    end)
  end)

  it("raises a deadlock when every task waits to spawn", function()
    local ok, e = pcall(run, { max_tasks = 2 }, function()
      corio.spawn(function()
        corio.spawn(function() end) -- waits for a slot nobody frees
      end)
      corio.spawn(function() end) -- and so does main
    end)
    assert.is_false(ok)
    assert.truthy(tostring(e):find("deadlock", 1, true), tostring(e))
    assert.truthy(tostring(e):find("task budget", 1, true), tostring(e))
  end)

  it("fails clearly when spawning past the limit from where no task can wait", function()
    run({ max_tasks = 1 }, function()
      -- a plain coroutine inside main is not a task: it cannot wait
      local ok, e = coroutine.wrap(function()
        return pcall(corio.spawn, function() end)
      end)()
      assert.is_false(ok)
      assert.truthy(tostring(e):find("max_tasks (1) tasks are alive", 1, true), tostring(e))
    end)
  end)

  it("takes no slot for corio.pcall, corio.timeout, corio.shield or corio.scope's body", function()
    -- on PUC 5.1 these run their function as a child task
    run({ max_tasks = 1 }, function()
      assert.same({ true, 1 }, { corio.pcall(function() return 1 end) })
      assert.equal(2, corio.timeout(5, function() return 2 end))
      assert.equal(3, corio.shield(function() return 3 end))
      assert.equal(4, corio.scope(function() return 4 end))
    end)
  end)

  it("does not delay corio.timeout while the other slots are taken", function()
    run({ max_tasks = 2 }, function()
      local a = corio.spawn(corio.sleep, 1)
      corio.timeout(5, corio.sleep, 0.5)
      assert.equal(0.5, corio.now())
      a:join()
    end)
  end)

  it("is rejected unless a whole number from 1", function()
    for _, bad in ipairs({ 0, -3, "x", 0 / 0 }) do
      local ok, e = pcall(corio.runtime, { max_tasks = bad })
      assert.is_false(ok)
      assert.truthy(tostring(e):find("max_tasks", 1, true), tostring(e))
    end
  end)
end)

describe("rt:config()", function()
  it("gives the defaults of a runtime without options", function()
    local c = corio.runtime():config()
    local nproc = io.popen("nproc")
    local cpus = tonumber(nproc:read("*l"))
    nproc:close()
    assert.equal(cpus, c.workers) -- the CPUs this process may use
    assert.equal(1024, c.queue)
    assert.equal(30, c.io_timeout)
    assert.equal(256, c.max_io)
    assert.is_nil(c.max_tasks) -- no limit
    assert.equal("real", c.clock)
    assert.is_false(c.debug)
  end)

  it("gives the budgets as set", function()
    local rt = corio.runtime({ workers = 2, queue = 8, io_timeout = 1.5, max_io = 3,
      max_tasks = 7, clock = "virtual", debug = true })
    local c = rt:config()
    assert.equal(2, c.workers)
    assert.equal(8, c.queue)
    assert.equal(1.5, c.io_timeout)
    assert.equal(3, c.max_io)
    assert.equal(7, c.max_tasks)
    assert.equal("virtual", c.clock)
    assert.is_true(c.debug)
  end)

  it("is readable while the runtime runs and after", function()
    local during = run({ max_tasks = 9 }, function(rt) return rt:config() end)
    assert.equal(9, during.max_tasks)
    assert.equal("virtual", during.clock)
  end)

  it("returns a fresh table each time", function()
    local rt = corio.runtime({ max_tasks = 2 })
    local c = rt:config()
    c.max_tasks = 100
    assert.equal(2, rt:config().max_tasks)
  end)
end)
