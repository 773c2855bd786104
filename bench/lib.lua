-- Helpers shared by the benchmark driver and the workloads: statistics,
-- per-process resource readings from /proc, and the RESULT line format.
local M = {}

--- Sorted copy of a numeric array.
local function sorted(xs)
  local s = table.move(xs, 1, #xs, 1, {})
  table.sort(s)
  return s
end

function M.median(xs)
  local n = #xs
  if n == 0 then return nil end
  local s = sorted(xs)
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

function M.mean(xs)
  local n, sum = #xs, 0
  if n == 0 then return nil end
  for i = 1, n do sum = sum + xs[i] end
  return sum / n
end

--- Nearest-rank percentile (p in 0..100) of an already sorted array.
function M.percentile_sorted(s, p)
  local n = #s
  if n == 0 then return nil end
  local rank = math.max(1, math.ceil(p / 100 * n))
  return s[math.min(rank, n)]
end

--- Summary of latency samples (seconds): mean, p50, p99, min, max.
function M.summary(xs)
  local s = sorted(xs)
  return {
    mean = M.mean(s), p50 = M.percentile_sorted(s, 50),
    p99 = M.percentile_sorted(s, 99), min = s[1], max = s[#s],
  }
end

--- A field of /proc/self/status in kB (VmRSS, VmHWM, ...).
function M.status_kb(field)
  local f = assert(io.open("/proc/self/status", "r"))
  local text = f:read("a")
  f:close()
  return tonumber(text:match(field .. ":%s*(%d+)"))
end

--- A wall-clock stopwatch in seconds that is the same for every
--- implementation, so rates never depend on how an implementation caches
--- its own clock: luv's hrtime, else cqueues' monotime, else CPU time.
M.clock = (function()
  local ok, uv = pcall(require, "luv")
  if ok then
    local hrtime = uv.hrtime
    return function() return hrtime() * 1e-9 end
  end
  local okc, cqueues = pcall(require, "cqueues")
  if okc then return cqueues.monotime end
  return os.clock
end)()

--- Full collection, then the Lua heap size in bytes.
function M.heap_bytes()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count") * 1024
end

--- Workload scale factor (BENCH_SCALE, default 1): shrinks counts for
--- quick trial runs; the driver records it in RESULTS.md.
function M.scale()
  return tonumber(os.getenv("BENCH_SCALE") or "") or 1
end

function M.scaled(n)
  return math.max(1, math.floor(n * M.scale() + 0.5))
end

--- Format a RESULT line from a flat table of numbers and words.
function M.result_line(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = { "RESULT" }
  for _, k in ipairs(keys) do
    local v = t[k]
    if math.type(v) == "float" then v = string.format("%.9g", v) end
    parts[#parts + 1] = k .. "=" .. tostring(v)
  end
  return table.concat(parts, " ")
end

--- The "## " sections of a report's text whose titles start with none of
--- `generated` (sections written by hand), as an array of lines in order.
function M.kept_sections(text, generated)
  local out, keep = {}, false
  for line in text:gmatch("([^\n]*)\n?") do
    local title = line:match("^## (.*)$")
    if title then
      keep = true
      for _, g in ipairs(generated) do
        if title:sub(1, #g) == g then keep = false end
      end
    end
    if keep then out[#out + 1] = line end
  end
  while out[#out] == "" do out[#out] = nil end
  return out
end

--- Parse "RESULT k=v ..." into a table (numbers converted), or nil.
function M.parse_result(line)
  local body = line:match("^RESULT%s+(.*)$")
  if not body then return nil end
  local t = {}
  for k, v in body:gmatch("([%w_]+)=(%S+)") do t[k] = tonumber(v) or v end
  return t
end

return M
