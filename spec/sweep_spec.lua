-- Bad-input sweep: every public function of corio and its submodules, and
-- every method of every class (both discovered at run time, so new API is
-- covered without touching this file), called with junk arguments: every
-- Lua type, NaN, +-inf, negative and huge numbers, the integer limits,
-- 2^53, empty, binary and 1 MiB strings, tables whose every access raises,
-- the wrong self (junk, objects of other classes) and closed objects. Each
-- call must return (nil, err where documented) or raise an error naming
-- the function; none may crash; afterwards the same runtime, and a new
-- one, must still run a small program correctly.
--
-- Each target runs spec/fixtures/sweep.lua in a child interpreter inside
-- a fresh temporary directory (the filesystem calls create files named
-- after junk strings there), so a crash fails one spec and names the call.
local corio = require "corio"
local H = require "helper"
local proc = require "fixtures.proc"

local quote, read_all = proc.quote, proc.read_all

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return out
end

local cwd = sh("pwd"):gsub("%s+$", "")
local fixture = proc.dir:sub(1, 1) == "/" and proc.dir or (cwd .. "/" .. proc.dir)

-- Option names: every name in an `allowed[]` list of the C core and every
-- `opts.x` the Lua layer reads.
local function option_names()
  local names, seen = {}, {}
  local function add(k)
    if not seen[k] then seen[k] = true names[#names + 1] = k end
  end
  for _, pat in ipairs({ "csrc/*.c", "lua/corio/*.lua" }) do
    for path in sh("ls " .. pat .. " 2>/dev/null"):gmatch("[^\n]+") do
      local src = read_all(path)
      for list in src:gmatch("allowed%[%]%s*=%s*(%b{})") do
        for k in list:gmatch('"([%w_]+)"') do add(k) end
      end
      for k in src:gmatch("opts%.([%a_][%w_]*)") do add(k) end
      for list in src:gmatch("KNOWN%s*=%s*(%b{})") do
        for k in list:gmatch("([%a_][%w_]*)%s*=") do add(k) end
      end
    end
  end
  if #names == 0 then names = { "timeout" } end
  table.sort(names)
  return table.concat(names, ",")
end

-- The targets: corio's function tables and the classes in the registry.
local function targets()
  local t = { "module:corio" }
  local subs = {}
  for k, v in pairs(corio) do
    if type(v) == "table" and type(k) == "string" and k:match("^%l") then
      subs[#subs + 1] = "module:corio." .. k
    end
  end
  table.sort(subs)
  for _, s in ipairs(subs) do t[#t + 1] = s end
  local classes = {}
  for k, v in pairs(debug.getregistry()) do
    if type(k) == "string" and k:match("^corio%.%u") and type(v) == "table"
        and v.__index ~= nil then
      classes[#classes + 1] = "class:" .. k
    end
  end
  table.sort(classes)
  for _, c in ipairs(classes) do t[#t + 1] = c end
  return t
end

local OPTKEYS = option_names()
local total = 0

-- Runs the sweep of one target in a child; returns its report lines and
-- exit code, and the tail of its stderr.
local function run_target(target)
  local dir = sh("mktemp -d"):gsub("%s+$", "")
  local report = dir .. "/.report"
  local env = {
    "-u LUA_PATH_5_4", "-u LUA_PATH_5_3", "-u LUA_CPATH_5_4", "-u LUA_CPATH_5_3",
    "-u LUA_INIT", "-u LUA_INIT_5_4", "-u LUA_INIT_5_3",
    "LUA_PATH=" .. quote(package.path), "LUA_CPATH=" .. quote(package.cpath),
  }
  local asan = os.getenv("ASAN_OPTIONS")
  if asan then env[#env + 1] = "ASAN_OPTIONS=" .. quote(asan .. ":detect_leaks=1") end
  local cmd = ("cd %s && timeout -k 5 240 env %s %s %s %s %s %s </dev/null >/dev/null 2>%s/.stderr; echo \"exit=$?\"")
    :format(quote(dir), table.concat(env, " "), quote(proc.interpreter()),
      quote(fixture .. "/sweep.lua"), quote(target), quote(report), quote(OPTKEYS),
      quote(dir))
  local out = sh(cmd)
  local code = tonumber(out:match("exit=(%d+)"))
  local rep = read_all(report)
  local err = read_all(dir .. "/.stderr")
  sh("rm -rf " .. quote(dir))
  return rep, code, err
end

describe("the bad-input sweep", function()
  for _, target in ipairs(targets()) do
    it("of " .. target .. " never crashes, names the function, and leaves the runtime usable", function()
      local rep, code, err = run_target(target)
      local last, bad, count, usable = nil, {}, nil, false
      for line in rep:gmatch("[^\n]+") do
        local what = line:match("^CALL (.*)")
        if what then last = what end
        local b = line:match("^BAD (.*)")
        if b then bad[#bad + 1] = b end
        count = tonumber(line:match("^COUNT (%d+)")) or count
        if line == "USABLE" then usable = true end
      end
      if code ~= 0 or not count then
        error(("child exited %s after %s calls; last call: %s\nstderr: %s")
          :format(tostring(code), tostring(count), tostring(last), err:sub(-3000)), 0)
      end
      total = total + count
      print(("sweep %s: %d calls"):format(target, count))
      assert(#bad == 0, #bad .. " bad results:\n  " .. table.concat(bad, "\n  ", 1, math.min(#bad, 40)))
      assert(usable, "the state was not usable after the sweep")
      assert(not err:find("ERROR: AddressSanitizer") and not err:find("runtime error:"),
        "sanitizer report: " .. err:sub(-3000))
    end)
  end

  it("made calls (the count of inputs)", function()
    print(("sweep total: %d calls"):format(total))
    assert.truthy(total > 1000)
  end)
end)

describe("found by the sweep", function()
  it("regression: corio.stream with concurrency = math.huge over a short iterator does not hang", function()
    local got = H.run(function()
      local i = 0
      local out = {}
      local step = corio.stream(function()
        i = i + 1
        if i <= 3 then return i end
      end, function(x) corio.sleep(0.1) return x * 2 end, { concurrency = math.huge })
      while true do -- (PUC 5.1 cannot wait in a for iterator)
        local r = step()
        if r == nil then break end
        out[#out + 1] = r
      end
      table.sort(out)
      return out
    end)
    assert.same({ 2, 4, 6 }, got)
  end)

  it("regression: corio.stream with concurrency 2^53 starts workers only as inputs arrive", function()
    local peak = H.run(function()
      local i, peak = 0, 0
      local step = corio.stream(function()
        i = i + 1
        if i <= 50 then return i end
      end, function(x)
        peak = math.max(peak, corio.stats().alive)
        corio.sleep(1)
        return x
      end, { concurrency = 2 ^ 53 })
      local n = 0
      while step() ~= nil do n = n + 1 end
      assert.equal(50, n)
      return peak
    end)
    -- one worker per input in flight (+ the supervisor, main, and one
    -- puller); not 2^53. (PUC 5.1 runs each protected call as a task of
    -- its own: twice as many.)
    local per = (_VERSION == "Lua 5.1" and not rawget(_G, "jit")) and 2 or 1
    assert.truthy(peak <= per * 50 + 8, "peak tasks " .. peak)
  end)

  it("regression: sem:with and m:with with the wrong self raise an argument error naming 'with'", function()
    H.run(function()
      local sem, m = corio.semaphore(1), corio.mutex()
      for _, bad in ipairs({ 42, "x", {}, m, corio.channel(1) }) do
        local ok, err = pcall(sem.with, bad, function() end)
        assert.is_false(ok)
        assert.matches("bad argument #1 to 'with' %(corio%.Semaphore expected", err)
        ok, err = pcall(m.with, bad ~= m and bad or sem, function() end)
        assert.is_false(ok)
        assert.matches("bad argument #1 to 'with' %(corio%.Mutex expected", err)
      end
      assert.equal(1, sem:available())
    end)
  end)

  it("regression: File:write('') as the first write of a file (memcpy from a NULL buffer, a UBSan report)", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    H.run(function()
      local f = assert(corio.fs.open(dir .. "/empty", "w"))
      assert.is_true(f:write(""))
      assert.is_true(f:write("x"))
      assert.is_true(f:write(""))
      f:close()
      assert.equal("x", corio.fs.read(dir .. "/empty"))
    end, { clock = "real" })
    os.remove(dir .. "/empty")
    os.remove(dir)
  end)

  it("regression: outside a task, corio.map, each and stream name themselves, not 'scope' or 'spawn'", function()
    for _, name in ipairs({ "map", "each" }) do
      local ok, err = pcall(corio[name], { 1 }, function() end)
      assert.is_false(ok)
      assert.matches("^[^\n]*" .. name .. ": not inside a corio task", tostring(err))
    end
    local ok, err = pcall(corio.stream, function() end, function() end)
    assert.is_false(ok)
    assert.matches("stream: not inside a corio task", tostring(err))
  end)

  it("regression: outside a task, tcp.listen and udp.bind of a host name name themselves, not 'resolve'", function()
    local ok, err = pcall(corio.tcp.listen, "localhost", 0)
    assert.is_false(ok)
    assert.matches("listen: not inside a corio task", tostring(err))
    ok, err = pcall(corio.udp.bind, "localhost", 0)
    assert.is_false(ok)
    assert.matches("bind: not inside a corio task", tostring(err))
  end)

  it("regression: corio.pool with a too long init module name names 'pool'", function()
    H.run(function()
      local ok, err = pcall(corio.pool, { init = string.rep("m", 5000) })
      assert.is_false(ok)
      assert.matches("bad option 'init' to 'pool'", err)
    end)
  end)
end)
