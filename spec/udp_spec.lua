-- corio.udp: datagrams over loopback with deadlines and cancellation.
local corio = require "corio"
local H = require "helper"
local pair = require "net_pair"

local REAL = { clock = "real" }

describe("udp", function()
  it("sends a datagram and receives it with the sender's host and port", function()
    H.run(function()
      local a = assert(corio.udp.bind("127.0.0.1", 0))
      local b = assert(corio.udp.bind("127.0.0.1", 0))
      local _, bport = b:local_addr()
      local _, aport = a:local_addr()
      assert(a:send("ping", "127.0.0.1", bport))
      local data, host, port = b:recv({ timeout = 5 })
      assert.equal("ping", data)
      assert.equal("127.0.0.1", host)
      assert.equal(aport, port)
      assert(b:send("", host, port)) -- an empty datagram is a datagram
      assert.equal("", (a:recv({ timeout = 5 })))
      a:close(); b:close()
    end, REAL)
  end)

  it("keeps datagram boundaries", function()
    H.run(function()
      local a = assert(corio.udp.bind("127.0.0.1", 0))
      local b = assert(corio.udp.bind("127.0.0.1", 0))
      local _, bport = b:local_addr()
      for i = 1, 5 do assert(a:send(("m%d"):format(i), "127.0.0.1", bport)) end
      for i = 1, 5 do assert.equal(("m%d"):format(i), (b:recv({ timeout = 5 }))) end
      a:close(); b:close()
    end, REAL)
  end)

  it("a recv with nothing sent times out, and a cancelled recv leaks nothing", function()
    H.run(function()
      local a = assert(corio.udp.bind("127.0.0.1", 0))
      local v, err = a:recv({ timeout = 0.05 })
      assert.is_nil(v)
      assert.equal("timeout", err.kind)
      local t = corio.spawn(function() return a:recv() end)
      corio.sleep(0.02)
      assert.is_true(pair.waiting_on("udp recv"))
      t:cancel()
      assert.is_false((t:wait()))
      assert.equal(0, corio.stats().io_inflight)
      a:close()
    end, REAL)
  end)

  it("closing a socket wakes its receiver with nil, closed; use after close raises", function()
    H.run(function()
      local a = assert(corio.udp.bind("127.0.0.1", 0))
      local t = corio.spawn(function() return a:recv() end)
      corio.sleep(0.01)
      a:close()
      a:close()
      local v, err = t:join()
      assert.is_nil(v)
      assert.equal("closed", err.kind)
      local ok = H.catch(function() return a:send("x", "127.0.0.1", 9) end)
      assert.is_false(ok)
    end, REAL)
  end)

  it("binding a port in use fails with EADDRINUSE", function()
    H.run(function()
      local a = assert(corio.udp.bind("127.0.0.1", 0))
      local _, port = a:local_addr()
      local b, err = corio.udp.bind("127.0.0.1", port)
      assert.is_nil(b)
      assert.equal("EADDRINUSE", err.code)
      a:close()
    end, REAL)
  end)
  it("a receiver cancelled after a datagram woke it leaves the datagram for the next recv", function()
    H.run(function()
      local a = assert(corio.udp.bind("127.0.0.1", 0))
      local b = assert(corio.udp.bind("127.0.0.1", 0))
      local _, bport = b:local_addr()
      local t = corio.spawn(function() return b:recv() end)
      corio.sleep(0.01)
      assert(a:send("keep me", "127.0.0.1", bport))
      -- keep yielding so the loop is polled between main's steps: the
      -- datagram wakes t behind main, which cancels t before it runs
      local hit = false
      for _ = 1, 100000 do
        if t:status() == "ready" then
          hit = true
          t:cancel()
          break
        end
        corio.yield()
      end
      assert.is_true(hit)
      assert.is_false((t:wait()))
      assert.equal("keep me", (b:recv({ timeout = 5 })))
      a:close(); b:close()
    end, REAL)
  end)

  it("a receiver waiting for a budget slot is served when a datagram comes", function()
    H.run(function()
      local c, s = pair.tcp()
      local idle = corio.spawn(function() return c:read(1) end) -- holds the slot
      local a = assert(corio.udp.bind("127.0.0.1", 0))
      local b = assert(corio.udp.bind("127.0.0.1", 0))
      local _, bport = b:local_addr()
      local t = corio.spawn(function() return b:recv({ timeout = 5 }) end)
      corio.sleep(0.01)
      assert.equal(1, corio.stats().io_waiting)
      assert(a:send("no slot needed", "127.0.0.1", bport))
      assert.equal("no slot needed", (t:join()))
      idle:cancel()
      idle:wait()
      for _, x in ipairs({ a, b, c, s }) do x:close() end
    end, { clock = "real", max_io = 1 })
  end)
end)
