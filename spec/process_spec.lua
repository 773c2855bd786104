-- corio.exec: run a command without a shell, collect its output; on a
-- timeout or cancellation the child is terminated, killed and reaped.
local corio = require "corio"

local H = require "helper"
local proc = require "fixtures.proc"

local REAL = { clock = "real" }

local function run(fn, opts) return H.run(fn, opts or REAL) end

-- Whether a process with this pid exists (a zombie counts: it is not
-- reaped yet).
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if f then f:close() end
  return f ~= nil
end

-- exec and process fail alike on a command that cannot start: nil and
-- an io error named by its errno, for a missing command or cwd.
local function assert_cannot_start(start)
  local r, err = start({ "corio-no-such-command" })
  assert.is_nil(r)
  assert.equal("io", err.kind)
  assert.equal("ENOENT", err.code)
  r, err = start({ "true" }, { cwd = "/corio/no/such/dir" })
  assert.is_nil(r)
  assert.equal("ENOENT", err.code)
end

-- The error fn(...) raises (it must raise). fn calls the function under
-- test by its field name, so that the message names it.
local function raised(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok)
  return e
end

local function read_pid(path)
  local f = assert(io.open(path))
  local pid = tonumber(f:read("*l"))
  f:close()
  os.remove(path)
  return pid
end

