-- The local HTTP server of bench/w_http.lua, in a process of its own so
-- every client implementation meets the same server: corio, one task per
-- connection, a small page, Connection: close. Prints "port=P" once it
-- listens, serves N requests and exits (or after 120 s). With DELAY_MS,
-- each answer waits that long first (a backend with latency).
-- Usage: lua5.4 bench/http_server.lua N [DELAY_MS]
local corio = require "corio"

local n = assert(tonumber(arg[1]), "usage: http_server.lua N [DELAY_MS]")
local delay = (tonumber(arg[2]) or 0) / 1000
local page = ("<html><body>" .. ("corio "):rep(30) .. "</body></html>\n")
local answer = ("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n" ..
  "Connection: close\r\n\r\n%s"):format(#page, page)

corio.run(function()
  local srv = assert(corio.tcp.listen("127.0.0.1", 0, { backlog = 1024 }))
  io.stdout:write("port=", srv:port(), "\n")
  io.stdout:flush()
  local served = 0
  corio.timeout(120, function()
    corio.scope(function(s)
      for _ = 1, n do
        local c = assert(srv:accept({ timeout = 120 }))
        s:spawn(function()
          repeat local line = c:read("l") until not line or line == ""
          if delay > 0 then corio.sleep(delay) end
          c:write(answer)
          c:shutdown()
          c:close()
          served = served + 1
        end)
      end
    end)
  end)
  srv:close()
end)
