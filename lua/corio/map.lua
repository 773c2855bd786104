--- corio.map, corio.each, corio.stream: bounded concurrent map (the
-- buffer_unordered pattern).
--
-- map and each run `concurrency` worker tasks in a scope, each taking the
-- next input when it is done with one, so there is no task per item and
-- at most `concurrency` calls are in flight. The first error cancels the
-- rest and is raised after their cleanup (the scope's rule).
--
-- stream pulls inputs lazily from an iterator and hands back results as
-- they complete, through a channel of `concurrency` slots: a pipeline over
-- a million inputs holds about 2 x concurrency of them at once.
local M = {}

local type, error, select = type, error, select

local KNOWN = { concurrency = true, ordered = true }
local STREAM_BUFFER = 1024

local function check(fname, fn, opts)
  if type(fn) ~= "function" then
    error(("bad argument #2 to '%s' (function expected, got %s)")
      :format(fname, type(fn)), 4)
  end
  if opts == nil then return 10, true end
  if type(opts) ~= "table" then
    error(("bad argument #3 to '%s' (options table expected, got %s)")
      :format(fname, type(opts)), 4)
  end
  for k in pairs(opts) do
    if not KNOWN[k] then
      error(("bad option '%s' to '%s' (unknown option)")
        :format(tostring(k), fname), 4)
    end
  end
  local c = opts.concurrency
  if c == nil then
    c = 10
  elseif type(c) ~= "number" or c < 1 or c ~= math.floor(c) then
    error(("bad option 'concurrency' to '%s' (positive whole number " ..
      "expected)"):format(fname), 4)
  end
  return c, opts.ordered ~= false
end

local function check_items(fname, items)
  if type(items) ~= "table" then
    error(("bad argument #1 to '%s' (table expected, got %s)")
      :format(fname, type(items)), 4)
  end
end

---@param corio table the corio module
---@param ypcall function a pcall that may wait (init.lua's)
---@param can_wait function core._can_wait: raises, naming the function,
---  unless the caller is a task that could wait
function M.install(corio, ypcall, can_wait)
  local spawn_scope = corio.scope
  local channel = corio.channel
  local pack = table.pack or function(...)
    return { n = select("#", ...), ... }
  end

  -- runs fn over items[1..#items] with at most c in flight; keep(i, r)
  -- receives each first result
  local function run(items, fn, c, keep)
    local n, next_i = #items, 0
    local function worker()
      while next_i < n do
        next_i = next_i + 1
        local i = next_i
        keep(i, (fn(items[i], i)))
      end
    end
    spawn_scope(function(s)
      for _ = 1, c < n and c or n do s:spawn(worker) end
    end)
  end

  --- Calls fn(item, i) for every item of the list, at most
  -- opts.concurrency (10) at once. Returns the first result of each call:
  -- in input order (results[i] for items[i], with results.n = #items),
  -- or with ordered = false in completion order. The first error cancels
  -- the other calls and is raised once they have finished their cleanup.
  ---@param items any[]
  ---@param fn fun(item: any, i: integer): any
  ---@param opts? {concurrency?: integer, ordered?: boolean}
  ---@return table
  function corio.map(items, fn, opts)
    check_items("map", items)
    local c, ordered = check("map", fn, opts)
    can_wait("map")
    local results, k = {}, 0
    if ordered then
      run(items, fn, c, function(i, r) results[i] = r end)
      results.n = #items
    else
      run(items, fn, c, function(_, r)
        k = k + 1
        results[k] = r
      end)
      results.n = k
    end
    return results
  end

  --- corio.map for side effects: returns nothing.
  ---@param items any[]
  ---@param fn fun(item: any, i: integer)
  ---@param opts? {concurrency?: integer}
  function corio.each(items, fn, opts)
    check_items("each", items)
    local c = check("each", fn, opts)
    can_wait("each")
    run(items, fn, c, function() end)
  end

  --- for r, item in corio.stream(iter, fn, opts) do ... end: calls
  -- fn(item) for every value iter() returns (until nil), at most
  -- opts.concurrency (10) at once, pulling inputs only as workers free up,
  -- and gives back each result with its input as calls complete. fn must
  -- return a non-nil value (nil is an error: it would end the loop). The
  -- first error
  -- cancels the other calls and is raised from the loop once they have
  -- finished. Breaking out early: on Lua 5.4 the loop's closing value
  -- (the fourth value returned) cancels the workers; elsewhere call it
  -- (`local step, _, _, stop = corio.stream(...)`, then `stop()`), or
  -- they are cancelled when the runtime's main task ends. PUC 5.1 cannot
  -- wait inside a `for` iterator: call step() in a while loop there.
  ---@param iter fun(): any
  ---@param fn fun(item: any): any
  ---@param opts? {concurrency?: integer}
  ---@return function step, nil, nil, table stop
  function corio.stream(iter, fn, opts)
    if type(iter) ~= "function" then
      error("bad argument #1 to 'stream' (function expected, got "
        .. type(iter) .. ")", 2)
    end
    local c = check("stream", fn, opts)
    -- it starts a task now (it does not wait: no can_wait, so that a
    -- stream can be made where waiting is not possible, e.g. in a pcall
    -- on PUC 5.1)
    if not corio.current() then
      error("stream: not inside a corio task (call it from a function run "
        .. "by corio.run or corio.spawn)", 2)
    end
    -- results wait for the consumer in a channel of c slots, at most
    -- STREAM_BUFFER (a huge concurrency must not allocate a huge ring)
    local out = channel(c < STREAM_BUFFER and c or STREAM_BUFFER)
    local done, exhausted = false, false
    -- Workers are started as inputs arrive, not c of them up front: a
    -- huge concurrency (math.huge) over a short iterator would otherwise
    -- spawn without end before the first worker ever ran. The supervisor
    -- starts the next worker once the last one has taken an input
    -- (`pulled`), and stops when the inputs end (`pulled` is closed).
    local pulled = channel(1)
    local function no_more()
      exhausted = true
      pulled:close()
    end
    local function worker()
      while not exhausted do
        -- an iterator that raises ends the stream with its error, like
        -- fn; once it returned nil nobody calls it again
        local got = pack(ypcall(iter))
        if not got[1] then
          no_more()
          out:send(got)
          return
        end
        local item = got[2]
        if item == nil then
          no_more()
          return
        end
        pulled:try_send(true) -- another worker may pull the next input
        local r = pack(ypcall(fn, item))
        r.item = item
        if not out:send(r) then return end -- closed: the stream stopped
      end
    end
    -- one supervisor task owns the workers, in a scope: the consumer never
    -- waits to spawn them (under max_tasks it could not get a slot while
    -- the workers it had started wait for it to take their results)
    local sup = corio.spawn({ name = "stream" }, function()
      corio.scope(function(s)
        local started = 0
        repeat
          started = started + 1
          s:spawn(worker)
        until started >= c or pulled:recv() == nil or exhausted
      end)
      out:close() -- every input was handled
    end)
    -- cancels the workers; returns once their cleanup has run, even in a
    -- caller that is being cancelled
    local function stop()
      if done then return end
      done = true
      sup:cancel()
      out:close()
      corio.shield(function() sup:wait() end)
    end
    local function step()
      if done then return nil end
      -- the caller cancelled while it waits abandons the stream: stop it
      -- (its workers' cleanup runs) before the cancellation goes on
      local got, r = ypcall(out.recv, out)
      if not got then
        stop()
        error(r, 0)
      end
      if r == nil then -- closed and drained: every input was handled
        done = true
        return nil
      end
      if not r[1] then
        stop()
        error(r[2], 0)
      end
      if r[2] == nil then -- it would end the caller's loop: say why
        stop()
        error(("stream: fn returned nil for item %s (it must return a "
          .. "value)"):format(tostring(r.item)), 2)
      end
      return r[2], r.item
    end
    local closing = setmetatable({}, {
      __close = function() stop() end,
      __call = function() stop() end,
    })
    return step, nil, nil, closing
  end
end

return M
