/*
 * sync.c: corio.semaphore, corio.mutex, corio.event and corio.watch, all
 * on the await protocol of corio.h.
 *
 * One engine (struct sync_sem) serves both corio.Semaphore and
 * corio.Mutex: a count of available permits and an intrusive FIFO of
 * parked tasks, each wanting t->wait_arg permits. Permits are granted
 * only at the head of the queue, so a large request blocks the smaller
 * ones behind it (no starvation), and an acquire never overtakes a queued
 * one. A grant hands the permit object straight to the waiter (made by
 * the releaser and moved onto the waiter's stack), so a newcomer cannot
 * steal it between the release and the waiter's resumption. Every wait
 * is a cancellation point even when it does not park.
 *
 * Invariants:
 *   - a parked task is in exactly one wait list, through t->link;
 *   - s->self_ref anchors the semaphore in the registry exactly while its
 *     wait list is not empty, so grants made from an abort hook or a __gc
 *     can create permits that anchor it (a permit's user value is its
 *     semaphore, which therefore outlives every permit);
 *   - permits are conserved: available + held by unreleased permits
 *     (including those handed to woken tasks) == initial + added.
 *
 * After a wake and before the task runs, the value handed over stays on
 * top of t->co; the abort hooks (woken == 1) read it from there. Wakes
 * that hand nothing back (nil, err "closed"; event and watch wakes) clear
 * t->wait.abort, so a cancellation arriving before the task runs wins.
 */
#include "corio.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>


#define SEM_MT "corio.Semaphore"
#define PERMIT_MT "corio.Permit"
#define MUTEX_MT "corio.Mutex"
#define GUARD_MT "corio.MutexGuard"
#define EVENT_MT "corio.Event"
#define WATCH_MT "corio.Watch"

/* The largest permit count (exact in a double, so the same on 5.1). */
#define SEM_MAX (((lua_Integer)1 << 53) - 1)
/* The largest single request (it lives in t->wait_arg). */
#define SEM_REQ_MAX ((lua_Integer)INT32_MAX)

/* A task whose runtime is gone (lua_close, or a runtime collected after an
   aborted run): it can never run again, so it is dropped, not woken. */
static int aux_gone(corio_task *t) { return t->rt == NULL; }

/* Counts a wait list (for __tostring only). */
static int aux_count(const corio_link *h) {
  const corio_link *n;
  int k = 0;
  for (n = h->next; n != h; n = n->next) k++;
  return k;
}

/* ================================================== semaphore engine */

typedef struct sync_sem {
  const char *tag;      /* SEM_MT or MUTEX_MT (corio_checktagged) */
  lua_Integer permits;  /* available: not held by any permit */
  lua_Integer total;    /* initial + added: available + held */
  corio_deferred regrant; /* a finalizer returned permits: grant later */
  lua_Integer owner;    /* mutex: id of the task holding it, 0 if none */
  corio_link waiters;   /* FIFO; t->wait_arg = permits wanted */
  int self_ref;         /* registry ref while waiters is not empty */
  int permit_mt;        /* registry ref of its permits' metatable */
  uint8_t closed;
  uint8_t mutex;        /* a corio.Mutex: hands out guards */
} sync_sem;

/* A permit or a mutex guard: the one allocation an acquire makes. */
typedef struct sync_permit {
  sync_sem *s;
  lua_Integer n;        /* permits held; 0 once released */
  lua_Integer owner;    /* mutex guard: id of the task that locked */
} sync_permit;

static lua_Integer aux_current_id(lua_State *L) {
  corio_ctx *ctx = corio_ctx_get(L);
  if (ctx && ctx->rt && ctx->rt->current) return ctx->rt->current->id;
  return 0;
}

/* Pushes a new permit for n permits of s (the semaphore is at index si of
   X) held by task `owner`. Its user value anchors the semaphore; it is
   set directly, without the table compat.h would make on 5.1 and 5.3. */
