-- corio.map, corio.each, corio.stream: bounded concurrency over a list or
-- an iterator, on the virtual clock: ordering, the concurrency bound,
-- error cancellation (after the others' cleanup), lazy input pulling.
local corio = require "corio"
local H = require "helper"

-- fn(item) sleeping `item` seconds and returning item * 10, counting the
-- calls in flight in c.now / c.max.
local function counted(c)
  c.now, c.max, c.calls = 0, 0, 0
  return function(item)
    c.calls = c.calls + 1
    c.now = c.now + 1
    if c.now > c.max then c.max = c.now end
    corio.sleep(item)
    c.now = c.now - 1
    return item * 10
  end
end

-- A call that sleeps `secs` and, when cancelled, runs a shielded cleanup
-- of 2 s that counts itself in c.cleaned.
local function sleeper(c, secs)
  local ok = corio.pcall(corio.sleep, secs)
  if not ok then
    corio.shield(function()
      corio.sleep(2)
      c.cleaned = (c.cleaned or 0) + 1
    end)
  end
end

local function rep(v, n)
  local t = {}
  for i = 1, n do t[i] = v end
  return t
end

-- What a failed call raised: map and each raise it as corio.scope does
-- (a failing worker's error wrapped in a task error keeping the value).
local function raised(e)
  if corio.is_error(e, "task") and e.value ~= nil then return e.value end
  return e
end

local function alive()
  return corio.stats().alive
end

describe("corio.map", function()
  it("returns results in input order whatever the completion order", function()
    H.run(function()
      local r = corio.map({ 3, 1, 2 }, function(x) corio.sleep(x); return x * 10 end)
      assert.same({ 30, 10, 20, n = 3 }, r)
      assert.equal(3, corio.now()) -- all three at once
    end)
  end)

  it("returns results in completion order with ordered = false", function()
    H.run(function()
      local r = corio.map({ 3, 1, 2 }, function(x) corio.sleep(x); return x * 10 end,
        { ordered = false })
      assert.same({ 10, 20, 30, n = 3 }, r)
    end)
  end)

  it("calls fn(item, i) and keeps only the first result of each call", function()
    H.run(function()
      local seen = {}
      local r = corio.map({ "a", "b" }, function(item, i)
        seen[i] = item
        return item .. i, "dropped"
      end)
      assert.same({ "a", "b" }, seen)
      assert.same({ "a1", "b2", n = 2 }, r)
    end)
  end)

  it("sets results.n to the number of items even when results are nil", function()
    H.run(function()
      local r = corio.map({ 1, 2, 3 }, function(x) if x ~= 2 then return nil end return x end)
      assert.equal(3, r.n)
      assert.is_nil(r[1])
      assert.equal(2, r[2])
    end)
  end)

  it("returns an empty result for an empty list without calling fn", function()
    H.run(function()
      local r = corio.map({}, function() error("called") end)
      assert.same({ n = 0 }, r)
    end)
  end)

  it("keeps at most `concurrency` calls in flight", function()
    H.run(function()
      local c = {}
      local r = corio.map(rep(1, 10), counted(c), { concurrency = 3 })
      assert.equal(3, c.max)
      assert.equal(10, c.calls)
      assert.equal(4, corio.now()) -- ceil(10 / 3) rounds of 1 s
      assert.same(rep(10, 10), { H.unpack(r, 1, 10) })
    end)
  end)

  it("keeps at most 10 calls in flight by default", function()
    H.run(function()
      local c = {}
      corio.map(rep(1, 25), counted(c))
      assert.equal(10, c.max)
      assert.equal(3, corio.now())
    end)
  end)

  it("starts the next item as soon as any call ends", function()
    H.run(function()
      -- with 2 workers: 5 and 1 start; 1 ends at 1 and 1 starts; ends at 2,
      -- 1 starts; ends at 3 ... the 5 does not hold up the others
      local r = corio.map({ 5, 1, 1, 1, 1 }, function(x) corio.sleep(x); return corio.now() end,
        { concurrency = 2 })
      assert.same({ 5, 1, 2, 3, 4, n = 5 }, r)
    end)
  end)

  it("cancels the other calls at the first error and raises it after their cleanup", function()
    H.run(function()
      local c = {}
      local ok, e = H.catch(corio.map, { 1, 10, 10, 10 }, function(x)
        if x == 1 then
          corio.sleep(1)
          error({ boom = true })
        end
        sleeper(c, x)
      end)
      assert.is_false(ok)
      assert.is_true(raised(e).boom)
      assert.equal(3, c.cleaned) -- every other call cleaned up before the raise
      assert.equal(3, corio.now()) -- 1 s, then the 2 s cleanups
      assert.equal(1, alive())
    end)
  end)

  it("starts no more items after the first error", function()
    H.run(function()
      local c = {}
      local f = counted(c)
      local ok = H.catch(corio.map, rep(1, 20), function(x, i)
        if i == 2 then error("no", 0) end
        return f(x)
      end, { concurrency = 2 })
      assert.is_false(ok)
      assert.is_true(c.calls <= 2, "calls after the error: " .. c.calls)
    end)
  end)

  it("rejects bad arguments and options", function()
    H.run(function()
      local f = function() end
      local cases = {
        { { "x", f }, "bad argument #1 to 'map' (table expected, got string)" },
        { { {}, 1 }, "bad argument #2 to 'map' (function expected, got number)" },
        { { {}, f, 5 }, "bad argument #3 to 'map' (options table expected, got number)" },
        { { {}, f, { concurrency = 0 } }, "bad option 'concurrency' to 'map'" },
        { { {}, f, { concurrency = 1.5 } }, "bad option 'concurrency' to 'map'" },
        { { {}, f, { concurrency = "2" } }, "bad option 'concurrency' to 'map'" },
        { { {}, f, { limit = 2 } }, "bad option 'limit' to 'map' (unknown option)" },
      }
      for _, case in ipairs(cases) do
        local ok, e = pcall(corio.map, H.unpack(case[1], 1, 3))
        assert.is_false(ok)
        assert.truthy(tostring(e):find(case[2], 1, true), tostring(e))
      end
    end)
  end)
end)

describe("corio.each", function()
  it("calls fn(item, i) for every item and returns nothing", function()
    H.run(function()
      local seen = {}
      local r = H.pack(corio.each({ "a", "b", "c" }, function(item, i)
        corio.sleep(4 - i)
        seen[i] = item
        return "ignored"
      end))
      assert.equal(0, r.n)
      assert.same({ "a", "b", "c" }, seen)
      assert.equal(3, corio.now())
    end)
  end)

  it("keeps at most `concurrency` calls in flight", function()
    H.run(function()
      local c = {}
      corio.each(rep(2, 7), counted(c), { concurrency = 2 })
      assert.equal(2, c.max)
      assert.equal(7, c.calls)
      assert.equal(8, corio.now())
    end)
  end)

  it("cancels the other calls at the first error and raises it after their cleanup", function()
    H.run(function()
      local c = {}
      local ok, e = H.catch(corio.each, { 10, 1, 10 }, function(x)
        if x == 1 then
          corio.sleep(1)
          error("each failed", 0)
        end
        sleeper(c, x)
      end)
      assert.is_false(ok)
      assert.equal("each failed", raised(e))
      assert.equal(2, c.cleaned)
      assert.equal(3, corio.now())
    end)
  end)

  it("rejects bad arguments with its own name", function()
    H.run(function()
      local ok, e = pcall(corio.each, {}, "f")
      assert.is_false(ok)
      assert.truthy(e:find("bad argument #2 to 'each'", 1, true), e)
      ok, e = pcall(corio.each, {}, function() end, { concurrency = -1 })
      assert.is_false(ok)
      assert.truthy(e:find("bad option 'concurrency' to 'each'", 1, true), e)
    end)
  end)
end)

-- An iterator over from..to counting the values it handed out in c.pulled.
local function range(c, from, to)
  c.pulled = 0
  local i = from - 1
  return function()
    if i >= to then return nil end
    i = i + 1
    c.pulled = c.pulled + 1
    return i
  end
end

local function list_iter(list)
  local i = 0
  return function()
    i = i + 1
    return list[i]
  end
end

-- Drains a stream through step() (which works on every version, PUC 5.1
-- included): {{result, item}, ...}.
local function drain(step)
  local out = {}
  while true do
    local r, item = step()
    if r == nil then break end
    out[#out + 1] = { r, item }
  end
  return out
end

describe("corio.stream", function()
  it("gives back each result with its input in completion order", function()
    H.run(function()
      local out = drain(corio.stream(list_iter({ 3, 1, 2 }), function(x)
        corio.sleep(x)
        return x * 10
      end))
      assert.same({ { 10, 1 }, { 20, 2 }, { 30, 3 } }, out)
      assert.equal(3, corio.now())
      assert.equal(1, alive())
    end)
  end)

  it("handles every input once and ends when the iterator returns nil", function()
    H.run(function()
      local c = {}
      local seen = {}
      local out = drain(corio.stream(range(c, 1, 50), function(x)
        seen[x] = (seen[x] or 0) + 1
        corio.sleep(x % 3)
        return x
      end, { concurrency = 4 }))
      assert.equal(50, #out)
      for i = 1, 50 do assert.equal(1, seen[i]) end
      assert.equal(50, c.pulled)
    end)
  end)

  it("works as a generic for loop where an iterator can wait", function()
    if not H.need_pcall_yield(pending) then return end
    H.run(function()
      local got = {}
      for r, item in corio.stream(list_iter({ 2, 1 }), function(x) corio.sleep(x); return -x end) do
        got[#got + 1] = { r, item }
      end
      assert.same({ { -1, 1 }, { -2, 2 } }, got)
      assert.equal(1, alive())
    end)
  end)

  it("keeps at most `concurrency` calls in flight", function()
    H.run(function()
      local c, inputs = {}, {}
      local f = counted(c)
      drain(corio.stream(range(inputs, 1, 12), function() return f(1) end, { concurrency = 3 }))
      assert.equal(3, c.max)
      assert.equal(12, c.calls)
      assert.equal(4, corio.now())
    end)
  end)

  it("pulls inputs lazily: a slow consumer of a huge iterator holds only a few", function()
    H.run(function()
      local c = {}
      local step, _, _, stop = corio.stream(range(c, 1, 1e9), function(x)
        corio.sleep(0.1)
        return x
      end, { concurrency = 3 })
      for consumed = 1, 10 do
        local r = step()
        assert.is_not_nil(r)
        corio.sleep(5) -- much slower than the producers
        -- about 2 x concurrency beyond what was consumed (in calls and
        -- waiting in the channel), never the whole range
        assert.is_true(c.pulled <= consumed + 2 * 3 + 1,
          ("pulled %d after consuming %d"):format(c.pulled, consumed))
      end
      stop()
      assert.is_true(c.pulled <= 10 + 2 * 3 + 1)
      assert.equal(1, alive())
    end)
  end)

  it("raises the first error from the loop after cancelling the other calls", function()
    H.run(function()
      local c = {}
      local step = corio.stream(list_iter({ 10, 1, 10 }), function(x)
        if x == 1 then
          corio.sleep(1)
          error({ bad = x })
        end
        sleeper(c, x)
        return x
      end)
      local ok, e = H.catch(drain, step)
      assert.is_false(ok)
      assert.equal(1, e.bad)
      assert.equal(2, c.cleaned) -- the others' cleanup ran before the raise
      assert.equal(3, corio.now())
      assert.equal(1, alive())
      assert.is_nil(step()) -- ended
    end)
  end)

  it("gives back results that completed before the error", function()
    H.run(function()
      local got = {}
      local step = corio.stream(list_iter({ 1, 2, 3 }), function(x)
        corio.sleep(x)
        if x == 2 then error("two", 0) end
        return x
      end)
      local ok, e = H.catch(function()
        while true do
          local r = step()
          if r == nil then break end
          got[#got + 1] = r
        end
      end)
      assert.is_false(ok)
      assert.equal("two", e)
      assert.same({ 1 }, got)
      assert.equal(2, corio.now())
    end)
  end)

  it("cancels its workers when stop() is called before the end", function()
    H.run(function()
      local c = {}
      local step, _, _, stop = corio.stream(list_iter(rep(10, 6)), function(x)
        sleeper(c, x)
        return x
      end, { concurrency = 3 })
      corio.sleep(1)
      stop()
      assert.equal(3, c.cleaned)
      assert.equal(3, corio.now())
      assert.equal(1, alive())
      assert.is_nil(step())
      stop() -- a second stop is harmless
    end)
  end)

  if H.lua54 then
    it("cancels its workers when a for loop over it is left with break (Lua 5.4)", function()
      H.run(function()
        local c = {}
        local alive_after
        local function loop()
          for r in corio.stream(list_iter({ 1, 10, 10, 10 }), function(x)
            sleeper(c, x)
            return x
          end, { concurrency = 4 }) do
            if r == 1 then break end
          end
          alive_after = alive()
        end
        loop()
        assert.equal(1, alive_after)
        assert.equal(3, c.cleaned)
        assert.equal(3, corio.now())
      end)
    end)
  end

  it("passes an error raised by the input iterator to the loop", function()
    H.run(function()
      local n = 0
      local step = corio.stream(function()
        n = n + 1
        if n == 3 then error("iterator broke", 0) end
        if n < 6 then return n end
      end, function(x) corio.sleep(1); return x end, { concurrency = 2 })
      local ok, e = H.catch(drain, step)
      assert.is_false(ok)
      assert.truthy(tostring(e):find("iterator broke", 1, true), tostring(e))
      assert.equal(1, alive())
    end)
  end)

  it("does not call the input iterator again once it has returned nil", function()
    H.run(function()
      local done, again = false, 0
      local i = 0
      local iter = function()
        if done then again = again + 1; return nil end
        i = i + 1
        if i > 3 then done = true; return nil end
        return i
      end
      local out = drain(corio.stream(iter, function(x) corio.sleep(x); return x end,
        { concurrency = 4 }))
      assert.equal(3, #out)
      assert.equal(0, again)
    end)
  end)

  it("rejects bad arguments", function()
    H.run(function()
      local ok, e = pcall(corio.stream, {}, function() end)
      assert.is_false(ok)
      assert.truthy(e:find("bad argument #1 to 'stream' (function expected, got table)", 1, true), e)
      ok, e = pcall(corio.stream, function() end, nil)
      assert.is_false(ok)
      assert.truthy(e:find("bad argument #2 to 'stream'", 1, true), e)
      ok, e = pcall(corio.stream, function() end, function() end, { concurrency = 0 })
      assert.is_false(ok)
      assert.truthy(e:find("bad option 'concurrency' to 'stream'", 1, true), e)
      assert.equal(1, alive())
    end)
  end)
end)

describe("corio.stream (review regressions)", function()
  it("works under a task budget smaller than its concurrency plus the caller", function()
    local got = H.run_plain({ max_tasks = 3 }, function()
      local i = 0
      local function iter() i = i + 1 if i <= 5 then return i end end
      local step = corio.stream(iter, function(x) corio.sleep(x) return x * 10 end,
        { concurrency = 3 })
      local out = {}
      while true do
        local r = step()
        if r == nil then break end
        out[#out + 1] = r
      end
      table.sort(out)
      return table.concat(out, ",")
    end)
    assert.equal("10,20,30,40,50", got)
  end)

  it("has cancelled and finished its workers when a timeout around the loop returns", function()
    if not H.need_pcall_yield(pending) then return end
    H.run(function()
      local cleaned = 0
      local i = 0
      local function iter() i = i + 1 return i end
      local ok, err = pcall(corio.timeout, 1, function()
        local step = corio.stream(iter, function(x)
          local ok2, e = pcall(corio.sleep, 10)
          cleaned = cleaned + 1
          if not ok2 then error(e, 0) end
          return x
        end, { concurrency = 4 })
        step()
      end)
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(err))
      assert.equal(4, cleaned) -- every worker's cleanup ran before timeout returned
      assert.equal(1, corio.stats().alive) -- main only
    end)
  end)

  it("raises when fn returns nil instead of ending the loop silently", function()
    if not H.need_pcall_yield(pending) then return end
    H.run(function()
      local i = 0
      local function iter() i = i + 1 if i <= 3 then return i end end
      local step = corio.stream(iter, function() return nil end, { concurrency = 2 })
      local ok, err = pcall(step)
      assert.is_false(ok)
      assert.matches("returned nil", tostring(err))
      assert.equal(1, corio.stats().alive)
    end)
  end)
end)
