-- runtime{dump_on = "SIGQUIT"}: a signal prints the task dump, like a Go
-- goroutine dump (issue 10).
local corio = require "corio"
local proc = require "fixtures.proc"

describe("runtime option dump_on", function()
  it("prints every live task and what it waits on when the signal arrives", function()
    local r = proc.run("dump_on.lua")
    assert.equal(0, r.code, r.stderr)
    assert.matches("done", r.stdout)
    assert.matches("corio: task dump %(2 alive%)", r.stderr)
    assert.matches("#%d+ main waiting on sleep %(age [%d.]+ s%)", r.stderr)
    assert.matches("sleepy waiting on sleep", r.stderr)
  end)

  it("rejects a signal name it does not know, naming the option", function()
    local ok, err = pcall(corio.runtime, { dump_on = "SIGNOPE" })
    assert.is_false(ok)
    assert.matches("bad option 'dump_on' to 'runtime'", err)
  end)

  it("is no wake source: a task waiting forever is still a deadlock", function()
    local rt = corio.runtime({ clock = "virtual", dump_on = "SIGQUIT" })
    -- a task waiting forever is still a deadlock: the watcher is no wake source
    local ok, err = pcall(rt.run, rt, function() corio.event():wait() end)
    assert.is_false(ok)
    assert.equal("deadlock", err.kind)
    assert.equal(0, rt:stats().handles)
    rt:close()
  end)
end)
