--- corio: bounded, cancellable concurrency for Lua on libuv.
--
-- The C core (corio.core) holds the scheduler, timers, cancel scopes, sync
-- primitives and I/O. This module re-exports it and adds the pure-Lua
-- layer: the boundaries of timeout, shield and scope (a protected call
-- between two C calls that push and pop a cancel scope), and the
-- combinators join, try_join and select built on a nursery.
local core = require "corio.core"

local M = {}
for k, v in pairs(core) do
  if type(k) == "string" and k:sub(1, 1) ~= "_" then M[k] = v end
end
M._VERSION = "corio scm"

local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack
local enter, leave = core._scope_enter, core._scope_exit
local nursery_wait, nursery_exit = core._nursery_wait, core._nursery_exit
local outcome = core._outcome
local can_wait = core._can_wait

--- True on PUC Lua 5.1, which cannot yield across pcall.
local PUC51 = _VERSION == "Lua 5.1" and not rawget(_G, "jit")

-- A protected call that may wait. On 5.2+ and LuaJIT that is pcall. On
-- PUC 5.1 fn runs as a child task in a nursery of its own (so it sits
-- inside every scope of the caller) and we wait for it uninterruptibly.
-- That child stands for its caller ("inline" nursery): corio.current()
-- and corio.context() inside it are the caller's, it takes no max_tasks
-- slot, and its error comes back as raised, not wrapped.
-- ypcall_as(fname): that protected call, naming fname when it cannot wait
-- (outside a task, on PUC 5.1).
local function ypcall_as(fname)
  if not PUC51 then return pcall end
  return function(fn, ...)
    can_wait(fname)
    local s = enter("nursery", nil, "inline")
    local t = s:spawn(fn, ...)
    nursery_wait(s, true)
    leave(s, true) -- pops without a checkpoint: t's outcome says it all
    return outcome(t)
  end
end
local ypcall = ypcall_as("pcall")
M._ypcall = ypcall

require("corio.sync").install(core, ypcall)
require("corio.file").install(core)
require("corio.net").install(M, core)
for k, v in pairs(core) do -- what install added
  if type(k) == "string" and k:sub(1, 1) ~= "_" and M[k] == nil then M[k] = v end
end

-- level: where the caller of the public function is, seen from here
local function check_fn(fname, i, f, level)
  if type(f) ~= "function" then
    error(("bad argument #%d to '%s' (function expected, got %s)")
      :format(i, fname, type(f)), level or 3)
  end
end

local function check_secs(fname, secs)
  if type(secs) ~= "number" or secs ~= secs or secs < 0 then
    error(("bad argument #1 to '%s' (non-negative number of seconds " ..
      "expected, got %s)"):format(fname, type(secs) == "number"
        and tostring(secs) or type(secs)), 3)
  end
end

--- Runs fn(...) with a deadline `secs` seconds from now. Past it, every
-- await inside fn (and in tasks of scopes inside it) raises a cancellation;
-- once fn has unwound, timeout raises an error of kind "timeout".
---@param secs number
---@param fn function
---@return any ... fn's results
function M.timeout(secs, fn, ...)
  check_secs("timeout", secs)
  check_fn("timeout", 2, fn)
  if PUC51 then can_wait("timeout") end
  return leave(enter("timeout", secs), ypcall(fn, ...))
end

--- Runs fn(...) to completion even if the caller is cancelled; the
-- cancellation is delivered at the caller's next await. Deadlines set
-- inside fn still apply.
---@param fn function
---@return any ... fn's results
function M.shield(fn, ...)
  check_fn("shield", 1, fn)
  if PUC51 then can_wait("shield") end
  return leave(enter("shield"), ypcall(fn, ...))
end

local function scope_finish(s, ok, ...)
  nursery_wait(s, ok, (...))
  return nursery_exit(s, ok, ...)
end

