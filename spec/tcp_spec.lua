-- corio.tcp and corio.unix: connect, listen, accept, echo at scale,
-- errors with errno codes, deadlines at each step, EMFILE, reuseport.
local corio = require "corio"
local H = require "helper"
local pair = require "net_pair"
local proc = require "fixtures.proc"

local REAL = { clock = "real" }

local waiting_on = pair.waiting_on

-- An echo server on srv: one task per connection, inside scope s.
local function serve_echo(s, srv, conns)
  s:spawn(function()
    for _ = 1, conns do
      local c = assert(srv:accept({ timeout = 20 }))
      s:spawn(function()
        while true do
          local line = c:read("L")
          if not line then break end
          assert(c:write(line))
        end
        c:close()
      end)
    end
  end)
end

-- n clients, each doing `rounds` line round trips with one echo server.
local function echo_at_scale(n, rounds)
  local srv = assert(corio.tcp.listen("127.0.0.1", 0, { backlog = 1024 }))
  local ok = 0
  corio.scope(function(s)
    serve_echo(s, srv, n)
    for i = 1, n do
      s:spawn(function()
        local c = assert(corio.tcp.connect("127.0.0.1", srv:port(),
          { nodelay = true, timeout = 20 }))
        for r = 1, rounds do
          local msg = ("client %d round %d\n"):format(i, r)
          assert(c:write(msg))
          assert.equal(msg, c:read("L", { timeout = 20 }))
        end
        c:close()
        ok = ok + 1
      end)
    end
  end)
  srv:close()
  assert.equal(n, ok)
end