-- Runs a fixture that closes its Lua state while its child runs (it
-- writes the child's pid to arg[1] first): the child must be reaped.
local function assert_orphan_reaped(fixture)
  if _VERSION == "Lua 5.1" then
    pending("os.exit cannot close the Lua state on Lua 5.1 and LuaJIT")
    return
  end
  local pidfile = os.tmpname()
  os.remove(pidfile)
  local r = proc.run(fixture, pidfile)
  assert.equal(0, r.code, r.stderr)
  assert.equal("closing\n", r.stdout)
  assert.equal("", r.stderr)
  assert.is_false(alive(read_pid(pidfile)))
end

describe("corio.exec", function()
  it("returns the exit code with stdout and stderr captured", function()
    run(function()
      local r = corio.exec({ "sh", "-c", "echo out; echo err >&2; exit 7" })
      assert.same({ code = 7, stdout = "out\n", stderr = "err\n" }, r)
      assert.equal(0, corio.exec({ "true" }).code)
      assert.equal(1, corio.exec({ "false" }).code)
      assert.is_nil(corio.exec({ "true" }).signal)
    end)
  end)

  it("reports a child killed by a signal in the signal field, with no code", function()
    run(function()
      local r = corio.exec({ "sh", "-c", "kill -KILL $$" })
      assert.equal("SIGKILL", r.signal)
      assert.is_nil(r.code)
      r = corio.exec({ "sh", "-c", "kill -TERM $$" })
      assert.equal("SIGTERM", r.signal)
    end)
  end)

  it("runs argv without a shell, looking the command up in PATH", function()
    run(function()
      local r = corio.exec({ "echo", "$HOME", "a b", "'q'" })
      assert.equal("$HOME a b 'q'\n", r.stdout)
    end)
  end)

  it("writes input to the child's stdin, zero bytes and large data included", function()
    run(function()
      assert.equal("a\0b", corio.exec({ "cat" }, { input = "a\0b" }).stdout)
      local big = ("0123456789"):rep(200000) -- 2 MB, far above a pipe buffer
      local r = corio.exec({ "wc", "-c" }, { input = big })
      assert.equal(#big, tonumber(r.stdout))
      assert.equal("", corio.exec({ "cat" }, { input = "" }).stdout)
      -- no input: stdin is empty (/dev/null), the child does not hang
      assert.equal("", corio.exec({ "cat" }).stdout)
      -- a child that exits without reading its input is no error
      assert.equal(0, corio.exec({ "true" }, { input = big }).code)
    end)
  end)

  it("collects large outputs on both streams", function()
    run(function()
      local r = corio.exec({ "sh", "-c", "head -c 3000000 /dev/zero; head -c 100000 /dev/zero >&2" })
      assert.equal(3000000, #r.stdout)
      assert.equal(100000, #r.stderr)
    end)
  end)

  it("replaces the environment with env, and runs in cwd", function()
    run(function()
      local r = corio.exec({ "sh", "-c", "echo \"$FOO:$HOME\"; pwd" },
        { env = { FOO = "bar", PATH = os.getenv("PATH") }, cwd = "/" })
      assert.equal("bar:\n/\n", r.stdout)
      r = corio.exec({ "env" }, { env = { ONLY = "1" } })
      assert.equal("ONLY=1\n", r.stdout)
    end)
  end)

  it("returns nil and ENOENT for a command that does not exist", function()
    run(function()
      assert_cannot_start(corio.exec)
    end)
  end)

  it("kills a child whose output passes max_output and returns an error of kind limit", function()
    run(function()
      local t0 = corio.now()
      local r, err = corio.exec({ "yes" }, { max_output = 10000 })
      assert.is_nil(r)
      assert.equal("limit", err.kind)
      assert.is_true(corio.now() - t0 < 2)
    end)
  end)

  it("terminates and reaps the child on timeout: no zombie is left", function()
    local pidfile = os.tmpname()
    run(function()
      local t0 = corio.now()
      local r, err = corio.exec({ "sh", "-c", "echo $$ > " .. pidfile .. "; exec sleep 10" }, { timeout = 0.3 })
      assert.is_nil(r)
      assert.equal("timeout", err.kind)
      assert.is_true(corio.now() - t0 < 2)
    end)
    assert.is_false(alive(read_pid(pidfile)))
  end)

  it("sends SIGKILL after kill_grace to a child that ignores SIGTERM", function()
    local pidfile = os.tmpname()
    run(function()
      local t0 = corio.now()
      local r, err = corio.exec({ "sh", "-c", "echo $$ > " .. pidfile .. "; trap '' TERM; exec sleep 10" },
        { timeout = 0.2, kill_grace = 0.5 })
      local took = corio.now() - t0
      assert.is_nil(r)
      assert.equal("timeout", err.kind)
      assert.is_true(took >= 0.65, "returned before the grace period: " .. took)
      assert.is_true(took < 3)
    end)
    assert.is_false(alive(read_pid(pidfile)))
  end)

  it("kills and reaps the child when the waiting task is cancelled", function()
    local pidfile = os.tmpname()
    run(function()
      local t = corio.spawn(function()
        return corio.exec({ "sh", "-c", "echo $$ > " .. pidfile .. "; exec sleep 10" })
      end)
      corio.sleep(0.2)
      assert.equal("process", corio.tasks()[2].waiting_on)
      local t0 = corio.now()
      t:cancel()
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(err))
      assert.is_true(corio.now() - t0 < 2)
    end)
    assert.is_false(alive(read_pid(pidfile)))
  end)

  it("kills and reaps a child whose task is torn down when the Lua state closes", function()
    assert_orphan_reaped("exec_orphan.lua")
  end)

  it("bounds an exec with an enclosing corio.timeout", function()
    local pidfile = os.tmpname()
    run(function()
      -- (1 s: the shell must have written its pid before the deadline,
      -- also on a slow machine or under TSan)
      local ok, err = H.catch(corio.timeout, 1, corio.exec,
        { "sh", "-c", "echo $$ > " .. pidfile .. "; exec sleep 10" })
      assert.is_false(ok)
      assert.is_true(corio.is_timeout(err))
    end)
    assert.is_false(alive(read_pid(pidfile)))
  end)

  it("waits for an I/O budget slot past max_io and runs every command", function()
    run(function()
      local seen = 0
      corio.scope(function(s)
        for i = 1, 4 do
          s:spawn(function()
            -- each holds its slot a while, so the others are seen waiting
            local r = corio.exec({ "sh", "-c", "sleep 0.05; echo $0", tostring(i) })
            assert.equal(i .. "\n", r.stdout)
          end)
        end
        corio.yield()
        seen = corio.stats().io_waiting
      end)
      assert.is_true(seen >= 2, "callers did not wait for a slot: " .. seen)
    end, { clock = "real", max_io = 1 })
  end)

  it("runs dozens of commands concurrently, each with its own output", function()
    run(function()
      local out = {}
      corio.scope(function(s)
        for i = 1, 40 do
          s:spawn(function()
            out[i] = corio.exec({ "sh", "-c", "echo $0; echo err$0 >&2", tostring(i) })
          end)
        end
      end)
      for i = 1, 40 do
        assert.same({ code = 0, stdout = i .. "\n", stderr = "err" .. i .. "\n" }, out[i])
      end
    end)
  end)

  it("raises on bad arguments", function()
    run(function()
      local function err_of(...) return raised(function(...) return corio.exec(...) end, ...) end
      assert.matches("bad argument #1 to 'exec'", err_of("ls"))
      assert.matches("argv must name a command", err_of({}))
      assert.matches("argv%[2%] must be a string", err_of({ "echo", 1 }))
      assert.matches("bad option 'shell'", err_of({ "true" }, { shell = true }))
      assert.matches("env", err_of({ "true" }, { env = { 1 } }))
      assert.matches("max_output", err_of({ "true" }, { max_output = -1 }))
    end)
    assert.has_error(function() corio.exec({ "true" }) end)
  end)

  it("gives this process's id with corio.getpid()", function()
    run(function()
      local r = corio.exec({ "sh", "-c", "echo $PPID" })
      assert.equal(corio.getpid(), tonumber(r.stdout))
    end)
  end)
end)

-- Polls (bounded) until no process with this pid exists: a child the
-- library terminated must also be reaped, not left a zombie.
local function gone(pid)
  for _ = 1, 200 do
    if not alive(pid) then return true end
    corio.sleep(0.02)
  end
  return false
end

describe("corio.process", function()
  it("talks to a child through its stdin and stdout streams", function()
    run(function()
      local pr = assert(corio.process({ "cat" }))
      assert.is_number(pr.pid)
      for i = 1, 3 do
        -- one line at a time: each comes back before the next is sent
        assert.is_true(pr.stdin:write("line " .. i .. "\n"))
        assert.equal("line " .. i, pr.stdout:read("l"))
      end
      pr.stdin:close()
      local r, err = pr.stdout:read("l")
      assert.is_nil(r)
      assert.equal("closed", err.kind)
      assert.same({ code = 0 }, pr:wait())
      pr:close()
    end)
  end)

  it("reads stderr apart from stdout", function()
    run(function()
      local pr = assert(corio.process({ "sh", "-c", "echo out; echo err >&2; exit 3" }, { stdin = "null" }))
      assert.is_nil(pr.stdin)
      assert.equal("err\n", pr.stderr:read("a"))
      assert.equal("out\n", pr.stdout:read("a"))
      assert.same({ code = 3 }, pr:wait())
      -- waiting again gives the same status
      assert.same({ code = 3 }, pr:wait())
      pr:close()
    end)
  end)

  it("reports a child killed by a signal in the signal field", function()
    run(function()
      local pr = assert(corio.process({ "sh", "-c", "kill -KILL $$" }))
      assert.same({ signal = "SIGKILL" }, pr:wait())
      pr:close()
    end)
  end)

  it("returns nil, timeout from wait and leaves the child running until killed", function()
    run(function()
      local pr = assert(corio.process({ "sleep", "10" }))
      local r, err = pr:wait({ timeout = 0.1 })
      assert.is_nil(r)
      assert.equal("timeout", err.kind)
      assert.is_true(alive(pr.pid))
      assert.is_true(pr:kill())
      assert.same({ signal = "SIGTERM" }, pr:wait())
      assert.is_true(gone(pr.pid))
      pr:close()
    end)
  end)

  it("sends the named signal with kill, and ESRCH once the child has exited", function()
    run(function()
      local pr = assert(corio.process({ "sleep", "10" }))
      assert.is_true(pr:kill("SIGINT"))
      assert.same({ signal = "SIGINT" }, pr:wait())
      local ok, err = pr:kill("SIGKILL")
      assert.is_nil(ok)
      assert.equal("ESRCH", err.code)
      assert.has_error(function() pr:kill("SIGNOPE") end)
      pr:close()
    end)
  end)

  it("leaves the child running when a task waiting on it is cancelled", function()
    run(function()
      local pr = assert(corio.process({ "sleep", "10" }, { stdin = "null" }))
      local t = corio.spawn(function() return pr:wait() end)
      corio.sleep(0.1)
      assert.equal("process", corio.tasks()[2].waiting_on)
      t:cancel()
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.is_true(corio.is_cancelled(err))
      corio.sleep(0.05)
      assert.is_true(alive(pr.pid))
      -- a later wait still works, and sees the exit
      local w = corio.spawn(function() return pr:wait() end)
      corio.sleep(0.05)
      assert.is_true(pr:kill("SIGKILL"))
      local wok, r = w:wait()
      assert.is_true(wok)
      assert.same({ signal = "SIGKILL" }, r)
      pr:close()
    end)
  end)

  it("kills and reaps a running child on close, and closes its pipes", function()
    run(function()
      local pr = assert(corio.process({ "sleep", "10" }))
      local reader = corio.spawn(function() return pr.stdout:read("l") end)
      corio.sleep(0.05)
      pr:close()
      pr:close() -- idempotent
      local _, r, err = reader:wait()
      assert.is_nil(r)
      assert.equal("closed", err.kind)
      assert.is_true(pr.stdout:closed())
      assert.is_true(pr.stdin:closed())
      assert.is_true(gone(pr.pid))
      assert.same({ signal = "SIGTERM" }, pr:wait())
    end)
  end)

  it("sends SIGKILL after kill_grace to a closed child that ignores SIGTERM", function()
    run(function()
      local pr = assert(corio.process({ "sh", "-c", "trap '' TERM; echo ready; exec sleep 10" },
        { kill_grace = 0.3 }))
      assert.equal("ready", pr.stdout:read("l")) -- the trap is set
      local t0 = corio.now()
      pr:close()
      assert.same({ signal = "SIGKILL" }, pr:wait())
      assert.is_true(corio.now() - t0 >= 0.25)
      assert.is_false(alive(pr.pid))
    end)
  end)

  it("terminates and reaps a child whose process object is collected unclosed", function()
    local pid
    run(function()
      local function start()
        local pr = assert(corio.process({ "sleep", "10" }))
        return pr.pid
      end
      pid = start()
      collectgarbage()
      collectgarbage()
      assert.is_true(gone(pid))
    end)
    assert.is_false(alive(pid))
  end)

  it("kills and reaps a child still running when run returns, and closes its pipes", function()
    local pr
    run(function()
      pr = assert(corio.process({ "sh", "-c", "trap '' TERM; exec sleep 10" }))
    end) -- H.run asserts no handle is left open
    assert.is_false(alive(pr.pid))
    assert.is_true(pr.stdout:closed())
  end)

  it("kills and reaps the child of a process object when the Lua state closes", function()
    assert_orphan_reaped("process_orphan.lua")
  end)

  it("returns nil and ENOENT for a command that does not exist", function()
    run(function()
      assert_cannot_start(corio.process)
    end)
  end)

  it("connects stdin to /dev/null and stdout to this process's with null and inherit", function()
    run(function()
      -- fd 4 is the child's stdout, kept before stdout goes to stderr
      local ours = corio.exec({ "readlink", "/proc/" .. corio.getpid() .. "/fd/1" }).stdout
      local pr = assert(corio.process({ "sh", "-c", "exec readlink /proc/self/fd/0 /proc/self/fd/4 4>&1 >&2" },
        { stdin = "null", stdout = "inherit", env = { PATH = os.getenv("PATH") }, cwd = "/" }))
      assert.is_nil(pr.stdin)
      assert.is_nil(pr.stdout)
      assert.equal("/dev/null\n" .. ours, pr.stderr:read("a"))
      assert.same({ code = 0 }, pr:wait())
      pr:close()
    end)
  end)

  it("raises on bad arguments", function()
    run(function()
      local function err_of(...) return raised(function(...) return corio.process(...) end, ...) end
      assert.matches("argv must name a command", err_of({}))
      assert.matches("bad option 'stdout'", err_of({ "true" }, { stdout = "file" }))
      assert.matches("bad option 'timeout'", err_of({ "true" }, { timeout = 1 }))
      assert.matches("kill_grace", err_of({ "true" }, { kill_grace = -1 }))
      assert.matches("env", err_of({ "true" }, { env = { 1 } }))
    end)
    assert.has_error(function() corio.process({ "true" }) end)
  end)
end)
