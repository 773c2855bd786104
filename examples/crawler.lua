-- A crawler: fetch every page of a small site with bounded concurrency,
-- a timeout per request, retries with backoff, and a live progress line.
-- The site is a local test server started by the example (loopback only):
-- pages link to other pages, some answer slowly and some fail now and then.
--
--   make demo        (or: lua5.4 examples/crawler.lua with corio installed)
local corio = require "corio"

local PAGES, LINKS = 120, 4

-- ------------------------------------------------------------ the site --

local function page_body(n)
  local links = {}
  for i = 1, LINKS do links[i] = ("/page/%d"):format((n * 7 + i * 13) % PAGES) end
  return ("page %d\n%s\n"):format(n, table.concat(links, "\n"))
end

local served, hits = 0, {}

local function serve(conn)
  local line = conn:read("l", { timeout = 2 })
  if not line then return conn:close() end
  repeat local h = conn:read("l", { timeout = 2 }) until not h or h == ""
  local n = tonumber(line:match("^GET /page/(%d+) "))
  served = served + 1
  local hit = n and (hits[n] or 0) + 1
  if n then hits[n] = hit end
  -- a few pages answer too slowly the first time: the client's timeout
  -- gives up and its retry gets them
  if n and n % 17 == 5 and hit == 1 then corio.sleep(0.3) end
  local status, body = "200 OK", n and page_body(n) or "not found\n"
  if not n then status = "404 Not Found" end
  if n and n % 5 == 1 and hit <= 2 then -- flaky: fails twice, then works
    status, body = "503 Service Unavailable", "try again\n"
  end
  conn:write(("HTTP/1.0 %s\r\nContent-Length: %d\r\n\r\n%s"):format(status, #body, body))
  conn:close()
end

-- ----------------------------------------------------------- the client --

local function fetch(port, path)
  local c = assert(corio.tcp.connect("127.0.0.1", port, { timeout = 1 }))
  local _ <close> = c
  assert(c:write(("GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n"):format(path)))
  local status = assert(c:read("l"))
  local code = tonumber(status:match("^HTTP/1%.%d (%d+)"))
  repeat local h = assert(c:read("l")) until h == ""
  local body = assert(c:read("a"))
  if code ~= 200 then error(("%s: HTTP %d"):format(path, code), 0) end
  return body
end

corio.run(function()
  local srv = assert(corio.tcp.listen("127.0.0.1", 0))
  local port = srv:port()
  corio.scope(function(s)
    s:spawn(function() -- the server: one task per connection
      corio.scope(function(conns)
        while true do
          local conn = srv:accept({ timeout = 60 })
          if not conn then break end -- closed: the crawl is over
          conns:spawn(serve, conn)
        end
      end)
    end)

    local seen, frontier, done, failed, retries = { ["/page/0"] = true }, { "/page/0" }, 0, 0, 0
    local t0 = corio.now()
    while #frontier > 0 do
      local bodies = corio.map(frontier, function(path)
        local ok, body = pcall(corio.retry, function()
          return corio.timeout(0.2, fetch, port, path)
        end, { retries = 3, base = 0.02,
               retry_if = function(e) return not tostring(e):find("404") end,
               on_retry = function() retries = retries + 1 end })
        done = done + 1
        if not ok then failed = failed + 1 end
        io.write(("\rfetched %3d pages, %d failed, %d retries, %.2f s")
          :format(done, failed, retries, corio.now() - t0))
        io.flush()
        return ok and body or ""
      end, { concurrency = 8 })
      local next_frontier = {}
      for _, body in ipairs(bodies) do
        for link in body:gmatch("/page/%d+") do
          if not seen[link] then
            seen[link] = true
            next_frontier[#next_frontier + 1] = link
          end
        end
      end
      frontier = next_frontier
    end
    print(("\ncrawled %d pages (%d failed after retries) in %.2f s; the server answered %d requests")
      :format(done, failed, corio.now() - t0, served))
    srv:close()
  end)
end)