describe("tcp", function()
  it("echoes for hundreds of concurrent connections", function()
    H.run(echo_at_scale, REAL, 200, 5)
  end)

  it("port 0 picks a free port, reported by srv:port() and the peer's address", function()
    H.run(function()
      local srv = assert(corio.tcp.listen("127.0.0.1", 0))
      local port = srv:port()
      assert.is_true(port > 0)
      local t = corio.spawn(function() return assert(srv:accept()) end)
      local c = assert(corio.tcp.connect("localhost", port))
      local s = t:join()
      local host, p = c:peer_addr()
      assert.equal("127.0.0.1", host)
      assert.equal(port, p)
      local lh, lp = s:peer_addr()
      assert.equal("127.0.0.1", lh)
      assert.equal(select(2, c:local_addr()), lp)
      assert.is_true(c:nodelay(true))
      assert.is_true(c:keepalive(true, 30))
      c:close(); s:close(); srv:close()
    end, REAL)
  end)

  it("a refused connection returns nil, err with code ECONNREFUSED", function()
    H.run(function()
      local srv = assert(corio.tcp.listen("127.0.0.1", 0))
      local port = srv:port()
      srv:close()
      local c, err = corio.tcp.connect("127.0.0.1", port)
      assert.is_nil(c)
      assert.equal("ECONNREFUSED", err.code)
    end, REAL)
  end)

  it("a connect to a listener whose backlog is full times out with kind timeout", function()
    H.run(function()
      local srv = assert(corio.tcp.listen("127.0.0.1", 0, { backlog = 0 }))
      local conns, err = {}, nil
      for _ = 1, 16 do
        local c
        c, err = corio.tcp.connect("127.0.0.1", srv:port(), { timeout = 0.3 })
        if not c then break end
        conns[#conns + 1] = c
      end
      assert.is_truthy(err)
      assert.equal("timeout", err.kind)
      for _, c in ipairs(conns) do c:close() end
      srv:close()
    end, REAL)
  end)

  it("an accept with nobody connecting times out (a waiting accept is not a deadlock)", function()
    H.run(function()
      local srv = assert(corio.tcp.listen("127.0.0.1", 0))
      local t = corio.spawn(function() return srv:accept({ timeout = 0.2 }) end)
      corio.sleep(0.05)
      assert.is_true(waiting_on("accept"))
      local c, err = t:join()
      assert.is_nil(c)
      assert.equal("timeout", err.kind)
      srv:close()
    end, REAL)
  end)

  it("closing a listener wakes its acceptors with nil, closed; a cancelled accept leaks nothing", function()
    H.run(function()
      local srv = assert(corio.tcp.listen("127.0.0.1", 0))
      local a = corio.spawn(function() return srv:accept() end)
      local b = corio.spawn(function() return srv:accept() end)
      corio.sleep(0.02)
      b:cancel()
      assert.is_false((b:wait()))
      srv:close()
      srv:close()
      local c, err = a:join()
      assert.is_nil(c)
      assert.equal("closed", err.kind)
      assert.equal(0, corio.stats().io_inflight)
    end, REAL)
  end)

  it("a peer reset shows as kind closed with code ECONNRESET", function()
    H.run(function()
      -- a listener closed with a connection still in its backlog resets it
      local srv = assert(corio.tcp.listen("127.0.0.1", 0))
      local c = assert(corio.tcp.connect("127.0.0.1", srv:port()))
      assert(c:write("never read"))
      srv:close()
      local v, err = c:read(100, { timeout = 5 })
      assert.is_nil(v)
      assert.equal("closed", err.kind)
      assert.equal("ECONNRESET", err.code)
      c:close()
    end, REAL)
  end)

  it("a cancelled connect returns at once and leaves no handle open", function()
    H.run(function()
      local srv = assert(corio.tcp.listen("127.0.0.1", 0, { backlog = 0 }))
      local conns = {}
      for _ = 1, 4 do
        local c = corio.tcp.connect("127.0.0.1", srv:port(), { timeout = 0.2 })
        if c then conns[#conns + 1] = c end
      end
      local t = corio.spawn(function() return corio.tcp.connect("127.0.0.1", srv:port()) end)
      corio.sleep(0.05)
      assert.is_true(waiting_on("connect"))
      t:cancel()
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(err))
      for _, c in ipairs(conns) do c:close() end
      srv:close()
    end, REAL)
  end)

  it("reuseport lets two listeners share a port; without it the second fails with EADDRINUSE", function()
    H.run(function()
      local a = assert(corio.tcp.listen("127.0.0.1", 0, { reuseport = true }))
      local b = assert(corio.tcp.listen("127.0.0.1", a:port(), { reuseport = true }))
      assert.equal(a:port(), b:port())
      local x, err = corio.tcp.listen("127.0.0.1", a:port())
      assert.is_nil(x)
      assert.equal("EADDRINUSE", err.code)
      a:close(); b:close()
    end, REAL)
  end)

  it("accept under EMFILE returns code EMFILE and serves the same client once a descriptor frees up", function()
    local r = proc.run_with({ nofile = 64 }, "net_emfile.lua")
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
    assert.equal("accept: EMFILE\nserved: ping\n", r.stdout)
  end)

  it("bad arguments raise errors naming the function", function()
    H.run(function()
      assert.has_error(function() corio.tcp.connect(1, 2) end,
        "bad argument #1 to 'connect' (string expected, got number)")
      assert.has_error(function() corio.tcp.listen("127.0.0.1", 70000) end,
        "bad argument #2 to 'listen' (port from 0 to 65535 expected, got 70000)")
      assert.has_error(function() corio.tcp.connect("127.0.0.1", 1, { bogus = 1 }) end,
        "bad option 'bogus' to 'connect' (unknown option)")
    end)
  end)
end)

describe("tcp over IPv6 and at scale", function()
  it("connects and reports addresses over the IPv6 loopback", function()
    H.run(function()
      local srv, err = corio.tcp.listen("::1", 0)
      if not srv then
        assert.equal("EADDRNOTAVAIL", err.code) -- no IPv6 on this host
        return
      end
      local t = corio.spawn(function() return assert(srv:accept()) end)
      local c = assert(corio.tcp.connect("::1", srv:port()))
      local s = t:join()
      assert.equal("::1", (c:peer_addr()))
      assert.equal(select(2, c:local_addr()), select(2, s:peer_addr()))
      c:close(); s:close(); srv:close()
    end, REAL)
  end)

  it("serves 1000 concurrent connections doing 20 round trips each #slow", function()
    H.run(echo_at_scale, REAL, 1000, 20)
  end)
end)

describe("unix sockets", function()
  it("serve an echo over a socket in a temporary directory", function()
    H.run(function()
      local path = pair.sock_path()
      local srv = assert(corio.unix.listen(path))
      corio.scope(function(s)
        serve_echo(s, srv, 3)
        for i = 1, 3 do
          s:spawn(function()
            local c = assert(corio.unix.connect(path))
            assert(c:write("hello " .. i .. "\n"))
            assert.equal("hello " .. i, c:read("l"))
            c:close()
          end)
        end
      end)
      srv:close()
      os.remove(path)
    end, REAL)
  end)

  it("a connect to a missing socket returns code ENOENT", function()
    H.run(function()
      local c, err = corio.unix.connect(pair.sock_path())
      assert.is_nil(c)
      assert.equal("ENOENT", err.code)
    end, REAL)
  end)
end)
