-- Shared by every spec: `local H = require "helper"`.
--
-- H.run(fn, opts) runs fn in a fresh runtime (virtual clock unless
-- opts.clock says otherwise), under a CPU watchdog so a spec can fail but
-- never hang, and asserts afterwards that no task is left alive and no
-- timer armed. It returns fn's results (or raises fn's error).
local corio = require "corio"

local H = {}

local pack = table.pack or function(...) return { n = select("#", ...), ... } end
H.unpack = table.unpack or unpack
H.pack = pack

--- Lua 5.1 (PUC) cannot yield across pcall, metamethods or iterators.
H.can_pcall_yield = not (_VERSION == "Lua 5.1" and not rawget(_G, "jit"))
H.lua54 = _VERSION == "Lua 5.4"

local WATCHDOG_CPU = 60

--- Runs fn(...) in a new runtime; the last runtime is kept in H.rt.
function H.run(fn, opts, ...)
  opts = opts or {}
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.clock = o.clock or "virtual"
  local rt = corio.runtime(o)
  H.rt = rt
  local start = os.clock()
  -- new coroutines inherit the creating thread's hook, so every task is
  -- covered
  debug.sethook(function()
    if os.clock() - start > WATCHDOG_CPU then
      debug.sethook()
      error("watchdog: spec ran for more than " .. WATCHDOG_CPU .. " s of CPU", 2)
    end
  end, "", 1000000)
  local r = pack(pcall(rt.run, rt, fn, ...))
  debug.sethook()
  local st = rt:stats()
  assert(st.alive == 0, "tasks left alive after run: " .. st.alive)
  assert(st.timers == 0, "timers left armed after run: " .. st.timers)
  if not r[1] then
    local e = r[2]
    -- a failed assertion inside a task arrives wrapped as a task error:
    -- re-raise the original so busted shows it
    if corio.is_error(e, "task") and e.value ~= nil then error(e.value, 0) end
    error(e, 0)
  end
  return H.unpack(r, 2, r.n)
end

--- Runs fn and returns the error it raised (fails if it did not raise).
function H.run_error(fn, opts, ...)
  local r = pack(pcall(H.run, fn, opts, ...))
  assert(not r[1], "expected an error, got success")
  return r[2]
end

--- A list of events, for asserting orders: log("a"); log.items == {"a"}.
function H.log()
  local items = {}
  return setmetatable({ items = items }, {
    __call = function(_, v) items[#items + 1] = v end,
  })
end

return H
