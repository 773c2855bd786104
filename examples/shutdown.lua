-- Graceful shutdown: three "server loops" serve until a corio.watch flips
-- to true, then drain their backlog and flush their state. The supervisor
-- gives them a grace period (corio.timeout over the whole shutdown); a
-- server still draining when it ends is cancelled, but its flush is
-- shielded (corio.shield), so it always completes.
--
--   .ci/with 5.4 lua examples/shutdown.lua   (also 5.3 and LuaJIT)
local corio = require "corio"

local RUN_FOR, GRACE = 0.1, 0.1
local SERVERS = { -- name, tick (one request), backlog x 30 ms, flush time
  { "api", 0.010, 0, 0.010 }, { "metrics", 0.025, 1, 0.020 }, { "jobs", 0.040, 10, 0.030 },
}

local stop = corio.watch(false) -- the shutdown signal
local t0, events = 0, {}
local function log(fmt, ...)
  events[#events + 1] = fmt:format(...)
  print(("%6.3f  %s"):format(corio.now() - t0, events[#events]))
end
local function index_of(prefix) -- where the first event starting with prefix is
  for i, e in ipairs(events) do if e:sub(1, #prefix) == prefix then return i end end
  error("missing event: " .. prefix)
end

local function serve(name, tick, backlog, flush)
  local handled, drained = 0, 0
  -- changed() waits for the *next* set, so test get() first
  while not stop:get() do
    corio.select(
      function() stop:changed() end,                          -- shutdown signal
      function() corio.sleep(tick); handled = handled + 1 end) -- one request
  end
  log("%s: stop seen after %d requests, draining %d queued", name, handled, backlog)
  local ok, err = pcall(function()
    for _ = 1, backlog do corio.sleep(0.03); drained = drained + 1 end
  end)
  if not ok then log("%s: drain cut short at %d/%d (%s)", name, drained, backlog, err.kind) end
  corio.shield(function() corio.sleep(flush) end) -- must not stop halfway
  log("%s: flushed", name)
  if not ok then error(err, 0) end -- re-raise the cancellation
end

corio.run(function()
  t0 = corio.now()
  local servers, t_stop = {}, nil
  corio.scope(function(s)
    for i, def in ipairs(SERVERS) do servers[i] = s:spawn({ name = def[1] }, serve, def[1], def[2], def[3], def[4]) end
    log("supervisor: %d servers started", #servers)
    corio.sleep(RUN_FOR)
    log("supervisor: shutdown requested")
    t_stop = corio.now()
    stop:set(true)
    local ok, err = pcall(corio.timeout, GRACE, function()
      for _, t in ipairs(servers) do t:wait() end
    end)
    if not ok then
      assert(corio.is_timeout(err), tostring(err))
      log("supervisor: grace period over, cancelling the rest")
      s:cancel() -- the scope still waits for their cleanup
    end
  end)
  local took = corio.now() - t_stop
  log("supervisor: all stopped in %.3f s (api=%s metrics=%s jobs=%s)", took,
    servers[1]:status(), servers[2]:status(), servers[3]:status())

  -- the order of events, and that the timeout bounded the shutdown
  local function before(a, b) assert(index_of(a) < index_of(b), a .. " came after " .. b) end
  for _, def in ipairs(SERVERS) do
    before("supervisor: shutdown requested", def[1] .. ": stop seen")
    before(def[1] .. ": stop seen", def[1] .. ": flushed")
  end
  before("metrics: flushed", "supervisor: grace period over")
  before("supervisor: grace period over", "jobs: drain cut short")
  before("jobs: drain cut short", "jobs: flushed")
  assert(servers[1]:status() == "done" and servers[2]:status() == "done")
  assert(servers[3]:status() == "cancelled")
  -- the grace period, plus the jobs flush that the shield let finish
  assert(took >= GRACE + 0.03 and took < GRACE + 0.03 + 0.05)
end)
