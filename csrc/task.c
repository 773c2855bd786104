/*
 * task.c: tasks (corio.Task) and the await protocol.
 *
 * A task is a userdata holding struct corio_task (a corio_kid when it was
 * spawned into a scope). While a task has not finished, a slot of the
 * runtime's slot table anchors it and its coroutine, so parked tasks
 * nobody holds still run. When it finishes, its outcome (results, or one
 * error object) stays on the top of its dead coroutine's stack: join/wait
 * copy it from there, so joining twice returns the same values and costs
 * no allocation. A coroutine that returned normally is reused (Lua 5.3+):
 * its single result, if any, is kept apart, and the coroutine goes to the
 * runtime's idle pool for the next spawn.
 *
 * Where a finished task's outcome is kept (its coroutine, or its moved
 * result) depends on the version. Lua 5.4 gives a task no user value,
 * which saves 24 bytes a task: a weak-key table (an ephemeron, so the
 * entry goes when the task does) maps the task to it. Before 5.4 user
 * values live in a table anyway: user value 1 is the coroutine, replaced
 * by the result when it moves. The name and the spawn site are user
 * values after those.
 */
#include "corio.h"
#include <stdlib.h>
#include <string.h>


/* A task object has no finalizer, since finalizers make every object
   cost more to collect and only a task that failed with nobody observing
   it has something to do when collected. Such a task gets a small new
   object with a finalizer (TASK_FAIL_MT) that only its coroutine's stack
   holds, so it is collected with the task. (Giving the old task object a
   __gc metatable instead costs Lua 5.3/5.4 a walk over every object made
   since the task: quadratic when thousands of tasks fail in a batch.) */
#define TASK_MT "corio.Task"
#define TASK_FAIL_MT "corio.TaskFailure"

corio_task *corio_check_task(lua_State *L, int idx) {
  return (corio_task *)luaL_checkudata(L, idx, TASK_MT);
}

static int task_finished(const corio_task *t) { return t->state >= CORIO_DONE; }

const char *corio_task_status(const corio_task *t) {
  static const char *const names[] = {"ready", "running", "waiting",
                                      "done", "failed", "cancelled"};
  return names[t->state];
}

/* Coroutines are reused where a dead one can run a new function through
   the C API and its hooks can be reset (5.3, 5.4). 5.1 and LuaJIT keep a
   thread's environment (setfenv) with it, so there each task gets its
   own. */
#if LUA_VERSION_NUM >= 503
#define TASK_REUSE 1
#else
#define TASK_REUSE 0
#endif

#define TASK_UVS CORIO_TASK_UVS
#define TASK_UV_NAME CORIO_TASK_UV_NAME
#define TASK_UV_SITE CORIO_TASK_UV_SITE
/* slot table entries per task: the task, and its coroutine when no user
   value anchors that */
#define TASK_WIDTH (TASK_UVS ? 1 : 2)

/* The 120 bytes the memory benchmark counts on (corio.h). */
typedef char task_size_check[sizeof(void *) != 8 ||
                             sizeof(corio_task) <= 120 ? 1 : -1];

#if !TASK_UVS
/* registry key of the weak-key table task -> kept outcome; one per Lua
   state, so a task joined after its runtime is gone still has it */
static const char task_kept = 'k';

/* kept[task at idx] = value on top (popped) */
static void aux_keep(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &task_kept);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 2);
}

static void aux_push_kept(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &task_kept);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  lua_remove(L, -2);
}

/* A moved result that is not collectable (the common nil, boolean or
   number) stays in the task itself, costing no table entry: its bits in
   the timer's `due` (disarmed for good once the task finished), its kind
   in wait_arg. Anything else is in task_kept (RES_KEPT). */
enum { RES_KEPT, RES_NIL, RES_FALSE, RES_TRUE, RES_INT, RES_FLT, RES_PTR };

static int aux_res_kind(lua_State *co, int idx) {
  switch (lua_type(co, idx)) {
  case LUA_TNIL: return RES_NIL;
  case LUA_TBOOLEAN: return lua_toboolean(co, idx) ? RES_TRUE : RES_FALSE;
  case LUA_TNUMBER:
    if (lua_isinteger(co, idx)) return RES_INT;
    return sizeof(lua_Number) <= sizeof(uint64_t) ? RES_FLT : RES_KEPT;
  case LUA_TLIGHTUSERDATA: return RES_PTR;
  default: return RES_KEPT;
  }
}

/* Moves the result on top of co (if n) into t, as aux_res_kind says. */
static void aux_res_store(corio_task *t, lua_State *co, int n) {
  uint64_t bits = 0;
  int kind = n ? aux_res_kind(co, -1) : RES_NIL;
  if (kind == RES_INT) {
    lua_Integer i = lua_tointeger(co, -1);
    memcpy(&bits, &i, sizeof i);
  } else if (kind == RES_FLT) {
    lua_Number x = lua_tonumber(co, -1);
    memcpy(&bits, &x, sizeof x);
  } else if (kind == RES_PTR) {
    bits = (uint64_t)(uintptr_t)lua_touserdata(co, -1);
  }
  t->timer.due = bits;
  t->wait_arg = kind;
}

/* Pushes t's moved result (t at idx of L). */
static void aux_res_push(lua_State *L, corio_task *t, int idx) {
  uint64_t bits = t->timer.due;
  switch (t->wait_arg) {
  case RES_NIL: lua_pushnil(L); break;
  case RES_FALSE: lua_pushboolean(L, 0); break;
  case RES_TRUE: lua_pushboolean(L, 1); break;
  case RES_INT: {
    lua_Integer i;
    memcpy(&i, &bits, sizeof i);
    lua_pushinteger(L, i);
    break;
  }
  case RES_FLT: {
    lua_Number x;
    memcpy(&x, &bits, sizeof x);
    lua_pushnumber(L, x);
    break;
  }
  case RES_PTR: lua_pushlightuserdata(L, (void *)(uintptr_t)bits); break;
  default: aux_push_kept(L, idx);
  }
}
#endif