static sync_permit *permit_push(lua_State *X, int si, sync_sem *s,
                                lua_Integer n, lua_Integer owner) {
  sync_permit *p;
  si = lua_absindex(X, si);
#if LUA_VERSION_NUM >= 504
  p = (sync_permit *)lua_newuserdatauv(X, sizeof *p, 1);
#else
  p = (sync_permit *)lua_newuserdata(X, sizeof *p);
#endif
  p->s = s;
  p->n = n;
  p->owner = owner;
  lua_rawgeti(X, LUA_REGISTRYINDEX, s->permit_mt);
  lua_setmetatable(X, -2);
#if LUA_VERSION_NUM >= 504
  lua_pushvalue(X, si);
  lua_setiuservalue(X, -2, 1);
#elif LUA_VERSION_NUM >= 502
  lua_pushvalue(X, si);
  lua_setuservalue(X, -2);
#else
  lua_getfenv(X, si); /* {sem}, shared by all its permits: see sem_new */
  lua_setfenv(X, -2);
#endif
  return p;
}

/* Drops the registry anchor once nobody waits. */
static void sem_settle(lua_State *L, sync_sem *s) {
  if (corio_list_empty(&s->waiters) && s->self_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, s->self_ref);
    s->self_ref = LUA_NOREF;
  }
}

/* The first parked task that can still run (dropping dead ones). */
static corio_task *sem_head(sync_sem *s) {
  while (!corio_list_empty(&s->waiters)) {
    corio_task *t = corio_container(s->waiters.next, corio_task, link);
    if (!aux_gone(t)) return t;
    corio_list_remove(&t->link);
  }
  return NULL;
}

/* Grants permits to waiters at the head while there are enough. Each
   permit is made on L (the running thread, or the aborted task's
   coroutine inside an abort hook) and moved to its waiter.

   Making a permit allocates, and an allocation may run finalizers, among
   them a forgotten permit's __gc that releases into this very semaphore
   and grants on its own: so the permit is made inert first and the head
   and the count are read again before anything changes. */
/* Permits t waits for: wait_arg, or 1 for a raw _take (arg -1). */
static lua_Integer aux_wanted(const corio_task *t) {
  return t->wait_arg < 0 ? 1 : t->wait_arg;
}

static void sem_grant(lua_State *L, sync_sem *s) {
  corio_task *t;
  while (!s->closed && (t = sem_head(s)) != NULL &&
         s->permits >= aux_wanted(t) && lua_checkstack(L, 3)) {
    sync_permit *p;
    if (t->wait_arg < 0) { /* sem:with's raw _take: no object */
      corio_list_remove(&t->link);
      s->permits--;
      lua_pushboolean(corio_wake_stack(t, 1), 1);
      corio_wake(t, 1);
      continue;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->self_ref);
    p = permit_push(L, -1, s, 0, 0);
    lua_remove(L, -2);
    if (t != sem_head(s) || s->permits < t->wait_arg) {
      lua_pop(L, 1); /* things changed meanwhile: look again */
      continue;
    }
    p->n = t->wait_arg;
    p->owner = t->id;
    corio_list_remove(&t->link);
    s->permits -= p->n;
    if (s->mutex) s->owner = t->id;
    lua_xmove(L, corio_wake_stack(t, 1), 1);
    corio_wake(t, 1);
  }
  sem_settle(L, s);
}

/* Returns n permits (a released permit, or add()) and serves the queue. */
static void sem_give(lua_State *L, sync_sem *s, lua_Integer n) {
  s->permits += n;
  if (s->mutex) s->owner = 0;
  sem_grant(L, s);
}

static void sem_on_regrant(lua_State *L, corio_deferred *d) {
  sync_sem *s = corio_container(d, sync_sem, regrant);
  lua_checkstack(L, 4);
  sem_grant(L, s);
}

/* The same from a finalizer (a forgotten permit or guard): granting would
   make permit objects, which must not happen inside a finalizer (LuaJIT
   runs finalizers of objects made during lua_close after unloading this
   module), so the grant is left to the scheduler. The queued semaphore
   stays alive: while anyone waits, self_ref anchors it. */
static void sem_give_from_gc(lua_State *L, sync_sem *s, lua_Integer n) {
  corio_rt *rt = corio_ctx_get(L)->rt;
  s->permits += n;
  if (s->mutex) s->owner = 0;
  if (rt && !corio_list_empty(&s->waiters)) corio_rt_defer(rt, &s->regrant);
}

