-- Shared by the network specs: connected loopback pairs.
-- `local pair = require "net_pair"` (spec/ is on the path, see .busted).
local corio = require "corio"

local M = {}

--- A connected TCP pair on 127.0.0.1: client, server side. Inside a task.
function M.tcp(opts)
  local srv = assert(corio.tcp.listen("127.0.0.1", 0))
  local t = corio.spawn(function() return assert(srv:accept()) end)
  local c = assert(corio.tcp.connect("127.0.0.1", srv:port(), opts))
  local s = t:join()
  srv:close()
  return c, s
end

--- Whether some live task waits on `what` (a `waiting_on` word).
function M.waiting_on(what)
  for _, t in ipairs(corio.tasks()) do
    if t.waiting_on == what then return true end
  end
  return false
end

--- Keeps yielding until task t is ready (woken, not yet run) and
-- returns true, or false after many tries. While the caller keeps
-- yielding the loop is polled only between its steps, so whatever wakes
-- t queues it behind the caller: the caller acts before t runs.
function M.until_ready(t)
  for _ = 1, 100000 do
    if t:status() == "ready" then return true end
    corio.yield()
  end
  return false
end

--- A fresh path for a Unix socket in a temporary directory.
function M.sock_path()
  local p = os.tmpname()
  os.remove(p)
  return p .. ".sock"
end

return M
