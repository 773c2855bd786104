-- corio.Stream: read modes and limits, partial reads and writes,
-- deadlines, cancellation, backpressure and the I/O budget, over TCP.
local corio = require "corio"
local H = require "helper"
local pair = require "net_pair"

local REAL = { clock = "real" }

local waiting_on = pair.waiting_on

describe("stream reads", function()
  it("read(n) returns exactly n bytes assembled from several partial writes", function()
    H.run(function()
      local c, s = pair.tcp()
      local t = corio.spawn(function() return c:read(10) end)
      for _, piece in ipairs({ "ab", "cde", "fghi", "jKLM" }) do
        assert(s:write(piece))
        corio.sleep(0.01)
      end
      assert.equal("abcdefghij", t:join())
      assert.equal("KLM", c:read(3))
      c:close(); s:close()
    end, REAL)
  end)

  it("read(n) returns fewer bytes only at the end of the stream, then nil, closed", function()
    H.run(function()
      local c, s = pair.tcp()
      s:write("xyz")
      s:close()
      assert.equal("xyz", c:read(10))
      local v, err = c:read(1)
      assert.is_nil(v)
      assert.equal("closed", err.kind)
      c:close()
    end, REAL)
  end)

  it("read('l') drops the line end (and a CR before it), read('L') keeps it", function()
    H.run(function()
      local c, s = pair.tcp()
      s:write("one\r\ntwo\nthree")
      s:shutdown()
      assert.equal("one", c:read("l"))
      assert.equal("two\n", c:read("L"))
      assert.equal("three", c:read("l")) -- the last line has no end
      local v, err = c:read("l")
      assert.is_nil(v)
      assert.equal("closed", err.kind)
      c:close(); s:close()
    end, REAL)
  end)

  it("a line longer than max_line is an error of kind limit, and the bytes stay readable", function()
    H.run(function()
      local c, s = pair.tcp()
      s:write(("x"):rep(100) .. "\n")
      local v, err = c:read("l", { max_line = 10 })
      assert.is_nil(v)
      assert.equal("limit", err.kind)
      assert.equal(("x"):rep(100) .. "\n", c:read(101))
      -- without a line end the limit still applies (no unbounded growth)
      s:write(("y"):rep(5000))
      v, err = c:read("l", { max_line = 1000, timeout = 5 })
      assert.is_nil(v)
      assert.equal("limit", err.kind)
      c:close(); s:close()
    end, REAL)
  end)

  it("read('a') returns everything up to the end, and past max_read an error of kind limit", function()
    H.run(function()
      local c, s = pair.tcp()
      s:write(("z"):rep(70000))
      s:shutdown()
      local all = c:read("a")
      assert.equal(70000, #all)
      assert.equal("", c:read("a"))
      c:close(); s:close()
      c, s = pair.tcp()
      s:write(("z"):rep(5000))
      local v, err = c:read("a", { max_read = 100 })
      assert.is_nil(v)
      assert.equal("limit", err.kind)
      -- read(n) may not ask for more than max_read either: memory stays bounded
      v, err = c:read(5000, { max_read = 100 })
      assert.is_nil(v)
      assert.equal("limit", err.kind)
      assert.equal(5000, #c:read(5000))
      c:close(); s:close()
    end, REAL)
  end)

  it("read_some returns what is buffered, at most max bytes, waiting only when nothing is", function()
    H.run(function()
      local c, s = pair.tcp()
      local t = corio.spawn(function() return c:read_some() end)
      corio.sleep(0.02)
      assert.equal("waiting", t:status())
      s:write("hello world")
      assert.equal("hello world", t:join())
      s:write("abcdef")
      corio.sleep(0.02)
      assert.equal("abc", c:read_some(3))
      assert.equal("def", c:read_some(100))
      c:close(); s:close()
    end, REAL)
  end)

  it("a read timeout keeps the stream open and loses no byte", function()
    H.run(function()
      local c, s = pair.tcp()
      s:write("12345")
      local v, err = c:read(10, { timeout = 0.05 })
      assert.is_nil(v)
      assert.equal("timeout", err.kind)
      s:write("67890")
      assert.equal("1234567890", c:read(10, { timeout = 5 }))
      c:close(); s:close()
    end, REAL)
  end)

  it("a second task reading the same stream gets an error naming the problem", function()
    H.run(function()
      local c, s = pair.tcp()
      local t = corio.spawn(function() return c:read(4) end)
      corio.sleep(0.01)
      local ok, err = H.catch(function() return c:read(4) end)
      assert.is_false(ok)
      assert.matches("another task is already reading", tostring(err))
      s:write("data")
      assert.equal("data", t:join())
      c:close(); s:close()
    end, REAL)
  end)

  it("closing a stream wakes its parked reader with nil, closed; later calls raise", function()
    H.run(function()
      local c, s = pair.tcp()
      local t = corio.spawn(function() return c:read(4) end)
      corio.sleep(0.01)
      c:close()
      c:close() -- twice is harmless
      local v, err = t:join()
      assert.is_nil(v)
      assert.equal("closed", err.kind)
      assert.is_true(c:closed())
      local ok, e2 = H.catch(function() return c:read(1) end)
      assert.is_false(ok)
      assert.matches("closed", tostring(e2))
      s:close()
    end, REAL)
  end)
end)

describe("stream misuse", function()
  it("bad arguments and options raise errors naming the function", function()
    H.run(function()
      local c, s = pair.tcp()
      assert.has_error(function() c:read("x") end)
      assert.has_error(function() c:read(-1) end)
      assert.has_error(function() c:read(1, { bogus = true }) end,
        "bad option 'bogus' to 'read' (unknown option)")
      assert.has_error(function() c:read("l", { max_line = 0 }) end)
      assert.has_error(function() c:write(nil) end)
      assert.has_error(function() c:write("x", { timeout = -1 }) end)
      assert.has_error(function() c:read_some(0) end)
      assert.has_error(function() c.read({}, 1) end)
      assert.equal("", c:read(0))
      c:close(); s:close()
    end, REAL)
  end)
end)

describe("stream data integrity", function()
  it("any mix of read modes over random partial writes returns the bytes in order", function()
    H.run(function()
      local c, s = pair.tcp()
      local seed = 12345
      local function rand(n) -- a small deterministic generator
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n + 1
      end
      local parts = {}
      for i = 1, 3000 do
        local len = rand(200)
        parts[i] = ("%d:"):format(i) .. ("x"):rep(len) .. (rand(3) == 1 and "\n" or "")
      end
      local payload = table.concat(parts)
      local writer = corio.spawn(function()
        local pos = 1
        while pos <= #payload do
          local n = rand(5000)
          assert(c:write(payload:sub(pos, pos + n - 1)))
          pos = pos + n
          if rand(4) == 1 then corio.sleep(0.001) end
        end
        assert(c:shutdown())
      end)
      local got = {}
      while true do
        local k = rand(4)
        local d, err
        if k == 1 then d, err = s:read(rand(3000))
        elseif k == 2 then d, err = s:read_some(rand(3000))
        else d, err = s:read("L", { max_line = 1000000 }) end
        if not d then
          assert.equal("closed", err.kind)
          break
        end
        got[#got + 1] = d
      end
      writer:join()
      local all = table.concat(got)
      assert.equal(#payload, #all)
      assert.is_true(all == payload)
      c:close(); s:close()
    end, REAL)
  end)
end)

describe("stream close races", function()
  it("a reader woken by data but closed before it runs gets nil, closed (not a raise)", function()
    H.run(function()
      local c, s = pair.tcp()
      local t = corio.spawn(function() return c:read(3) end)
      corio.sleep(0.01)
      s:write("abc")
      -- main keeps yielding, so the loop is polled only between its steps:
      -- the data wakes the reader behind main in the ready queue, and main
      -- closes the stream before the reader runs
      assert.is_true(pair.until_ready(t))
      c:close()
      local v, err = t:join()
      assert.is_nil(v)
      assert.equal("closed", err.kind)
      s:close()
    end, REAL)
  end)

  it("several tasks accepting on one listener are all served", function()
    H.run(function()
      local srv = assert(corio.tcp.listen("127.0.0.1", 0))
      local got = {}
      local acceptors = {}
      for i = 1, 4 do
        acceptors[i] = corio.spawn(function()
          local c = assert(srv:accept({ timeout = 5 }))
          got[#got + 1] = c:read("l")
          c:close()
        end)
      end
      corio.sleep(0.01)
      for i = 1, 4 do
        local c = assert(corio.tcp.connect("127.0.0.1", srv:port()))
        c:write("client " .. i .. "\n")
        c:shutdown()
        c:close()
      end
      for i = 1, 4 do acceptors[i]:join() end
      table.sort(got)
      assert.same({ "client 1", "client 2", "client 3", "client 4" }, got)
      srv:close()
    end, REAL)
  end)
end)

describe("stream cancellation", function()
  it("a read cancelled mid-wait leaks nothing and the next read gets every byte", function()
    H.run(function()
      local c, s = pair.tcp()
      local t = corio.spawn(function() return c:read(6) end)
      corio.sleep(0.01)
      assert.is_true(waiting_on("tcp read"))
      s:write("abc")
      corio.sleep(0.01)
      t:cancel()
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(err))
      assert.equal(0, corio.stats().io_inflight)
      s:write("def")
      assert.equal("abcdef", c:read(6))
      c:close(); s:close()
    end, REAL)
  end)

  it("a write cancelled while it waits for a peer that never reads returns at once and leaks nothing", function()
    H.run(function()
      local c, s = pair.tcp()
      local chunk = ("w"):rep(256 * 1024)
      local t = corio.spawn(function()
        for _ = 1, 400 do assert(c:write(chunk)) end
      end)
      local deadline = corio.now() + 10
      while not waiting_on("tcp write") and corio.now() < deadline do corio.sleep(0.01) end
      assert.is_true(waiting_on("tcp write"))
      t:cancel()
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(err))
      assert.equal(0, corio.stats().io_inflight)
      c:close(); s:close()
    end, REAL)
  end)

  it("a write to a peer that never reads times out with kind timeout", function()
    H.run(function()
      local c, s = pair.tcp()
      local chunk = ("w"):rep(256 * 1024)
      local err
      for _ = 1, 400 do
        local ok
        ok, err = c:write(chunk, { timeout = 0.1 })
        if not ok then break end
      end
      assert.equal("timeout", err.kind)
      c:close(); s:close()
    end, REAL)
  end)
end)

describe("stream payloads", function()
  it("carries a 16 MiB payload intact while the writer is held back by the reader", function()
    H.run(function()
      local c, s = pair.tcp()
      local piece = ("0123456789abcdef"):rep(4096) -- 64 KiB
      local total = 16 * 1024 * 1024
      local writer = corio.spawn(function()
        for _ = 1, math.floor(total / #piece) do assert(c:write(piece)) end
        assert(c:shutdown())
      end)
      local got, bad = 0, 0
      while true do
        local d, err = s:read(65536)
        if not d then
          assert.equal("closed", err.kind)
          break
        end
        if d ~= piece:sub(1, #d) then bad = bad + 1 end
        got = got + #d
        if got % (4 * 1024 * 1024) == 0 then corio.sleep(0.01) end -- a slow reader
      end
      writer:join()
      assert.equal(total, got)
      assert.equal(0, bad)
      c:close(); s:close()
    end, REAL)
  end)

  it("a large write is queued in the background and completes in order", function()
    H.run(function()
      local c, s = pair.tcp()
      local big = ("abc"):rep(1000000)
      assert(c:write(big))
      assert(c:write("END"))
      c:shutdown()
      assert.equal(big .. "END", s:read("a"))
      c:close(); s:close()
    end, REAL)
  end)
end)

describe("the I/O budget", function()
  it("with max_io = 2, ten parked reads queue in the budget and all complete", function()
    H.run(function()
      local clients, servers, tasks = {}, {}, {}
      for i = 1, 10 do clients[i], servers[i] = pair.tcp() end
      for i = 1, 10 do
        tasks[i] = corio.spawn(function() return clients[i]:read(5) end)
      end
      corio.sleep(0.02)
      local st = corio.stats()
      assert.equal(2, st.io_inflight)
      assert.equal(8, st.io_waiting)
      assert.is_true(waiting_on("io budget"))
      for i = 1, 10 do servers[i]:write("hi " .. (i % 10) .. "!") end
      for i = 1, 10 do assert.equal("hi " .. (i % 10) .. "!", tasks[i]:join()) end
      assert.equal(0, corio.stats().io_waiting)
      for i = 1, 10 do clients[i]:close(); servers[i]:close() end
    end, { clock = "real", max_io = 2 })
  end)

  it("idle readers holding every slot do not starve a reader whose data came in", function()
    H.run(function()
      local c1, s1 = pair.tcp()
      local c2, s2 = pair.tcp()
      local c3, s3 = pair.tcp()
      local idle1 = corio.spawn(function() return c1:read(1) end)
      local idle2 = corio.spawn(function() return c2:read(1) end)
      local busy = corio.spawn(function() return c3:read(5, { timeout = 5 }) end)
      corio.sleep(0.02)
      assert.equal(2, corio.stats().io_inflight)
      assert.equal(1, corio.stats().io_waiting)
      s3:write("hello")
      assert.equal("hello", busy:join()) -- served from the buffer, no slot
      idle1:cancel(); idle2:cancel()
      idle1:wait(); idle2:wait()
      for _, x in ipairs({ c1, s1, c2, s2, c3, s3 }) do x:close() end
    end, { clock = "real", max_io = 2 })
  end)

  it("idle readers holding every slot do not stop a listener from accepting", function()
    H.run(function()
      local c1, s1 = pair.tcp()
      local c2, s2 = pair.tcp()
      local srv = assert(corio.tcp.listen("127.0.0.1", 0))
      local idle1 = corio.spawn(function() return c1:read(1) end)
      local idle2 = corio.spawn(function() return c2:read(1) end)
      local acceptor = corio.spawn(function() return srv:accept({ timeout = 5 }) end)
      corio.sleep(0.02)
      assert.equal(1, corio.stats().io_waiting)
      -- a client from another process (a connect here would need a slot)
      os.execute(("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d; sleep 1' >/dev/null 2>&1 &")
        :format(srv:port()))
      local a = assert(acceptor:join())
      idle1:cancel(); idle2:cancel()
      idle1:wait(); idle2:wait()
      for _, x in ipairs({ c1, s1, c2, s2, a, srv }) do x:close() end
    end, { clock = "real", max_io = 2 })
  end)
end)
