-- corio inside headless Neovim: tasks, timers and a loopback TCP echo
-- complete through corio.luv.attach while Neovim's own loop runs (its
-- vim.loop timers tick and vim.schedule callbacks run meanwhile). Neovim
-- is a subprocess (wall-clock bounded by timeout(1)) running its LuaJIT
-- with the corio built for LuaJIT by `make build-luajit` (.rocks/luajit),
-- whatever Lua runs busted. Skipped when nvim is not installed.
local root = os.getenv("PWD") or "."

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function command_v(name)
  local f = io.popen("command -v " .. name .. " 2>/dev/null")
  local path = f and f:read("*l")
  if f then f:close() end
  return path
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- The script Neovim runs with :luafile. It writes key=value lines to out.
local SCRIPT = [=[
local ROOT, OUT = %q, %q
local tree = ROOT .. "/.rocks/luajit"
package.path = tree .. "/share/lua/5.1/?.lua;" .. tree .. "/share/lua/5.1/?/init.lua;"
  .. package.path
package.cpath = tree .. "/lib/lua/5.1/?.so;" .. package.cpath
local out = assert(io.open(OUT, "w"))
local function emit(k, v)
  out:write(k, "=", tostring(v):gsub("\n", " "), "\n")
  out:flush()
end
local function quit()
  out:close()
  vim.cmd("qa!")
end
local ok, err = pcall(function()
  local corio = require "corio"
  emit("jit", jit and jit.version)
  -- Neovim's own event queue: a vim.loop timer schedules editor callbacks
  local scheduled = 0
  local sched = vim.loop.new_timer()
  sched:start(10, 10, function()
    vim.schedule(function() scheduled = scheduled + 1 end)
  end)
  dofile(ROOT .. "/spec/fixtures/luv_host.lua")(corio, vim.loop, function(ok, s)
    emit("ok", ok)
    if ok then
      for k, v in pairs(s) do emit(k, v) end
    else
      emit("err", s)
    end
    -- a second run, attached with Neovim's loop found by default
    local rt = corio.runtime()
    rt:start(function() corio.sleep(0.01) return "default loop" end)
    corio.luv.attach(rt, { on_done = function(ok2, v)
      sched:stop()
      sched:close()
      emit("default_ok", ok2)
      emit("default", v)
      emit("scheduled", scheduled)
      rt:close()
      vim.schedule(quit) -- (no :qa from a luv callback)
    end })
  end)
end)
if not ok then
  emit("setup_error", err)
  quit()
end
]=]

describe("corio in headless Neovim", function()
  local nvim = command_v("nvim")
  if not nvim then
    pending("nvim is not installed (Debian: neovim)")
    return
  end
  if not exists(root .. "/.rocks/luajit/lib/lua/5.1/corio/core.so") then
    pending("corio is not built for LuaJIT (make build-luajit)")
    return
  end

  it("runs tasks, timers and a TCP echo while Neovim's own loop runs", function()
    local tmp = os.tmpname()
    local script, out = tmp .. ".lua", tmp .. ".out"
    local f = assert(io.open(script, "w"))
    f:write(SCRIPT:format(root, out))
    f:close()
    -- Neovim gets no sanitizer preload and no Lua paths of the busted
    -- interpreter; its state files go to the temporary directory
    local cmd = ("cd %s && env -u LD_PRELOAD -u LUA_PATH -u LUA_CPATH "
      .. "XDG_STATE_HOME=%s XDG_DATA_HOME=%s NVIM_LOG_FILE=/dev/null "
      .. "timeout 60 %s --headless --clean -u NONE -i NONE -c %s </dev/null 2>&1")
      :format(sh_quote(root), sh_quote(tmp .. ".d"), sh_quote(tmp .. ".d"),
        sh_quote(nvim), sh_quote("luafile " .. script))
    local p = assert(io.popen(cmd))
    local console = p:read("*a")
    p:close()
    local r = {}
    local o = io.open(out, "r")
    if o then
      for line in o:lines() do
        local k, v = line:match("^([^=]+)=(.*)$")
        if k then r[k] = v end
      end
      o:close()
    end
    os.remove(script)
    os.remove(out)
    os.remove(tmp)
    os.execute("rm -rf " .. sh_quote(tmp .. ".d"))
    local diag = "nvim output: " .. console .. "\nresults: " .. (function()
      local t = {}
      for k, v in pairs(r) do t[#t + 1] = k .. "=" .. v end
      return table.concat(t, " ")
    end)()
    assert.is_nil(r.setup_error, diag)
    assert.matches("LuaJIT", r.jit or "", 1, false, diag)
    assert.equal("true", r.ok, diag)
    assert.equal("210", r.sleeps, diag)
    assert.equal("echo 1,echo 2,echo 3", r.echoed, diag)
    assert.is_true(tonumber(r.ticks_during_sleep) >= 5, diag)
    assert.is_true(tonumber(r.spins) >= 1, diag)
    assert.is_true(tonumber(r.elapsed) >= 0.1, diag)
    assert.equal("true", r.default_ok, diag)
    assert.equal("default loop", r.default, diag)
    assert.is_true(tonumber(r.scheduled) >= 3, diag)
  end)
end)
