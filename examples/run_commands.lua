-- Run several commands concurrently, at most LIMIT at a time, each with
-- its own deadline. corio.exec runs argv without a shell and returns
-- {code, signal, stdout, stderr}; a command that outlives its timeout is
-- sent SIGTERM (then SIGKILL after kill_grace) and reaped before exec
-- returns nil, err. A semaphore bounds how many run at once; a scope
-- waits for all of them.
--
--   .ci/with 5.4 lua examples/run_commands.lua   (also 5.3, 5.1, LuaJIT)
local corio = require "corio"

local LIMIT = 3
local COMMANDS = {
  { argv = { "echo", "hello from echo" }, timeout = 2 },
  { argv = { "sh", "-c", "sleep 0.3; echo slept 0.3 s" }, timeout = 2 },
  { argv = { "sh", "-c", "echo to stderr >&2; exit 3" }, timeout = 2 },
  { argv = { "sleep", "10" }, timeout = 0.5 }, -- too slow: killed
  { argv = { "sh", "-c", "trap '' TERM; exec sleep 10" }, timeout = 0.3,
    kill_grace = 0.4 },                          -- ignores SIGTERM: SIGKILL
  { argv = { "true" }, timeout = 2 },
  { argv = { "false" }, timeout = 2 },
  { argv = { "corio-no-such-command" }, timeout = 2 },
  { argv = { "sh", "-c", "cat | tr a-z A-Z" }, input = "piped input\n", timeout = 2 },
}

local function describe(r, err)
  if not r then return ("failed: %s"):format(err.message) end
  local how = r.signal and ("killed by " .. r.signal) or ("exit " .. r.code)
  local out = (r.stdout .. r.stderr):gsub("\n$", ""):gsub("\n", " | ")
  return ("%s  %s"):format(how, out)
end

corio.run(function()
  local t0 = corio.now()
  local results, slots = {}, corio.semaphore(LIMIT)
  corio.scope(function(s)
    for i, c in ipairs(COMMANDS) do
      s:spawn(function()
        local permit = slots:acquire()
        local r, err = corio.exec(c.argv, { timeout = c.timeout, input = c.input,
                                            kill_grace = c.kill_grace })
        permit:release()
        results[i] = { r = r, err = err, took = corio.now() - t0 }
      end)
    end
  end)
  for i, c in ipairs(COMMANDS) do
    local res = results[i]
    print(("%-40s %5.2f s  %s"):format(table.concat(c.argv, " "):sub(1, 40), res.took,
                                      describe(res.r, res.err)))
  end
  local took = corio.now() - t0
  print(("%d commands, at most %d at a time, in %.2f s"):format(#COMMANDS, LIMIT, took))
  -- what must hold: the slow ones timed out, everything else ran
  assert(results[4].err and results[4].err.kind == "timeout")
  assert(results[5].err and results[5].err.kind == "timeout")
  assert(results[3].r.code == 3 and results[7].r.code == 1)
  assert(results[8].err.code == "ENOENT")
  assert(results[9].r.stdout == "PIPED INPUT\n")
  assert(took < 5)
end)
