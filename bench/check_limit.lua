-- Self-check of the "limit" implementation (bench/c/limit.c): results
-- and joins, FIFO ready queue, semaphore and channel hand-off order,
-- sleeps in deadline order and never early, errors and deadlocks abort
-- the run, leftover tasks are dropped. Usage: lua5.4 bench/check_limit.lua
local root = arg and arg[0] and arg[0]:match("^(.-)bench/check_limit%.lua$") or ""
package.path = root .. "?.lua;" .. package.path
local rt = require "bench.rt_limit"
-- results, args, multiple joiners
local a, b, c = rt.run(function(x, y)
  local t = rt.spawn(function(p, q) rt.yield() return p + q, "s", nil end, x, y)
  local got = {}
  local j1 = rt.spawn(function() got[1] = table.pack(t:join()) end)
  local j2 = rt.spawn(function() got[2] = table.pack(t:join()) end)
  j1:join(); j2:join()
  assert(got[1].n == 3 and got[1][1] == 3 and got[1][2] == "s" and got[2][1] == 3, "joiners")
  local r = table.pack(t:join()) -- already done
  assert(r.n == 3 and r[1] == 3)
  return 1, 2, 3
end, 1, 2)
assert(a == 1 and b == 2 and c == 3)
-- FIFO order of the ready queue, semaphore hand-off order
local order = {}
rt.run(function()
  local sem = rt.semaphore(1)
  local ts = {}
  for i = 1, 5 do ts[i] = rt.spawn(function()
    local p = sem:acquire(); assert(p == sem)
    order[#order + 1] = i; rt.yield(); p:release() end) end
  for i = 1, 5 do ts[i]:join() end
end)
assert(table.concat(order, ",") == "1,2,3,4,5", table.concat(order, ","))
-- channel: order, values including false, blocking both sides, cap 1..3
for cap = 1, 3 do
  local got = {}
  rt.run(function()
    local ch = rt.channel(cap)
    local p = rt.spawn(function()
      for i = 1, 50 do assert(ch:send(i % 7 == 0 and false or i) == true) end
    end)
    local q = rt.spawn(function()
      for _ = 1, 50 do
        got[#got + 1] = ch:recv()
        if #got % 5 == 0 then rt.yield() end
      end
    end)
    p:join(); q:join()
  end)
  for i = 1, 50 do assert(got[i] == (i % 7 == 0 and false or i), "chan " .. cap .. " at " .. i) end
end
-- two producers two consumers
local sum = 0
rt.run(function()
  local ch = rt.channel(2)
  local ts = {}
  for _ = 1, 2 do ts[#ts + 1] = rt.spawn(function() for i = 1, 1000 do ch:send(i) end end) end
  for _ = 1, 2 do ts[#ts + 1] = rt.spawn(function() for _ = 1, 1000 do local v = ch:recv(); sum = sum + v end end) end
  for _, t in ipairs(ts) do t:join() end
end)
assert(sum == 2 * 500500, sum)
-- sleep order and never early
local seq = {}
rt.run(function()
  local ts = {}
  for i, d in ipairs({ 0.03, 0.01, 0.02, 0.01 }) do
    ts[i] = rt.spawn(function() local t0 = rt.now(); rt.sleep(d); assert(rt.now() - t0 >= d); seq[#seq + 1] = i end)
  end
  for _, t in ipairs(ts) do t:join() end
end)
assert(table.concat(seq, ",") == "2,4,3,1", table.concat(seq, ","))
-- error aborts; deadlock detected; a later run still works
local ok, err = pcall(rt.run, function() local t = rt.spawn(function() error("boom") end); t:join() end)
assert(not ok and err:find("boom") and err:find("traceback"), err)
ok, err = pcall(rt.run, function() rt.semaphore(0):acquire() end)
assert(not ok and err:find("deadlock"), err)
ok, err = pcall(rt.yield)
assert(not ok and err:find("not called from a task"), err)
assert(rt.run(function() rt.yield() return "again" end) == "again")
-- leftover sleepers dropped, memory reclaimed
rt.run(function() for _ = 1, 1000 do rt.spawn(rt.sleep, 3600) end rt.yield() end)
collectgarbage(); collectgarbage()
assert(collectgarbage("count") < 1000, collectgarbage("count"))
print("limit ok")
