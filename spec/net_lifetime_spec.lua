-- Lifetimes of network objects: closed by the runtime when it ends, by
-- __gc when dropped, never a crash on junk or after the state closes.
local corio = require "corio"
local H = require "helper"
local pair = require "net_pair"
local proc = require "fixtures.proc"

describe("network object lifetimes", function()
  it("objects left open when corio.run returns are closed by it, and raise afterwards", function()
    local c, s, srv, u
    corio.run(function()
      c, s = pair.tcp()
      srv = assert(corio.tcp.listen("127.0.0.1", 0))
      u = assert(corio.udp.bind("127.0.0.1", 0))
    end)
    assert.is_true(c:closed())
    assert.matches("closed", tostring(select(2, pcall(c.read, c, 1))))
    assert.matches("closed", tostring(select(2, pcall(srv.port, srv))))
    assert.matches("closed", tostring(select(2, pcall(u.local_addr, u))))
    c:close(); s:close(); srv:close(); u:close() -- harmless
    c, s, srv, u = nil, nil, nil, nil -- luacheck: ignore 311 (dropped for the collector)
    collectgarbage()
    collectgarbage()
  end)

  it("a dropped stream is closed by its finalizer", function()
    H.run(function()
      do
        local c, s = pair.tcp() -- luacheck: ignore 231
        c:write("x")
        assert.equal(2, corio.stats().handles)
        c, s = nil, nil -- luacheck: ignore
      end
      collectgarbage()
      collectgarbage()
      assert.equal(0, corio.stats().handles)
    end, { clock = "real" })
  end)

  it("a <close> variable closes a stream and a listener when its block ends (Lua 5.4)", function()
    if not H.lua54 then return pending("<close> needs Lua 5.4") end
    H.run(function()
      local body = assert(load([[
        local corio, pair = ...
        local kept
        do
          local srv <close> = assert(corio.tcp.listen("127.0.0.1", 0))
          local c0, s0 = pair.tcp()
          local c <close> = c0
          local s <close> = s0
          kept = { srv, c, s }
        end
        return kept
      ]]))
      local kept = body(corio, pair)
      for _, x in ipairs(kept) do
        assert.matches("closed", tostring(x))
      end
      assert.is_true(kept[2]:closed())
    end, { clock = "real" })
  end)

  it("metamethods called on junk raise instead of crashing", function()
    H.run(function()
      local c, s = pair.tcp()
      local mt = getmetatable(c)
      assert.has_error(function() mt.__gc({}) end)
      assert.has_error(function() mt.__tostring(1) end)
      assert.has_error(function() mt.__index.read({}, 1) end)
      assert.matches("^corio.Stream", tostring(c))
      c:close(); s:close()
    end, { clock = "real" })
  end)

  it("closing the Lua state with tasks parked in every network wait neither crashes nor leaks", function()
    local r = proc.run("net_close_state.lua")
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
  end)

  it("a stream belongs to its runtime: another runtime cannot use it", function()
    local c, s
    local rt = corio.runtime({ clock = "real" })
    local other = corio.runtime({ clock = "real" })
    rt:run(function() c, s = pair.tcp() end) -- rt's loop stays open
    local ok, err = pcall(other.run, other, function() return c:read(1) end)
    assert.is_false(ok)
    assert.matches("another runtime", tostring(err))
    c:close(); s:close()
    rt:close(); other:close()
    assert.is_true(c:closed())
  end)

  it("an idle open connection does not hide a deadlock, a parked read keeps the loop alive", function()
    if not H.need_pcall_yield(pending) then return end
    local err = H.run_error(function()
      local c, s = pair.tcp()
      local t = corio.spawn(function() return c:read(1, { timeout = 0.2 }) end)
      local v, e = t:join() -- parked in "tcp read": not a deadlock
      assert.is_nil(v)
      assert.equal("timeout", e.kind)
      local _, why = H.catch(function()
        corio.channel(1):recv() -- nothing can wake it; c and s are idle
      end)
      c:close(); s:close()
      error(why, 0)
    end, { clock = "real" })
    assert.equal("deadlock", err.kind)
  end)
end)

