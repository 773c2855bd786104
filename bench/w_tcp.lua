-- Workload: TCP echo on loopback, client and server in one process:
-- `conns` connections each do `rounds` round trips of `size` bytes
-- (write, then read the whole echo). Params: conns, rounds, size.
-- Reports round trips/s. Implementations:
--   corio    tasks, corio.tcp streams (read(n) on both sides);
--   luv      plain luv callbacks, no coroutines (the anchor the issue names);
--   cqueues  the cqueues scheduler of bench/rt_cqueues.lua, cqueues.socket;
--   c        bench/c/echo.c on libuv, built here with gcc (the practical limit).
local lib = require "bench.lib"

local root = (debug.getinfo(1, "S").source:match("^@(.-)bench/w_tcp%.lua$") or "")

-- The two halves of the protocol, over any socket with read(n), write
-- and close (corio streams and cqueues sockets both have them).
local function serve_conn(c, size)
  while true do
    local d = c:read(size)
    if not d then break end
    c:write(d)
  end
  c:close()
end

local function round_trips(c, msg, rounds)
  local size = #msg
  for _ = 1, rounds do
    c:write(msg)
    local d = c:read(size)
    if not d or #d ~= size then error("short echo") end
  end
  c:close()
end

local function corio_echo(rt, p)
  local msg = ("x"):rep(p.size)
  local elapsed
  rt.run(function()
    local srv = assert(rt.tcp.listen("127.0.0.1", 0, { backlog = 1024 }))
    local port = srv:port()
    local t0
    rt.scope(function(s)
      s:spawn(function()
        for _ = 1, p.conns do
          local c = assert(srv:accept({ nodelay = true }))
          s:spawn(serve_conn, c, p.size)
        end
      end)
      t0 = lib.clock()
      for _ = 1, p.conns do
        s:spawn(function()
          local c = assert(rt.tcp.connect("127.0.0.1", port, { nodelay = true }))
          round_trips(c, msg, p.rounds)
        end)
      end
    end)
    elapsed = lib.clock() - t0
    srv:close()
  end)
  return elapsed
end

local function luv_echo(p)
  local uv = require "luv"
  local msg = ("x"):rep(p.size)
  local size, done = p.size, 0
  local server = uv.new_tcp()
  server:bind("127.0.0.1", 0)
  server:listen(1024, function()
    local c = uv.new_tcp()
    server:accept(c)
    c:nodelay(true)
    c:read_start(function(err, data)
      if err or not data then c:close() return end
      c:write(data)
    end)
  end)
  local port = server:getsockname().port
  local t0 = lib.clock()
  for _ = 1, p.conns do
    local c = uv.new_tcp()
    local left, got = p.rounds, 0
    c:connect("127.0.0.1", port, function(err)
      assert(not err, err)
      c:nodelay(true)
      c:read_start(function(rerr, data)
        assert(not rerr, rerr)
        got = got + #data
        if got < size then return end
        got = got - size
        left = left - 1
        if left > 0 then
          c:write(msg)
        else
          c:close()
          done = done + 1
          if done == p.conns then server:close() end
        end
      end)
      c:write(msg)
    end)
  end
  uv.run()
  return lib.clock() - t0
end

local function cqueues_echo(rt, p)
  local socket = require "cqueues.socket"
  local msg = ("x"):rep(p.size)
  local elapsed
  rt.run(function()
    local srv = socket.listen({ host = "127.0.0.1", port = 0, nodelay = true })
    local _, _, port = srv:localname()
    rt.spawn(function()
      for _ = 1, p.conns do
        local c = srv:accept()
        c:setmode("bn", "bn")
        rt.spawn(serve_conn, c, p.size)
      end
    end)
    local t0 = lib.clock()
    local tasks = {}
    for i = 1, p.conns do
      tasks[i] = rt.spawn(function()
        local c = socket.connect({ host = "127.0.0.1", port = port, nodelay = true })
        c:setmode("bn", "bn")
        round_trips(c, msg, p.rounds)
      end)
    end
    for i = 1, p.conns do tasks[i]:join() end
    elapsed = lib.clock() - t0
    srv:close()
  end)
  return elapsed
end

local function c_echo(p)
  local out_dir = root .. "bench/out"
  os.execute("mkdir -p '" .. out_dir .. "'")
  local exe = out_dir .. "/echo"
  local cc = ("gcc -O2 -o '%s' '%sbench/c/echo.c' -luv 2>&1"):format(exe, root)
  local pc = assert(io.popen(cc, "r"))
  local msg = pc:read("a")
  if not pc:close() then return nil, "cannot build bench/c/echo.c: " .. msg end
  local pr = assert(io.popen(("'%s' %d %d %d"):format(exe, p.conns, p.rounds, p.size), "r"))
  local line = pr:read("a")
  pr:close()
  local wall = tonumber(line:match("wall_s=([%d.]+)"))
  if not wall then return nil, "echo failed: " .. line end
  return wall
end

return function(rt, impl, p)
  local elapsed, why
  if impl == "corio" then
    if not rt.tcp then return "tcp API missing" end
    elapsed = corio_echo(rt, p)
  elseif impl == "luv" then
    elapsed = luv_echo(p)
  elseif impl == "cqueues" then
    local ok = pcall(require, "cqueues.socket")
    if not ok then return "cqueues.socket missing" end
    elapsed = cqueues_echo(rt, p)
  elseif impl == "c" then
    elapsed, why = c_echo(p)
    if not elapsed then return why end
  else
    return "no " .. impl .. " implementation"
  end
  local n = p.conns * p.rounds
  return { n = n, wall_s = elapsed, rate = n / elapsed }
end
