-- What crosses to a pool worker and back (csrc/marshal.c): every value
-- type round-trips, anything else is refused with the path that leads to
-- it. Each spec runs jobs for real (workers are threads), on the real
-- clock.
local corio = require "corio"
local H = require "helper"

local REAL = { clock = "real", workers = 2 }
local has_int = math.type ~= nil

local function echo(...) return ... end

local function run(fn, ...) return H.run(fn, REAL, ...) end

-- false, err from corio.blocking(fn, ...) run in a task of its own (the
-- error then carries that task's name; every version can catch it).
local function attempt(fn, ...)
  return corio.spawn(corio.blocking, fn, ...):wait()
end

-- The error raised by corio.blocking(fn, ...), as a string.
local function refused(fn, ...)
  local args = H.pack(...)
  return run(function()
    local ok, e = attempt(fn, H.unpack(args, 1, args.n))
    assert(not ok, "expected blocking to raise")
    return tostring(e)
  end)
end

describe("marshal", function()
  it("keeps integers and floats apart, with their exact values", function()
    if not has_int then return end
    local r = H.pack(run(function()
      return corio.blocking(function(a, b, c, d)
        return math.type(a), math.type(b), a, b, c, d
      end, 3, 3.0, math.maxinteger, math.mininteger)
    end))
    assert.same({ "integer", "float", 3, 3.0 }, { r[1], r[2], r[3], r[4] })
    assert.equal(math.maxinteger, r[5])
    assert.equal(math.mininteger, r[6])
    assert.equal("float", math.type(r[4]))
  end)

  it("round-trips nil, booleans, infinities, NaN and -0.0", function()
    local r = H.pack(run(function()
      local zero = 0.0
      return corio.blocking(echo, nil, true, false, 1 / 0, -1 / 0, 0 / 0, -zero, 0.1)
    end))
    assert.equal(8, r.n)
    assert.is_nil(r[1])
    assert.is_true(r[2])
    assert.is_false(r[3])
    assert.equal(1 / 0, r[4])
    assert.equal(-1 / 0, r[5])
    assert.is_true(r[6] ~= r[6])
    assert.equal(-1 / 0, 1 / r[7])
    assert.equal(0.1, r[8])
  end)

  it("keeps the count of values, trailing nils included", function()
    local n, a, b = run(function()
      return corio.blocking(function(...) return select("#", ...), ... end, nil, nil)
    end)
    assert.equal(2, n)
    assert.is_nil(a)
    assert.is_nil(b)
    local many = {}
    for i = 1, 200 do many[i] = i end
    local r = H.pack(run(function() return corio.blocking(echo, H.unpack(many)) end))
    assert.equal(200, r.n)
    assert.equal(200, r[200])
  end)

  it("copies strings byte for byte, embedded zeros and all 256 bytes", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    local s = table.concat(all) .. "\0tail\0"
    local big = string.rep("ab\0", 100000)
    local a, b, len = run(function()
      return corio.blocking(function(x, y) return x, y, #y end, s, big)
    end)
    assert.equal(s, a)
    assert.equal(big, b)
    assert.equal(300000, len)
  end)

  it("copies nested tables with string, number and boolean keys", function()
    local t = {
      1, 2, "three", { 4, { 5 } }, [10] = "ten", [-1] = "neg", [1.5] = "float",
      [true] = "yes", [false] = "no", name = "x", ["with space"] = { deep = { er = true } },
    }
    local r = run(function() return corio.blocking(echo, t) end)
    assert.same(t, r)
    assert.is_not.equal(t, r)
  end)

  it("keeps the holes of an array (nils are skipped, not shifted)", function()
    local r = run(function() return corio.blocking(echo, { 1, nil, 3, nil, 5 }) end)
    assert.equal(1, r[1])
    assert.is_nil(r[2])
    assert.equal(3, r[3])
    assert.equal(5, r[5])
  end)

  it("copies a table reached twice as two separate tables", function()
    local shared = { 1 }
    local same_in_worker, r = run(function()
      return corio.blocking(function(t) return t.a == t.b, t end, { a = shared, b = shared })
    end)
    assert.is_false(same_in_worker)
    assert.same({ 1 }, r.a)
    assert.is_not.equal(r.a, r.b)
  end)

  it("drops metatables (a copy is a plain table)", function()
    local obj = setmetatable({ x = 1 }, { __index = function() return "meta" end })
    local has_mt, y = run(function()
      return corio.blocking(function(o) return getmetatable(o) ~= nil, o.y end, obj)
    end)
    assert.is_false(has_mt)
    assert.is_nil(y)
  end)

  it("allows 64 levels of nested tables and refuses 65", function()
    local function chain(n)
      local t = {}
      local top = t
      for _ = 2, n do
        local c = {}
        t.c = c
        t = c
      end
      return top
    end
    local depth = run(function()
      return corio.blocking(function(t)
        local d = 0
        while t do d, t = d + 1, t.c end
        return d
      end, chain(64))
    end)
    assert.equal(64, depth)
    local msg = refused(echo, chain(65))
    assert.matches("args%[1%]" .. string.rep("%.c", 64) .. ": tables nested deeper than 64", msg)
  end)

  it("refuses functions, userdata and threads, naming the path", function()
    assert.matches("blocking: args%[2%]%.list%[3%]: function", refused(echo, 1, { list = { 1, 2, print } }))
    assert.matches("args%[1%]: userdata", refused(echo, io.stdout))
    assert.matches("args%[1%]%[\"a key\"%]: thread", refused(echo, { ["a key"] = coroutine.create(echo) }))
    assert.matches("args%[1%]%[true%]%[2%]: function", refused(echo, { [true] = { 1, print } }))
  end)

  it("refuses cycles, naming where the cycle closes", function()
    local c = {}
    c.self = c
    assert.matches("args%[1%]%.self: cycle", refused(echo, c))
    local d = { a = {} }
    d.a.b = { up = d.a }
    assert.matches("args%[1%]%.a%.b%.up: cycle", refused(echo, d))
  end)

  it("refuses tables and functions as keys", function()
    assert.matches("args%[1%]: table as a key", refused(echo, { [{}] = 1 }))
    assert.matches("args%[1%]%.k: function as a key", refused(echo, { k = { [print] = 1 } }))
  end)

  it("refuses a message over 64 MiB", function()
    local msg = refused(echo, string.rep("x", 64 * 1024 * 1024))
    assert.matches("args%[1%]: too large %(the limit is 64 MiB%)", msg)
  end)

  it("refuses results the same way, as a task error", function()
    local e = run(function()
      local _, err = attempt(function() return 1, { x = io.stdout } end)
      return err
    end)
    assert.is_true(corio.is_error(e, "task"))
    assert.matches("blocking: results%[2%]%.x: userdata", e.message)
    local e2 = run(function()
      local _, err = attempt(function() return print end)
      return err
    end)
    assert.matches("results%[1%]: function", e2.message)
  end)

  it("copies a corio-style error table raised by the job", function()
    local e = run(function()
      local _, err = attempt(function()
        error({ kind = "io", message = "disk on fire", code = "EIO", extra = { 1, 2 } })
      end)
      return err
    end)
    assert.is_true(corio.is_error(e, "io"))
    assert.equal("disk on fire", e.message)
    assert.equal("EIO", e.code)
    assert.same({ 1, 2 }, e.extra)
    assert.matches("stack traceback", e.traceback)
    assert.matches("^io: disk on fire %[EIO%]", tostring(e))
  end)

  it("turns an error value that cannot be copied into a readable message", function()
    local e = run(function()
      local _, err = attempt(function() error(print) end)
      return err
    end)
    assert.is_true(corio.is_error(e, "task"))
    assert.equal("(error object is a function value)", e.message)
  end)
end)
