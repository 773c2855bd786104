-- corio.retry: exponential backoff on the virtual clock (delays exact with
-- jitter = false, within [0, delay) with the default full jitter),
-- retry_if, on_retry, the error raised when attempts run out, deadlines
-- and cancellation.
local corio = require "corio"
local H = require "helper"

-- A function that fails `fails` times (recording corio.now() of each
-- call) with a table error, then returns "ok", attempt.
local function flaky(fails, calls, err)
  return function(attempt)
    calls[#calls + 1] = corio.now()
    if attempt <= fails then error(err or { attempt = attempt }) end
    return "ok", attempt
  end
end

describe("corio.retry", function()
  it("returns the results of the first call that succeeds, passing it the attempt number", function()
    H.run(function()
      local calls = {}
      local a, b = corio.retry(flaky(2, calls), { jitter = false })
      assert.equal("ok", a)
      assert.equal(3, b)
      assert.equal(3, #calls)
    end)
  end)

  it("does not wait at all when the first call succeeds", function()
    H.run(function()
      local seen = {}
      local r = corio.retry(function(attempt) seen[#seen + 1] = attempt; return "x" end)
      assert.equal("x", r)
      assert.same({ 1 }, seen)
      assert.equal(0, corio.now())
    end)
  end)

  it("waits min(max, base * factor^(i-1)) before retry i when jitter is off", function()
    H.run(function()
      local calls = {}
      local e = select(2, corio.pcall(corio.retry, flaky(100, calls),
        { retries = 5, base = 0.5, factor = 3, max = 5, jitter = false }))
      assert.equal(6, e.attempts)
      -- delays 0.5, 1.5, 4.5, 5 (capped), 5
      assert.same({ 0, 0.5, 2, 6.5, 11.5, 16.5 }, calls)
      assert.equal(16.5, corio.now())
    end)
  end)

  it("uses base 0.1, factor 2, max 10 and 3 retries by default", function()
    H.run(function()
      local calls = {}
      local e = select(2, corio.pcall(corio.retry, flaky(100, calls), { jitter = false }))
      assert.equal(4, #calls)
      assert.equal(4, e.attempts)
      local d = {}
      for i = 2, #calls do d[i - 1] = calls[i] - calls[i - 1] end
      assert.near(0.1, d[1], 1e-9)
      assert.near(0.2, d[2], 1e-9)
      assert.near(0.4, d[3], 1e-9)
    end)
  end)

  it("caps the default delay at 10 s", function()
    H.run(function()
      local calls = {}
      corio.pcall(corio.retry, flaky(100, calls), { retries = 3, base = 8, jitter = false })
      assert.same({ 0, 8, 18, 28 }, calls)
    end)
  end)

  it("scales each delay by a random factor in [0, 1) with the default full jitter", function()
    H.run(function()
      local calls, told = {}, {}
      corio.pcall(corio.retry, flaky(100, calls), {
        retries = 30, base = 1, factor = 1,
        on_retry = function(_, _, delay) told[#told + 1] = delay end,
      })
      assert.equal(31, #calls)
      local distinct = {}
      for i = 2, #calls do
        local d = calls[i] - calls[i - 1]
        assert.is_true(d >= 0 and d < 1, "delay out of [0, 1): " .. d)
        assert.near(told[i - 1], d, 1e-9) -- the delay told is the one slept
        distinct[d] = true
      end
      -- jittered: not all the same delay
      local k = 0
      for _ in pairs(distinct) do k = k + 1 end
      assert.is_true(k > 1)
    end)
  end)

  it("never jitters past the capped delay", function()
    H.run(function()
      local calls = {}
      corio.pcall(corio.retry, flaky(100, calls), { retries = 20, base = 4, factor = 10, max = 2 })
      for i = 2, #calls do
        local d = calls[i] - calls[i - 1]
        assert.is_true(d >= 0 and d < 2, "delay out of [0, 2): " .. d)
      end
    end)
  end)

  it("makes retries + 1 calls at most", function()
    H.run(function()
      for _, n in ipairs({ 0, 1, 4 }) do
        local calls = {}
        local ok, e = corio.pcall(corio.retry, flaky(100, calls), { retries = n, base = 0 })
        assert.is_false(ok)
        assert.equal(n + 1, #calls)
        assert.equal(n + 1, e.attempts)
      end
    end)
  end)

  it("calls on_retry(err, attempt, delay) before each sleep, not after the last attempt", function()
    H.run(function()
      local log = H.log()
      local e = select(2, corio.pcall(corio.retry, function(attempt)
        log(("call %d at %g"):format(attempt, corio.now()))
        error({ msg = "e" .. attempt })
      end, {
        retries = 2, base = 1, jitter = false,
        on_retry = function(err, attempt, delay)
          log(("retry %s %d %g at %g"):format(err.msg, attempt, delay, corio.now()))
        end,
      }))
      assert.same({
        "call 1 at 0", "retry e1 1 1 at 0",
        "call 2 at 1", "retry e2 2 2 at 1",
        "call 3 at 3",
      }, log.items)
      assert.equal(3, e.attempts)
    end)
  end)

  it("stops at once when retry_if(err) is false, raising that error with attempts", function()
    H.run(function()
      local calls, seen = {}, {}
      local perm = { permanent = true }
      local ok, e = corio.pcall(corio.retry, function(attempt)
        calls[#calls + 1] = corio.now()
        if attempt < 2 then error({ permanent = false }) end
        error(perm)
      end, {
        base = 1, jitter = false,
        retry_if = function(err) seen[#seen + 1] = err.permanent; return not err.permanent end,
      })
      assert.is_false(ok)
      assert.equal(perm, e)
      assert.equal(2, e.attempts)
      assert.same({ 0, 1 }, calls)
      assert.same({ false, true }, seen)
      assert.equal(1, corio.now()) -- no sleep after the permanent error
    end)
  end)

  it("raises the last error itself (a table keeps its identity) with err.attempts", function()
    H.run(function()
      local errs = {}
      local ok, e = corio.pcall(corio.retry, function(attempt)
        errs[attempt] = { n = attempt }
        error(errs[attempt])
      end, { retries = 2, base = 0 })
      assert.is_false(ok)
      assert.equal(errs[3], e)
      assert.equal(3, e.attempts)
      assert.is_nil(errs[1].attempts)
    end)
  end)

  -- On PUC 5.1 corio.pcall unwraps every error of kind "task" that has a
  -- value, so the error retry built (and its attempts) is lost there.
  it("wraps a non-table last error in a corio error of kind task keeping the value, through corio.pcall", function()
    H.run(function()
      local ok, e = corio.pcall(corio.retry, function(attempt)
        error(attempt == 3 and "last" or "earlier", 0)
      end, { retries = 2, base = 0 })
      assert.is_false(ok)
      assert.is_true(corio.is_error(e, "task"))
      assert.equal("last", e.value)
      assert.equal(3, e.attempts)
      assert.truthy(tostring(e):find("last", 1, true))
    end)
  end)

  it("keeps a corio error's kind when it is the last error", function()
    H.run(function()
      local ok, e = corio.pcall(corio.retry, function()
        error(corio.error("io", "refused"))
      end, { retries = 1, base = 0 })
      assert.is_false(ok)
      assert.is_true(corio.is_error(e, "io"))
      assert.equal(2, e.attempts)
    end)
  end)

  it("stops at an enclosing timeout's deadline and raises the timeout", function()
    H.run(function()
      local calls = {}
      local ok, e = corio.pcall(corio.timeout, 2.5, corio.retry, flaky(100, calls),
        { retries = 10, base = 1, jitter = false })
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(e))
      assert.is_nil(rawget(e, "attempts"))
      assert.same({ 0, 1 }, calls) -- the third call (at 3) is past the deadline
      assert.equal(2.5, corio.now())
    end)
  end)

  it("does not retry a call cut by an enclosing timeout's deadline", function()
    H.run(function()
      local calls = 0
      local ok, e = corio.pcall(corio.timeout, 1, corio.retry, function()
        calls = calls + 1
        corio.sleep(5)
      end, { retries = 10, base = 0 })
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(e))
      assert.equal(1, calls)
      assert.equal(1, corio.now())
    end)
  end)

  it("never retries a cancellation of the task during a call", function()
    H.run(function()
      local calls = 0
      local t = corio.spawn(corio.retry, function()
        calls = calls + 1
        corio.sleep(10)
      end, { retries = 5, base = 0 })
      corio.sleep(1)
      t:cancel()
      t:wait()
      assert.equal("cancelled", t:status())
      assert.equal(1, calls)
      assert.equal(1, corio.now())
    end)
  end)

  it("is cancelled during its backoff sleep without another call", function()
    H.run(function()
      local calls = 0
      local t = corio.spawn(corio.retry, function()
        calls = calls + 1
        error("again")
      end, { retries = 5, base = 10, jitter = false })
      corio.sleep(1)
      t:cancel()
      t:wait()
      assert.equal("cancelled", t:status())
      assert.equal(1, calls)
      assert.equal(1, corio.now())
    end)
  end)

  it("does not retry a cancellation error raised by fn", function()
    H.run(function()
      local calls = 0
      local ok, e = corio.pcall(corio.retry, function()
        calls = calls + 1
        error(corio.error("cancelled", "gave up"))
      end, { retries = 5, base = 0 })
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(e))
      assert.is_nil(rawget(e, "attempts"))
      assert.equal(1, calls)
    end)
  end)

  it("rejects bad arguments and options before calling fn", function()
    H.run(function()
      local called = false
      local fn = function() called = true end
      local cases = {
        { { bogus = 1 }, "bad option 'bogus' to 'retry' (unknown option)" },
        { { base = -1 }, "bad option 'base' to 'retry' (non-negative number expected)" },
        { { factor = "2" }, "bad option 'factor' to 'retry'" },
        { { max = 0 / 0 }, "bad option 'max' to 'retry'" },
        { { retries = 1.5 }, "bad option 'retries' to 'retry' (whole number expected)" },
        { { retries = math.huge }, "bad option 'retries' to 'retry'" },
        { { retry_if = true }, "bad option 'retry_if' to 'retry' (function expected)" },
        { { on_retry = 1 }, "bad option 'on_retry' to 'retry' (function expected)" },
      }
      for _, c in ipairs(cases) do
        local ok, e = pcall(corio.retry, fn, c[1])
        assert.is_false(ok)
        assert.truthy(tostring(e):find(c[2], 1, true), tostring(e))
      end
      local ok, e = pcall(corio.retry, "nope")
      assert.is_false(ok)
      assert.truthy(e:find("bad argument #1 to 'retry' (function expected, got string)", 1, true), e)
      ok, e = pcall(corio.retry, fn, 3)
      assert.is_false(ok)
      assert.truthy(e:find("bad argument #2 to 'retry'", 1, true), e)
      assert.is_false(called)
    end)
  end)

  it("blames the caller's line for a bad option", function()
    H.run(function()
      local line
      local ok, e = pcall(function()
        line = debug.getinfo(1, "l").currentline + 1
        corio.retry(function() end, { nope = 1 })
      end)
      assert.is_false(ok)
      assert.truthy(tostring(e):find("retry_spec.lua:" .. line .. ":", 1, true), e)
    end)
  end)
end)
