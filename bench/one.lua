-- Runs one workload with one implementation in this (fresh) process and
-- prints one machine-readable line for bench/run.lua:
--   RESULT workload=spawn impl=corio rate=... cpu_s=... hwm_kb=...
-- or "SKIP <reason>" when the implementation or an API it needs is missing.
-- Usage: lua5.4 bench/one.lua WORKLOAD IMPL [key=value ...]
--   WORKLOAD names bench/w_WORKLOAD.lua; IMPL is corio, luv, cqueues, limit, bare
--   or c.
local root = arg[0]:match("^(.-)bench/one%.lua$") or ""
package.path = root .. "?.lua;" .. package.path

local lib = require "bench.lib"

local wname, impl = arg[1], arg[2]
if not (wname and impl) then
  io.stderr:write("usage: lua5.4 bench/one.lua WORKLOAD IMPL [key=value ...]\n")
  os.exit(2)
end

local params = {}
for i = 3, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  assert(k, "bad parameter: " .. arg[i])
  params[k] = math.tointeger(tonumber(v)) or tonumber(v) or v
end

local modules = {
  corio = "corio", luv = "bench.rt_luv", cqueues = "bench.rt_cqueues",
  limit = "bench.rt_limit",
}

local rt
-- "bare" and "c" (a C program the workload builds) need no Lua runtime,
-- nor do the clients of w_http that are not corio (copas, luasocket)
local no_runtime = { bare = true, c = true, copas = true, luasocket = true }
if not no_runtime[impl] then
  local ok, mod = pcall(require, assert(modules[impl], "unknown implementation"))
  if not ok then
    print("SKIP cannot load " .. impl .. ": " .. tostring(mod):gsub("\n.*", ""))
    return
  end
  rt = mod
end

local workload = require("bench.w_" .. wname)
local cpu0 = os.clock()
local res = workload(rt, impl, params)
local cpu = os.clock() - cpu0
if type(res) == "string" then
  print("SKIP " .. res)
  return
end
res.cpu_s = res.cpu_s or cpu
res.hwm_kb = lib.status_kb("VmHWM")
res.workload, res.impl = wname, impl
print(lib.result_line(res))