/* The fast path of acquire/lock and their try_ forms: takes k permits for
   `owner` and pushes the permit if nobody is queued and enough are free
   (checked again after the allocation, see sem_grant). The semaphore is
   at index 1. Returns 0, pushing nothing, otherwise. */
static int sem_take_now(lua_State *L, sync_sem *s, lua_Integer k,
                        lua_Integer owner) {
  sync_permit *p;
  if (!corio_list_empty(&s->waiters) || s->permits < k) return 0;
  p = permit_push(L, 1, s, 0, owner);
  if (!corio_list_empty(&s->waiters) || s->permits < k || s->closed) {
    lua_pop(L, 1);
    return 0;
  }
  p->n = k;
  s->permits -= k;
  if (s->mutex) s->owner = owner;
  return 1;
}

/* The abort hook of a parked acquire/lock. */
static int sem_abort(corio_task *t, int woken) {
  sync_sem *s = (sync_sem *)t->wait.obj;
  sync_permit *p;
  lua_Integer n;
  if (woken <= 0) {
    int head = s->waiters.next == &t->link;
    corio_list_remove(&t->link);
    /* smaller requests queued behind a departing head may fit now (not
       in a teardown, where nobody will run again) */
    if (head && woken == 0) sem_grant(t->co, s);
    sem_settle(t->co, s);
    return 1;
  }
  if (t->wait_arg < 0) { /* a raw _take was granted its permit */
    sem_give(t->co, s, 1);
    return 1;
  }
  /* woken by a grant: the permit is on top of t->co; take it back and
     pass it on, leaving the permit object inert */
  p = (sync_permit *)luaL_testudata(t->co, -1,
                                    s->mutex ? GUARD_MT : PERMIT_MT);
  if (p == NULL || p->s != s) return 0;
  n = p->n;
  p->n = 0;
  if (n > 0) sem_give(t->co, s, n);
  return 1;
}

/* Wakes t with nil, err (kind "closed"); the error is made on L. Nothing
   is handed over, so a cancellation arriving before t runs wins. */
static void aux_wake_closed(lua_State *L, corio_task *t, const char *msg) {
  lua_State *co;
  if (aux_gone(t)) return;
  corio_error_push(L, "closed", NULL, "%s", msg);
  co = corio_wake_stack(t, 2);
  lua_pushnil(co);
  lua_xmove(L, co, 1);
  t->wait.abort = NULL;
  corio_wake(t, 2);
}

/* Wakes every waiter with nil, err (kind "closed"). */
static void sem_close_waiters(lua_State *L, sync_sem *s, const char *msg) {
  corio_link *h;
  while ((h = corio_list_shift(&s->waiters)) != NULL)
    aux_wake_closed(L, corio_container(h, corio_task, link), msg);
  sem_settle(L, s);
}

/* Parks the caller until k permits are granted. s is at index 1. */
static int sem_park(lua_State *L, corio_task *t, sync_sem *s, lua_Integer k,
                    const char *what, double timeout) {
  if (s->self_ref == LUA_NOREF) {
    lua_pushvalue(L, 1);
    s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  t->wait_arg = (int32_t)k;
  corio_list_push(&s->waiters, &t->link);
  return corio_await(L, t, what, sem_abort, s, timeout);
}

/* The semaphore's end of life (normally nobody waits: a waiter anchors
   it; at lua_close anything goes): detach whatever is still queued. */
static void sem_gc(lua_State *L, sync_sem *s) {
  corio_link *h;
  corio_list_remove(&s->regrant.link);
  while ((h = corio_list_shift(&s->waiters)) != NULL) {
  }
  sem_settle(L, s);
  s->closed = 1;
}

static sync_sem *sem_new(lua_State *L, const char *mt, lua_Integer n,
                         int mutex) {
  sync_sem *s = (sync_sem *)corio_newudata(L, sizeof *s,
                                           LUA_VERSION_NUM < 502);
  memset(s, 0, sizeof *s);
  s->tag = mt;
  s->permit_mt = corio_ctx_get(L)->mt_ref[mutex ? CORIO_MTR_GUARD
                                                : CORIO_MTR_PERMIT];
  s->permits = s->total = n;
  s->self_ref = LUA_NOREF;
  corio_list_init(&s->regrant.link);
  s->regrant.fn = sem_on_regrant;
  s->mutex = (uint8_t)mutex;
  corio_list_init(&s->waiters);
  luaL_setmetatable(L, mt);
#if LUA_VERSION_NUM < 502
  /* its environment {sem} is shared by its permits (see permit_push) */
  lua_pushvalue(L, -1);
  corio_setuv(L, -2, 1);
#endif
  return s;
}

static int aux_tostring(lua_State *L, const char *fmt, ...) {
  char buf[160];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof buf) n = (int)sizeof buf - 1;
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

/* ========================================================= semaphore */

static sync_sem *check_sem(lua_State *L) {
  return (sync_sem *)corio_checktagged(L, 1, SEM_MT, sizeof(sync_sem));
}

/* corio.semaphore(n) */
static int lsem_new(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= SEM_MAX, 1,
                "permit count must be between 0 and 2^53-1");
  sem_new(L, SEM_MT, n, 0);
  return 1;
}