void corio_task_slots_init(lua_State *L, corio_rt *rt) {
  lua_newtable(L);
  rt->slots_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* weak values: idle coroutines live until the next collection, like
     any garbage, so a burst of tasks leaves no memory held for long */
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  rt->idle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* The live tasks (slot_task) in spawn order: see corio.h. */
static int aux_live_cmp(const void *a, const void *b) {
  lua_Integer x = ((const corio_live *)a)->id, y = ((const corio_live *)b)->id;
  return x < y ? -1 : x > y;
}

int corio_live_list(lua_State *L, corio_rt *rt, corio_live **out) {
  int k, n = 0;
  corio_live *v = (corio_live *)lua_newuserdata(
      L, (size_t)(rt->n_live > 0 ? rt->n_live : 1) * sizeof *v);
  for (k = 1; k <= rt->slot_top && n < rt->n_live; k++) {
    corio_task *t = rt->slot_task[k];
    if (!t) continue;
    v[n].slot = k;
    v[n++].id = t->id;
  }
  qsort(v, (size_t)n, sizeof *v, aux_live_cmp);
  *out = v;
  return n;
}

corio_task *corio_live_get(corio_rt *rt, const corio_live *e) {
  corio_task *t = rt->slot_task ? rt->slot_task[e->slot] : NULL;
  return t && t->id == e->id ? t : NULL;
}

/* Pushes an idle coroutine onto L and returns it, or NULL (none left).
   The pool's table is weak: entries the collector cleared are skipped. */
static lua_State *aux_idle_take(lua_State *L, corio_rt *rt) {
  lua_State *co = NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->idle_ref);
  while (rt->nidle && !co) {
    lua_rawgeti(L, -1, rt->nidle--);
    co = lua_tothread(L, -1);
    if (!co) lua_pop(L, 1);
  }
  if (co) lua_remove(L, -2);
  else lua_pop(L, 1);
  return co;
}

void corio_task_slots_free(lua_State *L, corio_rt *rt) {
  if (rt->slots_ref > 0) luaL_unref(L, LUA_REGISTRYINDEX, rt->slots_ref);
  if (rt->idle_ref > 0) luaL_unref(L, LUA_REGISTRYINDEX, rt->idle_ref);
  rt->slots_ref = rt->idle_ref = LUA_NOREF;
  rt->nidle = 0;
  free(rt->slot_free);
  free(rt->slot_task);
  rt->slot_free = NULL;
  rt->slot_task = NULL;
  rt->slot_nfree = rt->slot_cap = 0;
}

/* Anchors task t, on top of L below its coroutine when TASK_WIDTH is 2
   (both popped), in a free slot; returns it. The slot is taken only once
   the stores succeeded (they may raise: memory). */
static int aux_slot_anchor(lua_State *L, corio_rt *rt, corio_task *t) {
  int i, slot = rt->slot_nfree ? rt->slot_free[rt->slot_nfree - 1]
                               : rt->slot_top + 1;
  if (!rt->slot_nfree && slot > rt->slot_cap) { /* room to free it later */
    int cap = rt->slot_cap ? rt->slot_cap * 2 : 256;
    int *p = (int *)realloc(rt->slot_free, (size_t)cap * sizeof *p);
    corio_task **q;
    if (!p) luaL_error(L, "spawn: not enough memory");
    rt->slot_free = p;
    q = (corio_task **)realloc(rt->slot_task, (size_t)(cap + 1) * sizeof *q);
    if (!q) luaL_error(L, "spawn: not enough memory");
    memset(q + rt->slot_cap + (rt->slot_cap > 0), 0,
           (size_t)(cap + 1 - rt->slot_cap - (rt->slot_cap > 0)) * sizeof *q);
    rt->slot_task = q;
    rt->slot_cap = cap;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->slots_ref);
  for (i = TASK_WIDTH; i >= 1; i--) {
    lua_pushvalue(L, i - TASK_WIDTH - 2);
    lua_rawseti(L, -2, TASK_WIDTH * (slot - 1) + i);
  }
  lua_pop(L, 1 + TASK_WIDTH);
  if (rt->slot_nfree) rt->slot_nfree--;
  else rt->slot_top = slot;
  rt->slot_task[slot] = t;
  return slot;
}

/* A table's array part never shrinks, so after a burst of tasks the slot
   table (and the C arrays) would keep its size for good: once a quarter
   or less of the slots are live, the live tasks move to a new table of
   their size, in spawn-slot order. Amortized O(1) a finish. */
static void aux_slot_compact(lua_State *L, corio_rt *rt) {
  int i, k, m = 0, cap = 256;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->slots_ref);
  lua_createtable(L, TASK_WIDTH * (int)rt->n_live, 0);
  for (k = 1; k <= rt->slot_top; k++) {
    corio_task *t = rt->slot_task[k];
    if (!t) continue;
    m++;
    for (i = 1; i <= TASK_WIDTH; i++) {
      lua_rawgeti(L, -2, TASK_WIDTH * (k - 1) + i);
      lua_rawseti(L, -2, TASK_WIDTH * (m - 1) + i);
    }
    rt->slot_task[k] = NULL;
    rt->slot_task[m] = t;
    t->ref = m;
  }
  lua_rawseti(L, LUA_REGISTRYINDEX, rt->slots_ref);
  lua_pop(L, 1);
  rt->slot_top = m;
  rt->slot_nfree = 0;
  while (cap < m) cap *= 2;
  if (cap < rt->slot_cap) { /* a failed shrink keeps the larger block */
    corio_task **q = (corio_task **)realloc(rt->slot_task,
                                            (size_t)(cap + 1) * sizeof *q);
    int *p;
    if (!q) return;
    rt->slot_task = q;
    p = (int *)realloc(rt->slot_free, (size_t)cap * sizeof *p);
    if (p) rt->slot_free = p;
    rt->slot_cap = cap;
  }
}

static void aux_slot_release(lua_State *L, corio_rt *rt, int slot) {
  int i;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->slots_ref);
  for (i = 1; i <= TASK_WIDTH; i++) {
    lua_pushnil(L);
    lua_rawseti(L, -2, TASK_WIDTH * (slot - 1) + i);
  }
  lua_pop(L, 1);
  rt->slot_task[slot] = NULL;
  rt->slot_free[rt->slot_nfree++] = slot; /* cap >= slot_top */
  if (rt->slot_top >= 1024 && rt->n_live * 4 < rt->slot_top)
    aux_slot_compact(L, rt);
}

void corio_task_push(lua_State *L, corio_task *t) {
  if (t->ref > 0 && t->rt) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->rt->slots_ref);
    lua_rawgeti(L, -1, TASK_WIDTH * (t->ref - 1) + 1);
    lua_remove(L, -2);
  } else {
    lua_pushnil(L);
  }
}

