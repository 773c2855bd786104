-- Workload: n socket.http GETs of a small page from a local server
-- (bench/http_server.lua, a corio process of its own, the same for every
-- client). Params: n, concurrency, delay_ms (the server waits that long
-- before each answer: a backend with latency). Reports requests/s.
-- Implementations:
--   corio      LuaSocket's own socket.http with create = corio.socket.tcp,
--              `concurrency` requests at a time (corio.map), Lua 5.4;
--   copas      the same requests on copas 1.1.7 (bench/http_copas.lua),
--              `concurrency` copas threads, under lua5.1 (Debian's copas
--              is for 5.1/5.2 only);
--   luasocket  plain blocking LuaSocket, one request after the other.
local lib = require "bench.lib"

local root = (debug.getinfo(1, "S").source:match("^@(.-)bench/w_http%.lua$") or "")

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Starts the server for n requests; returns its port and its pipe.
local function start_server(n, delay_ms)
  local p = assert(io.popen(("exec %s %s %d %d"):format(sh(arg[-1] or "lua5.4"),
    sh(root .. "bench/http_server.lua"), n, delay_ms or 0), "r"))
  local line = p:read("l") or ""
  local port = tonumber(line:match("^port=(%d+)"))
  if not port then
    p:close()
    return nil, "the server did not start: " .. line
  end
  return port, p
end

local function corio_gets(rt, url, p)
  local socket = require "corio.socket"
  local http = require "socket.http"
  local ltn12 = require "ltn12"
  local items = {}
  for i = 1, p.n do items[i] = i end
  local elapsed
  rt.run(function()
    local t0 = lib.clock()
    rt.map(items, function()
      return rt.timeout(30, function()
        local out = {}
        local r, code = http.request({ url = url, sink = ltn12.sink.table(out), create = socket.tcp })
        assert(r and code == 200 and #table.concat(out) > 0, code)
        return true
      end)
    end, { concurrency = p.concurrency })
    elapsed = lib.clock() - t0
  end)
  return elapsed
end

local function luasocket_gets(url, p)
  local http = require "socket.http"
  local ltn12 = require "ltn12"
  local t0 = lib.clock()
  for _ = 1, p.n do
    local out = {}
    local r, code = http.request({ url = url, sink = ltn12.sink.table(out) })
    assert(r and code == 200 and #table.concat(out) > 0, code)
  end
  return lib.clock() - t0
end

local function copas_gets(port, p)
  local cmd = ("lua5.1 %s %d %d %d 2>&1"):format(sh(root .. "bench/http_copas.lua"), port,
    p.n, p.concurrency)
  local pr = assert(io.popen(cmd, "r"))
  local out = pr:read("a")
  pr:close()
  local wall, ok = out:match("wall_s=([%d.]+) ok=(%d+)")
  if not wall then return nil, "copas failed: " .. out:sub(1, 300) end
  if tonumber(ok) ~= p.n then return nil, "copas: only " .. ok .. " requests succeeded" end
  return tonumber(wall)
end

return function(rt, impl, p)
  if not pcall(require, "socket.http") then return "LuaSocket (lua-socket) is not installed" end
  if impl == "copas" then
    local found = os.execute("lua5.1 -e 'require \"copas\"' >/dev/null 2>&1")
    if not (found == true or found == 0) then return "copas (lua-copas) for lua5.1 is not installed" end
  elseif impl ~= "corio" and impl ~= "luasocket" then
    return "no " .. impl .. " implementation"
  end
  local port, server = start_server(p.n, p.delay_ms)
  if not port then return server end
  local url = ("http://127.0.0.1:%d/"):format(port)
  local elapsed, why
  if impl == "corio" then
    elapsed = corio_gets(rt, url, p)
  elseif impl == "luasocket" then
    elapsed = luasocket_gets(url, p)
  else
    elapsed, why = copas_gets(port, p)
  end
  server:close()
  if not elapsed then return why end
  return { n = p.n, wall_s = elapsed, rate = p.n / elapsed }
end
