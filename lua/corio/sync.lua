--- corio.sync: the Lua half of the synchronisation primitives.
--
-- `sem:with`, `m:with` and `ch:iter` are written in Lua because a
-- protected call that may yield needs lua_pcallk in C, which Lua 5.1 and
-- LuaJIT lack; a Lua pcall is yieldable on 5.2+ and LuaJIT. `install`
-- adds them to the method tables that corio.core exposes.
--
-- PUC Lua 5.1 cannot yield across pcall (nor from a `for` iterator):
--   * there `with` uses the yieldable protected call that init.lua passes
--     to `install` (corio's own, which runs fn as a child task);
--   * `for v in ch:iter()` cannot wait: use a `while` loop over ch:recv().
local M = {}

local error, type, getmetatable = error, type, getmetatable

local function check_fn(fn)
  local mt = getmetatable(fn)
  if type(fn) ~= "function" and not (mt and mt.__call) then
    error("bad argument #1 to 'with' (function expected, got "
      .. type(fn) .. ")", 3)
  end
end

-- Releases h, then returns fn's results or re-raises its error (a
-- cancellation included) unchanged.
local function finish(h, release, ok, ...)
  release(h)
  if not ok then error((...), 0) end
  return ...
end

-- the wrong self is an argument error naming 'with', as in the C methods
local function check_self(mt, class, self)
  if getmetatable(self) ~= mt or type(self) ~= "userdata" then
    local got = getmetatable(self)
    got = type(got) == "table" and type(rawget(got, "__name")) == "string"
      and got.__name or type(self)
    error(("bad argument #1 to 'with' (%s expected, got %s)"):format(class,
      got), 3)
  end
end

local function make_with(class, take, release, ypcall)
  local mt = debug.getregistry()[class]
  return function(self, fn, ...)
    check_self(mt, class, self)
    check_fn(fn)
    local h, err = take(self)
    if not h then error(err, 2) end
    return finish(h, release, ypcall(fn, ...))
  end
end

local function unlock_guard(g) g:unlock() end

local function step(ch)
  -- without a timeout, recv fails only once the channel is closed and
  -- drained: that ends the loop
  return (ch:recv())
end

--- Adds `with` to corio.Semaphore and corio.Mutex and `iter` to
--- corio.Channel.
---@param core table the corio.core module
---@param ypcall function a pcall that may wait (init.lua's: pcall, or on
---  PUC Lua 5.1 a child task)
---@return table core
function M.install(core, ypcall)
  local sem, mutex, chan = core._Semaphore_methods, core._Mutex_methods,
    core._Channel_methods
  assert(type(ypcall) == "function", "corio.sync.install: ypcall expected")

  --- sem:with(fn, ...): acquires one permit, calls fn(...), releases the
  --- permit when fn returns, raises or is cancelled; returns fn's results.
  --- Raises the "closed" error if the semaphore is closed.
  -- no permit object: _take holds one permit for the call, and _give
  -- returns it however fn ends (a cancelled or failed fn included)
  local take, give = sem._take, sem._give
  sem._take, sem._give = nil, nil -- private: a stray _give would mint a permit
  local sem_mt = debug.getregistry()["corio.Semaphore"]
  function sem.with(s, fn, ...)
    check_self(sem_mt, "corio.Semaphore", s)
    check_fn(fn)
    local ok, err = take(s)
    if not ok then error(err, 2) end
    return finish(s, give, ypcall(fn, ...))
  end

  --- m:with(fn, ...): locks, calls fn(...), unlocks however fn ends.
  mutex.with = make_with("corio.Mutex", function(m) return m:lock() end, unlock_guard,
    ypcall)

  --- for v in ch:iter() do ... end: receives until the channel is closed
  --- and drained.
  function chan.iter(ch)
    if ch == nil then
      error("bad argument #1 to 'iter' (corio.Channel expected, got nil)", 2)
    end
    return step, ch
  end
  return core
end

return M
