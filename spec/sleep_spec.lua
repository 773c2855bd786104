-- corio.sleep and corio.now, on the virtual clock (most specs) and on the
-- real clock (a few, with wide margins).
local corio = require "corio"
local H = require "helper"

describe("the virtual clock", function()
  it("starts at 0", function()
    assert.equal(0, H.run(corio.now))
  end)

  it("advances by exactly the time slept when nothing else runs", function()
    local a, b = H.run(function()
      corio.sleep(1.5)
      local x = corio.now()
      corio.sleep(2.25)
      return x, corio.now()
    end)
    assert.equal(1.5, a)
    assert.equal(3.75, b)
  end)

  it("jumps straight to the next deadline without waiting in real time", function()
    local year = 365 * 24 * 3600
    local real0 = corio.now() -- outside a runtime: the real monotonic clock
    local v = H.run(function()
      corio.sleep(year)
      return corio.now()
    end)
    assert.equal(year, v)
    assert.truthy(corio.now() - real0 < 1, "a virtual year took real time")
  end)

  it("does not move while any task is ready", function()
    local log = H.log()
    H.run(function()
      local sleeper = corio.spawn(function()
        corio.sleep(0.001)
        log("sleeper woke at " .. corio.now())
      end)
      local busy = corio.spawn(function()
        for _ = 1, 100 do
          if corio.now() ~= 0 then log("clock moved") end
          corio.yield()
        end
        log("busy done")
      end)
      sleeper:join()
      busy:join()
    end)
    assert.same({ "busy done", "sleeper woke at " .. 0.001 }, log.items)
  end)

  it("reads, in a task that woke, exactly that task's deadline", function()
    local seen = H.run(function()
      local out = {}
      local ts = {}
      for i, d in ipairs({ 4, 1, 2.5 }) do
        ts[i] = corio.spawn(function()
          corio.sleep(d)
          out[i] = corio.now()
        end)
      end
      for i = 1, 3 do ts[i]:join() end
      return out
    end)
    assert.same({ 4, 1, 2.5 }, seen)
  end)

  it("lets concurrent sleeps overlap: it advances by the longest, not the sum", function()
    local now = H.run(function()
      local ts = {}
      for i = 1, 3 do ts[i] = corio.spawn(corio.sleep, i) end
      for i = 1, 3 do ts[i]:join() end
      return corio.now()
    end)
    assert.equal(3, now)
  end)
end)

describe("corio.sleep", function()
  it("never returns early, whatever the duration", function()
    local durations = { 1e-9, 1e-6, 0.001, 0.1, 1 / 3, 0.7, 2 / 3, 12.345, 1e5 + 0.1 }
    local early = H.run(function()
      local bad = {}
      local ts = {}
      for i, d in ipairs(durations) do
        ts[i] = corio.spawn(function()
          local t0 = corio.now()
          corio.sleep(d)
          if corio.now() - t0 < d then bad[#bad + 1] = d end
        end)
      end
      for i = 1, #ts do ts[i]:join() end
      return bad
    end)
    assert.same({}, early)
  end)

  it("returns nothing", function()
    assert.equal(0, H.run(function() return select("#", corio.sleep(1)) end))
  end)

  it("wakes tasks due at the same time in the order they slept", function()
    local log = H.log()
    H.run(function()
      local ts = {}
      for i = 1, 5 do
        -- task i yields 5 - i times first: they sleep in the order 5, 4 ... 1,
        -- all at virtual time 0, so all are due at 1
        ts[i] = corio.spawn(function()
          for _ = 1, 5 - i do corio.yield() end
          corio.sleep(1)
          log(i)
        end)
      end
      for i = 1, 5 do ts[i]:join() end
    end)
    assert.same({ 5, 4, 3, 2, 1 }, log.items)
  end)

  it("wakes tasks in deadline order, whatever the order they slept", function()
    local log = H.log()
    H.run(function()
      local ts = {}
      for i, d in ipairs({ 3, 1, 4, 1.5, 2 }) do
        ts[i] = corio.spawn(function()
          corio.sleep(d)
          log(d)
        end)
      end
      for i = 1, #ts do ts[i]:join() end
    end)
    assert.same({ 1, 1.5, 2, 3, 4 }, log.items)
  end)

  it("keeps deadline order when sleepers are cancelled out of the middle of the queue", function()
    local woke, expected = H.run(function()
      local seed = 12345
      local function rand(n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n
      end
      local out, want, ts, durs = {}, {}, {}, {}
      for i = 1, 300 do
        durs[i] = rand(20) / 4
        ts[i] = corio.spawn(function()
          corio.sleep(durs[i])
          out[#out + 1] = i
        end)
      end
      corio.yield()
      for i = 3, 300, 3 do ts[i]:cancel() end
      for i = 1, 300 do
        if i % 3 ~= 0 then want[#want + 1] = i end
      end
      table.sort(want, function(a, b)
        if durs[a] ~= durs[b] then return durs[a] < durs[b] end
        return a < b
      end)
      for i = 1, 300 do ts[i]:wait() end
      return out, want
    end)
    assert.same(expected, woke)
  end)

  it("with 0 interleaves exactly like corio.yield", function()
    local log = H.log()
    H.run(function()
      local function task(name)
        return function()
          for i = 1, 3 do
            log(name .. i)
            corio.sleep(0)
          end
        end
      end
      local a = corio.spawn(task("a"))
      local b = corio.spawn(task("b"))
      log("main")
      corio.sleep(0)
      log("main again")
      a:join()
      b:join()
    end)
    assert.same({ "main", "a1", "b1", "main again", "a2", "b2", "a3", "b3" }, log.items)
  end)

  it("with 0 does not advance the virtual clock", function()
    assert.equal(0, H.run(function()
      for _ = 1, 10 do corio.sleep(0) end
      return corio.now()
    end))
  end)
end)

describe("corio.now", function()
  it("outside a runtime reads a monotonic real clock", function()
    local a = corio.now()
    local b = corio.now()
    assert.equal("number", type(a))
    assert.truthy(b >= a)
  end)
end)

describe("the real clock", function()
  it("never lets sleep return early", function()
    local early = H.run(function()
      local bad = {}
      for _, d in ipairs({ 0.02, 0.005, 0.0015 }) do
        local t0 = corio.now()
        corio.sleep(d)
        local dt = corio.now() - t0
        if dt < d or dt > d + 1 then bad[#bad + 1] = { d, dt } end
      end
      return bad
    end, { clock = "real" })
    assert.same({}, early)
  end)

  it("runs concurrent sleeps side by side rather than one after another", function()
    local elapsed = H.run(function()
      local t0 = corio.now()
      local ts = {}
      for i = 1, 5 do ts[i] = corio.spawn(corio.sleep, 0.1) end
      for i = 1, 5 do ts[i]:join() end
      return corio.now() - t0
    end, { clock = "real" })
    assert.truthy(elapsed >= 0.1)
    -- one after another would take 0.5 s
    assert.truthy(elapsed < 0.4, "five 100 ms sleeps took " .. elapsed .. " s")
  end)
end)
