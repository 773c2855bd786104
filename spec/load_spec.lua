-- Load: 5,000 loopback TCP connections open at once in one runtime, each
-- doing a round trip; and descriptor exhaustion: with RLIMIT_NOFILE at 64,
-- every kind of descriptor-taking call fails with an error value (EMFILE),
-- never a crash, and everything works again once some are freed.
--
-- corio has no call to raise RLIMIT_NOFILE, so each runs
-- spec/fixtures/load.lua in a child started by a shell that sets the limit
-- with `ulimit -n` (within the hard limit; skipped with a message when the
-- hard limit is too low).
local proc = require "fixtures.proc"

local CONNS = 5000
-- both ends of every connection live in the one process, plus the loop's
-- own descriptors and the interpreter's
local NEED = 2 * CONNS + 64

local function hard_limit()
  local p = io.popen("ulimit -Hn")
  local s = p:read("*a")
  p:close()
  if s:find("unlimited") then return math.huge end
  return tonumber(s) or 0
end

describe("under load", function()
  it("one runtime serves 5,000 concurrent loopback TCP connections, each a round trip #slow", function()
    local hard = hard_limit()
    if hard < NEED then
      return pending(("RLIMIT_NOFILE hard limit %d is below the %d needed"):format(hard, NEED))
    end
    local r = proc.run_with({ nofile = hard == math.huge and NEED or math.min(hard, 65536) },
      "load.lua", "conns", CONNS)
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
    assert.equal(("served %d peak %d\n"):format(CONNS, CONNS), r.stdout)
  end)

  it("running out of descriptors gives error values (EMFILE) and recovers once some are freed", function()
    local r = proc.run_with({ nofile = 64 }, "load.lua", "emfile")
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
    local lines = {}
    for l in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.matches("^tcp: %a+ EMFILE$", lines[1])
    for i, what in ipairs({ "fs.open", "udp.bind", "listen", "process", "exec" }) do
      assert.equal(what .. ": EMFILE", lines[i + 1])
    end
    -- a constructor raises a clear error (or succeeds where it needs no
    -- new descriptor)
    assert.truthy(lines[7] == "runtime: made" or lines[7]:find("^runtime: error .*too many open files"), lines[7])
    assert.equal("recovered", lines[#lines])
  end)
end)
