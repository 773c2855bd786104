-- The copas side of bench/w_http.lua, run under Lua 5.1 (Debian's copas
-- 1.1.7 is for 5.1/5.2): N socket.http GETs of http://127.0.0.1:PORT/,
-- C at a time (C copas threads taking the next request as they finish
-- one). copas 1.1.7's wrapped sockets lack connect, close and receive's
-- prefix, which socket.http needs: the small adapter below adds them.
-- Prints "wall_s=<seconds> ok=<count>".
-- Usage: lua5.1 bench/http_copas.lua PORT N C
local copas = require "copas" -- before socket.http: it makes protect yield
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"

local port, n, conc = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3])

local adapter = {}
adapter.__index = adapter
function adapter:connect(host, p) return copas.connect(self.socket, host, p) end
function adapter:close() return self.socket:close() end
function adapter:settimeout() return 1 end
function adapter:send(data, i, j) return copas.send(self.socket, data, i, j) end
function adapter:receive(pat, prefix)
  local r, err, part = copas.receive(self.socket, pat)
  if prefix then
    if r then r = prefix .. r else part = prefix .. (part or "") end
  end
  return r, err, part
end

local function create()
  return setmetatable({ socket = assert(socket.tcp()) }, adapter)
end

local url = "http://127.0.0.1:" .. port .. "/"
local next_i, ok, running = 0, 0, conc
local t0 = socket.gettime()
for _ = 1, conc do
  copas.addthread(function()
    while next_i < n do
      next_i = next_i + 1
      local out = {}
      local r, code = http.request({ url = url, sink = ltn12.sink.table(out), create = create })
      if r and code == 200 and #table.concat(out) > 0 then ok = ok + 1 end
    end
    running = running - 1
  end)
end
-- copas.loop() never returns: step until every thread is done (bounded)
local deadline = os.time() + 120
while running > 0 and os.time() < deadline do copas.step(0.1) end
print(("wall_s=%.6f ok=%d"):format(socket.gettime() - t0, ok))
