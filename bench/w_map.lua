-- corio.map against the loop people write by hand (a semaphore and a task
-- per item), corio only: items/s for N items, concurrency 10, where each
-- call yields once (so calls really overlap). Prints one line per variant
-- and the ratio; medians of RUNS (default 5) in this interpreter.
--   lua5.4 bench/w_map.lua [N]     (with corio on LUA_PATH/LUA_CPATH)
local corio = require "corio"
local N = tonumber(arg[1]) or 100000
local RUNS = tonumber(os.getenv("RUNS") or "") or 5

local function fn(x) corio.yield() return x * 2 end

local function by_map(items)
  return corio.map(items, fn, { concurrency = 10 })
end

local function by_hand(items)
  local sem, results = corio.semaphore(10), {}
  corio.scope(function(s)
    for i = 1, #items do
      local p = sem:acquire()
      s:spawn(function()
        results[i] = fn(items[i])
        p:release()
      end)
    end
  end)
  return results
end

local function rate(f)
  local items = {}
  for i = 1, N do items[i] = i end
  local r
  corio.run(function()
    local t0 = os.clock()
    local out = f(items)
    assert(out[N] == 2 * N)
    r = N / (os.clock() - t0)
  end)
  return r
end

local function median(f)
  local t = {}
  for i = 1, RUNS do t[i] = rate(f) end
  table.sort(t)
  return t[(RUNS + 1) // 2]
end

local m, h = median(by_map), median(by_hand)
print(("corio.map          %8.0f items/s"):format(m))
print(("semaphore by hand  %8.0f items/s"):format(h))
print(("map / by hand      %8.2f"):format(m / h))
