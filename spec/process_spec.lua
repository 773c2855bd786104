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

local function read_pid(path)
  local f = assert(io.open(path))
  local pid = tonumber(f:read("*l"))
  f:close()
  os.remove(path)
  return pid
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
      local r, err = corio.exec({ "corio-no-such-command" })
      assert.is_nil(r)
      assert.equal("io", err.kind)
      assert.equal("ENOENT", err.code)
      r, err = corio.exec({ "true" }, { cwd = "/corio/no/such/dir" })
      assert.is_nil(r)
      assert.equal("ENOENT", err.code)
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
    if _VERSION == "Lua 5.1" then
      pending("os.exit cannot close the Lua state on Lua 5.1 and LuaJIT")
      return
    end
    local pidfile = os.tmpname()
    os.remove(pidfile)
    local r = proc.run("exec_orphan.lua", pidfile)
    assert.equal(0, r.code, r.stderr)
    assert.equal("closing\n", r.stdout)
    assert.equal("", r.stderr)
    assert.is_false(alive(read_pid(pidfile)))
  end)

  it("bounds an exec with an enclosing corio.timeout", function()
    local pidfile = os.tmpname()
    run(function()
      local ok, err = H.catch(corio.timeout, 0.2, corio.exec,
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
      local function err_of(...)
        local args = H.pack(...)
        local ok, e = pcall(function() return corio.exec(H.unpack(args, 1, args.n)) end)
        assert.is_false(ok)
        return e
      end
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