const char *corio_task_name(lua_State *L, corio_task *t) {
  corio_task_push(L, t);
  if (!lua_isnil(L, -1)) {
    corio_getuv(L, -1, TASK_UV_NAME);
    lua_remove(L, -2);
    if (lua_isstring(L, -1)) return lua_tostring(L, -1);
  }
  lua_pop(L, 1);
  return lua_pushfstring(L, "task#%d", (int)t->id);
}

/* ------------------------------------------------------ cancellation */

corio_scope *corio_task_cancelled_by(const corio_task *t) {
  const corio_task *owner = t; /* whose scopes the walk is in */
  corio_scope *s = t->scope ? t->scope : corio_task_parent(t);
  for (;;) {
    if (!s || s->owner != owner) { /* leaving owner's own scopes */
      if (owner->flags & CORIO_TF_CANCEL) return CORIO_SELF_CANCEL;
      if (!s) return NULL;
      owner = s->owner;
    }
    if (s->cancelled || s->inherited) return s;
    if (s->kind == CORIO_SCOPE_SHIELD) return NULL;
    s = s->parent;
  }
}

void corio_push_cancel(lua_State *L, corio_scope *by) {
  if (by != CORIO_SELF_CANCEL && (by->expired || by->inherited == 2))
    corio_error_push(L, "cancelled", NULL, "cancelled: deadline exceeded");
  else
    corio_error_push(L, "cancelled", NULL, "task cancelled");
}

/* The scope cancelling t at a checkpoint: like corio_task_cancelled_by,
   but a deadline that has passed counts even when its timer has not run
   yet (CPU work kept the scheduler from it), so every wait is a
   checkpoint. The clock is read only when some scope on the way has a
   deadline. */
corio_scope *corio_task_checkpoint(corio_task *t) {
  const corio_task *owner = t;
  corio_scope *s = t->scope ? t->scope : corio_task_parent(t);
  uint64_t now = 0;
  int have_now = 0;
  for (;;) {
    if (!s || s->owner != owner) {
      if (owner->flags & CORIO_TF_CANCEL) return CORIO_SELF_CANCEL;
      if (!s) return NULL;
      owner = s->owner;
    }
    if (!s->cancelled && corio_timer_armed(&s->deadline)) {
      if (!have_now) {
        now = corio_now_ns(t->rt);
        have_now = 1;
      }
      if (s->deadline.due <= now) {
        corio_timer_disarm(t->rt, &s->deadline);
        corio_scope_on_deadline(t->rt, &s->deadline);
      }
    }
    if (s->cancelled || s->inherited) return s;
    if (s->kind == CORIO_SCOPE_SHIELD) return NULL;
    s = s->parent;
  }
}

void corio_task_poke(corio_task *t) {
  corio_scope *by = corio_task_cancelled_by(t);
  if (by) corio_task_poke_by(t, by);
}

void corio_task_poke_by(corio_task *t, corio_scope *by) {
  if (t->state == CORIO_WAITING) {
    if (t->wait.abort && !t->wait.abort(t, 0)) return;
  } else if (t->state == CORIO_READY && (t->flags & CORIO_TF_WOKEN)) {
    if (t->wait.abort && !t->wait.abort(t, 1)) return;
    lua_pop(t->co, t->nargs);
  } else {
    return; /* running, or not started: its next await raises */
  }
  lua_checkstack(t->co, 3);
  corio_push_cancel(t->co, by);
  corio_wake_raise(t);
}

/* ---------------------------------------------------- await protocol */

/* Why L cannot wait here: raises naming fname. */
static void aux_cannot_wait(lua_State *L, const char *fname) {
  corio_rt *rt = corio_ctx_get(L)->rt;
  corio_task *t = rt ? rt->current : NULL;
  if (!t)
    luaL_error(L, "%s: not inside a corio task (call it from a function "
               "run by corio.run or corio.spawn)", fname);
  if (t->co != L)
    luaL_error(L, "%s: cannot wait inside a nested coroutine (only the "
               "task's own coroutine can wait)", fname);
  luaL_error(L, "%s: cannot wait across a C call boundary (pcall on Lua "
             "5.1, a metamethod, iterator or callback run by C)", fname);
}

corio_task *corio_await_begin_nocancel(lua_State *L, const char *fname) {
  corio_task *t = corio_task_running(L);
  if (!t || !corio_isyieldable(t->rt->ctx->vm_isyieldable, L))
    aux_cannot_wait(L, fname);
  return t;
}

corio_task *corio_await_begin(lua_State *L, const char *fname) {
  corio_task *t = corio_await_begin_nocancel(L, fname);
  corio_scope *by = corio_task_checkpoint(t);
  if (by) {
    corio_push_cancel(L, by);
    lua_error(L);
  }
  return t;
}

#ifdef CORIO_YIELDK
/* Continuation of every await: return what the waker handed over, or
   raise it when it starts with the raise mark. */
static int await_k(lua_State *L, int status, lua_KContext ctx) {
  int base = (int)ctx, n = lua_gettop(L) - base;
  (void)status;
  if (!corio_task_running(L)) /* resumed by coroutine.resume */
    return luaL_error(L, "corio: a waiting task was resumed by "
                      "coroutine.resume, not by the scheduler");
  if (n >= 2 && lua_touserdata(L, base + 1) == (void *)&corio_raise_mark) {
    lua_pushvalue(L, base + 2);
    return lua_error(L);
  }
  return n;
}
#endif

#ifdef CORIO_YIELDK
/* Continuation of corio_await_retry: the retry mark on top means "start
   over" (the resource the call waited for was granted): the original
   arguments are below it, and the function is in the context. */
static int retry_k(lua_State *L, int status, lua_KContext ctx) {
  lua_CFunction fn;
  (void)status;
  if (!corio_task_running(L))
    return luaL_error(L, "corio: a waiting task was resumed by "
                      "coroutine.resume, not by the scheduler");
  if (lua_touserdata(L, -1) == (void *)&corio_retry_mark) {
    lua_pop(L, 1);
    memcpy(&fn, &ctx, sizeof fn);
    return fn(L);
  }
  if (lua_gettop(L) >= 2 &&
      lua_touserdata(L, -2) == (void *)&corio_raise_mark)
    return lua_error(L);
  return 2; /* the wait timed out: nil, err */
}
#endif

