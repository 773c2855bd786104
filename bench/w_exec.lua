-- Workload: run `true` n times, one after the other, capturing its
-- stdout and stderr (both empty) and its exit code.
-- corio: corio.exec{"true"}.
-- luv: uv.spawn with two pipes read to EOF, the exit callback, and the
-- three handles closed before the next spawn: what exec does, by hand.
-- Params: n. Reports commands/s.
local lib = require "bench.lib"

local function corio_execs(n)
  local corio = require "corio"
  local elapsed
  corio.run(function()
    local exec, argv = corio.exec, { "true" }
    local t0 = lib.clock()
    for _ = 1, n do assert(exec(argv).code == 0) end
    elapsed = lib.clock() - t0
  end)
  return elapsed
end

local function luv_execs(n)
  local uv = require "luv"
  local i, t0 = 0, lib.clock()
  local one
  local function start()
    i = i + 1
    local out, err = uv.new_pipe(false), uv.new_pipe(false)
    local pending, proc = 3, nil
    local chunks = {}
    local function done()
      pending = pending - 1
      if pending > 0 then return end
      out:close()
      err:close()
      proc:close()
      if i < n then one() end
    end
    local function reader(pipe)
      pipe:read_start(function(rerr, data)
        assert(not rerr, rerr)
        if data then chunks[#chunks + 1] = data else done() end
      end)
    end
    proc = uv.spawn("true", { args = {}, stdio = { nil, out, err } }, function(code)
      assert(code == 0)
      done()
    end)
    assert(proc)
    reader(out)
    reader(err)
  end
  one = start
  one()
  uv.run()
  return lib.clock() - t0
end

return function(_, impl, p)
  if impl ~= "corio" and impl ~= "luv" then return "no exec workload for " .. impl end
  local elapsed = (impl == "corio" and corio_execs or luv_execs)(p.n)
  return { n = p.n, wall_s = elapsed, rate = p.n / elapsed }
end
