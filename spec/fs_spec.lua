-- corio.fs: whole-file and directory calls on libuv's pool, and files
-- opened with corio.fs.open.
local corio = require "corio"

local H = require "helper"

local REAL = { clock = "real" }

-- A fresh empty directory for one spec; removed by rm -rf afterwards.
local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p '" .. d .. "'"))
  return d
end

local function rmrf(d) os.execute("rm -rf '" .. d .. "'") end

local function with_dir(fn, opts)
  local d = tmpdir()
  local ok, err = pcall(H.run, function() return fn(d) end, opts or REAL)
  rmrf(d)
  if not ok then error(err, 0) end
end

-- The call returned nil and an error with this errno name.
local function fails_with(code, v, err)
  assert.is_nil(v)
  assert.equal(code, err and err.code)
  return err
end

local function open_fds()
  local p = io.popen("ls /proc/" .. "self/fd 2>/dev/null | wc -l")
  local n = tonumber(p:read("*a"))
  p:close()
  return n
end

describe("corio.fs", function()
  it("round-trips binary data with zero bytes through write, append and read", function()
    with_dir(function(d)
      local data = "a\0b\0\255\1" .. ("x"):rep(100000) .. "\0"
      assert.is_true(corio.fs.write(d .. "/f", data))
      assert.equal(data, corio.fs.read(d .. "/f"))
      assert.is_true(corio.fs.append(d .. "/f", "\0tail"))
      assert.equal(data .. "\0tail", corio.fs.read(d .. "/f"))
      assert.is_true(corio.fs.write(d .. "/f", "short"))
      assert.equal("short", corio.fs.read(d .. "/f")) -- write truncates
      assert.is_true(corio.fs.write(d .. "/empty", ""))
      assert.equal("", corio.fs.read(d .. "/empty"))
    end)
  end)

  it("returns nil and an error with the errno name: ENOENT, EEXIST, ENOTDIR, EISDIR", function()
    with_dir(function(d)
      local v, err = corio.fs.read(d .. "/missing")
      assert.is_nil(v)
      assert.equal("io", err.kind)
      assert.equal("ENOENT", err.code)
      assert.matches("missing", err.message)
      assert.is_true(corio.fs.mkdir(d .. "/sub"))
      fails_with("EEXIST", corio.fs.mkdir(d .. "/sub"))
      assert.is_true(corio.fs.write(d .. "/file", "x"))
      fails_with("ENOTDIR", corio.fs.read(d .. "/file/inner"))
      fails_with("EISDIR", corio.fs.read(d .. "/sub"))
      fails_with("EISDIR", corio.fs.write(d .. "/sub", "x"))
      fails_with("ENOENT", corio.fs.stat(d .. "/missing"))
      fails_with("ENOENT", corio.fs.rename(d .. "/missing", d .. "/other"))
    end)
  end)

  it("creates missing parents with mkdir{parents = true}, and accepts an existing directory", function()
    with_dir(function(d)
      fails_with("ENOENT", corio.fs.mkdir(d .. "/a/b/c"))
      assert.is_true(corio.fs.mkdir(d .. "/a/b/c", { parents = true }))
      assert.is_true(corio.fs.mkdir(d .. "/a/b/c", { parents = true }))
      assert.equal("directory", corio.fs.stat(d .. "/a/b/c").type)
      assert.is_true(corio.fs.write(d .. "/a/f", ""))
      fails_with("ENOTDIR", corio.fs.mkdir(d .. "/a/f/g", { parents = true }))
    end)
  end)

  it("lists a directory's entries sorted by name, with their types", function()
    with_dir(function(d)
      corio.fs.write(d .. "/b.txt", "1")
      corio.fs.write(d .. "/a.txt", "2")
      corio.fs.mkdir(d .. "/c")
      local names, types = corio.fs.list(d)
      assert.same({ "a.txt", "b.txt", "c" }, names)
      assert.same({ ["a.txt"] = "file", ["b.txt"] = "file", c = "directory" }, types)
      assert.same({}, (corio.fs.list(d .. "/c")))
      fails_with("ENOTDIR", corio.fs.list(d .. "/a.txt"))
    end)
  end)

  it("stats size, type, mode and times; exists tells files from nothing", function()
    with_dir(function(d)
      local before = os.time()
      corio.fs.write(d .. "/f", ("z"):rep(1234))
      local st = corio.fs.stat(d .. "/f")
      assert.equal("file", st.type)
      assert.equal(1234, st.size)
      assert.is_number(st.mode)
      assert.is_true(st.mtime >= before - 2 and st.mtime <= os.time() + 2)
      assert.is_number(st.atime)
      assert.is_number(st.ctime)
      assert.equal(1, st.nlink)
      assert.equal("directory", corio.fs.stat(d).type)
      assert.is_true(corio.fs.exists(d .. "/f"))
      assert.is_true(corio.fs.exists(d))
      assert.is_false(corio.fs.exists(d .. "/nope"))
      assert.is_false(corio.fs.exists(d .. "/f/below")) -- ENOTDIR is "no"
    end)
  end)

  it("removes files and empty directories, refuses a non-empty one, and renames", function()
    with_dir(function(d)
      corio.fs.mkdir(d .. "/full")
      corio.fs.write(d .. "/full/x", "x")
      fails_with("ENOTEMPTY", corio.fs.remove(d .. "/full"))
      assert.is_true(corio.fs.rename(d .. "/full/x", d .. "/moved"))
      assert.equal("x", corio.fs.read(d .. "/moved"))
      assert.is_true(corio.fs.remove(d .. "/full"))
      assert.is_true(corio.fs.remove(d .. "/moved"))
      assert.is_false(corio.fs.exists(d .. "/full"))
      fails_with("ENOENT", corio.fs.remove(d .. "/moved"))
    end)
  end)

  it("refuses to read a file larger than max_read with an error of kind limit", function()
    with_dir(function(d)
      corio.fs.write(d .. "/f", ("y"):rep(5000))
      local v, err = corio.fs.read(d .. "/f", { max_read = 4096 })
      assert.is_nil(v)
      assert.equal("limit", err.kind)
      assert.equal(5000, #corio.fs.read(d .. "/f", { max_read = 5000 }))
    end)
  end)

  it("raises on bad arguments and outside a task", function()
    assert.has_error(function() corio.fs.read("/tmp") end,
      "read: no corio runtime is running (call it inside corio.run)")
    H.run(function()
      local ok, err = pcall(function() return corio.fs.read() end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'read'", err)
      ok, err = pcall(corio.fs.read, "a\0b")
      assert.is_false(ok)
      assert.matches("zero byte", err)
      ok, err = pcall(function() return corio.fs.write("/tmp/x") end)
      assert.is_false(ok)
      assert.matches("bad argument #2 to 'write'", err)
      ok, err = pcall(corio.fs.read, "/tmp/x", { bogus = 1 })
      assert.is_false(ok)
      assert.matches("bogus", err)
    end, REAL)
  end)

  it("makes callers wait for an I/O budget slot past max_io, and completes them all", function()
    with_dir(function(d)
      for i = 1, 8 do corio.fs.write(d .. "/f" .. i, ("%d"):format(i):rep(1000)) end
      local waited = 0
      corio.scope(function(s)
        for i = 1, 8 do
          s:spawn(function()
            assert.equal(("%d"):format(i):rep(1000), corio.fs.read(d .. "/f" .. i))
          end)
        end
        corio.yield()
        waited = corio.stats().io_waiting
        assert.equal(1, corio.stats().io_inflight)
      end)
      assert.is_true(waited >= 6)
      assert.equal(0, corio.stats().io_inflight)
    end, { clock = "real", max_io = 1 })
  end)

  it("returns at once from a call that times out while its request is stuck, and frees it later", function()
    with_dir(function(d)
      local fifo = d .. "/fifo"
      assert(os.execute("mkfifo '" .. fifo .. "'"))
      local t0 = corio.now()
      -- open(2) of a FIFO blocks a pool thread until a writer comes
      local v, err = corio.fs.read(fifo, { timeout = 0.1 })
      assert.is_nil(v)
      assert.equal("timeout", err.kind)
      assert.is_true(corio.now() - t0 < 1)
      -- the abandoned request still holds the only budget slot
      assert.equal(1, corio.stats().io_inflight)
      local writer = assert(io.open(fifo, "w")) -- meets the stuck reader
      writer:write("late")
      writer:close()
      -- a new call gets the slot once the request finished in background
      assert.equal("x", (corio.fs.write(d .. "/x", "x") and corio.fs.read(d .. "/x")))
    end, { clock = "real", max_io = 1 })
  end)

  it("lets a cancelled call return at once while its request finishes in the background", function()
    with_dir(function(d)
      local fifo = d .. "/fifo"
      assert(os.execute("mkfifo '" .. fifo .. "'"))
      local t = corio.spawn(function() return corio.fs.read(fifo) end)
      corio.sleep(0.05)
      assert.equal("fs", corio.tasks()[2].waiting_on)
      t:cancel()
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(err))
      local writer = assert(io.open(fifo, "w"))
      writer:close()
      assert.is_true(corio.fs.exists(fifo)) -- waits for the freed slot
    end, { clock = "real", max_io = 1 })
  end)
end)

describe("corio.fs.open", function()
  it("writes and reads a large file in pieces, with seek and lines", function()
    with_dir(function(d)
      local path = d .. "/big"
      local f = assert(corio.fs.open(path, "w"))
      local chunk = ("0123456789abcdef"):rep(4096) -- 64 KiB
      for _ = 1, 40 do assert.is_true(f:write(chunk)) end
      assert.equal(40 * #chunk, f:seek())
      assert.is_true(f:close())
      assert.is_true(f:close()) -- idempotent
      assert.equal(40 * #chunk, corio.fs.stat(path).size)
      f = assert(corio.fs.open(path, "r"))
      local parts = {}
      while true do
        local piece = f:read(100000)
        if not piece then break end
        assert.is_true(#piece == 100000 or #parts == 26) -- short only at the end
        parts[#parts + 1] = piece
      end
      assert.is_true(table.concat(parts) == chunk:rep(40))
      assert.equal(0, f:seek("set"))
      assert.equal("0123", f:read(4))
      assert.equal(4, f:seek("cur"))
      assert.equal(40 * #chunk - 6, f:seek("end", -6))
      assert.equal("abcdef", f:read("a"))
      assert.is_nil(f:read(1))
      f:close()
      -- lines
      f = assert(corio.fs.open(path, "w"))
      for i = 1, 3000 do f:write("line " .. i .. "\n") end
      f:write("last without newline")
      f:close()
      f = assert(corio.fs.open(path))
      assert.equal("line 1", f:read("l"))
      assert.equal("line 2\n", f:read("L"))
      if H.can_pcall_yield then
        local n, last = 0, nil
        for l in f:lines() do n, last = n + 1, l end
        assert.equal(2999, n)
        assert.equal("last without newline", last)
      else
        local n = 0
        while f:read("l") do n = n + 1 end
        assert.equal(2999, n)
      end
      assert.is_nil(f:read("l"))
      f:close()
    end)
  end)

  it("appends in mode a+ and reads from the end after a write", function()
    with_dir(function(d)
      corio.fs.write(d .. "/f", "head\n")
      local f = assert(corio.fs.open(d .. "/f", "a+"))
      assert.is_true(f:write("tail\n"))
      assert.equal(10, f:seek("cur"))
      assert.equal(0, f:seek("set"))
      assert.equal("head", f:read("l"))
      f:close()
      assert.equal("head\ntail\n", corio.fs.read(d .. "/f"))
    end)
  end)

  it("gives a line longer than max_line as an error of kind limit, keeping the data", function()
    with_dir(function(d)
      corio.fs.write(d .. "/f", ("x"):rep(300) .. "\nshort\n")
      local f = assert(corio.fs.open(d .. "/f", "r", { max_line = 100 }))
      local v, err = f:read("l")
      assert.is_nil(v)
      assert.equal("limit", err.kind)
      assert.equal(("x"):rep(300), f:read(300))
      assert.equal("", f:read("l"))
      assert.equal("short", f:read("l"))
      f:close()
    end)
  end)

  it("returns nil and ENOENT for a missing file; raises on bad modes and use after close", function()
    with_dir(function(d)
      local f, err = corio.fs.open(d .. "/missing")
      assert.is_nil(f)
      assert.equal("ENOENT", err.code)
      local ok, msg = pcall(corio.fs.open, d .. "/x", "rw")
      assert.is_false(ok)
      assert.matches("invalid mode", msg)
      f = assert(corio.fs.open(d .. "/x", "w"))
      ok, msg = pcall(f.read, f, "l")
      assert.is_false(ok)
      assert.matches("not open for reading", msg)
      f:close()
      ok, msg = pcall(f.write, f, "data")
      assert.is_false(ok)
      assert.matches("write: file is closed", msg)
      assert.equal("corio.File (closed)", tostring(f))
    end)
  end)

  it("raises when a second task uses a file while the first waits on it", function()
    with_dir(function(d)
      corio.fs.write(d .. "/f", ("q"):rep(100))
      local f = assert(corio.fs.open(d .. "/f"))
      -- hold every pool thread on a FIFO so the first read stays in flight
      local stuck = {}
      for i = 1, tonumber(os.getenv("UV_THREADPOOL_SIZE")) or 4 do
        local fifo = d .. "/fifo" .. i
        assert(os.execute("mkfifo '" .. fifo .. "'"))
        stuck[i] = { fifo, corio.spawn(function() return corio.fs.read(fifo) end) }
      end
      corio.sleep(0.05)
      local t = corio.spawn(function() return f:read("a") end)
      corio.yield()
      local ok, msg = H.catch(function() return f:read(1) end)
      assert.is_false(ok)
      assert.matches("busy", tostring(msg))
      for _, s in ipairs(stuck) do
        assert(io.open(s[1], "w")):close()
        assert.equal("", s[2]:join())
      end
      assert.equal(100, #t:join())
      f:close()
    end)
  end)

  it("closes a dropped file from __gc without leaking its descriptor", function()
    with_dir(function(d)
      corio.fs.write(d .. "/f", "x")
      local before = open_fds()
      for _ = 1, 20 do assert(corio.fs.open(d .. "/f")) end
      collectgarbage()
      collectgarbage()
      corio.sleep(0.05) -- the asynchronous closes complete
      assert.equal(before, open_fds())
    end)
  end)

  it("checks the argument of its metamethods: junk is an error, never a crash", function()
    with_dir(function(d)
      local f = assert(corio.fs.open(d .. "/f", "w"))
      local mt = getmetatable(f)
      for _, junk in ipairs({ 1, "x", {}, io.stdout }) do
        assert.has_error(function() mt.__gc(junk) end)
        assert.has_error(function() mt.__tostring(junk) end)
      end
      mt.__gc(f) -- by hand: closes without waiting
      mt.__gc(f) -- twice is harmless
      assert.equal("corio.File (closed)", tostring(f))
      assert.is_true(f:close())
    end)
  end)

  it("reads hundreds of files concurrently under a small max_io", function()
    with_dir(function(d)
      for i = 1, 20 do corio.fs.write(d .. "/f" .. i, ("%d,"):format(i):rep(i * 100)) end
      local peak = 0
      corio.scope(function(s)
        for k = 1, 300 do
          s:spawn(function()
            local i = k % 20 + 1
            assert.equal(("%d,"):format(i):rep(i * 100), corio.fs.read(d .. "/f" .. i))
            peak = math.max(peak, corio.stats().io_inflight)
          end)
        end
      end)
      assert.is_true(peak <= 8)
    end, { clock = "real", max_io = 8 })
  end)

  it("closes a file still open when its run returns", function()
    local d = tmpdir()
    local kept
    H.run(function()
      corio.fs.write(d .. "/f", "x")
      kept = assert(corio.fs.open(d .. "/f"))
    end, REAL)
    assert.equal("corio.File (closed)", tostring(kept))
    rmrf(d)
  end)
end)

describe("corio.File:close (review regressions)", function()
  it("closes at once while every I/O budget slot is held by other waits", function()
    with_dir(function(d)
      local f = assert(corio.fs.open(d .. "/x", "w"))
      local ev = corio.event()
      -- the only slot, held by a task parked on a pipe that never speaks
      local holder = corio.spawn(function()
        local r = corio.exec({ "sh", "-c", "sleep 5" }, { timeout = 10 })
        return r
      end)
      corio.sleep(0.05)
      local t0 = corio.now()
      assert.is_true(f:close())
      assert.is_true(corio.now() - t0 < 0.5)
      assert.equal("corio.File (closed)", tostring(f))
      holder:cancel()
      holder:wait()
      ev:set()
    end, { clock = "real", max_io = 1 })
  end)

  it("wins over another task's read in flight: that read gets nil, err closed", function()
    with_dir(function(d)
      local path = d .. "/big"
      assert(corio.fs.write(path, string.rep("x", 1048576)))
      local f = assert(corio.fs.open(path, "r"))
      local reader = corio.spawn(function() return f:read("a") end)
      corio.yield() -- the reader's request is in flight
      assert.is_true(f:close())
      local ok, v, err = reader:wait()
      if not ok then -- its next chunk's call found the file closed: raised
        assert.matches("file is closed", tostring(v))
      elseif v == nil then -- it was waiting on its request: nil, closed
        assert.equal("closed", err.kind)
      end -- else it had read everything before the close
      assert.is_true(f:close()) -- idempotent
      -- the abandoned request gives its budget slot back when it is done
      for _ = 1, 200 do
        if corio.stats().io_inflight == 0 then break end
        corio.sleep(0.01)
      end
      assert.equal(0, corio.stats().io_inflight)
    end)
  end)
end)