/* Fills in the wait record of t (what, how to undo it, its deadline).
   A budget slot t was handed and did not claim goes back first: the
   record's obj named that budget. */
static void aux_wait_record(corio_task *t, const char *what,
                            corio_abort_fn abort, void *obj,
                            double timeout) {
  if (t->flags & CORIO_TF_GRANTED) corio_budget_unclaimed(t);
  t->wait.what = what;
  t->wait.abort = abort;
  t->wait.obj = obj;
  t->state = CORIO_WAITING;
  if (timeout >= 0) {
    corio_timer_set_kind(&t->timer, CORIO_TIMER_WAIT);
    corio_timer_arm(t->rt, &t->timer, corio_deadline(t->rt, timeout));
  }
}

int corio_await_retry(lua_State *L, corio_task *t, lua_CFunction fn,
                      const char *what, corio_abort_fn abort, void *obj,
                      double timeout) {
  aux_wait_record(t, what, abort, obj, timeout);
#ifdef CORIO_YIELDK
  {
    lua_KContext ctx;
    typedef char fn_fits[sizeof fn == sizeof ctx ? 1 : -1];
    (void)sizeof(fn_fits);
    memcpy(&ctx, &fn, sizeof ctx);
    return lua_yieldk(L, 0, ctx, retry_k);
  }
#else
  (void)fn; /* the Lua wrapper calls again (corio_setfuncs, await 2) */
  return lua_yield(L, 0);
#endif
}

void corio_wake_retry(corio_task *t) {
  lua_pushlightuserdata(corio_wake_stack(t, 1), (void *)&corio_retry_mark);
  corio_wake(t, 1);
}

static int aux_park(lua_State *L) {
#ifdef CORIO_YIELDK
  return lua_yieldk(L, 0, (lua_KContext)lua_gettop(L), await_k);
#else
  return lua_yield(L, 0);
#endif
}

int corio_await(lua_State *L, corio_task *t, const char *what,
                corio_abort_fn abort, void *obj, double timeout) {
  aux_wait_record(t, what, abort, obj, timeout);
  return aux_park(L);
}

int corio_yield_now(lua_State *L, corio_task *t) {
  if (t->flags & CORIO_TF_GRANTED) corio_budget_unclaimed(t);
  t->wait.what = "yield";
  t->wait.abort = NULL;
  t->wait.obj = NULL;
  t->nargs = 0;
  t->state = CORIO_READY;
  t->flags |= CORIO_TF_WOKEN;
  corio_rt_push_ready(t->rt, t);
  return aux_park(L);
}

lua_State *corio_wake_stack(corio_task *t, int n) {
  if (!lua_checkstack(t->co, n + 3)) {
    /* raise on the thread running now: the waking task's, or the
       scheduler's (timers, finishing tasks) */
    corio_rt *rt = t->rt;
    luaL_error(rt->current ? rt->current->co : rt->L,
               "corio: too many values to hand to a task (%d)", n);
  }
  return t->co;
}

void corio_wake(corio_task *t, int nres) {
  if (corio_timer_armed(&t->timer)) corio_timer_disarm(t->rt, &t->timer);
  corio_list_remove(&t->link);
  t->nargs = nres;
  t->state = CORIO_READY;
  t->flags |= CORIO_TF_WOKEN;
  corio_rt_push_ready(t->rt, t);
}

void corio_wake_raise(corio_task *t) {
  lua_pushlightuserdata(t->co, (void *)&corio_raise_mark);
  lua_insert(t->co, -2);
  t->wait.abort = NULL;
  corio_wake(t, 2);
}

/* ------------------------------------------------------------- spawn */

/* Whether source is one of corio's own Lua files (lua/corio/NAME.lua, as
   installed: ".../corio/<name>.lua") or its 5.1 wrappers ("=corio"). */
static int aux_own_source(const char *source) {
  const char *p = strstr(source, "/corio/");
  if (strcmp(source, "=corio") == 0) return 1;
  if (!p || source[0] != '@') return 0;
  p += 7;
  return strchr(p, '/') == NULL && strlen(p) > 4 &&
         strcmp(p + strlen(p) - 4, ".lua") == 0;
}

/* Pushes "source:line" of the Lua code that called spawn, skipping
   corio's own Lua layer (map, the combinators and corio.test spawn on
   the user's behalf). */
static void aux_push_site(lua_State *L, corio_task *cur) {
  lua_State *co = L;
  lua_Debug ar;
  int level = 1;
  for (;;) {
    for (; lua_getstack(co, level, &ar); level++) {
      if (!lua_getinfo(co, "Sl", &ar)) break;
      if (ar.currentline < 0) continue; /* a C function */
      if (aux_own_source(ar.source)) continue;
      lua_pushfstring(L, "%s:%d", ar.short_src, ar.currentline);
      return;
    }
    /* the body of a PUC 5.1 protected call: go on in its caller's stack */
    if (!cur || !(cur->flags & CORIO_TF_INLINE) || !corio_task_parent(cur) ||
        !corio_task_parent(cur)->owner)
      break;
    cur = corio_task_parent(cur)->owner;
    co = cur->co;
    level = 0;
  }
  lua_pushliteral(L, "?");
}

/* The child (on top of L) starts with a shallow copy of its parent's
   context, so a value set before the spawn tags the child's work, and
   what either sets afterwards stays its own (siblings are isolated). */
static void aux_inherit_context(lua_State *L, corio_rt *rt,
                                corio_task *parent) {
  int child = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->context_ref);
  corio_task_push(L, parent);
  lua_rawget(L, -2);
  if (lua_istable(L, -1)) {
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, -3)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    }
    lua_pushvalue(L, child);
    lua_insert(L, -2);
    lua_rawset(L, -4); /* contexts[child] = copy */
  }
  lua_settop(L, child);
}

