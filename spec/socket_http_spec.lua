-- LuaSocket's own socket.http (Debian lua-socket), unchanged, running
-- many requests concurrently on corio.socket against a corio HTTP server
-- on loopback; cancellation closes the client's socket.
local corio = require "corio"
local socket = require "corio.socket"
local H = require "helper"

local REAL = { clock = "real" }
local has_http = pcall(require, "socket.http")
local ltn12_ok, ltn12 = pcall(require, "ltn12")
-- LuaSocket's socket.protect (C) can wait only where lua_pcallk exists
local c_protect_yields = _VERSION ~= "Lua 5.1"

-- A small HTTP/1.1 server: GET /page/<n> answers "page <n>", POST /echo
-- answers the body, GET /slow answers nothing and records when the
-- client closes its connection. Connection: close after each answer.
local function server(s)
  local srv = assert(corio.tcp.listen("127.0.0.1", 0, { backlog = 1024 }))
  local st = { served = 0, slow_closed = 0, srv = srv }
  s:spawn(function()
    while true do
      local c = srv:accept()
      if not c then return end
      s:spawn(function()
        local line = c:read("l")
        local len = 0
        while line do
          local h = c:read("l")
          if not h or h == "" then break end
          local n = h:lower():match("^content%-length:%s*(%d+)")
          if n then len = tonumber(n) end
        end
        local method, path = (line or ""):match("^(%u+) (%S+)")
        if path == "/slow" then
          local _, err = c:read("a", { timeout = 10 })
          if err == nil or err.kind == "closed" then st.slow_closed = st.slow_closed + 1 end
          c:close()
          return
        end
        local body = method == "POST" and c:read(len) or ("page " .. ((path or ""):match("(%d+)$") or "?"))
        c:write(("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" ..
          "Connection: close\r\n\r\n%s"):format(#body, body))
        st.served = st.served + 1
        c:shutdown()
        c:close()
      end)
    end
  end)
  st.base = "http://127.0.0.1:" .. srv:port()
  return st
end

-- n concurrent GETs with http (each under its own deadline).
local function many_gets(http, st, n, create)
  local got = corio.map((function()
    local t = {}
    for i = 1, n do t[i] = i end
    return t
  end)(), function(i)
    return corio.timeout(5, function()
      local out = {}
      local r, code, headers = http.request({
        url = st.base .. "/page/" .. i, sink = ltn12.sink.table(out), create = create,
      })
      assert(r, code)
      assert.equal(200, code)
      assert.equal("text/plain", headers["content-type"])
      return table.concat(out)
    end)
  end, { concurrency = n })
  for i = 1, n do assert.equal("page " .. i, got[i]) end
end

local function slow_cancelled(http, st, create)
  local t0 = corio.now()
  local ok, err = H.catch(corio.timeout, 0.3, function()
    return http.request({ url = st.base .. "/slow", sink = ltn12.sink.null(), create = create })
  end)
  assert.is_false(ok)
  assert.is_true(corio.is_timeout(err))
  assert.is_true(corio.now() - t0 < 1)
  -- the server sees the connection closed (bounded wait)
  for _ = 1, 200 do
    if st.slow_closed == 1 then break end
    corio.sleep(0.01)
  end
  assert.equal(1, st.slow_closed)
end

describe("socket.http on corio.socket", function()
  if not (has_http and ltn12_ok) then
    it("needs LuaSocket (Debian lua-socket) for this Lua", function()
      pending("socket.http is not installed for " .. _VERSION)
    end)
    return
  end

  it("runs 100 concurrent requests of LuaSocket's own socket.http with create = corio.socket.tcp", function()
    if not c_protect_yields then
      return pending("LuaSocket's C socket.protect cannot wait on Lua 5.1 and LuaJIT: " ..
        "use corio.socket.require 'socket.http' there (next specs)")
    end
    local http = require "socket.http"
    H.run(function()
      corio.scope(function(s)
        local st = server(s)
        many_gets(http, st, 100, socket.tcp)
        assert.equal(100, st.served)
        slow_cancelled(http, st, socket.tcp)
        st.srv:close()
      end)
    end, REAL)
  end)

  it("runs 100 concurrent requests of socket.http loaded by corio.socket.require, on every Lua", function()
    local http = socket.require "socket.http"
    assert.are_not.equal(require "socket.http", http) -- a copy; the real one is untouched
    H.run(function()
      corio.scope(function(s)
        local st = server(s)
        many_gets(http, st, 100) -- no create: its socket module is corio.socket
        -- the string form and a POST with a body from an ltn12 source
        local body, code = http.request(st.base .. "/page/7")
        assert.equal("page 7", body)
        assert.equal(200, code)
        local out = {}
        local payload = ("x"):rep(100000)
        local r, code2 = http.request({
          url = st.base .. "/echo", method = "POST", source = ltn12.source.string(payload),
          headers = { ["content-length"] = #payload }, sink = ltn12.sink.table(out),
        })
        assert.equal(1, r)
        assert.equal(200, code2)
        assert.equal(payload, table.concat(out))
        st.srv:close()
      end)
    end, REAL)
  end)

  it("socket.smtp (with socket.tp) loaded by corio.socket.require sends mail to a corio SMTP server", function()
    local smtp = socket.require "socket.smtp"
    H.run(function()
      local srv = assert(corio.tcp.listen("127.0.0.1", 0))
      local got = {}
      local smtpd = corio.spawn(function()
        local c = assert(srv:accept())
        c:write("220 corio ESMTP\r\n")
        while true do
          local line = c:read("l")
          if not line then break end
          got[#got + 1] = line:match("^(%u+)")
          if line == "DATA" then
            c:write("354 go on\r\n")
            local body = {}
            repeat
              local l = c:read("l")
              body[#body + 1] = l
            until l == "." or not l
            got.body = table.concat(body, "\n")
            c:write("250 queued\r\n")
          elseif line:match("^QUIT") then
            c:write("221 bye\r\n")
            break
          else
            c:write("250 ok\r\n")
          end
        end
        c:close()
      end)
      local r, err = smtp.send({
        from = "<a@localhost>", rcpt = { "<b@localhost>", "<c@localhost>" },
        server = "127.0.0.1", port = srv:port(),
        source = smtp.message({ headers = { subject = "hello" }, body = "a body line" }),
      })
      assert(r, err)
      smtpd:join()
      srv:close()
      assert.same({ "EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT" }, { H.unpack(got) })
      assert.matches("a body line", got.body)
      assert.matches("Subject: hello", got.body)
    end, REAL)
  end)

  it("a request cancelled by corio.timeout closes its socket: the server sees the close, no handle leaks", function()
    local http = socket.require "socket.http"
    H.run(function()
      corio.scope(function(s)
        local st = server(s)
        slow_cancelled(http, st)
        -- a failure that is not a cancellation comes back as LuaSocket's nil, err
        local r, err = http.request("http://127.0.0.1:1/")
        assert.is_nil(r)
        assert.equal("connection refused", err)
        st.srv:close()
      end)
    end, REAL)
  end)
end)