--- Structured concurrency: body(s, ...) may start children with
-- s:spawn(fn, ...); scope returns (body's results) when all have finished.
-- The first failure cancels the body and the other children and is raised
-- once they have all finished, with later failures in err.others.
---@param body fun(s: userdata, ...): any
---@return any ... body's results
function M.scope(body, ...)
  check_fn("scope", 1, body)
  can_wait("scope")
  local s = enter("nursery")
  return scope_finish(s, ypcall(body, s, ...))
end

local function check_fns(fname, fns)
  for i = 1, fns.n do check_fn(fname, i, fns[i], 4) end
end

--- Runs every function concurrently to the end; returns one table per
-- function: {true, results...} or {false, err}.
---@return table ...
function M.join(...)
  local fns = pack(...)
  check_fns("join", fns)
  can_wait("join")
  local tasks = {}
  local s = enter("nursery", nil, false)
  for i = 1, fns.n do tasks[i] = s:spawn(fns[i]) end
  nursery_wait(s, true)
  nursery_exit(s, true)
  local out = {}
  for i = 1, fns.n do out[i] = pack(outcome(tasks[i])) end
  return unpack(out, 1, fns.n)
end

--- Runs every function concurrently; returns the first result of each.
-- The first error cancels the others and is raised after their cleanup.
---@return any ...
function M.try_join(...)
  local fns = pack(...)
  check_fns("try_join", fns)
  can_wait("try_join")
  local tasks = {}
  -- failfast 2: a function whose task is cancelled by itself or by
  -- another's t:cancel() has no result: that counts as a failure
  local s = enter("nursery", nil, 2)
  for i = 1, fns.n do tasks[i] = s:spawn(fns[i]) end
  nursery_wait(s, true)
  nursery_exit(s, true)
  local res = {}
  for i = 1, fns.n do
    local ok, v = outcome(tasks[i])
    if not ok then error(v, 0) end -- never an error object as a result
    res[i] = v
  end
  return unpack(res, 1, fns.n)
end

--- Runs every function concurrently; returns the index and results of the
-- first to finish, after cancelling the others and waiting for their
-- cleanup. An error from the first finisher is raised.
---@return integer, any ...
function M.select(...)
  local fns = pack(...)
  if fns.n == 0 then error("bad argument #1 to 'select' (function expected, got no value)", 2) end
  check_fns("select", fns)
  can_wait("select")
  local winner, results
  local s = enter("nursery")
  for i = 1, fns.n do
    local f = fns[i]
    s:spawn(function()
      local r = pack(f())
      if not winner then
        winner, results = i, r
        s:cancel()
      end
    end)
  end
  nursery_wait(s, true)
  nursery_exit(s, true)
  if not winner then -- every function was cancelled, none by select
    error(core.error("cancelled", "select: every function was cancelled"), 0)
  end
  return winner, unpack(results, 1, results.n)
end

--- A protected call that may wait, on every Lua version: pcall on 5.2+
-- and LuaJIT; on PUC 5.1, fn runs as a child task (inside every scope of
-- the caller) and its error comes back unchanged.
---@param fn function
---@return boolean ok
---@return any ...
function M.pcall(fn, ...)
  check_fn("pcall", 1, fn)
  return ypcall(fn, ...)
end

local xpcall_body = ypcall_as("xpcall")

local function xfinish(handler, ok, ...)
  if ok then return true, ... end
  return false, handler((...))
end

--- xpcall that may wait, on every Lua version. On PUC 5.1 the handler
-- runs after fn's stack has unwound (no traceback of the failure point;
-- the error of a child task carries its own `traceback` field).
---@param fn function
---@param handler fun(err: any): any
---@return boolean ok
---@return any ...
function M.xpcall(fn, handler, ...)
  check_fn("xpcall", 1, fn)
  check_fn("xpcall", 2, handler)
  if not PUC51 then return xpcall(fn, handler, ...) end
  return xfinish(handler, xpcall_body(fn, ...))
end

local LEVELS = { trace = true, debug = true, info = true, warn = true,
  error = true }

-- a logfmt value: bare when simple, else quoted
local function logfmt(v)
  v = tostring(v)
  if v:find('^[%w%._/:@#%-]+$') then return v end
  return '"' .. v:gsub('[\\"]', '\\%0'):gsub("\n", "\\n") .. '"'
end

--- corio.log(level, fmt, ...): one structured line (logfmt) with the time
-- on the runtime's clock, the level, the task's name, the message and the
-- task's context fields (sorted), e.g.
--   t=12.503 level=info task=fetch msg="got 200" req=42
-- written to stderr, or handed to the runtime's on_log(line, record)
-- with record = {time, level, task, message, context}.
---@param level "trace"|"debug"|"info"|"warn"|"error"
---@param fmt string
function M.log(level, fmt, ...)
  if not LEVELS[level] then
    error(("bad argument #1 to 'log' (one of trace, debug, info, warn, " ..
      "error expected, got %s)"):format(tostring(level)), 2)
  end
  if type(fmt) ~= "string" then
    error("bad argument #2 to 'log' (string expected, got " .. type(fmt)
      .. ")", 2)
  end
  local msg = select("#", ...) > 0 and fmt:format(...) or fmt
  local task = core.current()
  local ctx = task and core.context(false)
  local now = core.now()
  local parts = { ("t=%.3f level=%s task=%s msg=%s"):format(now, level,
    logfmt(task and task.name or "-"), logfmt(msg)) }
  local fields = {}
  if ctx then
    local keys, vals = {}, {}
    for k, v in pairs(ctx) do
      k = tostring(k)
      keys[#keys + 1] = k
      vals[k] = v
    end
    table.sort(keys) -- by key, not by "key=value"
    for i, k in ipairs(keys) do fields[i] = k .. "=" .. logfmt(vals[k]) end
  end
  local line = table.concat(parts) ..
    (#fields > 0 and " " .. table.concat(fields, " ") or "")
  local sink = core._log_sink()
  if sink then
    local copy = {}
    if ctx then for k, v in pairs(ctx) do copy[k] = v end end
    sink(line, { time = now, level = level, message = msg,
      task = task and task.name, context = copy })
  else
    io.stderr:write(line, "\n")
  end
end

require("corio.retry").install(M, ypcall_as("retry"))
require("corio.map").install(M, ypcall, can_wait)
  M.luv = require "corio.luv" -- loads luv only when attach is called

return M
