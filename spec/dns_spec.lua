-- corio.resolve: getaddrinfo on libuv's pool. Only "localhost" and
-- literal addresses are resolved (the specs never leave loopback).
local corio = require "corio"
local H = require "helper"

local REAL = { clock = "real" }

describe("resolve", function()
  it("resolves localhost to a list holding a loopback address", function()
    H.run(function()
      local list = assert(corio.resolve("localhost", { family = "inet" }))
      assert.is_true(#list >= 1)
      assert.equal("127.0.0.1", list[1])
    end, REAL)
  end)

  it("returns a literal address as is, without waiting", function()
    H.run(function()
      assert.same({ "127.0.0.1" }, corio.resolve("127.0.0.1"))
      assert.same({ "::1" }, corio.resolve("::1"))
      assert.equal(0, corio.stats().io_inflight)
    end, REAL)
  end)

  it("a cancelled resolve returns at once; the late answer is dropped safely", function()
    H.run(function()
      for _ = 1, 20 do
        local t = corio.spawn(function() return corio.resolve("localhost") end)
        corio.yield()
        t:cancel()
        local ok, err = t:wait()
        if not ok then assert.is_true(corio.is_cancelled(err)) end
      end
      assert.equal(0, corio.stats().io_inflight)
      corio.sleep(0.05) -- the pool finishes the abandoned lookups
    end, REAL)
  end)

  it("shows 'resolve' while waiting and rejects bad options", function()
    H.run(function()
      local seen = false
      -- a checker spawned right after the resolver runs in the same batch,
      -- while the lookup is on the pool (tried a few times: a fast pool
      -- may answer before the checker runs)
      for _ = 1, 20 do
        local r = corio.spawn(function() return corio.resolve("localhost") end)
        local c = corio.spawn(function()
          for _, i in ipairs(corio.tasks()) do
            if i.waiting_on == "resolve" then seen = true end
          end
        end)
        c:join()
        assert.is_table(r:join())
        if seen then break end
      end
      assert.is_true(seen)
      assert.has_error(function() corio.resolve("localhost", { family = "x" }) end)
      assert.has_error(function() corio.resolve("localhost", { bogus = 1 }) end,
        "bad option 'bogus' to 'resolve' (unknown option)")
    end, REAL)
  end)
end)
