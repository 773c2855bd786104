-- corio.stdin() / corio.stdout(): the process's own stdio as streams.
local proc = require "fixtures.proc"

describe("stdio streams", function()
  it("reads a child's piped stdin line by line and writes to its stdout", function()
    local r = proc.run_with({ input = "alpha\nbeta\ngamma" }, "net_stdio.lua")
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
    assert.equal("ALPHA\nBETA\nGAMMA\nlines=3\nafter\n", r.stdout)
  end)

  it("carries input larger than the read-ahead buffer without loss", function()
    local lines = {}
    for i = 1, 20000 do lines[i] = "line " .. i end
    local r = proc.run_with({ input = table.concat(lines, "\n") .. "\n" }, "net_stdio.lua")
    assert.equal(0, r.code)
    assert.equal("", r.stderr)
    assert.truthy(r.stdout:find("LINE 20000\nlines=20000\n", 1, true))
  end)

  it("reads stdin and writes stdout that are regular files (a copier thread serves the loop)", function()
    local r = proc.run_with({ input = "one\ntwo\n", files = true }, "net_stdio.lua")
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
    assert.equal("ONE\nTWO\nlines=2\nafter\n", r.stdout)
  end)

  it("a stdin on /dev/null is a stream at its end", function()
    local r = proc.run("net_stdio.lua", "info")
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
    assert.equal("stream closed\nafter\n", r.stdout)
  end)
end)