/* Parses ([k], [opts]) at index 2: a table as the last argument is the
   options. Returns k; *oi gets the index of the options. */
static lua_Integer aux_count_opts(lua_State *L, int *oi) {
  lua_Integer k = 1;
  if (lua_istable(L, 2)) {
    *oi = 2;
  } else {
    k = luaL_optinteger(L, 2, 1);
    *oi = 3;
  }
  luaL_argcheck(L, k >= 1 && k <= SEM_REQ_MAX, 2,
                "permit count must be between 1 and 2^31-1");
  return k;
}

/* Whether the running task may take a free permit without the wait
   machinery: no arguments to parse, a permit free and nobody queued,
   and (as at any await) it could wait here and is not cancelled. */
static corio_task *aux_fast_task(lua_State *L, sync_sem *s) {
  corio_task *t;
  if (lua_gettop(L) != 1 || s->closed || s->permits < 1 ||
      !corio_list_empty(&s->waiters))
    return NULL;
  t = corio_task_running(L);
  if (!t || !corio_isyieldable(t->rt->ctx->vm_isyieldable, L) ||
      corio_task_cancel_pending(t))
    return NULL;
  return t;
}

/* sem:acquire([k], [{timeout = s}]) -> permit | nil, err */
static int lsem_acquire(lua_State *L) {
  sync_sem *s = check_sem(L);
  int oi;
  lua_Integer k;
  double timeout;
  corio_task *t = aux_fast_task(L, s);
  if (t && sem_take_now(L, s, 1, t->id)) return 1;
  k = aux_count_opts(L, &oi);
  timeout = corio_opt_timeout(L, oi, "acquire");
  t = corio_await_begin(L, "acquire");
  if (s->closed) return corio_fail(L, "closed", "semaphore is closed");
  if (sem_take_now(L, s, k, t->id)) return 1;
  return sem_park(L, t, s, k, "semaphore", timeout);
}

/* sem:try_acquire([k]) -> permit | nil (not enough, or others queued) |
   nil, err (closed). Never overtakes a queued waiter. */
static int lsem_try_acquire(lua_State *L) {
  sync_sem *s = check_sem(L);
  int oi;
  lua_Integer k;
  if (lua_istable(L, 2))
    return luaL_argerror(L, 2, "try_acquire takes no options (it never "
                         "waits)");
  k = aux_count_opts(L, &oi);
  if (s->closed) return corio_fail(L, "closed", "semaphore is closed");
  if (!sem_take_now(L, s, k, aux_current_id(L))) lua_pushnil(L);
  return 1;
}

/* sem:_take() -> true | nil, err: one permit held by no object, for
   sem:with (sync.lua), which gives it back with sem:_give() however its
   function ends. A parked _take waits with wait_arg = -1, and a grant
   hands it `true` (sem_grant). */
