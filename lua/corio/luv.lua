--- corio.luv: drive a started corio runtime from a luv event loop
-- (Neovim's vim.uv / vim.loop, luvit, or the luv module), so that corio
-- lives inside a loop someone else owns instead of blocking in rt:run.
--
--   local rt = corio.runtime()
--   rt:start(main)
--   local h = corio.luv.attach(rt, { on_done = function(ok, ...) end })
--
-- Three luv handles do it: a poll handle on rt:backend_fd() (readable
-- when corio's loop has I/O, or on Linux a timer due), a timer armed
-- from rt:backend_timeout() after every step, and an idle handle for a
-- timeout of 0 (tasks ready to run): an idle handle makes the host's
-- loop poll without blocking and comes back on its next iteration, where
-- a 0 ms timer started from a timer callback would run again in the same
-- timer phase and starve the host. Each callback calls rt:step().
--
-- When the run is over (rt:step() returned false) the handles are closed
-- and on_done(rt:result()) is called: on_done(true, main's results...)
-- or on_done(false, err). Without on_done a failed run's error is raised
-- (as tostring(err)) from the luv callback, where luv (or Neovim) reports
-- it (standalone luv prints it and exits the process); a successful
-- run's results stay readable with rt:result(). An error raised by
-- rt:step itself ends the attachment the same way (on_done(false, err)
-- or raised).
local M = {}

local type, error, pcall, select, tostring = type, error, pcall, select, tostring

local KNOWN = { uv = true, on_done = true }

local function bad_arg(n, expected, got)
  error(("bad argument #%d to 'attach' (%s expected, got %s)")
    :format(n, expected, got), 4) -- blames attach's caller
end

-- The luv module: Neovim's own first (loading a second luv into Neovim
-- would make a second default loop that nothing runs), then require.
local function default_uv()
  local vim = rawget(_G, "vim")
  if type(vim) == "table" and (vim.uv or vim.loop) then
    return vim.uv or vim.loop
  end
  local ok, uv = pcall(require, "luv")
  if ok then return uv end
  error("attach: no luv module found (install luv, or pass opts.uv)", 3)
end

local function check_args(rt, opts)
  local mt = getmetatable(rt)
  if type(rt) ~= "userdata" or type(mt) ~= "table"
      or mt.__name ~= "corio.Runtime" then
    bad_arg(1, "corio.Runtime", type(rt))
  end
  if opts == nil then return {} end
  if type(opts) ~= "table" then bad_arg(2, "options table", type(opts)) end
  for k in pairs(opts) do
    if not KNOWN[k] then
      error(("bad option '%s' to 'attach' (unknown option)"):format(tostring(k)), 3)
    end
  end
  if opts.on_done ~= nil and type(opts.on_done) ~= "function" then
    error("bad option 'on_done' to 'attach' (function expected, got "
      .. type(opts.on_done) .. ")", 3)
  end
  if opts.uv ~= nil and type(opts.uv) ~= "table" then
    error("bad option 'uv' to 'attach' (luv module table expected, got "
      .. type(opts.uv) .. ")", 3)
  end
  return opts
end

local function close_handle(h)
  if not h:is_closing() then h:close() end
end

---@class corio.LuvAttachment
---@field done boolean true once the run is over (on_done was called)
local Attachment = {}
Attachment.__index = Attachment

--- Drives the started runtime rt from a luv loop. Returns the attachment.
---@param rt corio.Runtime a runtime started with rt:start
---@param opts? {uv?: table, on_done?: fun(ok: boolean, ...)}
---@return corio.LuvAttachment
function M.attach(rt, opts)
  opts = check_args(rt, opts)
  if not rt:started() then
    error("attach: the runtime is not started (call rt:start(main) first)", 2)
  end
  local uv = opts.uv or default_uv()
  local on_done = opts.on_done
  local poll = uv.new_poll(rt:backend_fd())
  local timer, idle = uv.new_timer(), uv.new_idle()
  local self = setmetatable({ done = false, _rt = rt }, Attachment)

  function self._release()
    if self._released then return end
    self._released = true
    poll:stop()
    timer:stop()
    idle:stop()
    close_handle(poll)
    close_handle(timer)
    close_handle(idle)
  end

  -- the run is over: ... is rt:result() or false, err
  function self._finish(raise, ...)
    self._release()
    self.done = true
    if on_done then return on_done(...) end
    -- raised as a string: luv and Neovim print only strings
    if raise and not (...) then error(tostring((select(2, ...))), 0) end
  end

  local function drive()
    if self._released then return end
    local ok, more = pcall(rt.step, rt)
    if not ok then return self._finish(true, false, more) end
    if not more then return self._finish(true, rt:result()) end
    local ms = rt:backend_timeout()
    if ms == 0 then
      timer:stop()
      idle:start(drive)
    else
      idle:stop()
      if ms > 0 then timer:start(ms, 0, drive) else timer:stop() end
    end
  end

  poll:start("r", function(err)
    if err then
      return self._finish(true, false, "attach: polling the runtime's "
        .. "backend fd failed: " .. tostring(err))
    end
    drive()
  end)
  idle:start(drive) -- main runs on the host loop's next iteration
  return self
end

--- Stops driving the runtime and closes the luv handles; the run itself
-- goes on, to be driven some other way (rt:step) or closed (rt:close).
function Attachment:detach()
  self._release()
end

--- Cancels the run (rt:close: every task is cancelled and run to its
-- end), closes the luv handles and calls on_done with main's outcome
-- (typically false, a "cancelled" error). Never raises that outcome.
function Attachment:close()
  if self.done then return end
  self._release()
  if self._rt:started() then self._rt:close() end
  self._finish(false, self._rt:result())
end

return M
