-- An echo server with graceful shutdown: it serves many clients at once;
-- on SIGTERM it stops accepting, gives the open connections a grace
-- period to finish, cancels what is left, and exits 0. To show it, the
-- example runs its own clients and then sends itself SIGTERM.
--
--   lua5.4 examples/echo_server.lua     (with corio installed)
local corio = require "corio"

local GRACE = 0.5
local stats = { conns = 0, lines = 0, cut = 0 }

-- one connection: echo lines until the client closes it; a cancellation
-- (the grace period is over) ends it too, and <close> closes the socket
local function handle(conn)
  local _ <close> = conn
  local ok, err = pcall(function()
    while true do
      local line = conn:read("l", { timeout = 10 })
      if not line then return end -- the client closed it
      assert(conn:write(line .. "\n"))
      stats.lines = stats.lines + 1
    end
  end)
  if not ok then
    if corio.is_cancelled(err) then stats.cut = stats.cut + 1 end
    error(err, 0)
  end
end

-- the server: accept until the listener is closed, then wait for the
-- handlers, which `grace` cancels if they take too long
local function serve(srv, handlers_ready)
  corio.scope(function(handlers)
    handlers_ready(handlers)
    while true do
      local conn = srv:accept({ timeout = 60 })
      if not conn then break end -- closed: shutting down
      stats.conns = stats.conns + 1
      handlers:spawn(handle, conn)
    end
  end)
end

local function client(port, id, lines)
  local c = assert(corio.tcp.connect("127.0.0.1", port))
  local _ <close> = c
  for i = 1, lines do
    local msg = ("client %d line %d"):format(id, i)
    if not c:write(msg .. "\n") then return end
    local back = c:read("l")
    if back ~= msg then return end -- the server went away
    corio.sleep(0.02)
  end
end

corio.run(function()
  local stop = corio.shutdown() -- a watch: true on SIGINT or SIGTERM
  local srv = assert(corio.tcp.listen("127.0.0.1", 0))
  local port = srv:port()
  print(("echo server on 127.0.0.1:%d, pid %d"):format(port, corio.getpid()))
  corio.scope(function(s)
    local handlers
    s:spawn(serve, srv, function(h) handlers = h end)
    s:spawn(function() -- the shutdown sequence
      stop:changed({ timeout = 60 })
      print("SIGTERM: not accepting any more; " .. GRACE .. " s for open connections")
      srv:close()
      corio.sleep(GRACE)
      handlers:cancel() -- past the grace period
    end)
    -- the demo: 30 short clients and 5 long ones, then SIGTERM to ourselves
    for id = 1, 35 do
      s:spawn(function() pcall(client, port, id, id <= 30 and 5 or 200) end)
    end
    corio.sleep(0.3)
    assert(corio.exec({ "kill", "-TERM", tostring(corio.getpid()) }))
  end)
  print(("served %d connections, echoed %d lines; %d cut off after the grace period")
    :format(stats.conns, stats.lines, stats.cut))
end)
