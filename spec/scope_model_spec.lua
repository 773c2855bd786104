-- Property test: seeded random trees of scopes, timeouts, sleeps and
-- cancels run in corio on the virtual clock, checked against a plain Lua
-- model of the cancel-scope rules: which sleeps and tasks end how (ok,
-- cancelled, failed with a timeout) and at which virtual instant.
--
-- A tree is made of
--   sleep(d)                      a leaf: corio.sleep(d)
--   seq(n1, n2, ...)              the nodes one after the other
--   timeout(d, body)              corio.timeout(d, ...) around a node
--   scope(children, [cancel ca])  corio.scope: each child node is spawned
--                                 as a task; the body then returns, or
--                                 sleeps ca and calls s:cancel()
-- A timeout error is not caught: it fails the task it runs in, which fails
-- fast the scope around it, and so on up to the root.
--
-- Every duration is a whole number of seconds, so virtual times are exact;
-- a tree in which two timers would be due at the same instant is redrawn,
-- so that the model never has to order simultaneous events.
local corio = require "corio"
local H = require "helper"

local INF = math.huge
local SEEDS = 40

---------------------------------------------------------------- generator

-- Park-Miller: the same trees on every Lua version (math.random is not).
local function rng(seed)
  local x = seed % 2147483646 + 1
  local r = {}
  function r.int(lo, hi)
    x = x * 16807 % 2147483647
    return lo + x % (hi - lo + 1)
  end
  function r.chance(p) return r.int(1, 1000) <= p * 1000 end
  return r
end

local function generate(r)
  local next_id = 0
  local function id()
    next_id = next_id + 1
    return next_id
  end
  local function node(depth)
    local roll = r.int(1, 100)
    if depth == 0 or roll <= 30 then
      return { kind = "sleep", id = id(), d = r.int(1, 1000) }
    elseif roll <= 50 then
      local n = { kind = "seq", id = id() }
      for i = 1, r.int(1, 3) do n[i] = node(depth - 1) end
      return n
    elseif roll <= 70 then
      return { kind = "timeout", id = id(), d = r.int(1, 1500), body = node(depth - 1) }
    else
      local n = { kind = "scope", id = id(), children = {} }
      for i = 1, r.int(1, 3) do n.children[i] = node(depth - 1) end
      if r.chance(0.4) then n.ca = r.int(1, 1500) end
      return n
    end
  end
  local root = { kind = "scope", id = id(), children = {} }
  for i = 1, r.int(2, 3) do root.children[i] = node(3) end
  if r.chance(0.3) then root.ca = r.int(1, 2000) end
  return root
end

local function show(n)
  if n.kind == "sleep" then return ("sleep#%d(%d)"):format(n.id, n.d) end
  if n.kind == "timeout" then return ("timeout#%d(%d, %s)"):format(n.id, n.d, show(n.body)) end
  local parts = {}
  for i, c in ipairs(n.kind == "seq" and n or n.children) do parts[i] = show(c) end
  local extra = n.ca and (", cancel " .. n.ca) or ""
  return ("%s#%d[%s%s]"):format(n.kind, n.id, table.concat(parts, ", "), extra)
end

-------------------------------------------------------------------- model

-- eval(node, T, C, out): the node starts at T; C is the instant at which a
-- cancellation from outside reaches it (INF: never). Returns how it ends
-- ("ok", "cancelled" or "timeout", the error it raises) and when; records
-- every leaf (start, how, when), every spawned task (how, when) and every
-- timer armed into out.
local eval

local function new_out() return { leaves = {}, tasks = {}, timers = {} } end