corio_task *corio_task_spawn(lua_State *L, corio_rt *rt, int fnidx, int nargs,
                             const char *name, corio_scope *parent) {
  int i, top = lua_gettop(L), u = top + 1;
  int site = rt->debug || rt->trace_ref != LUA_NOREF;
  size_t size = parent ? sizeof(corio_kid) : sizeof(corio_task);
  /* user values (TASK_UVS) then the name, only when given, and where it
     was spawned, only in debug mode or while tracing (finding the line
     costs ~8% of a spawn) */
  corio_task *t = (corio_task *)corio_newudata(
      L, size, TASK_UVS + (site ? 2 : name ? 1 : 0));
  memset(t, 0, size);
  t->ref = LUA_NOREF;
  t->timer.index = -1;
  corio_list_init(&t->link);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ctx->mt_ref[CORIO_MTR_TASK]);
  lua_setmetatable(L, u);
  if (name) {
    lua_pushstring(L, name);
    corio_setuv(L, u, TASK_UV_NAME);
  }
  if (site) {
    aux_push_site(L, rt->current && rt->current->co == L ? rt->current
                                                          : NULL);
    corio_setuv(L, u, TASK_UV_SITE);
  }
  if (!rt->nidle || !(t->co = aux_idle_take(L, rt)))
    t->co = lua_newthread(L);
  else /* a hook set on it, by its last task or while idle, goes */
    lua_sethook(t->co, NULL, 0, 0);
#if TASK_UVS
  corio_setuv(L, u, 1);
#endif
  if (!lua_checkstack(t->co, nargs + 1)) /* raise on L, the running one */
    luaL_error(L, "spawn: too many arguments (%d)", nargs);
  lua_pushvalue(L, fnidx);
  lua_xmove(L, t->co, 1);
  for (i = top - nargs + 1; i <= top; i++) {
    lua_pushvalue(L, i);
    lua_xmove(L, t->co, 1);
  }
  lua_pushvalue(L, u);
#if !TASK_UVS
  lua_pushvalue(L, u + 1); /* the coroutine */
#endif
  t->ref = aux_slot_anchor(L, rt, t);
  lua_settop(L, u);
  t->rt = rt;
  t->id = rt->ctx->next_id++;
  t->nargs = nargs;
  t->state = CORIO_READY;
  /* main has returned and the rest are being cancelled: a task spawned by
     their cleanup starts cancelled too, or run could never return */
  if (rt->reaping && !parent) t->flags |= CORIO_TF_CANCEL;
  /* (a nursery child is cancelled through its owner, which is: unless
     a shield keeps that out) */
  if (parent) {
    corio_kid *k = corio_kid_of(t);
    t->flags |= CORIO_TF_KID;
    k->parent = parent;
    corio_list_push(&parent->tasks, &k->scope_link);
    parent->nchildren++;
  }
  rt->n_spawned++;
  rt->n_live++;
  t->born = rt->virtual_clock ? rt->vnow : rt->tick_ns;
  corio_rt_push_ready(rt, t);
  if (parent && parent->inline_call) t->flags |= CORIO_TF_INLINE;
  else if (rt->context_ref != LUA_NOREF && rt->current)
    aux_inherit_context(L, rt, corio_task_logical(rt->current));
  if (rt->trace_ref != LUA_NOREF) corio_trace(L, rt, "spawn", t);
  return t;
}

/* ------------------------------------------------------------ finish */

/* Turn the raw error on top of t->co into the task's error object, left
   alone on t->co. Takes the traceback first, then runs the task's pending
   to-be-closed variables (Lua 5.4), whose own error would replace it.
   A task that ends by its own cancellation gets no traceback: nobody
   reports a cancelled task, and building one (5.4 searches every loaded
   module to name functions) would dominate the cost of unwinding a large
   cancelled tree. */
static void aux_task_error(lua_State *L, corio_task *t) {
  lua_State *co = t->co;
  corio_task *running = t->rt->current;
  if (corio_is_error(co, -1, "cancelled") && corio_task_cancelled_by(t))
    lua_pushnil(L);
  else /* lua_tostring would turn a number error into a string in place */
    luaL_traceback(L, co, lua_type(co, -1) == LUA_TSTRING
                              ? lua_tostring(co, -1) : NULL, 0);
  lua_pushvalue(co, -1);
  lua_xmove(co, L, 1); /* L: traceback, raw error */
  /* Closing runs pending __close handlers with the error still on top of
     co; a failing one replaces it. A suspended (abandoned) coroutine is
     emptied instead, and keeps the copy taken above. */
  t->rt->current = t; /* its __close handlers run as the task itself */
  if (corio_closethread(co, L) != LUA_OK && lua_gettop(co) > 0) {
    lua_pop(L, 1);
    lua_xmove(co, L, 1);
  }
  t->rt->current = running;
  lua_settop(co, 0);
  if (t->flags & CORIO_TF_INLINE) { /* the protected call returns it */
    lua_remove(L, -2);
    lua_xmove(L, co, 1);
    return;
  }
  /* raw accesses: user code may have given corio.Error an __index or a
     __newindex that raises, and the scheduler must not fail here */
  if (corio_is_error(L, -1, NULL)) {
    lua_pushliteral(L, "traceback");
    lua_rawget(L, -2);
    if (lua_isnil(L, -1)) {
      lua_pushliteral(L, "traceback");
      lua_pushvalue(L, -4);
      lua_rawset(L, -4);
    }
    lua_pop(L, 1);
  } else {
    if (lua_isstring(L, -1)) { /* a string or a number: tostring a copy */
      lua_pushvalue(L, -1);
      corio_error_push(L, "task", NULL, "%s", lua_tostring(L, -1));
      lua_remove(L, -2);
    } else
      corio_error_push(L, "task", NULL, "(error object is a %s value)",
                       luaL_typename(L, -1));
    lua_insert(L, -2); /* tb, err, raw */
    lua_pushliteral(L, "value");
    lua_insert(L, -2);
    lua_rawset(L, -3);
    lua_pushliteral(L, "traceback");
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
  }
  lua_remove(L, -2); /* traceback */
  lua_pushliteral(L, "task");
  lua_rawget(L, -2);
  if (lua_isnil(L, -1)) {
    lua_pushliteral(L, "task");
    corio_task_name(L, t);
    lua_rawset(L, -4);
  }
  lua_pop(L, 1);
  lua_xmove(L, co, 1);
}

/* Push t's outcome onto dst: for `wait` (mode 1) true, results... or
   false, err; for `join` (mode 0) results... or err. Returns the count;
   *raise is set when the caller must raise the single value pushed. */
