--- corio.net: the Lua half of the network API (corio.tcp, corio.unix,
-- corio.udp). The C core does one step (connect to one literal address,
-- listen on one, bind one); the policy lives here: resolve a name, then
-- try each address in turn within the call's one deadline.
local M = {}

local type, error, tostring = type, error, tostring
local math_floor = math.floor

local function check_string(fname, i, v)
  if type(v) ~= "string" then
    error(("bad argument #%d to '%s' (string expected, got %s)")
      :format(i, fname, type(v)), 3)
  end
end

local function check_port(fname, i, v)
  if type(v) ~= "number" or v ~= math_floor(v) or v < 0 or v > 65535 then
    error(("bad argument #%d to '%s' (port from 0 to 65535 expected, got %s)")
      :format(i, fname, type(v) == "number" and tostring(v) or type(v)), 3)
  end
end

local function check_opts(fname, i, v)
  if v ~= nil and type(v) ~= "table" then
    error(("bad argument #%d to '%s' (options table expected, got %s)")
      :format(i, fname, type(v)), 3)
  end
end

--- A literal IPv4 or IPv6 address (no lookup needed).
local function literal(host)
  return host:find("^%d+%.%d+%.%d+%.%d+$") ~= nil or host:find(":", 1, true) ~= nil
end

function M.install(corio, core)
  local resolve, now = core.resolve, core.now
  local tcp_connect, unix_connect = core._tcp_connect, core._unix_connect
  local tcp_listen, unix_listen = core._tcp_listen, core._unix_listen
  local udp_bind, io_timeout = core._udp_bind, core._io_timeout
  local can_wait = core._can_wait

  -- One address to bind: a literal as is, "*" any IPv4 address, a name
  -- its first IPv4 address (else its first address).
  -- (fname: the caller, named when resolving a name cannot wait here)
  local function bind_addr(host, fname)
    if host == "*" then return "0.0.0.0" end
    if literal(host) then return host end
    can_wait(fname)
    local addrs, err = resolve(host)
    if not addrs then return nil, err end
    for i = 1, #addrs do
      if not addrs[i]:find(":", 1, true) then return addrs[i] end
    end
    return addrs[1]
  end

  local tcp, unix, udp = {}, {}, {}

  --- Connects to host:port; a name is resolved and each address tried in
  -- turn, all within one deadline ({timeout = s}, default io_timeout).
  function tcp.connect(host, port, opts)
    check_string("connect", 1, host)
    check_port("connect", 2, port)
    check_opts("connect", 3, opts)
    local secs = io_timeout(opts, "connect")
    local deadline = now() + secs
    local addrs, err = resolve(host, { timeout = secs })
    if not addrs then return nil, err end
    for i = 1, #addrs do
      local left = deadline - now()
      if left < 0 then left = 0 end
      local c
      c, err = tcp_connect(addrs[i], port, left)
      if c then
        if opts and opts.nodelay then c:nodelay(true) end
        if opts and opts.keepalive then c:keepalive(true) end
        return c
      end
      if err.kind == "timeout" then break end
    end
    return nil, err
  end

  --- Listens on host:port (port 0: a free port, see srv:port()).
  function tcp.listen(host, port, opts)
    check_string("listen", 1, host)
    check_port("listen", 2, port)
    check_opts("listen", 3, opts)
    local addr, err = bind_addr(host, "listen")
    if not addr then return nil, err end
    return tcp_listen(addr, port, opts)
  end

  function unix.connect(path, opts)
    check_string("connect", 1, path)
    check_opts("connect", 2, opts)
    return unix_connect(path, io_timeout(opts, "connect"))
  end

  function unix.listen(path, opts)
    check_string("listen", 1, path)
    check_opts("listen", 2, opts)
    return unix_listen(path, opts)
  end

  --- A UDP socket bound to host:port (port 0: a free port).
  function udp.bind(host, port)
    check_string("bind", 1, host)
    check_port("bind", 2, port)
    local addr, err = bind_addr(host, "bind")
    if not addr then return nil, err end
    return udp_bind(addr, port)
  end

  corio.tcp, corio.unix, corio.udp = tcp, unix, udp
end

return M
