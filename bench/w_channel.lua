-- Workload: one producer sends 1..n through a channel of capacity `cap`
-- to one consumer. Params: n, cap. Reports messages/s by the wall clock
-- (rate) and per CPU second of this process (cpu_rate).
local lib = require "bench.lib"

return function(rt, _, p)
  if not rt.channel then return "channel API missing" end
  local n, cap = p.n, p.cap
  local elapsed, cpu, sum
  rt.run(function()
    local ch = rt.channel(cap)
    local t0, c0 = lib.clock(), os.clock()
    local producer = rt.spawn(function()
      for i = 1, n do
        local ok, err = ch:send(i)
        if not ok then error("send failed: " .. tostring(err)) end
      end
    end)
    local consumer = rt.spawn(function()
      local s = 0
      for _ = 1, n do
        local v, err = ch:recv()
        if v == nil then error("recv failed: " .. tostring(err)) end
        s = s + v
      end
      return s
    end)
    sum = consumer:join()
    producer:join()
    elapsed, cpu = lib.clock() - t0, os.clock() - c0
  end)
  if sum ~= n * (n + 1) // 2 then error("consumer got a wrong sum: " .. tostring(sum)) end
  return { n = n, wall_s = elapsed, rate = n / elapsed, cpu_rate = n / cpu }
end