static int aux_outcome(lua_State *dst, corio_task *t, int idx, int mode,
                       int *raise) {
  int i, n = t->nargs;
  *raise = 0;
  luaL_checkstack(dst, n + 2, "too many results to join");
  if (t->flags & CORIO_TF_MOVED) { /* its result, if any, is kept */
    if (mode) lua_pushboolean(dst, 1);
#if TASK_UVS
    if (n) corio_getuv(dst, idx, 1);
#else
    if (n) aux_res_push(dst, t, idx);
#endif
    return n + mode;
  }
  if (t->state == CORIO_DONE) {
    if (mode) lua_pushboolean(dst, 1);
    for (i = n; i >= 1; i--) {
      lua_pushvalue(t->co, -i);
      lua_xmove(t->co, dst, 1);
    }
    return n + mode;
  }
  if (mode) lua_pushboolean(dst, 0);
  lua_pushvalue(t->co, -1);
  lua_xmove(t->co, dst, 1);
  *raise = !mode;
  return 1 + mode;
}

/* An unobserved failure's finalizer object (TASK_FAIL_MT), at index 1 of
   the failed task's coroutine while t has CORIO_TF_ARMED; its user value
   is the task. Its node is in rt->unobserved until the failure is
   observed, reported, or collected. */
typedef struct corio_failure {
  corio_link node;
  corio_task *task;
} corio_failure;

corio_task *corio_failure_task(corio_link *n) {
  return corio_container(n, corio_failure, node)->task;
}

static void aux_observed(corio_task *t) {
  t->flags |= CORIO_TF_OBSERVED;
  if (t->flags & CORIO_TF_ARMED) {
    corio_failure *f = (corio_failure *)lua_touserdata(t->co, 1);
    if (f && f->task == t) corio_list_remove(&f->node);
    t->flags &= (uint16_t)~CORIO_TF_ARMED;
  }
}

int corio_task_outcome(lua_State *dst, corio_task *t, int idx, int mode,
                       int *raise) {
  int n = aux_outcome(dst, t, idx, mode, raise);
  aux_observed(t);
  return n;
}

/* The finalizer of an unobserved failure (see TASK_FAIL_MT): a new
   corio_failure whose user value is the task, kept below the error on the
   task's finished coroutine, which nothing resumes again. */
static void aux_arm_failure(lua_State *L, corio_rt *rt, corio_task *t) {
  corio_failure *f;
  lua_checkstack(L, 3);
  if (!lua_checkstack(t->co, 2)) { /* no room: queue its report now */
    lua_xmove(t->co, L, 1); /* a copy without growing co's stack */
    lua_pushvalue(L, -1);
    lua_xmove(L, t->co, 1);
    corio_rt_defer_value(L, rt);
    return;
  }
  f = (corio_failure *)corio_newudata(L, sizeof *f, 1);
  f->task = t;
  corio_list_init(&f->node);
  corio_task_push(L, t);
  corio_setuv(L, -2, 1);
  luaL_setmetatable(L, TASK_FAIL_MT); /* a new object: no list walk */
  lua_xmove(L, t->co, 1);
  lua_insert(t->co, 1);
  corio_list_push(&rt->unobserved, &f->node);
  t->flags |= CORIO_TF_ARMED;
}

/* t->joiners is a ring of the joiners' links with no head node (a list
   head would cost every task 8 more bytes): only join parks on it, and
   only join_abort and aux_wake_joiners take a joiner off. */
static void aux_joiner_add(corio_task *u, corio_task *t) {
  corio_link *n = &t->link, *h = u->joiners;
  if (!h) {
    n->next = n->prev = n;
    u->joiners = n;
    return;
  }
  n->prev = h->prev;
  n->next = h;
  h->prev->next = n;
  h->prev = n;
}

static void aux_joiner_remove(corio_task *u, corio_link *n) {
  if (u->joiners == n) u->joiners = n->next == n ? NULL : n->next;
  corio_list_remove(n);
}

static void aux_wake_joiners(corio_task *t) {
  corio_link *n;
  while ((n = t->joiners) != NULL) {
    corio_task *j = corio_container(n, corio_task, link);
    int raise, cnt;
    aux_joiner_remove(t, n);
    if (!lua_checkstack(j->co, t->nargs + 3)) { /* that joiner fails */
      aux_observed(t);
      corio_error_push(corio_wake_stack(j, 1), "task", NULL, "join: %d "
                       "results do not fit on the joining task's stack",
                       t->nargs);
      corio_wake_raise(j);
      continue;
    }
    cnt = aux_outcome(j->co, t, 0, j->wait_arg, &raise);
    aux_observed(t);
    if (raise) { /* like corio_wake_raise, but the error is handed over:
                    keep join_abort, so a cancellation cannot drop it */
      lua_pushlightuserdata(j->co, (void *)&corio_raise_mark);
      lua_insert(j->co, -2);
      cnt = 2;
    }
    corio_wake(j, cnt);
  }
}

/* A task returned normally with at most one result: the result moves out
   (before 5.4 to user value 1, replacing the coroutine; on 5.4 into the
   task itself, or, if collectable, to the kept table), and the coroutine
   goes to the idle pool for the next spawn if there is room; taking it
   from there clears its hook (a debug.sethook on it must not follow into
   the next task). A normal return closed every to-be-closed variable. A
   stack that grew is shrunk by the collector, which does so for every
   coroutine it traverses (resetting it here, lua_resetthread, cost a
   third of a spawn). */
static void aux_retire(lua_State *L, corio_rt *rt, corio_task *t) {
  lua_State *co = t->co;
#if TASK_UVS
  if (!lua_checkstack(L, 4)) return; /* it keeps its coroutine */
  corio_task_push(L, t);
  if (t->nargs) lua_xmove(co, L, 1);
  else lua_pushnil(L);
  corio_setuv(L, -2, 1);
  lua_pop(L, 1);
#else /* (a collectable one was kept when the task finished) */
  aux_res_store(t, co, t->nargs);
#endif
  lua_settop(co, 0);
  t->co = NULL;
  t->flags |= CORIO_TF_MOVED;
  if (rt->nidle < CORIO_IDLE_MAX && lua_checkstack(L, 3)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->idle_ref);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_rawseti(L, -2, ++rt->nidle); /* holds it (weakly) while idle */
    lua_pop(L, 1);
  }
}

#if !TASK_UVS
/* Keeps what will hold t's outcome: its one result if its coroutine is
   to be reused (nothing for none or one t can hold itself: aux_res_kind),
   else the coroutine. First thing when t finishes, since it may raise
   (memory) and then nothing has changed yet. */
