-- Workload: n sequential whole-file reads of a small file.
-- corio: corio.fs.read(path) (one pool job: open + fstat + read + close).
-- luv: the fs_open -> fs_read -> fs_close callback chain a luv user
-- writes, one file at a time, in plain uv.run (no coroutines at all).
-- Params: n, size. Reports reads/s.
local lib = require "bench.lib"

local function make_file(size)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(("x"):rep(size))
  f:close()
  return path
end

local function corio_reads(path, n, size)
  local corio = require "corio"
  local elapsed
  corio.run(function()
    local read = corio.fs.read
    local t0 = lib.clock()
    for _ = 1, n do assert(#read(path) == size) end
    elapsed = lib.clock() - t0
  end)
  return elapsed
end

local function luv_reads(path, n, size)
  local uv = require "luv"
  local i, t0 = 0, lib.clock()
  local one
  local function on_close(err)
    assert(not err, err)
    if i < n then one() end
  end
  local function on_open(err, fd)
    assert(fd, err)
    uv.fs_read(fd, size + 1, 0, function(rerr, data)
      assert(data and #data == size, rerr)
      uv.fs_close(fd, on_close)
    end)
  end
  one = function()
    i = i + 1
    uv.fs_open(path, "r", 438, on_open)
  end
  one()
  uv.run()
  return lib.clock() - t0
end

return function(_, impl, p)
  if impl ~= "corio" and impl ~= "luv" then return "no fs workload for " .. impl end
  local path = make_file(p.size)
  local elapsed = (impl == "corio" and corio_reads or luv_reads)(path, p.n, p.size)
  os.remove(path)
  return { n = p.n, wall_s = elapsed, rate = p.n / elapsed }
end
