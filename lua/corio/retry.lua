--- corio.retry: call a function again after a failure, with exponential
-- backoff (the delay before retry i is min(max, base * factor^(i-1)),
-- scaled by a random factor in [0, 1) with full jitter).
--
-- The sleeps between attempts are ordinary corio.sleep calls: they are
-- cancellation points and respect every enclosing deadline, so a retry
-- inside corio.timeout stops at the deadline and the timeout is raised,
-- never a half-finished retry. A cancellation raised by fn is never
-- retried.
local M = {}

local floor, min, random = math.floor, math.min, math.random
local type, error, tostring = type, error, tostring

local DEFAULTS = { retries = 3, base = 0.1, factor = 2, max = 10 }
local KNOWN = { retries = true, base = true, factor = true, max = true,
  jitter = true, retry_if = true, on_retry = true }

local function bad(opt, expected)
  error(("bad option '%s' to 'retry' (%s)"):format(opt, expected), 4)
end

local function check_opts(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error("bad argument #2 to 'retry' (options table expected, got "
      .. type(opts) .. ")", 3)
  end
  for k in pairs(opts) do
    if not KNOWN[k] then bad(tostring(k), "unknown option") end
  end
  for k in pairs(DEFAULTS) do
    local v = opts[k]
    if v ~= nil and (type(v) ~= "number" or v ~= v or v < 0) then
      bad(k, "non-negative number expected")
    end
  end
  local r = opts.retries
  if r ~= nil and (r ~= floor(r) or r == math.huge) then
    bad("retries", "whole number expected")
  end
  for _, k in ipairs({ "retry_if", "on_retry" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then
      bad(k, "function expected")
    end
  end
  return opts
end

--- The delay before retry `attempt` (1 for the first retry).
---@param opts table
---@param attempt integer
---@return number
function M.delay(opts, attempt)
  local base = opts.base or DEFAULTS.base
  local factor = opts.factor or DEFAULTS.factor
  local d = min(opts.max or DEFAULTS.max, base * factor ^ (attempt - 1))
  if opts.jitter ~= false then d = d * random() end
  return d
end

--- Installs corio.retry into the module table M of corio.
---@param corio table
---@param ypcall function a pcall that may wait
function M.install(corio, ypcall)
  local pack = table.pack or function(...)
    return { n = select("#", ...), ... }
  end
  local unpack = table.unpack or unpack
  local is_cancelled, sleep = corio.is_cancelled, corio.sleep

  -- the error raised once attempts run out, with err.attempts set
  local function final(err, attempts)
    if type(err) ~= "table" then
      local e = corio.error("task", tostring(err))
      rawset(e, "value", err)
      err = e
    end
    rawset(err, "attempts", attempts)
    return err
  end

  --- Calls fn(attempt) until it succeeds, up to opts.retries + 1 times.
  -- opts: retries (3), base (0.1 s), factor (2), max (10 s), jitter (true:
  -- full jitter), retry_if(err) (false stops at once), on_retry(err,
  -- attempt, delay). Returns fn's results; raises the last error with
  -- err.attempts (a non-table error is wrapped in a corio error of kind
  -- "task" whose `value` is the original).
  ---@param fn fun(attempt: integer): any
  ---@param opts? table
  ---@return any ...
  function corio.retry(fn, opts)
    if type(fn) ~= "function" then
      error("bad argument #1 to 'retry' (function expected, got "
        .. type(fn) .. ")", 2)
    end
    opts = check_opts(opts)
    local retries = opts.retries or DEFAULTS.retries
    local retry_if, on_retry = opts.retry_if, opts.on_retry
    local attempt = 0
    while true do
      attempt = attempt + 1
      local r = pack(ypcall(fn, attempt))
      if r[1] then return unpack(r, 2, r.n) end
      local err = r[2]
      if is_cancelled(err) then error(err, 0) end -- never retried
      if attempt > retries or (retry_if and not retry_if(err)) then
        error(final(err, attempt), 0)
      end
      local d = M.delay(opts, attempt)
      if on_retry then on_retry(err, attempt, d) end
      sleep(d)
    end
  end
end

return M
