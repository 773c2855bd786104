---@meta corio.socket
-- luacheck: no unused args
-- luacheck: ignore 241 (the class tables below only carry method annotations)

-- LuaLS definitions for `require "corio.socket"` (lua/corio/socket.lua):
-- LuaSocket's API inside corio tasks. Requiring it does nothing.

---@class corio.socket
---@field _VERSION string "LuaSocket 3.1.0 (corio.socket)"
---@field dns corio.socket.dns
---@field try fun(ok: any, ...: any): ... raises `(select(2, ...))` for `protect` when `ok` is false or nil
local socket = {}

---A TCP socket: a master (`tcp()`), then a client (`connect`) or a server (`bind`, `listen`).
---@class corio.socket.tcp
local tcp = {}

---Connects a master: `1`, or `nil, err` ("connection refused", "timeout", ...).
---@async
---@param host string a name (resolved through corio) or a literal address
---@param port integer|string
---@return 1|nil ok
---@return string? err
function tcp:connect(host, port) end

---Binds a master ("*": every address; port 0: a free one). corio listens from here on.
---@async
---@param host string
---@param port integer|string
---@return 1|nil ok
---@return string? err
function tcp:bind(host, port) end

---Makes a bound master a server (the backlog is corio's, 511).
---@param backlog? integer
---@return 1|nil ok
---@return string? err
function tcp:listen(backlog) end

---A server's next client, or `nil, err` ("timeout", "closed").
---@async
---@return corio.socket.tcp|nil client
---@return string? err
function tcp:accept() end

---A line ("*l"/"l", the end and every \r dropped; the default), everything to the end of
---the stream ("*a"/"a"), or `n` bytes (the prefix counting towards `n`). On failure
---`nil, "timeout" | "closed" | message, partial` (partial consumed, prefix in front).
---@async
---@param pattern? "*l"|"l"|"*a"|"a"|integer
---@param prefix? string
---@return string? data
---@return string? err
---@return string? partial
function tcp:receive(pattern, prefix) end

---Sends `data:sub(i, j)`: the index of its last byte, or `nil, err, last index sent`.
---A write that times out was queued: its last index is reported as sent.
---@async
---@param data string
---@param i? integer default 1
---@param j? integer default -1
---@return integer? last
---@return string? err
---@return integer? lastsent
function tcp:send(data, i, j) end

---"b" (default): bounds each wait that makes no progress; "t": bounds each call. `nil` or
---a negative value: no bound of its own (corio's io_timeout still applies).
---@param value? number seconds
---@param mode? "b"|"t"|"r"
---@return 1
function tcp:settimeout(value, mode) end

---"keepalive", "tcp-nodelay", "linger" ({on =, timeout =}), "tcp-keepidle", "reuseaddr",
---"reuseport" (before bind). An unsupported option raises.
---@param name string
---@param value any
---@return 1|nil ok
---@return string? err
function tcp:setoption(name, value) end

---@param name string
---@return any
function tcp:getoption(name) end

---"send" ends the writing side (after a flush); "receive" makes receives return "closed".
---@async
---@param how? "both"|"send"|"receive"
---@return 1|nil ok
---@return string? err
function tcp:shutdown(how) end

---@return string|nil ip
---@return integer|string port_or_err
---@return string? family "inet" | "inet6"
function tcp:getpeername() end

---@return string|nil ip
---@return integer|string port_or_err
---@return string? family
function tcp:getsockname() end

---Whether bytes are buffered (a receive would not wait for them).
---@return boolean
function tcp:dirty() end

---The descriptor, or -1 (an unbound master, a closed socket).
---@return integer
function tcp:getfd() end

---Bytes received, bytes sent, age in seconds.
---@return integer, integer, number
function tcp:getstats() end

---Closes the socket (idempotent); `1`.
---@return 1
function tcp:close() end

---A UDP socket.
---@class corio.socket.udp
local udp = {}

---@param host string
---@param port integer
---@return 1|nil ok
---@return string? err
function udp:setsockname(host, port) end

---Connects (send/receive talk to that peer only); `"*"` disconnects.
---@param host string
---@param port? integer
---@return 1|nil ok
---@return string? err
function udp:setpeername(host, port) end

---@async
---@param data string
---@param host string
---@param port integer
---@return integer|nil sent
---@return string? err
function udp:sendto(data, host, port) end

---@async
---@param data string
---@return integer|nil sent
---@return string? err
function udp:send(data) end

---The next datagram (of the peer when connected), cut to `size` (default 8192).
---@async
---@param size? integer
---@return string|nil data
---@return string? err
function udp:receive(size) end

---@async
---@param size? integer
---@return string|nil data
---@return string ip_or_err
---@return integer? port
function udp:receivefrom(size) end

---@return string|nil ip
---@return integer|string port_or_err
---@return string? family
function udp:getsockname() end

---@return string|nil ip
---@return integer|string port_or_err
---@return string? family
function udp:getpeername() end

---@param value? number
---@param mode? "b"|"t"|"r"
---@return 1
function udp:settimeout(value, mode) end

---@return integer
function udp:getfd() end

---Whether a datagram is kept for the next receive (after `select`).
---@return boolean
function udp:dirty() end

---@return 1
function udp:close() end

---@class corio.socket.dns
local dns = {}

---The first IPv4 address of `name`, and `{name, alias = {}, ip = {...}}`.
---@async
---@param name string
---@return string|nil ip
---@return table|string info_or_err
function dns.toip(name) end

---`{{family = "inet" | "inet6", addr = "..."}, ...}`
---@async
---@param name string
---@return table[]|nil
---@return string? err
function dns.getaddrinfo(name) end

---@return string|nil name
---@return string? err
function dns.gethostname() end

---A TCP master (must be called inside a corio task).
---@return corio.socket.tcp
function socket.tcp() end
---@return corio.socket.tcp
function socket.tcp4() end
---@return corio.socket.tcp
function socket.tcp6() end
---@return corio.socket.udp
function socket.udp() end
---@return corio.socket.udp
function socket.udp4() end
---@return corio.socket.udp
function socket.udp6() end

---A connected client, or `nil, err`.
---@async
---@param host string
---@param port integer|string
---@return corio.socket.tcp|nil
---@return string? err
function socket.connect(host, port) end

---A listening server, or `nil, err`.
---@async
---@param host string
---@param port integer|string
---@param backlog? integer
---@return corio.socket.tcp|nil
---@return string? err
function socket.bind(host, port, backlog) end

---The sockets of `recvt` readable without waiting and those of `sendt` writable (tables keyed by
---index and by socket), or empty tables and "timeout". No timeout: the runtime's io_timeout.
---@async
---@param recvt? table
---@param sendt? table
---@param timeout? number
---@return table readable
---@return table writable
---@return string? err
function socket.select(recvt, sendt, timeout) end

---Wall-clock seconds since the epoch.
---@return number
function socket.gettime() end

---@async
---@param secs number
function socket.sleep(secs) end

---The values after the first `d`.
---@param d integer
---@return ...
function socket.skip(d, ...) end

---A `try` that calls `finalizer` before raising.
---@param finalizer? function
---@return fun(ok: any, ...: any): ...
function socket.newtry(finalizer) end

---`fn` whose `try` failures come back as `nil, err`; other errors (cancellation) pass. May wait.
---@param fn function
---@return function
function socket.protect(fn) end

---A copy of a LuaSocket-based module ("socket.http", "socket.smtp", ...) whose
---`require "socket"` gets corio.socket.
---@param name string
---@return table
function socket.require(name) end

return socket
