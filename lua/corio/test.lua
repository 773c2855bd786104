--- corio.test: run a busted spec's body in a fresh corio runtime.
--
--   local ctest = require "corio.test"
--   it("times out", ctest(function() ... end, {timeout = 5}))
--
-- The body runs as the main task of a new runtime on the virtual clock
-- (opts.clock = "real" opts out), so sleeps and timeouts take no real
-- time. The spec fails when:
--   * the body raises (its error is re-raised as is);
--   * a task is still alive when the body returns (a task the body forgot
--     to join or cancel), with a dump of the live tasks;
--   * a task failed and nobody observed it (the runtime's on_error);
--   * the body runs past opts.timeout seconds of the runtime's clock
--     (default 60), or past opts.wall seconds of CPU time (default 30:
--     a task that never waits, or virtual time that cannot advance
--     because tasks keep yielding), with a dump of the tasks.
-- Other options go to corio.runtime (max_tasks, max_io, ...).
local corio = require "corio"

local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack

local OWN = { timeout = true, wall = true }

-- debug.sethook is per coroutine, so every task spawned while the body
-- runs installs the CPU watchdog when it starts: spawn and Scope:spawn
-- are wrapped for the duration of the run.
local scope_methods = debug.getregistry()["corio.Scope"].__index

local function watched(hook, fn)
  return function(...)
    debug.sethook(hook, "", 10000)
    return fn(...)
  end
end

local function wrap_spawn(hook, spawn, nfixed)
  return function(...)
    local args = pack(...)
    local i = nfixed + 1
    if type(args[i]) == "table" then i = i + 1 end
    if type(args[i]) == "function" then args[i] = watched(hook, args[i]) end
    return spawn(unpack(args, 1, args.n))
  end
end

local function fail(msg, dump)
  error(msg .. (dump and dump ~= "" and ("\n" .. dump) or ""), 0)
end

--- Wraps body for busted's `it`.
---@param body fun(...): any
---@param opts? table {clock =, timeout =, wall =, ...runtime options}
---@return function
return function(body, opts)
  if type(body) ~= "function" then
    error("bad argument #1 to 'corio.test' (function expected, got "
      .. type(body) .. ")", 2)
  end
  opts = opts or {}
  return function(...)
    local rtopts, unobserved = { clock = "virtual" }, {}
    for k, v in pairs(opts) do
      if not OWN[k] then rtopts[k] = v end
    end
    -- the deadline's watchdog task takes a slot of its own, so the body
    -- keeps the max_tasks it asked for
    if rtopts.max_tasks then rtopts.max_tasks = rtopts.max_tasks + 1 end
    local user_on_error = rtopts.on_error
    rtopts.on_error = function(e)
      unobserved[#unobserved + 1] = tostring(e)
      if user_on_error then user_on_error(e) end
    end
    local rt = corio.runtime(rtopts)
    local wall, limit = opts.wall or 30, opts.timeout or 60
    local start, dump = os.clock(), nil
    local function hook()
      if os.clock() - start > wall then
        dump = dump or corio.dump()
        error(("corio.test: more than %g s of CPU time"):format(wall), 2)
      end
    end
    local orig_spawn, orig_scope_spawn = corio.spawn, scope_methods.spawn
    corio.spawn = wrap_spawn(hook, orig_spawn, 0)
    scope_methods.spawn = wrap_spawn(hook, orig_scope_spawn, 1)
    -- LuaJIT runs no count hook inside compiled code: without the JIT, a
    -- spinning task still meets the CPU watchdog
    local jit = rawget(_G, "jit")
    local jit_on = jit and jit.status()
    if jit then jit.off() jit.flush() end
    local saved_hook = pack(debug.gethook()) -- luacov's, say: put back
    local leaked, timed_out, deadlocked
    local args = pack(...)
    local r = pack(pcall(rt.run, rt, watched(hook, function()
      -- the deadline: a watchdog task, so the dump shows what the body
      -- was stuck on, before anything unwinds
      local main = corio.current()
      local watchdog = orig_spawn({ name = "corio.test deadline" }, function()
        corio.sleep(limit)
        dump = dump or corio.dump()
        -- nothing else could ever happen: a deadlock, not a slow body
        local st = corio.stats()
        deadlocked = st.timers == 0 and st.ready == 0 and st.handles == 0
          and st.io_inflight == 0 and (st.workers_busy or 0) == 0
        timed_out = true
        main:cancel()
      end)
      local res = pack(corio.pcall(body, unpack(args, 1, args.n)))
      watchdog:cancel()
      watchdog:wait()
      if timed_out then error("deadline", 0) end
      if not res[1] then error(res[2], 0) end
      if corio.stats().alive > 1 then leaked = corio.dump() end
      return unpack(res, 2, res.n)
    end)))
    corio.spawn, scope_methods.spawn = orig_spawn, orig_scope_spawn
    if saved_hook[1] then debug.sethook(unpack(saved_hook, 1, saved_hook.n))
    else debug.sethook() end
    if jit_on then jit.on() end
    if not r[1] then
      local e = r[2]
      if deadlocked then
        fail("corio.test: deadlock: every task is waiting and nothing can "
          .. "wake them", dump)
      end
      if timed_out then
        fail(("corio.test: the body ran past its deadline of %g s"):format(
          limit), dump)
      end
      if dump then fail(tostring(e), dump) end
      -- an assertion failing inside a task arrives wrapped as a task
      -- error: re-raise the original so busted shows it
      if corio.is_error(e, "task") and e.value ~= nil then error(e.value, 0) end
      error(e, 0)
    end
    if leaked then
      fail("corio.test: tasks were still alive when the body returned", leaked)
    end
    if #unobserved > 0 then
      fail("corio.test: a task failed and nobody observed it: "
        .. table.concat(unobserved, "; "))
    end
    return unpack(r, 2, r.n)
  end
end
