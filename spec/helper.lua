-- Shared by every spec: `local H = require "helper"`.
--
-- H.run(fn, opts) runs fn in a fresh runtime (virtual clock unless
-- opts.clock says otherwise), under a CPU watchdog so a spec can fail but
-- never hang, and asserts afterwards that no task is left alive, no
-- timer armed, no libuv handle of an I/O object open and no I/O budget
-- slot taken. It returns fn's results (or raises fn's error).
local corio = require "corio"

local H = {}

local pack = table.pack or function(...) return { n = select("#", ...), ... } end
H.unpack = table.unpack or unpack
H.pack = pack

--- Lua 5.1 (PUC) cannot yield across pcall, metamethods or iterators.
H.can_pcall_yield = not (_VERSION == "Lua 5.1" and not rawget(_G, "jit"))
H.lua54 = _VERSION == "Lua 5.4"

local WATCHDOG_CPU = tonumber(os.getenv("CORIO_WATCHDOG")) or 60

-- debug.sethook is per coroutine (new ones inherit only the C side of a
-- hook), so during H.run every task installs the watchdog when it starts:
-- corio.spawn and Scope:spawn are wrapped for the duration of the run.
local scope_methods = debug.getregistry()["corio.Scope"].__index
local orig_spawn, orig_scope_spawn = corio.spawn, scope_methods.spawn

local function watched(hook, fn)
  return function(...)
    debug.sethook(hook, "", 100000)
    return fn(...)
  end
end

local function wrap_spawn(hook, spawn, nfixed, name)
  return function(...)
    local args = pack(...)
    local i = nfixed + 1
    if type(args[i]) == "table" then i = i + 1 end
    if type(args[i]) == "function" then args[i] = watched(hook, args[i]) end
    local r = pack(pcall(spawn, H.unpack(args, 1, args.n)))
    if r[1] then return H.unpack(r, 2, r.n) end
    -- blame the spec's line, as the unwrapped spawn would
    local msg = r[2]
    -- (and name the function as a direct call does: through pcall it is
    -- 'corio.core.spawn', or '?' on 5.1)
    if type(msg) == "string" then
      msg = msg:gsub("^[^:]*:%d+: ", ""):gsub("(to )'[^']*'", "%1'" .. name .. "'")
    end
    error(msg, 2)
  end
end

--- Runs fn(...) in a new runtime; the last runtime is kept in H.rt.
function H.run(fn, opts, ...)
  opts = opts or {}
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.clock = o.clock or "virtual"
  local rt = corio.runtime(o)
  H.rt = rt
  local start = os.clock()
  local function hook()
    if os.clock() - start > WATCHDOG_CPU then
      error("watchdog: spec ran for more than " .. WATCHDOG_CPU .. " s of CPU", 2)
    end
  end
  corio.spawn = wrap_spawn(hook, orig_spawn, 0, "spawn")
  scope_methods.spawn = wrap_spawn(hook, orig_scope_spawn, 1, "spawn")
  local r = pack(pcall(rt.run, rt, watched(hook, fn), ...))
  corio.spawn, scope_methods.spawn = orig_spawn, orig_scope_spawn
  debug.sethook()
  return H.finish(rt, r)
end

--- After rt:run: asserts that nothing is left alive, armed, open or
-- taken, then returns the run's results from r (pcall's packed results)
-- or re-raises its error.
function H.finish(rt, r)
  local st = rt:stats()
  -- a body that failed usually left its objects open: its error says why
  if not r[1] and st.alive == 0 and st.timers == 0 then st.handles = 0 end
  assert(st.alive == 0, "tasks left alive after run: " .. st.alive)
  assert(st.timers == 0, "timers left armed after run: " .. st.timers)
  assert(st.handles == 0, "libuv handles left open after run: " .. st.handles)
  assert(st.io_inflight == 0, "I/O budget slots left taken: " .. st.io_inflight)
  if not r[1] then
    local e = r[2]
    -- a failed assertion inside a task arrives wrapped as a task error:
    -- re-raise the original so busted shows it
    if corio.is_error(e, "task") and e.value ~= nil then error(e.value, 0) end
    error(e, 0)
  end
  return H.unpack(r, 2, r.n)
end

--- H.run without the watchdog's spawn wrappers, for specs about where
-- tasks were spawned or that spawn past max_tasks: fn(rt) runs in a new
-- runtime (virtual clock unless opts.clock says otherwise), after
-- setup(rt) if given; then H.finish.
function H.run_plain(opts, fn, setup)
  local o = { clock = "virtual" }
  for k, v in pairs(opts or {}) do o[k] = v end
  local rt = corio.runtime(o)
  if setup then setup(rt) end
  return H.finish(rt, pack(pcall(rt.run, rt, fn, rt)))
end

--- Runs fn and returns the error it raised (fails if it did not raise).
function H.run_error(fn, opts, ...)
  local r = pack(pcall(H.run, fn, opts, ...))
  assert(not r[1], "expected an error, got success")
  return r[2]
end

--- pcall(fn, ...) where a pcall can wait; on PUC 5.1 fn runs through corio.join.
-- Returns true, results... or false, err, err being what fn raised: on 5.1
-- the child task stays inside every scope of the caller and its task error
-- is unwrapped back to fn's value. Not for a cancellation of the caller
-- itself (join re-raises that on 5.1).
function H.catch(fn, ...)
  if H.can_pcall_yield then return pcall(fn, ...) end
  local args, name = pack(...), nil
  local r = corio.join(function()
    name = corio.current().name
    return fn(H.unpack(args, 1, args.n))
  end)
  if r[1] then return H.unpack(r, 1, r.n) end
  local e = r[2]
  -- the join child wrapped a non-corio error value: give back the value
  if type(e) == "table" and e.kind == "task" and e.task == name then e = e.value end
  return false, e
end

--- Marks the running spec pending and returns false on PUC 5.1, else true.
-- Pass busted's `pending`, which specs see but a required module does not:
-- `if not H.need_pcall_yield(pending) then return end`.
function H.need_pcall_yield(pending)
  if not H.can_pcall_yield then
    pending("Lua 5.1 cannot yield across pcall")
    return false
  end
  return true
end

--- Lets every ready task run until it parks again: n (default 4) yields.
function H.settle(n)
  for _ = 1, n or 4 do corio.yield() end
end

--- A list of events, for asserting orders: log("a"); log.items == {"a"}.
function H.log()
  local items = {}
  return setmetatable({ items = items }, {
    __call = function(_, v) items[#items + 1] = v end,
  })
end

return H