static void aux_keep_outcome(lua_State *L, corio_task *t, int status,
                             int nres) {
  lua_State *co = t->co;
  luaL_checkstack(L, 4, "finishing a task");
  if (!lua_checkstack(co, 1))
    luaL_error(L, "corio: no stack left to finish a task");
  if (TASK_REUSE && status == LUA_OK && nres <= 1) {
    if (!nres || aux_res_kind(co, -1) != RES_KEPT) return;
    lua_pushvalue(co, -1);
  } else {
    lua_pushthread(co);
  }
  lua_xmove(co, L, 1);
  corio_task_push(L, t);
  lua_insert(L, -2);
  aux_keep(L, -2);
  lua_pop(L, 1);
}
#endif

void corio_task_finish(lua_State *L, corio_task *t, int status, int nres) {
  corio_rt *rt = t->rt;
#if !TASK_UVS
  aux_keep_outcome(L, t, status, nres);
#endif
  if (status == LUA_OK) {
    t->state = CORIO_DONE;
    t->nargs = nres;
    rt->n_done++;
  } else {
    aux_task_error(L, t);
    t->nargs = 1;
    /* "cancelled" only if the task was: re-raising another task's
       cancellation (from join) is a failure like any other error */
    if (corio_is_error(t->co, -1, "cancelled") && corio_task_cancelled_by(t)) {
      t->state = CORIO_CANCELLED;
      rt->n_cancelled++;
    } else {
      t->state = CORIO_FAILED;
      rt->n_failed++;
    }
  }
  if (corio_timer_armed(&t->timer)) corio_timer_disarm(rt, &t->timer);
  while (t->scope && t->scope->owner == t) corio_scope_pop(t, t->scope);
  if (t->flags & CORIO_TF_KID) corio_list_remove(&corio_kid_of(t)->scope_link);
  rt->n_live--;
  if (rt->max_tasks && !(t->flags & CORIO_TF_INLINE))
    corio_budget_give(&rt->tasks);
  if (rt->trace_ref != LUA_NOREF)
    corio_trace(L, rt, t->state == CORIO_DONE ? "done"
                       : t->state == CORIO_FAILED ? "fail" : "cancel", t);
  aux_wake_joiners(t);
  if (corio_task_parent(t) &&
      corio_task_parent(t)->kind == CORIO_SCOPE_NURSERY) {
    t->flags |= CORIO_TF_OBSERVED;
    corio_scope_child_done(L, corio_task_parent(t), t);
  }
  if (t->state == CORIO_FAILED && !(t->flags & CORIO_TF_OBSERVED))
    aux_arm_failure(L, rt, t); /* now it needs a finalizer */
  if (TASK_REUSE && t->state == CORIO_DONE && t->nargs <= 1)
    aux_retire(L, rt, t);
  aux_slot_release(L, rt, t->ref); /* last: t may be collected */
  t->ref = LUA_NOREF;
}

/* ----------------------------------------------------------- methods */

/* A parked joiner just leaves the list. Once woken it holds the outcome,
   which already counts as observed: the wake stands (the cancellation
   waits for the next await), so a failure is never dropped unseen. */
static int join_abort(corio_task *t, int woken) {
  if (woken > 0) return 0;
  aux_joiner_remove((corio_task *)t->wait.obj, &t->link);
  return 1;
}

static int aux_join(lua_State *L, int mode) {
  const char *fname = mode ? "wait" : "join";
  corio_task *u = corio_check_task(L, 1);
  corio_task *t = corio_await_begin(L, fname);
  if (u == t) luaL_error(L, "%s: a task cannot wait for itself", fname);
  if (task_finished(u)) {
    int raise, n = corio_task_outcome(L, u, 1, mode, &raise);
    return raise ? lua_error(L) : n;
  }
  if (!u->rt || u->rt != t->rt)
    luaL_error(L, "%s: the task belongs to another runtime", fname);
  aux_joiner_add(u, t);
  t->wait_arg = mode;
  return corio_await(L, t, "join", join_abort, u, -1);
}

static int ltask_join(lua_State *L) { return aux_join(L, 0); }
static int ltask_wait(lua_State *L) { return aux_join(L, 1); }

/* Cancel t and, through its scopes, every task spawned inside them. */
void corio_task_cancel(corio_task *t) {
  corio_scope *s = t->scope;
  if (task_finished(t) || !t->rt) return;
  t->flags |= CORIO_TF_CANCEL;
  corio_task_poke(t);
  /* wake what runs inside the task's own scopes (nursery children) */
  while (s && s->parent && s->parent->owner == t) s = s->parent;
  if (s && s->kind != CORIO_SCOPE_SHIELD) /* a shield keeps it all out */
    corio_scope_poke_tree(s, CORIO_SELF_CANCEL);
}

static int ltask_cancel(lua_State *L) {
  corio_task_cancel(corio_check_task(L, 1));
  return 0;
}

static int ltask_status(lua_State *L) {
  lua_pushstring(L, corio_task_status(corio_check_task(L, 1)));
  return 1;
}

