-- corio's main job in one screen: many concurrent tasks, a deadline over a
-- whole block of concurrent work, and cancellation whose cleanup runs.
--
--   make demo        (or: lua5.4 examples/demo.lua with corio installed)
local corio = require "corio"

corio.run(function()
  -- 1. Ten thousand tasks, each sleeping 50-99 ms: they all wait at once,
  --    so the whole batch takes about 0.1 s, not 750 s.
  local t0 = corio.now()
  local tasks = {}
  for i = 1, 10000 do
    tasks[i] = corio.spawn(function()
      corio.sleep(0.05 + (i % 50) / 1000)
      return i
    end)
  end
  local sum = 0
  for i = 1, #tasks do sum = sum + tasks[i]:join() end
  print(("1. 10000 tasks finished concurrently in %.2f s (sum of results %d)")
    :format(corio.now() - t0, sum))

  -- 2. A deadline over a block that runs three workers in a scope: when it
  --    passes, every worker is cancelled, its cleanup runs, and timeout
  --    raises an error of kind "timeout".
  local cleaned = {}
  local failed = corio.spawn(function()
    return corio.timeout(0.2, function()
      corio.scope(function(s)
        for i = 1, 3 do
          s:spawn({ name = "worker" .. i }, function()
            local ok, err = pcall(corio.sleep, i)   -- i seconds: too long
            cleaned[#cleaned + 1] = "worker" .. i   -- cleanup always runs
            if not ok then error(err, 0) end
          end)
        end
      end)
    end)
  end)
  local ok, err = failed:wait()
  print(("2. timeout: ok=%s, %s; cleanup ran in %d workers; is_timeout=%s")
    :format(tostring(ok), tostring(err), #cleaned, tostring(corio.is_timeout(err))))

  -- 3. Cancelling a task: its current wait raises a "cancelled" error, so
  --    its handlers run; a task that swallows it is cancelled again at its
  --    next wait.
  local log = {}
  local server = corio.spawn({ name = "server" }, function()
    local _, e = pcall(corio.sleep, 60)
    log[#log + 1] = "cleanup after " .. tostring(e)
    corio.sleep(1)                -- cancelled again here: cancellation sticks
    log[#log + 1] = "never reached"
  end)
  corio.sleep(0.01)
  server:cancel()
  local sok, serr = server:wait()
  print(("3. cancelled task: status=%s, wait() -> %s, %s; log: %s")
    :format(server:status(), tostring(sok), tostring(serr), table.concat(log, "; ")))

  -- 4. select: the first of several alternatives wins, the rest are
  --    cancelled and cleaned up before select returns.
  local i, v = corio.select(
    function() corio.sleep(0.03) return "slow mirror" end,
    function() corio.sleep(0.01) return "fast mirror" end)
  print(("4. select picked #%d: %s"):format(i, v))
end)
