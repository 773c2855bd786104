--- corio.socket: LuaSocket's API over corio's streams, for code written
-- against LuaSocket (socket.http, redis-lua, ltn12 pumps, ...) running
-- inside corio tasks, concurrently, under corio's deadlines.
--
-- The objects are thin Lua adapters over corio's C objects: a TCP client
-- is a corio.Stream, a server a corio.Listener, a UDP socket a
-- corio.UdpSocket. The byte work (line framing, n bytes, everything to
-- the end) is the C stream's read; this file only translates LuaSocket's
-- conventions:
--
-- * receive returns `nil, "timeout" | "closed", partial`, where partial
--   is what had arrived (taken from the C buffer with one read), with the
--   caller's prefix in front; for a number pattern the prefix counts
--   towards the size, as in LuaSocket.
-- * settimeout(t, "b") bounds each wait that makes no progress: a read
--   that times out while bytes kept arriving waits again; "t" bounds the
--   whole call. No timeout (LuaSocket's "block forever") means corio's
--   io_timeout, so nothing waits forever.
-- * A wait that is cancelled (t:cancel(), corio.timeout) closes the
--   socket before the cancellation goes on: code written for LuaSocket
--   cannot know about cancellation, and a request half sent or half read
--   leaves the protocol in an unknown state. Nothing leaks.
local corio = require "corio"
local core = require "corio.core"

local M = {}
M._VERSION = "LuaSocket 3.1.0 (corio.socket)"

local type, error, tostring, tonumber = type, error, tostring, tonumber
local setmetatable, getmetatable, select = setmetatable, getmetatable, select
local floor = math.floor
local unpack = table.unpack or unpack
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local now, current, is_cancelled = corio.now, corio.current, corio.is_cancelled
local byte, sub, find, gsub = string.byte, string.sub, string.find, string.gsub
local ypcall = corio._ypcall

-- receive's line and "everything" reads: LuaSocket has no limit; corio
-- keeps one (a peer cannot make us buffer without bound)
local MAX_READ = 64 * 1024 * 1024
local UDP_SIZE = 8192 -- LuaSocket's default datagram size for receive

local function argerror(i, fname, msg, level)
  error(("bad argument #%d to '%s' (%s)"):format(i, fname, msg), (level or 2) + 1)
end

local function need_task(fname)
  if not current() then
    error(("corio.socket.%s: must be called inside a corio task (in corio.run)")
      :format(fname), 3)
  end
end

-- LuaSocket's error strings for corio's errors
local messages = {
  ECONNREFUSED = "connection refused", EADDRINUSE = "address already in use",
  ETIMEDOUT = "timeout", EACCES = "permission denied",
  EISCONN = "already connected", ECONNABORTED = "closed",
  ECONNRESET = "closed", EPIPE = "closed", ENOTCONN = "closed",
  EADDRNOTAVAIL = "cannot assign requested address",
  ENETUNREACH = "network is unreachable", EHOSTUNREACH = "host is unreachable",
  EAI_NONAME = "host or service not provided, or not known",
  EAI_AGAIN = "temporary failure in name resolution",
}

local function strerror(err)
  if type(err) ~= "table" then return tostring(err) end
  if err.kind == "timeout" or err.kind == "closed" then return err.kind end
  return messages[err.code] or err.message or tostring(err)
end
M._strerror = strerror

local function family_of(host)
  return host:find(":", 1, true) and "inet6" or "inet"
end

local function literal(host)
  return host:find("^%d+%.%d+%.%d+%.%d+$") ~= nil or host:find(":", 1, true) ~= nil
end

local function check_port(fname, i, port)
  local p = tonumber(port)
  if not p or p ~= floor(p) or p < 0 or p > 65535 then
    argerror(i, fname, "port from 0 to 65535 expected, got " .. tostring(port), 2)
  end
  return p
end

local function check_host(fname, i, host)
  if type(host) ~= "string" then
    argerror(i, fname, "string expected, got " .. type(host), 2)
  end
end

-- One address for host in a family ("inet", "inet6" or nil: prefer IPv4).
local function one_addr(host, fam, opts)
  if host == "*" then return fam == "inet6" and "::" or "0.0.0.0" end
  if host == "localhost" and fam ~= "inet6" then return "127.0.0.1" end
  if literal(host) then return host end
  local addrs, err = corio.resolve(host, { timeout = opts and opts.timeout, family = fam })
  if not addrs then return nil, strerror(err) end
  for i = 1, #addrs do
    if not addrs[i]:find(":", 1, true) then return addrs[i] end
  end
  return addrs[1]
end

------------------------------------------------------------------ timeouts

-- settimeout(value, mode): "b" (each wait), "t" / "r" (the whole call)
local function settimeout(self, value, mode)
  local v = value
  if v ~= nil and type(v) ~= "number" then
    argerror(2, "settimeout", "number expected, got " .. type(v))
  end
  if v and v < 0 then v = nil end
  mode = mode or "b"
  if type(mode) ~= "string" then argerror(3, "settimeout", "invalid timeout mode") end
  local m = mode:sub(1, 1)
  if m == "b" then self.tb = v
  elseif m == "t" or m == "r" then self.tt = v
  else argerror(3, "settimeout", "invalid timeout mode") end
  return 1
end

-- The deadline of the next wait of a call that started at t0 (nil
-- without a total timeout), in o (a table kept by the socket), or nil
-- when the call's total time is out.
local function wait_for(self, t0, o)
  local left = self.tb
  if self.tt then
    local l2 = self.tt - (now() - t0)
    if l2 <= 0 and self.tt > 0 then return nil end
    if not left or l2 < left then left = l2 end
  end
  if left and left < 0 then left = 0 end
  o.timeout = left
  return o
end

-- Runs impl(self, ...) (which may wait); a cancellation closes the socket
-- first (see the top of the file), then goes on.
local function guard(self, impl, a, b, c)
  local ok, r1, r2, r3 = ypcall(impl, self, a, b, c)
  if ok then return r1, r2, r3 end
  if is_cancelled(r1) then self:close() end
  error(r1, 0)
end

----------------------------------------------------------------------- tcp

local tcp = {}
tcp.__index = tcp
tcp.__name = "corio.socket.tcp"

local function new_tcp(fam, state, stream)
  return setmetatable({
    state = state, family = fam, stream = stream, opts = {},
    ro = { max_line = MAX_READ, max_read = MAX_READ }, to = {},
    received = 0, sent = 0, born = now(),
  }, tcp)
end

function tcp:__tostring()
  return ("tcp{%s}: %s"):format(self.state, tostring(self.ro):match("0x%x+") or "")
end

local function check_tcp(self, fname, want)
  if getmetatable(self) ~= tcp then
    argerror(1, fname, "corio.socket tcp object expected, got " .. type(self), 3)
  end
  if want and self.state ~= want and self.state ~= "closed" then
    argerror(1, fname, ("tcp{%s} expected, got tcp{%s}"):format(want, self.state), 3)
  end
end

-- options recorded on a master are applied when it connects
local function apply_options(self)
  local s, o = self.stream, self.opts
  if o["tcp-nodelay"] ~= nil then s:nodelay(o["tcp-nodelay"]) end
  if o.keepalive ~= nil then s:keepalive(o.keepalive, o["tcp-keepidle"]) end
  if o.linger then s:linger(o.linger.on and (o.linger.timeout or 0)) end
end

local function connect_impl(self, host, port)
  local t0 = now()
  local o = wait_for(self, t0, self.to)
  if not o then return nil, "timeout" end
  local addrs, err
  if self.family then
    addrs, err = corio.resolve(host, { timeout = o.timeout, family = self.family })
    if not addrs then return nil, strerror(err) end
  else
    addrs = { host }
  end
  local s
  for i = 1, #addrs do
    o = wait_for(self, t0, self.to)
    if not o then return nil, "timeout" end
    s, err = corio.tcp.connect(addrs[i], port, o)
    if s then break end
    if err.kind == "timeout" then break end
  end
  if not s then return nil, strerror(err) end
  self.stream, self.state = s, "client"
  apply_options(self)
  return 1
end

--- Connects a master to host:port: 1, or nil, err ("connection refused",
-- "timeout", ...). Names are resolved through corio.
function tcp:connect(host, port)
  check_tcp(self, "connect")
  check_host("connect", 2, host)
  port = check_port("connect", 3, port)
  need_task("connect")
  if self.state == "client" then return nil, "already connected" end
  if self.state ~= "master" then return nil, "closed" end
  if self.listener then
    return nil, "corio.socket: connect after bind is not supported"
  end
  return guard(self, connect_impl, host, port)
end

--- Binds a master to host:port ("*": every address; port 0: a free one).
-- The socket listens from here on (corio binds and listens in one step);
-- listen() makes it a server.
function tcp:bind(host, port)
  check_tcp(self, "bind", "master")
  check_host("bind", 2, host)
  port = check_port("bind", 3, port)
  need_task("bind")
  if self.state ~= "master" then return nil, "closed" end
  if self.listener then return nil, "already bound" end
  local addr, err = one_addr(host, self.family)
  if not addr then return nil, err end
  local l
  l, err = corio.tcp.listen(addr, port, { reuseport = self.opts.reuseport and true })
  if not l then return nil, strerror(err) end
  self.listener, self.bound = l, addr
  return 1
end

function tcp:listen(backlog)
  check_tcp(self, "listen", "master")
  if backlog ~= nil and type(backlog) ~= "number" then
    argerror(2, "listen", "number expected, got " .. type(backlog))
  end
  if self.state ~= "master" then return nil, "closed" end
  if not self.listener then
    local ok, err = self:bind("*", 0)
    if not ok then return nil, err end
  end
  self.state = "server"
  return 1
end

local function accept_impl(self)
  local c = self.stash
  if c then
    self.stash = nil
  else
    local o = wait_for(self, now(), self.to)
    if not o then return nil, "timeout" end
    local err
    c, err = self.listener:accept(o)
    if not c then return nil, strerror(err) end
  end
  local client = new_tcp(self.family, "client", c)
  return client
end

--- A server's next client (a new client object), or nil, err.
function tcp:accept()
  check_tcp(self, "accept", "server")
  need_task("accept")
  if self.state ~= "server" then return nil, "closed" end
  return guard(self, accept_impl)
end

-- What is buffered now, consumed (at once: no wait), "" when nothing is.
local function take_buffered(s)
  local n = s:buffered()
  if n == 0 then return "" end
  return s:read(n) or ""
end

-- A line read with its end, without the end and every \r (LuaSocket's
-- "*l"); the common "\r\n" end costs no pattern match.
local function strip_line(data)
  local last = #data - 1
  if byte(data, last) == 13 then last = last - 1 end
  local line = sub(data, 1, last)
  if find(line, "\r", 1, true) then line = gsub(line, "\r", "") end
  return line
end

local function receive_impl(self, fmt, need, prefix)
  local s, ro = self.stream, self.ro
  local t0 = self.tt and now()
  while true do
    local o = wait_for(self, t0, ro)
    local before = self.tb and s:buffered()
    local data, err
    if o then
      data, err = s:read(fmt or need, o)
    else
      err = { kind = "timeout" }
    end
    if data then
      self.received = self.received + #data
      if fmt == "L" then
        if byte(data, -1) == 10 then return prefix .. strip_line(data) end
        return nil, "closed", prefix .. (gsub(data, "\r", ""))
      elseif fmt == "a" then
        return prefix .. data
      elseif #data < need then
        return nil, "closed", prefix .. data
      end
      return prefix .. data
    end
    -- a block timeout ("b") bounds a wait without progress: bytes came
    -- in during this one, so wait again (within any total timeout)
    if not (err.kind == "timeout" and o and before and s:buffered() > before
            and (not t0 or now() - t0 < self.tt)) then
      local part = take_buffered(s)
      self.received = self.received + #part
      if fmt == "L" then part = part:gsub("\r", "") end
      return nil, strerror(err), prefix .. part
    end
  end
end

--- receive([pattern = "*l"], [prefix]) as LuaSocket: a line without its
-- end ("*l", every \r dropped), everything to the end of the stream
-- ("*a"), or n bytes (the prefix counting towards n); on failure
-- nil, "timeout" | "closed" | message, partial.
function tcp:receive(pattern, prefix)
  check_tcp(self, "receive", "client")
  if prefix ~= nil and type(prefix) ~= "string" then
    if type(prefix) ~= "number" then
      argerror(3, "receive", "string expected, got " .. type(prefix))
    end
    prefix = tostring(prefix)
  end
  prefix = prefix or ""
  local fmt, need
  if pattern == nil then
    fmt = "L"
  elseif type(pattern) == "number" then
    if pattern < 0 then argerror(2, "receive", "invalid receive pattern") end
    local wanted = floor(pattern)
    if #prefix >= wanted then return prefix end
    need = wanted - #prefix
  elseif type(pattern) == "string" then
    local c = pattern:sub(1, 1) == "*" and pattern:sub(2, 2) or pattern:sub(1, 1)
    if c == "l" then fmt = "L"
    elseif c == "a" then fmt = "a"
    else argerror(2, "receive", "invalid receive pattern") end
  else
    argerror(2, "receive", "invalid receive pattern")
  end
  need_task("receive")
  if self.state ~= "client" or self.rshut then return nil, "closed", prefix end
  return guard(self, receive_impl, fmt, need, prefix)
end

local function send_impl(self, data, i, j)
  local o = wait_for(self, self.tt and now(), self.to)
  if not o then return nil, "timeout", i - 1 end
  local chunk = (i == 1 and j == #data) and data or data:sub(i, j)
  local ok, err = self.stream:write(chunk, o)
  if ok then
    self.sent = self.sent + #chunk
    return j
  end
  -- a write that timed out was accepted (queued, sent in the background):
  -- report every byte as sent, so a caller does not send it twice
  if err.kind == "timeout" then
    self.sent = self.sent + #chunk
    return nil, "timeout", j
  end
  return nil, strerror(err), i - 1
end

--- send(data, [i = 1], [j = -1]): sends data:sub(i, j); the index of the
-- last byte sent, or nil, err, the index of the last byte sent.
function tcp:send(data, i, j)
  check_tcp(self, "send", "client")
  if type(data) == "number" then data = tostring(data) end
  if type(data) ~= "string" then argerror(2, "send", "string expected, got " .. type(data)) end
  if i ~= nil and type(i) ~= "number" then argerror(3, "send", "number expected, got " .. type(i)) end
  if j ~= nil and type(j) ~= "number" then argerror(4, "send", "number expected, got " .. type(j)) end
  local size = #data
  i, j = i and floor(i) or 1, j and floor(j) or -1
  if i < 0 then i = size + i + 1 end
  if j < 0 then j = size + j + 1 end
  if i < 1 then i = 1 end
  if j > size then j = size end
  if i > j then return i - 1 end
  need_task("send")
  if self.state ~= "client" or self.wshut then return nil, "closed", i - 1 end
  return guard(self, send_impl, data, i, j)
end

function tcp:close()
  check_tcp(self, "close")
  if self.stream then self.stream:close() end
  if self.listener then self.listener:close() end
  if self.stash then self.stash:close() end
  self.stash = nil
  self.state = "closed"
  return 1
end
tcp.__close = tcp.close

local function shutdown_impl(self, how)
  if how ~= "receive" and not self.wshut then
    self.wshut = true
    local ok, err = self.stream:shutdown(wait_for(self, now(), self.to) or { timeout = 0 })
    if not ok and err.kind ~= "closed" then return nil, strerror(err) end
  end
  if how ~= "send" then self.rshut = true end
  return 1
end

--- shutdown(["both" | "send" | "receive"]): "send" flushes and ends the
-- writing side (the peer reads end of stream); "receive" makes further
-- receives return "closed".
function tcp:shutdown(how)
  check_tcp(self, "shutdown", "client")
  how = how or "both"
  if how ~= "both" and how ~= "send" and how ~= "receive" then
    argerror(2, "shutdown", "invalid shutdown method")
  end
  if self.state ~= "client" then return nil, "closed" end
  need_task("shutdown")
  return guard(self, shutdown_impl, how)
end

function tcp:getpeername()
  check_tcp(self, "getpeername")
  if self.state ~= "client" then return nil, "getpeername failed" end
  local host, port = self.stream:peer_addr()
  if not host then return nil, strerror(port) end
  return host, port, family_of(host)
end

function tcp:getsockname()
  check_tcp(self, "getsockname")
  if self.stream then
    local host, port = self.stream:local_addr()
    if not host then return nil, strerror(port) end
    return host, port, family_of(host)
  end
  if self.listener then
    return self.bound, self.listener:port(), family_of(self.bound)
  end
  return nil, "getsockname failed"
end

--- Whether bytes are buffered (a receive would not wait for them).
function tcp:dirty()
  check_tcp(self, "dirty")
  if self.state ~= "client" then return false end
  return self.stream:buffered() > 0
end

--- The descriptor (for setsockopt and the like; corio owns it), -1 on a
-- master that is not bound or on a closed socket.
function tcp:getfd()
  check_tcp(self, "getfd")
  if self.state == "client" then return self.stream:fileno() end
  if self.listener then return self.listener:fileno() end
  return -1
end

function tcp:getstats()
  check_tcp(self, "getstats")
  return self.received, self.sent, now() - self.born
end

function tcp:settimeout(value, mode)
  check_tcp(self, "settimeout")
  return settimeout(self, value, mode)
end

local tcp_options = {
  keepalive = "boolean", ["tcp-nodelay"] = "boolean", reuseaddr = "boolean",
  reuseport = "boolean", linger = "table", ["tcp-keepidle"] = "number",
}

--- setoption(name, value): "keepalive", "tcp-nodelay", "linger"
-- ({on =, timeout =}), "tcp-keepidle" (seconds), "reuseaddr" (servers
-- always reuse addresses), "reuseport" (before bind). 1, or an error for
-- an option corio does not support.
function tcp:setoption(name, value)
  check_tcp(self, "setoption")
  local want = tcp_options[name]
  if not want then argerror(2, "setoption", "unsupported option '" .. tostring(name) .. "'") end
  if want == "boolean" then value = value and true or false
  elseif type(value) ~= want then argerror(3, "setoption", want .. " expected, got " .. type(value)) end
  if name == "linger" and type(value.on) ~= "boolean" then
    argerror(3, "setoption", "invalid 'on' field")
  end
  if name == "reuseport" and self.listener and value ~= (self.opts.reuseport or false) then
    return nil, "reuseport must be set before bind"
  end
  self.opts[name] = value
  if self.state == "client" then
    local ok, err = true, nil
    local s = self.stream
    if name == "keepalive" or name == "tcp-keepidle" then
      ok, err = s:keepalive(self.opts.keepalive or false, self.opts["tcp-keepidle"])
    elseif name == "tcp-nodelay" then ok, err = s:nodelay(value)
    elseif name == "linger" then ok, err = s:linger(value.on and (value.timeout or 0)) end
    if not ok then return nil, strerror(err) end
  end
  return 1
end

function tcp:getoption(name)
  check_tcp(self, "getoption")
  if not tcp_options[name] then argerror(2, "getoption", "unsupported option '" .. tostring(name) .. "'") end
  local v = self.opts[name]
  if v == nil and name == "reuseaddr" then v = self.listener ~= nil end
  if v == nil and tcp_options[name] == "boolean" then v = false end
  return v
end

function tcp:setpeername(...) return self:connect(...) end
function tcp:setsockname(...) return self:bind(...) end

--- A TCP master object (connect it, or bind and listen). tcp4/tcp6
-- restrict name resolution to one family.
function M.tcp() need_task("tcp") return new_tcp(nil, "master") end
function M.tcp4() need_task("tcp4") return new_tcp("inet", "master") end
function M.tcp6() need_task("tcp6") return new_tcp("inet6", "master") end

--- socket.connect(host, port): a connected client, or nil, err.
function M.connect(host, port, laddr, lport, fam)
  if laddr ~= nil or lport ~= nil then
    error("corio.socket.connect: a local address is not supported", 2)
  end
  check_host("connect", 1, host)
  check_port("connect", 2, port)
  need_task("connect")
  local s = new_tcp(fam, "master")
  local ok, err = s:connect(host, port)
  if not ok then
    s:close()
    return nil, err
  end
  return s
end
function M.connect4(host, port) return M.connect(host, port, nil, nil, "inet") end
function M.connect6(host, port) return M.connect(host, port, nil, nil, "inet6") end

--- socket.bind(host, port, [backlog]): a listening server, or nil, err.
function M.bind(host, port, backlog)
  check_host("bind", 1, host)
  check_port("bind", 2, port)
  need_task("bind")
  local s = new_tcp(nil, "master")
  local ok, err = s:bind(host, port)
  if ok then ok, err = s:listen(backlog) end
  if not ok then
    s:close()
    return nil, err
  end
  return s
end

----------------------------------------------------------------------- udp

local udp = {}
udp.__index = udp
udp.__name = "corio.socket.udp"

local function check_udp(self, fname)
  if getmetatable(self) ~= udp then
    argerror(1, fname, "corio.socket udp object expected, got " .. type(self), 3)
  end
end

local function new_udp(fam)
  return setmetatable({ family = fam, state = "unconnected", to = {}, born = now() }, udp)
end

function udp:__tostring()
  return ("udp{%s}: %s"):format(self.state, tostring(self.to):match("0x%x+") or "")
end

-- binds the socket on first use, to the wildcard of the peer's family
local function ensure_bound(self, peer)
  if self.u then return true end
  if self.state == "closed" then return nil, "closed" end
  local fam = self.family or (peer and family_of(peer)) or "inet"
  local u, err = corio.udp.bind(fam == "inet6" and "::" or "0.0.0.0", 0)
  if not u then return nil, strerror(err) end
  self.u = u
  return true
end

function udp:setsockname(host, port)
  check_udp(self, "setsockname")
  check_host("setsockname", 2, host)
  port = check_port("setsockname", 3, port)
  need_task("setsockname")
  if self.u then return nil, "already bound" end
  if self.state == "closed" then return nil, "closed" end
  local addr, err = one_addr(host, self.family)
  if not addr then return nil, err end
  local u
  u, err = corio.udp.bind(addr, port)
  if not u then return nil, strerror(err) end
  self.u = u
  return 1
end

--- setpeername(host, port) connects (send/receive talk to that peer
-- only); setpeername("*") disconnects.
function udp:setpeername(host, port)
  check_udp(self, "setpeername")
  check_host("setpeername", 2, host)
  if host == "*" then
    self.peer, self.pport, self.state = nil, nil, self.u and "unconnected" or self.state
    return 1
  end
  port = check_port("setpeername", 3, port)
  need_task("setpeername")
  local addr, err = one_addr(host, self.family)
  if not addr then return nil, err end
  local ok
  ok, err = ensure_bound(self, addr)
  if not ok then return nil, err end
  self.peer, self.pport, self.state = addr, port, "connected"
  return 1
end

local function sendto_impl(self, data, host, port)
  local o = wait_for(self, now(), self.to) or { timeout = 0 }
  local ok, err = self.u:send(data, host, port, o)
  if not ok then return nil, strerror(err) end
  return #data
end

function udp:sendto(data, host, port)
  check_udp(self, "sendto")
  if type(data) ~= "string" then argerror(2, "sendto", "string expected, got " .. type(data)) end
  check_host("sendto", 3, host)
  port = check_port("sendto", 4, port)
  need_task("sendto")
  if self.state == "connected" then return nil, "already connected" end
  local addr, err = one_addr(host, self.family)
  if not addr then return nil, err end
  local ok
  ok, err = ensure_bound(self, addr)
  if not ok then return nil, err end
  return guard(self, sendto_impl, data, addr, port)
end

function udp:send(data)
  check_udp(self, "send")
  if type(data) ~= "string" then argerror(2, "send", "string expected, got " .. type(data)) end
  need_task("send")
  if self.state ~= "connected" then return nil, "not connected" end
  return guard(self, sendto_impl, data, self.peer, self.pport)
end

local function recv_impl(self, size, from_peer)
  local t0 = now()
  while true do
    local d = self.stash
    local data, host, port
    if d then
      self.stash = nil
      data, host, port = d[1], d[2], d[3]
    else
      local o = wait_for(self, t0, self.to)
      if not o then return nil, "timeout" end
      data, host, port = self.u:recv(o)
      if not data then return nil, strerror(host) end
    end
    -- a connected socket hears only its peer (as the kernel filters it)
    if not from_peer or (host == self.peer and port == self.pport) then
      if #data > size then data = data:sub(1, size) end
      return data, host, port
    end
  end
end

local function check_size(fname, size)
  if size == nil then return UDP_SIZE end
  if type(size) ~= "number" or size < 0 then argerror(2, fname, "invalid receive size") end
  return floor(size)
end

--- receive([size = 8192]): the next datagram (of the peer when
-- connected), cut to size; nil, "timeout".
function udp:receive(size)
  check_udp(self, "receive")
  size = check_size("receive", size)
  need_task("receive")
  if self.state == "closed" then return nil, "closed" end
  if not self.u then return nil, "not bound" end
  local data, err = guard(self, recv_impl, size, self.state == "connected")
  return data, err
end

--- receivefrom([size]): data, ip, port; nil, "timeout".
function udp:receivefrom(size)
  check_udp(self, "receivefrom")
  size = check_size("receivefrom", size)
  need_task("receivefrom")
  if self.state == "closed" then return nil, "closed" end
  if self.state == "connected" then return nil, "already connected" end
  if not self.u then return nil, "not bound" end
  return guard(self, recv_impl, size, false)
end

function udp:getsockname()
  check_udp(self, "getsockname")
  if not self.u then return nil, "not bound" end
  local host, port = self.u:local_addr()
  if not host then return nil, strerror(port) end
  return host, port, family_of(host)
end

function udp:getpeername()
  check_udp(self, "getpeername")
  if self.state ~= "connected" then return nil, "not connected" end
  return self.peer, self.pport, family_of(self.peer)
end

function udp:settimeout(value, mode)
  check_udp(self, "settimeout")
  return settimeout(self, value, mode)
end

function udp:setoption(name)
  check_udp(self, "setoption")
  argerror(2, "setoption", "unsupported option '" .. tostring(name) .. "'")
end

function udp:getfd()
  check_udp(self, "getfd")
  return self.u and self.u:fileno() or -1
end

function udp:dirty()
  check_udp(self, "dirty")
  return self.stash ~= nil
end

function udp:close()
  check_udp(self, "close")
  if self.u then self.u:close() end
  self.u, self.stash, self.state = nil, nil, "closed"
  return 1
end
udp.__close = udp.close

function M.udp() need_task("udp") return new_udp(nil) end
function M.udp4() need_task("udp4") return new_udp("inet") end
function M.udp6() need_task("udp6") return new_udp("inet6") end

-------------------------------------------------------------------- select

-- Whether a socket can be read without waiting now.
local function ready(s)
  local mt = getmetatable(s)
  if mt == tcp then
    if s.state == "client" then
      local n, ended = s.stream:buffered()
      return n > 0 or ended or s.rshut
    end
    return s.state == "server" and s.stash ~= nil
  end
  return s.stash ~= nil
end

-- A function that waits (consuming nothing) until s is readable.
local function waiter(s, o)
  local mt = getmetatable(s)
  if mt == tcp then
    if s.state == "client" then
      return function() return s.stream:readable(o) end
    end
    return function()
      local c = s.listener:accept(o)
      if c then s.stash = c end
    end
  end
  return function()
    local data, host, port = s.u:recv(o)
    if data then s.stash = { data, host, port } end
  end
end

local function can_wait(s)
  local mt = getmetatable(s)
  if mt == tcp then return s.state == "client" or s.state == "server" end
  return s.u ~= nil
end

local function writable(s)
  local mt = getmetatable(s)
  if mt == tcp then return s.state == "client" and not s.wshut end
  return s.state ~= "closed"
end

local function check_set(t, i)
  if t == nil then return {} end
  if type(t) ~= "table" then argerror(i, "select", "table expected, got " .. type(t), 2) end
  for k = 1, #t do
    local mt = getmetatable(t[k])
    if mt ~= tcp and mt ~= udp then
      argerror(i, "select", "corio.socket objects expected, got " .. type(t[k]) .. " at " .. k, 2)
    end
  end
  return t
end

local function collect(set, test)
  local out = {}
  for k = 1, #set do
    local s = set[k]
    if out[s] == nil and test(s) then
      out[#out + 1] = s
      out[s] = #out
    end
  end
  return out
end

--- select(recvt, sendt, [timeout]): the sockets of recvt that can be
-- read without waiting and those of sendt that can be written (tables
-- keyed both by index and by socket), or empty tables and "timeout".
-- Connected TCP sockets are always writable (corio queues writes). No
-- timeout (or a negative one) means the runtime's io_timeout.
function M.select(recvt, sendt, timeout)
  recvt, sendt = check_set(recvt, 1), check_set(sendt, 2)
  if timeout ~= nil and type(timeout) ~= "number" then
    argerror(3, "select", "number expected, got " .. type(timeout))
  end
  need_task("select")
  local r, w = collect(recvt, ready), collect(sendt, writable)
  if #r > 0 or #w > 0 or timeout == 0 then
    return r, w, (#r == 0 and #w == 0) and "timeout" or nil
  end
  local o = { timeout = (timeout and timeout >= 0) and timeout or nil }
  local fns = {}
  for k = 1, #recvt do
    if can_wait(recvt[k]) then fns[#fns + 1] = waiter(recvt[k], o) end
  end
  if #fns == 0 then
    corio.sleep(o.timeout or core._io_timeout(nil, "select"))
  else
    corio.select(unpack(fns))
  end
  r = collect(recvt, ready)
  return r, {}, #r == 0 and "timeout" or nil
end

----------------------------------------------------------------- the rest

function M.gettime() return core._gettime() end

function M.sleep(secs)
  if type(secs) ~= "number" then argerror(1, "sleep", "number expected, got " .. type(secs)) end
  need_task("sleep")
  corio.sleep(secs > 0 and secs or 0)
end

--- skip(d, ...): the values after the first d
function M.skip(d, ...)
  if type(d) ~= "number" or d < 0 then argerror(1, "skip", "non-negative number expected") end
  return select(floor(d) + 1, ...)
end

-- newtry/protect (LuaSocket's exceptions): try raises its second value
-- wrapped in a table only protect recognises; any other error (a
-- cancellation) passes through protect. Both may wait on every version.
local wrapped = { __tostring = function(e) return tostring(e[1]) end }

function M.newtry(finalizer)
  if finalizer ~= nil and type(finalizer) ~= "function" then
    argerror(1, "newtry", "function expected, got " .. type(finalizer))
  end
  return function(...)
    if not (...) then
      if finalizer then finalizer() end
      error(setmetatable({ (select(2, ...)) }, wrapped), 0)
    end
    return ...
  end
end
M.try = M.newtry()

function M.protect(fn)
  if type(fn) ~= "function" then argerror(1, "protect", "function expected, got " .. type(fn)) end
  return function(...)
    local r = pack(ypcall(fn, ...))
    if r[1] then return unpack(r, 2, r.n) end
    local e = r[2]
    if getmetatable(e) == wrapped then return nil, e[1] end
    error(e, 0)
  end
end

------------------------------------------------------------------------ dns

local dns = {}
M.dns = dns

--- dns.toip(name): the first IPv4 address and {name, alias = {}, ip = {...}}
function dns.toip(name)
  check_host("toip", 1, name)
  need_task("dns.toip")
  local addrs, err = corio.resolve(name, { family = "inet" })
  if not addrs then return nil, strerror(err) end
  return addrs[1], { name = name, alias = {}, ip = addrs }
end

--- dns.getaddrinfo(name): {{family = "inet" | "inet6", addr = "..."}, ...}
function dns.getaddrinfo(name)
  check_host("getaddrinfo", 1, name)
  need_task("dns.getaddrinfo")
  local addrs, err = corio.resolve(name)
  if not addrs then return nil, strerror(err) end
  local out = {}
  for i = 1, #addrs do out[i] = { family = family_of(addrs[i]), addr = addrs[i] } end
  return out
end

function dns.gethostname()
  local name, err = core._gethostname()
  if not name then return nil, strerror(err) end
  return name
end

-- LuaSocket's pure-Lua helpers (ltn12 sinks and sources over a socket)
-- work on any object with send/receive/close: borrowed from LuaSocket
-- when it is installed.
do
  local ok, real = pcall(require, "socket")
  if ok and type(real) == "table" then
    M.sink, M.source, M.sinkt, M.sourcet, M.choose =
      real.sink, real.source, real.sinkt, real.sourcet, real.choose
  end
end

--------------------------------------------------------- LuaSocket modules

-- modules of LuaSocket that do I/O and so must see corio.socket
local io_modules = {
  ["socket.http"] = true, ["socket.tp"] = true, ["socket.smtp"] = true,
  ["socket.ftp"] = true,
}
local copies = {}

local function searchpath(name)
  if package.searchpath then return package.searchpath(name, package.path) end
  local file = name:gsub("%.", "/")
  for templ in package.path:gmatch("[^;]+") do
    local p = templ:gsub("%?", file)
    local f = io.open(p, "r")
    if f then
      f:close()
      return p
    end
  end
  return nil, "module '" .. name .. "' not found on package.path"
end

--- A copy of a Lua module written for LuaSocket (e.g. "socket.http",
-- "socket.smtp"), loaded so that its `require "socket"` gets corio.socket:
-- its requests then run on corio (and its socket.protect may wait on
-- every Lua version, which LuaSocket's C protect cannot on 5.1 and
-- LuaJIT). The module's own writes into the socket table (socket.http
-- = ...) stay in that copy. Loaded once; the real module is untouched.
function M.require(name)
  if type(name) ~= "string" then argerror(1, "require", "string expected, got " .. type(name)) end
  if copies[name] then return copies[name] end
  local path, err = searchpath(name)
  if not path then error(err, 2) end
  local proxy = setmetatable({}, { __index = M })
  local env = setmetatable({}, { __index = _G })
  env.require = function(n)
    if n == "socket" or n == "socket.core" then return proxy end
    if io_modules[n] then return M.require(n) end
    return require(n)
  end
  local chunk
  if setfenv then
    chunk, err = loadfile(path)
    if chunk then setfenv(chunk, env) end
  else
    local f = assert(io.open(path, "rb"))
    local src = f:read("*a")
    f:close()
    chunk, err = load(src, "@" .. path, "t", env)
  end
  if not chunk then error(err, 2) end
  local mod = chunk(name)
  copies[name] = mod
  return mod
end

return M
