-- The "limit" implementation: bench/c/limit.c, a minimal C scheduler over
-- bare Lua coroutines (what is physically possible on this Lua), with the
-- API subset of bench/rt_luv.lua. Built here on first use, and again when
-- the source is newer than the module, into bench/out/limit.so with
-- `gcc -O2 -shared -fPIC` against BENCH_LUA_INC (default
-- /usr/include/lua5.4). Loading fails with the compiler's message when
-- the build fails, so bench/one.lua reports the implementation as skipped.
if _VERSION ~= "Lua 5.4" then error("limit needs Lua 5.4, not " .. _VERSION, 0) end

local root = debug.getinfo(1, "S").source:match("^@(.-)bench/rt_limit%.lua$") or ""
local src = root .. "bench/c/limit.c"
local dir = root .. "bench/out"
local lib = dir .. "/limit.so"
local inc = os.getenv("BENCH_LUA_INC") or "/usr/include/lua5.4"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Build into a temporary name, then rename: a process that loads the
-- module meanwhile never sees half a file.
local cmd = ("[ %s -nt %s ] || { mkdir -p %s && gcc -O2 -shared -fPIC -I%s -o %s.$$ %s " ..
  "&& mv -f %s.$$ %s; } 2>&1"):format(q(lib), q(src), q(dir), q(inc), q(lib), q(src), q(lib), q(lib))
local p = assert(io.popen(cmd, "r"))
local out = p:read("a")
if not p:close() then
  error("cannot build " .. src .. ": " .. (out:match("[^\n]*error[^\n]*") or out), 0)
end

local open, why = package.loadlib(lib, "luaopen_limit")
if not open then error("cannot load " .. lib .. ": " .. tostring(why), 0) end
return open()