local function merge(dst, src)
  for k, v in pairs(src.leaves) do dst.leaves[k] = v end
  for k, v in pairs(src.tasks) do dst.tasks[k] = v end
  for _, t in ipairs(src.timers) do dst.timers[#dst.timers + 1] = t end
end

local function eval_children(node, T, limit)
  local outs, res = {}, {}
  for i, c in ipairs(node.children) do
    outs[i] = new_out()
    res[i] = { eval(c, T, limit, outs[i]) }
  end
  return outs, res
end

local task_how = { ok = "done", cancelled = "cancelled", timeout = "failed" }

local function eval_scope(node, T, C, out)
  local cancel_at = node.ca and T + node.ca
  local limit = C
  if cancel_at then
    out.timers[#out.timers + 1] = cancel_at
    limit = math.min(C, cancel_at)
  end
  local outs, res = eval_children(node, T, limit)
  -- the first child failure cancels the rest of the scope at that instant
  local f, fi
  for i, r in ipairs(res) do
    if r[1] == "timeout" and (not f or r[2] < f) then f, fi = r[2], i end
  end
  if f then
    local outs2, res2 = eval_children(node, T, f)
    outs2[fi], res2[fi] = outs[fi], res[fi]
    outs, res = outs2, res2
  end
  for i, c in ipairs(node.children) do
    merge(out, outs[i])
    out.tasks[c.id] = { how = task_how[res[i][1]], t = res[i][2] }
  end
  if f then return "timeout", f end
  local ends = T -- the body returns at once, or sleeps until its cancel
  if cancel_at then ends = math.min(cancel_at, C) end
  for _, r in ipairs(res) do ends = math.max(ends, r[2]) end
  -- cancelled from outside: the scope raises the cancellation once all
  -- inside has finished (its exit is a checkpoint); its own s:cancel() is
  -- converted into a normal return
  if ends >= C then return "cancelled", C end
  return "ok", ends
end

function eval(node, T, C, out)
  assert(T < C, "model: a node started after its cancellation")
  if node.kind == "sleep" then
    local due = T + node.d
    out.timers[#out.timers + 1] = due
    if due < C then
      out.leaves[node.id] = { start = T, how = "ok", t = due }
      return "ok", due
    end
    out.leaves[node.id] = { start = T, how = "cancelled", t = C }
    return "cancelled", C
  elseif node.kind == "seq" then
    local t = T
    for _, c in ipairs(node) do
      local how, e = eval(c, t, C, out)
      if how ~= "ok" then return how, e end
      t = e
    end
    return "ok", t
  elseif node.kind == "timeout" then
    local deadline = T + node.d
    out.timers[#out.timers + 1] = deadline
    local how, e = eval(node.body, T, math.min(C, deadline), out)
    -- the boundary converts its own cancellation, lets any other through
    if how == "cancelled" and deadline < C then return "timeout", deadline end
    return how, e
  end
  return eval_scope(node, T, C, out)
end

-- The model's prediction, or nil when two timers would be due together.
local function predict(root)
  local out = new_out()
  local how, t = eval(root, 0, INF, out)
  local seen = {}
  for _, due in ipairs(out.timers) do
    if seen[due] then return nil end
    seen[due] = true
  end
  out.root = { how = how, t = t }
  out.timers = nil
  return out
end

------------------------------------------------------------------- corio

-- On Lua 5.1 a sleep cannot be wrapped in pcall, so a cancelled leaf
-- records only its start; the task around it still records how and when.
local function run_node(node, rec)
  if node.kind == "sleep" then
    local leaf = { start = corio.now() }
    rec.leaves[node.id] = leaf
    if H.can_pcall_yield then
      local ok, e = pcall(corio.sleep, node.d)
      leaf.how = ok and "ok" or (corio.is_cancelled(e) and "cancelled" or tostring(e))
      leaf.t = corio.now()
      if not ok then error(e, 0) end
    else
      corio.sleep(node.d)
      leaf.how, leaf.t = "ok", corio.now()
    end
  elseif node.kind == "seq" then
    for _, c in ipairs(node) do run_node(c, rec) end
  elseif node.kind == "timeout" then
    corio.timeout(node.d, run_node, node.body, rec)
  else
    corio.scope(function(s)
      for _, c in ipairs(node.children) do
        local t = s:spawn(run_node, c, rec)
        -- a watcher outside every scope notes when and how the task ends
        rec.watchers[#rec.watchers + 1] = corio.spawn(function()
          t:wait()
          rec.tasks[c.id] = { how = t:status(), t = corio.now() }
        end)
      end
      if node.ca then
        corio.sleep(node.ca)
        s:cancel()
      end
    end)
  end
end

local function observe(root)
  return H.run(function()
    local rec = { leaves = {}, tasks = {}, watchers = {} }
    local t = corio.spawn(run_node, root, rec)
    local ok, e = t:wait()
    rec.root = { how = ok and "ok" or (type(e) == "table" and e.kind or tostring(e)), t = corio.now() }
    for _, w in ipairs(rec.watchers) do w:join() end
    rec.watchers = nil
    return rec
  end)
end

-- What corio can be seen to do on this Lua version.
local function visible(expected)
  if H.can_pcall_yield then return expected end
  for _, leaf in pairs(expected.leaves) do
    if leaf.how ~= "ok" then leaf.how, leaf.t = nil, nil end
  end
  return expected
end

--------------------------------------------------------------------- specs

-- Draws trees from the seed's stream until one has no simultaneous timers.
local function tree_for(seed)
  local r = rng(seed)
  for _ = 1, 200 do
    local root = generate(r)
    local expected = predict(root)
    if expected then return root, expected end
  end
  error("no tree without simultaneous timers for seed " .. seed)
end

describe("cancel scopes against a model", function()
  it("the model itself predicts the documented rules on hand-written trees", function()
    -- timeout(5, scope[sleep 3, sleep 10]): the deadline cancels the scope
    local root = { kind = "timeout", id = 1, d = 5, body = { kind = "scope", id = 2, children = {
      { kind = "sleep", id = 3, d = 3 }, { kind = "sleep", id = 4, d = 10 } } } }
    local p = predict(root)
    assert.same({ how = "timeout", t = 5 }, p.root)
    assert.same({ start = 0, how = "ok", t = 3 }, p.leaves[3])
    assert.same({ start = 0, how = "cancelled", t = 5 }, p.leaves[4])
    assert.same({ how = "cancelled", t = 5 }, p.tasks[4])
    -- scope[timeout(2, sleep 9), sleep 7]: the child's timeout fails the scope
    root = { kind = "scope", id = 1, children = {
      { kind = "timeout", id = 2, d = 2, body = { kind = "sleep", id = 3, d = 9 } },
      { kind = "sleep", id = 4, d = 7 } } }
    p = predict(root)
    assert.same({ how = "timeout", t = 2 }, p.root)
    assert.same({ how = "failed", t = 2 }, p.tasks[2])
    assert.same({ how = "cancelled", t = 2 }, p.tasks[4])
    -- scope[sleep 4, seq[sleep 1, sleep 9]; cancel 3]: s:cancel() is converted
    root = { kind = "scope", id = 1, ca = 3, children = {
      { kind = "sleep", id = 2, d = 4 },
      { kind = "seq", id = 3, { kind = "sleep", id = 4, d = 1 }, { kind = "sleep", id = 5, d = 9 } } } }
    p = predict(root)
    assert.same({ how = "ok", t = 3 }, p.root)
    assert.same({ start = 1, how = "cancelled", t = 3 }, p.leaves[5])
    -- equal due times are refused
    assert.is_nil(predict({ kind = "timeout", id = 1, d = 2, body = { kind = "sleep", id = 2, d = 2 } }))
  end)

  for seed = 1, SEEDS do
    it(("ends every sleep and task as the model predicts, at the predicted virtual time (seed %d)")
      :format(seed), function()
      local root, expected = tree_for(seed)
      local actual = observe(root)
      assert.same(visible(expected), actual, "tree: " .. show(root))
    end)
  end
end)
