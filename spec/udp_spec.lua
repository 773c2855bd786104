-- corio.udp: datagrams over loopback with deadlines and cancellation.
local corio = require "corio"
local H = require "helper"

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
      local waiting
      for _, info in ipairs(corio.tasks()) do
        if info.waiting_on == "udp recv" then waiting = true end
      end
      assert.is_true(waiting)
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
end)
