-- redis-lua (Debian lua-redis), unchanged, on corio.socket against a
-- real redis-server that the spec starts on a free loopback port and
-- stops: pipelines from many tasks at once, BLPOP under deadlines, and a
-- cancelled BLPOP that leaves its connection cleanly closed.
local corio = require "corio"
local socket = require "corio.socket"
local H = require "helper"

local REAL = { clock = "real" }

-- redis-lua is one pure-Lua file; Debian installs it for 5.1 to 5.3
-- only. On 5.4 the 5.3 file is loaded as is (it runs unchanged).
local function load_redis()
  local ok, redis = pcall(require, "redis")
  if ok then return redis end
  local f = loadfile("/usr/share/lua/5.3/redis.lua")
  return f and f() or nil
end

local function have_redis_server()
  local r = os.execute("command -v redis-server >/dev/null 2>&1")
  return r == true or r == 0
end

local redis = load_redis()
if redis then
  -- redis-lua 2.0.5's pipeline does table.insert(parsers, #requests,
  -- parser) with a nil parser for commands that have none, which Lua 5.3+
  -- rejects ("position out of bounds"); an identity parser avoids it.
  local function same(r) return r end
  for _, cmd in ipairs({ "incr", "set", "get" }) do
    redis.commands[cmd] = redis.command(cmd:upper(), { response = same })
  end
end

-- Starts redis-server on a free loopback port: the process and the port.
local function start_server()
  local l = assert(corio.tcp.listen("127.0.0.1", 0))
  local port = l:port()
  l:close()
  local pr = assert(corio.process({ "redis-server", "--bind", "127.0.0.1", "--port", tostring(port),
    "--save", "", "--appendonly", "no" }, { stdout = "null", stderr = "null" }))
  for _ = 1, 200 do -- until it accepts (at most ~10 s)
    local c = corio.tcp.connect("127.0.0.1", port, { timeout = 1 })
    if c then
      c:close()
      return pr, port
    end
    corio.sleep(0.05)
  end
  pr:close()
  error("redis-server did not start on port " .. port)
end

local function stop_server(pr)
  pr:kill("SIGTERM")
  assert(pr:wait({ timeout = 10 }))
  pr:close()
end

-- A redis-lua client on its own corio.socket connection.
local function client(port)
  return redis.connect({ socket = assert(socket.connect("127.0.0.1", port)) })
end

-- QUIT, then close the socket (redis-lua's quit only shuts it down and
-- leaves the rest to the garbage collector).
local function bye(c)
  c:quit()
  c.network.socket:close()
end

-- INFO clients' fields as numbers.
local function clients_info(c)
  local info = c:info("clients")
  local t = {}
  for k, v in pairs(info.clients or info) do t[k] = tonumber(v) or v end
  return t
end

-- Waits (bounded) until f() is true.
local function eventually(f)
  for _ = 1, 300 do
    if f() then return true end
    corio.sleep(0.01)
  end
  return false
end

local function with_server(body)
  return function()
    H.run(function()
      local pr, port = start_server()
      local ok, err = corio.pcall(body, port)
      stop_server(pr)
      if not ok then error(err, 0) end
    end, REAL)
  end
end

describe("redis-lua on corio.socket", function()
  if not redis or not have_redis_server() then
    it("needs redis-server and lua-redis", function()
      pending("skipped: " .. (redis and "redis-server" or "redis-lua (lua-redis)") ..
        " is not installed for " .. _VERSION)
    end)
    return
  end

  it("runs pipelines from 50 tasks at once, each on its own connection", with_server(function(port)
    local n, per = 50, 100
    corio.map((function()
      local t = {}
      for i = 1, n do t[i] = i end
      return t
    end)(), function(i)
      local c = client(port)
      local replies = c:pipeline(function(p)
        for k = 1, per do
          p:incr("counter")
          p:set("key:" .. i .. ":" .. k, "v" .. k)
        end
        p:get("key:" .. i .. ":" .. per)
      end)
      assert.equal(2 * per + 1, #replies)
      assert.equal("v" .. per, replies[#replies])
      assert.is_true(replies[2])
      bye(c)
      return true
    end, { concurrency = n })
    local c = client(port)
    assert.equal(tostring(n * per), c:get("counter"))
    assert.equal("v7", c:get("key:3:7"))
    bye(c)
  end))

  it("BLPOP waits for a push from another task, and honours its own and corio's deadlines", with_server(function(port)
    local a, b = client(port), client(port)
    corio.spawn(function()
      corio.sleep(0.2)
      b:rpush("jobs", "job-1")
    end)
    local t0 = corio.now()
    local r = corio.timeout(5, function() return a:blpop("jobs", 0) end)
    assert.same({ "jobs", "job-1" }, r)
    assert.is_true(corio.now() - t0 >= 0.15)
    -- redis' own timeout: nil after it
    t0 = corio.now()
    assert.is_nil(a:blpop("jobs", 0.2))
    assert.is_true(corio.now() - t0 >= 0.15)
    -- corio's deadline ends a BLPOP that would wait forever
    t0 = corio.now()
    local ok, err = H.catch(corio.timeout, 0.3, function() return a:blpop("jobs", 0) end)
    assert.is_false(ok)
    assert.is_true(corio.is_timeout(err))
    assert.is_true(corio.now() - t0 < 1)
    -- the connection was closed cleanly: a command on it fails at once...
    local ok2, err2 = H.catch(a.ping, a)
    assert.is_false(ok2)
    assert.matches("closed", tostring(err2))
    -- ...and the server no longer counts it as blocked or connected
    assert.is_true(eventually(function()
      local info = clients_info(b)
      return info.blocked_clients == 0 and info.connected_clients == 1
    end))
    bye(b)
  end))

  it("a cancelled BLPOP closes its connection; the queue loses nothing, other clients go on", with_server(function(port)
    local a, b = client(port), client(port)
    local t = corio.spawn(function() return a:blpop("q", 0) end)
    assert.is_true(eventually(function() return clients_info(b).blocked_clients == 1 end))
    t:cancel()
    local ok, err = t:wait()
    assert.is_false(ok)
    assert.is_true(corio.is_cancelled(err))
    assert.is_true(eventually(function() return clients_info(b).blocked_clients == 0 end))
    -- a push after the cancel goes to the next reader, not the dead one
    b:rpush("q", "x")
    local c = client(port)
    assert.same({ "q", "x" }, c:blpop("q", 1))
    assert.is_true(b:ping())
    bye(c)
    bye(b)
  end))
end)