static int ltask_index(lua_State *L) {
  corio_task *t;
  const char *k;
  lua_pushvalue(L, 2); /* methods first: t:join() is the common case */
  lua_rawget(L, lua_upvalueindex(2));
  if (!lua_isnil(L, -1)) return 1;
  t = corio_check_task(L, 1);
  k = lua_tostring(L, 2);
  if (k && strcmp(k, "id") == 0) {
    lua_pushinteger(L, t->id);
    return 1;
  }
  if (k && strcmp(k, "name") == 0) {
    corio_getuv(L, 1, TASK_UV_NAME);
    if (lua_isnil(L, -1)) lua_pushfstring(L, "task#%d", (int)t->id);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

static int ltask_tostring(lua_State *L) {
  corio_task *t = corio_check_task(L, 1);
  corio_getuv(L, 1, TASK_UV_NAME);
  if (lua_isnil(L, -1)) lua_pushfstring(L, "task#%d", (int)t->id);
  lua_pushfstring(L, "corio.Task(%d '%s', %s)", (int)t->id,
                  lua_tostring(L, -1), corio_task_status(t));
  return 1;
}

/* __gc of TASK_FAIL_MT: only tasks that failed with nobody observing
   them have a finalizer; live tasks are anchored, and at lua_close the
   runtime's own finalizer detaches them. */
static int ltask_gc(lua_State *L) {
  corio_failure *f = (corio_failure *)luaL_checkudata(L, 1, TASK_FAIL_MT);
  corio_task *t;
  int linked = corio_linked(&f->node);
  corio_list_remove(&f->node);
  corio_getuv(L, 1, 1);
  t = (corio_task *)corio_testudata(L, -1, TASK_MT);
  if (!t || t->state < CORIO_DONE) return 0;
  if (t->rt && t->state == CORIO_FAILED && !(t->flags & CORIO_TF_OBSERVED)
      && linked) /* still unobserved */
    corio_rt_defer_report(L, t->rt, t);
  t->flags &= (uint16_t)~CORIO_TF_ARMED;
  t->rt = NULL;
  return 0;
}

/* ---------------------------------------------------- module functions */

int corio_spawn_args(lua_State *L, int first, corio_rt *rt,
                     corio_scope *parent, lua_CFunction self) {
  static const char *const allowed[] = {"name", NULL};
  int fn = first;
  const char *name = NULL;
  if (lua_istable(L, first)) {
    corio_opt_present(L, first, "spawn", allowed);
    name = corio_opt_string(L, first, "name", NULL, "spawn");
    fn = first + 1;
  }
  luaL_checktype(L, fn, LUA_TFUNCTION);
  if (parent && parent->inline_call && !name && rt->current) {
    /* named after the task it stands for (dump, tasks, log) */
    name = corio_task_name(L, corio_task_logical(rt->current));
    lua_insert(L, first); /* keep it anchored below the arguments */
    fn++;
  }
  /* the body of a PUC 5.1 protected call stands for its caller, which
     waits meanwhile: it takes no slot of its own */
  if (rt->max_tasks && !(parent && parent->inline_call) &&
      !corio_budget_take(&rt->tasks, rt->current)) {
    /* max_tasks are alive: a task waits for one to end (backpressure,
       a cancellation point), then spawn runs again from the start */
    corio_task *t = rt->current;
    if (!t || t->co != L)
      return luaL_error(L, "spawn: max_tasks (%d) tasks are alive (only a "
                        "task can wait for one to end)", rt->max_tasks);
    corio_await_begin(L, "spawn");
    return corio_budget_wait(L, t, &rt->tasks, self, -1);
  }
  corio_task_spawn(L, rt, fn, lua_gettop(L) - fn, name, parent);
  return 1;
}

/* corio.spawn([opts], fn, ...) */
static int lcorio_spawn(lua_State *L) {
  return corio_spawn_args(L, 1, corio_rt_get(L, "spawn"), NULL,
                          lcorio_spawn);
}

corio_task *corio_task_logical(corio_task *t) {
  while ((t->flags & CORIO_TF_INLINE) && corio_task_parent(t) &&
         corio_task_parent(t)->owner)
    t = corio_task_parent(t)->owner;
  return t;
}

static int lcorio_current(lua_State *L) {
  corio_rt *rt = corio_ctx_get(L)->rt;
  if (rt && rt->current) corio_task_push(L, corio_task_logical(rt->current));
  else lua_pushnil(L);
  return 1;
}

/* core._outcome(t) -> true, results... | false, err, without waiting
   (t must have finished); the Lua layer's pcall for Lua 5.1 uses it. */
static int ltask_outcome(lua_State *L) {
  corio_task *t = corio_check_task(L, 1);
  int raise;
  if (!task_finished(t)) return luaL_error(L, "_outcome: task not finished");
  return corio_task_outcome(L, t, 1, 1, &raise);
}

/* core._checkpoint(): raises the current task's pending cancellation. */
static int lcorio_checkpoint(lua_State *L) {
  corio_await_begin(L, "checkpoint");
  return 0;
}

/* core._can_wait(fname): raises unless the caller could park here, so that
   the Lua layer fails before it changes any state. */
static int lcorio_can_wait(lua_State *L) {
  corio_await_begin_nocancel(L, luaL_optstring(L, 1, "wait"));
  return 0;
}

static int lcorio_yield(lua_State *L) {
  return corio_yield_now(L, corio_await_begin(L, "yield"));
}

static const luaL_Reg task_methods[] = {
    {"cancel", ltask_cancel}, {"status", ltask_status}, {NULL, NULL}};
static const luaL_Reg task_await[] = {
    {"join", ltask_join}, {"wait", ltask_wait}, {NULL, NULL}};
static const luaL_Reg task_meta[] = {{"__tostring", ltask_tostring},
                                     {NULL, NULL}};
static const luaL_Reg task_fail_meta[] = {{"__gc", ltask_gc},
                                          {NULL, NULL}};
/* spawn may wait for the task budget (await 2: it runs again) */
static const luaL_Reg spawn_funcs[] = {{"spawn", lcorio_spawn},
                                       {NULL, NULL}};
static const luaL_Reg funcs[] = {
    {"current", lcorio_current},
    {"_outcome", ltask_outcome}, {"_checkpoint", lcorio_checkpoint},
    {"_can_wait", lcorio_can_wait},
    {NULL, NULL}};
static const luaL_Reg await_funcs[] = {{"yield", lcorio_yield},
                                       {NULL, NULL}};

/* t.id and t.name are fields; the rest are methods (upvalue 2) */
static void aux_task_class(lua_State *L, const char *name,
                           const luaL_Reg *meta) {
  corio_class(L, name, task_methods, task_await, meta);
  lua_getfield(L, LUA_REGISTRYINDEX, "corio.ctx");
  lua_getfield(L, -2, "__index");
  lua_pushcclosure(L, ltask_index, 2);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

void corio_open_task(lua_State *L) {
  aux_task_class(L, TASK_MT, task_meta);
  lua_getfield(L, LUA_REGISTRYINDEX, TASK_MT);
  corio_class_ref(L, CORIO_MTR_TASK);
  lua_pop(L, 1);
  luaL_newmetatable(L, TASK_FAIL_MT);
  corio_setfuncs(L, task_fail_meta, 0);
  lua_pop(L, 1);
#if !TASK_UVS
  /* task_kept: weak keys, an ephemeron table. Made once per state: a
     second open of the module (package.loaded cleared) must not drop the
     outcomes tasks of the first one keep there */
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &task_kept) == LUA_TNIL) {
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &task_kept);
  }
  lua_pop(L, 1);
#endif
  corio_setfuncs(L, funcs, 0);
  corio_setfuncs(L, await_funcs, 1);
  corio_setfuncs(L, spawn_funcs, 2);
}