static int lsem_take(lua_State *L) {
  sync_sem *s = check_sem(L);
  corio_task *t = aux_fast_task(L, s);
  if (t) {
    s->permits--;
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_settop(L, 1);
  t = corio_await_begin(L, "with");
  if (s->closed) return corio_fail(L, "closed", "semaphore is closed");
  if (corio_list_empty(&s->waiters) && s->permits >= 1) {
    s->permits--;
    lua_pushboolean(L, 1);
    return 1;
  }
  return sem_park(L, t, s, -1, "semaphore", -1);
}

static int lsem_give(lua_State *L) {
  sync_sem *s = check_sem(L);
  if (s->permits >= s->total)
    return luaL_error(L, "_give: no permit of this semaphore is held");
  sem_give(L, s, 1);
  return 0;
}

static int lsem_available(lua_State *L) {
  lua_pushinteger(L, check_sem(L)->permits);
  return 1;
}

/* sem:add(n): grows the capacity by n permits. */
static int lsem_add(lua_State *L) {
  sync_sem *s = check_sem(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0 && n <= SEM_MAX - s->total, 2,
                "permit count must be non-negative (and the total at most "
                "2^53-1)");
  s->total += n;
  sem_give(L, s, n);
  return 0;
}

/* sem:close(): every waiter gets nil, err "closed"; so do later acquires.
   Permits already held stay valid and may still be released. */
static int lsem_close(lua_State *L) {
  sync_sem *s = check_sem(L);
  if (s->closed) return 0;
  s->closed = 1;
  sem_close_waiters(L, s, "semaphore is closed");
  return 0;
}

static int lsem_gc(lua_State *L) {
  sem_gc(L, check_sem(L));
  return 0;
}

static int lsem_tostring(lua_State *L) {
  sync_sem *s = check_sem(L);
  return aux_tostring(L, "corio.Semaphore: %p (%lld available, %d waiting%s)",
                      (void *)s, (long long)s->permits,
                      aux_count(&s->waiters),
                      s->closed ? ", closed" : "");
}

/* ======================================================= permit, guard */

/* permit:release() and its __close/__gc: idempotent. */
static void permit_release(lua_State *L, sync_permit *p) {
  lua_Integer n = p->n;
  if (n == 0) return;
  p->n = 0;
  sem_give(L, p->s, n);
}

static int lpermit_release(lua_State *L) {
  permit_release(L, (sync_permit *)corio_checkudata(L, 1, PERMIT_MT));
  return 0;
}

/* __gc of a permit or guard: a forgotten one comes back, whoever holds
   it, without allocating (see sem_give_from_gc). */
static void permit_release_gc(lua_State *L, sync_permit *p) {
  lua_Integer n = p->n;
  if (n == 0) return;
  p->n = 0;
  sem_give_from_gc(L, p->s, n);
}

static int lpermit_gc(lua_State *L) {
  permit_release_gc(L, (sync_permit *)corio_checkudata(L, 1, PERMIT_MT));
  return 0;
}

static int lpermit_tostring(lua_State *L) {
  sync_permit *p = (sync_permit *)corio_checkudata(L, 1, PERMIT_MT);
  if (p->n == 0)
    return aux_tostring(L, "corio.Permit: %p (released)", (void *)p);
  return aux_tostring(L, "corio.Permit: %p (%lld held)", (void *)p,
                      (long long)p->n);
}

static sync_permit *check_guard(lua_State *L) {
  return (sync_permit *)corio_checkudata(L, 1, GUARD_MT);
}

/* guard:unlock() and guard's __close: only the task that locked it. */
static int lguard_unlock(lua_State *L) {
  sync_permit *p = check_guard(L);
  if (p->n == 0) return 0;
  if (p->owner != aux_current_id(L))
    return luaL_error(L, "unlock: the mutex is held by another task (task "
                      "%d locked it)", (int)p->owner);
  permit_release(L, p);
  return 0;
}

static int lguard_gc(lua_State *L) {
  permit_release_gc(L, (sync_permit *)corio_checkudata(L, 1, GUARD_MT));
  return 0;
}

static int lguard_tostring(lua_State *L) {
  sync_permit *p = check_guard(L);
  if (p->n == 0)
    return aux_tostring(L, "corio.MutexGuard: %p (unlocked)", (void *)p);
  return aux_tostring(L, "corio.MutexGuard: %p (held by task %lld)",
                      (void *)p, (long long)p->owner);
}

/* =============================================================== mutex */

static sync_sem *check_mutex(lua_State *L) {
  return (sync_sem *)corio_checktagged(L, 1, MUTEX_MT, sizeof(sync_sem));
}

static int lmutex_new(lua_State *L) {
  sem_new(L, MUTEX_MT, 1, 1);
  return 1;
}

/* m:lock([{timeout = s}]) -> guard | nil, err */
static int lmutex_lock(lua_State *L) {
  sync_sem *s = check_mutex(L);
  double timeout = corio_opt_timeout(L, 2, "lock");
  corio_task *t;
  if (s->permits == 0 && s->owner != 0 && s->owner == aux_current_id(L))
    return luaL_error(L, "lock: this task already holds the mutex (a "
                      "corio.Mutex is not reentrant)");
  t = corio_await_begin(L, "lock");
  if (sem_take_now(L, s, 1, t->id)) return 1;
  return sem_park(L, t, s, 1, "mutex", timeout);
}

/* m:try_lock() -> guard | nil */
static int lmutex_try_lock(lua_State *L) {
  sync_sem *s = check_mutex(L);
  if (!sem_take_now(L, s, 1, aux_current_id(L))) lua_pushnil(L);
  return 1;
}

static int lmutex_is_locked(lua_State *L) {
  lua_pushboolean(L, check_mutex(L)->permits == 0);
  return 1;
}

static int lmutex_gc(lua_State *L) {
  sem_gc(L, check_mutex(L));
  return 0;
}

static int lmutex_tostring(lua_State *L) {
  sync_sem *s = check_mutex(L);
  if (s->permits)
    return aux_tostring(L, "corio.Mutex: %p (unlocked)", (void *)s);
  return aux_tostring(L, "corio.Mutex: %p (locked by task %lld, %d waiting)",
                      (void *)s, (long long)s->owner,
                      aux_count(&s->waiters));
}

/* =============================================================== event */

typedef struct sync_event {
  corio_link waiters;
  uint8_t set;
} sync_event;

static sync_event *check_event(lua_State *L) {
  return (sync_event *)corio_checkudata(L, 1, EVENT_MT);
}

static int lev_new(lua_State *L) {
  sync_event *e = (sync_event *)corio_newudata(L, sizeof *e, 0);
  memset(e, 0, sizeof *e);
  corio_list_init(&e->waiters);
  luaL_setmetatable(L, EVENT_MT);
  return 1;
}

/* The abort hook of every wait that consumes nothing (event, watch): a
   parked waiter just leaves the list. Their wakes clear t->wait.abort, so
   woken == 1 never comes here. */
static int aux_unlink_abort(corio_task *t, int woken) {
  (void)woken;
  corio_list_remove(&t->link);
  return 1;
}

/* Wakes every task of list h with one value: a copy of L's index idx. */
static void aux_wake_all(lua_State *L, corio_link *h, int idx) {
  corio_link *n;
  idx = lua_absindex(L, idx);
  while ((n = corio_list_shift(h)) != NULL) {
    corio_task *t = corio_container(n, corio_task, link);
    if (aux_gone(t)) continue;
    lua_pushvalue(L, idx);
    lua_xmove(L, corio_wake_stack(t, 1), 1);
    t->wait.abort = NULL;
    corio_wake(t, 1);
  }
}

/* ev:set(): wakes every waiter; later waits return at once until clear. */
static int lev_set(lua_State *L) {
  sync_event *e = check_event(L);
  e->set = 1;
  lua_pushboolean(L, 1);
  aux_wake_all(L, &e->waiters, -1);
  return 0;
}

static int lev_clear(lua_State *L) {
  check_event(L)->set = 0;
  return 0;
}

static int lev_is_set(lua_State *L) {
  lua_pushboolean(L, check_event(L)->set);
  return 1;
}

/* ev:wait([{timeout = s}]) -> true | nil, err */
static int lev_wait(lua_State *L) {
  sync_event *e = check_event(L);
  double timeout = corio_opt_timeout(L, 2, "wait");
  corio_task *t = corio_await_begin(L, "wait");
  if (e->set) {
    lua_pushboolean(L, 1);
    return 1;
  }
  t->wait_arg = 0;
  corio_list_push(&e->waiters, &t->link);
  return corio_await(L, t, "event", aux_unlink_abort, e, timeout);
}

static int lev_gc(lua_State *L) {
  sync_event *e = check_event(L);
  while (corio_list_shift(&e->waiters) != NULL) {
  }
  return 0;
}

static int lev_tostring(lua_State *L) {
  sync_event *e = check_event(L);
  return aux_tostring(L, "corio.Event: %p (%s, %d waiting)", (void *)e,
                      e->set ? "set" : "clear", aux_count(&e->waiters));
}

/* =============================================================== watch */

/* The value is the userdata's user value 1. */
typedef struct sync_watch {
  corio_link waiters;
  lua_Integer version;  /* number of set() calls */
  uint8_t closed;
} sync_watch;

static sync_watch *check_watch(lua_State *L) {
  return (sync_watch *)corio_checkudata(L, 1, WATCH_MT);
}

/* corio.watch([value]) */
static int lwatch_new(lua_State *L) {
  sync_watch *w;
  lua_settop(L, 1);
  w = (sync_watch *)corio_newudata(L, sizeof *w, 1);
  memset(w, 0, sizeof *w);
  corio_list_init(&w->waiters);
  luaL_setmetatable(L, WATCH_MT);
  lua_pushvalue(L, 1);
  corio_setuv(L, -2, 1);
  return 1;
}

/* w:get() -> the current value */
static int lwatch_get(lua_State *L) {
  check_watch(L);
  corio_getuv(L, 1, 1);
  return 1;
}

/* w:set(v) -> true | nil, err (closed): wakes every changed() waiter
   with v. */
static int lwatch_set(lua_State *L) {
  sync_watch *w = check_watch(L);
  lua_settop(L, 2);
  if (w->closed) return corio_fail(L, "closed", "watch is closed");
  lua_pushvalue(L, 2);
  corio_setuv(L, 1, 1);
  w->version++;
  aux_wake_all(L, &w->waiters, 2);
  lua_pushboolean(L, 1);
  return 1;
}

/* w:changed([{timeout = s}]) -> the next value set | nil, err */
static int lwatch_changed(lua_State *L) {
  sync_watch *w = check_watch(L);
  double timeout = corio_opt_timeout(L, 2, "changed");
  corio_task *t = corio_await_begin(L, "changed");
  if (w->closed) return corio_fail(L, "closed", "watch is closed");
  t->wait_arg = 0;
  corio_list_push(&w->waiters, &t->link);
  return corio_await(L, t, "watch", aux_unlink_abort, w, timeout);
}

/* w:close(): waiters (and later changed() calls) get nil, err "closed";
   get() keeps returning the last value. */
static int lwatch_close(lua_State *L) {
  sync_watch *w = check_watch(L);
  corio_link *h;
  if (w->closed) return 0;
  w->closed = 1;
  while ((h = corio_list_shift(&w->waiters)) != NULL)
    aux_wake_closed(L, corio_container(h, corio_task, link),
                    "watch is closed");
  return 0;
}

static int lwatch_is_closed(lua_State *L) {
  lua_pushboolean(L, check_watch(L)->closed);
  return 1;
}

static int lwatch_gc(lua_State *L) {
  sync_watch *w = check_watch(L);
  while (corio_list_shift(&w->waiters) != NULL) {
  }
  w->closed = 1;
  return 0;
}

static int lwatch_tostring(lua_State *L) {
  sync_watch *w = check_watch(L);
  return aux_tostring(L, "corio.Watch: %p (version %lld, %d waiting%s)",
                      (void *)w, (long long)w->version,
                      aux_count(&w->waiters), w->closed ? ", closed" : "");
}

/* ================================================================ open */

static const luaL_Reg sem_methods[] = {
    {"try_acquire", lsem_try_acquire},
    {"available", lsem_available},
    {"add", lsem_add},
    {"close", lsem_close},
    {"_give", lsem_give},
    {NULL, NULL}};
static const luaL_Reg sem_await[] = {{"acquire", lsem_acquire},
                                     {"_take", lsem_take},
                                     {NULL, NULL}};
static const luaL_Reg sem_meta[] = {{"__gc", lsem_gc},
                                    {"__close", lsem_close},
                                    {"__tostring", lsem_tostring},
                                    {NULL, NULL}};

static const luaL_Reg permit_methods[] = {{"release", lpermit_release},
                                          {NULL, NULL}};
static const luaL_Reg permit_meta[] = {{"__gc", lpermit_gc},
                                       {"__close", lpermit_release},
                                       {"__tostring", lpermit_tostring},
                                       {NULL, NULL}};

static const luaL_Reg mutex_methods[] = {{"try_lock", lmutex_try_lock},
                                         {"is_locked", lmutex_is_locked},
                                         {NULL, NULL}};
static const luaL_Reg mutex_await[] = {{"lock", lmutex_lock}, {NULL, NULL}};
static const luaL_Reg mutex_meta[] = {{"__gc", lmutex_gc},
                                      {"__tostring", lmutex_tostring},
                                      {NULL, NULL}};

static const luaL_Reg guard_methods[] = {{"unlock", lguard_unlock},
                                         {NULL, NULL}};
static const luaL_Reg guard_meta[] = {{"__gc", lguard_gc},
                                      {"__close", lguard_unlock},
                                      {"__tostring", lguard_tostring},
                                      {NULL, NULL}};

static const luaL_Reg event_methods[] = {{"set", lev_set},
                                         {"clear", lev_clear},
                                         {"is_set", lev_is_set},
                                         {NULL, NULL}};
static const luaL_Reg event_await[] = {{"wait", lev_wait}, {NULL, NULL}};
static const luaL_Reg event_meta[] = {{"__gc", lev_gc},
                                      {"__tostring", lev_tostring},
                                      {NULL, NULL}};

static const luaL_Reg watch_methods[] = {{"get", lwatch_get},
                                         {"set", lwatch_set},
                                         {"close", lwatch_close},
                                         {"is_closed", lwatch_is_closed},
                                         {NULL, NULL}};
static const luaL_Reg watch_await[] = {{"changed", lwatch_changed},
                                       {NULL, NULL}};
static const luaL_Reg watch_meta[] = {{"__gc", lwatch_gc},
                                      {"__close", lwatch_close},
                                      {"__tostring", lwatch_tostring},
                                      {NULL, NULL}};

static const luaL_Reg sync_funcs[] = {{"semaphore", lsem_new},
                                      {"mutex", lmutex_new},
                                      {"event", lev_new},
                                      {"watch", lwatch_new},
                                      {NULL, NULL}};

/* Builds a class; with `field`, its method table goes into the module as
   that field, so the Lua layer can add methods (with, iter). */
static void aux_class(lua_State *L, int mod, const char *name,
                      const luaL_Reg *methods, const luaL_Reg *await,
                      const luaL_Reg *meta, const char *field) {
  corio_class(L, name, methods, await, meta);
  if (field) {
    lua_getfield(L, -1, "__index");
    lua_setfield(L, mod, field);
  }
  lua_pop(L, 1);
}

void corio_open_sync(lua_State *L) {
  int mod = lua_gettop(L);
  aux_class(L, mod, SEM_MT, sem_methods, sem_await, sem_meta,
            "_Semaphore_methods");
  corio_class(L, PERMIT_MT, permit_methods, NULL, permit_meta);
  corio_class_ref(L, CORIO_MTR_PERMIT);
  lua_pop(L, 1);
  aux_class(L, mod, MUTEX_MT, mutex_methods, mutex_await, mutex_meta,
            "_Mutex_methods");
  corio_class(L, GUARD_MT, guard_methods, NULL, guard_meta);
  corio_class_ref(L, CORIO_MTR_GUARD);
  lua_pop(L, 1);
  aux_class(L, mod, EVENT_MT, event_methods, event_await, event_meta, NULL);
  aux_class(L, mod, WATCH_MT, watch_methods, watch_await, watch_meta, NULL);
  corio_setfuncs(L, sync_funcs, 0);
}
