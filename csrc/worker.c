/*
 * worker.c: the threads of the pool (pool.c is the loop side). Each
 * worker owns one lua_State, made and closed by the worker itself, with
 * the standard libraries, the loop state's package paths and the pool's
 * init module; it never touches the loop's Lua state. It takes jobs from
 * the pool's ring, runs them protected, and leaves the outcome, encoded,
 * in the job's buffer for the loop thread (the done list and uv_async).
 *
 * A job's function comes as bytecode (corio_pool_code) and is loaded
 * once: each worker caches CORIO_WORKER_CACHE functions by code id in its
 * registry, evicting the oldest.
 */
#include "corio.h"
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#define SPIN_NS 40000         /* an idle worker polls at most this long */
#define SPIN_FAST 5000        /* a job this soon means the loop is awake */
#define SPIN_PROBE 64         /* waits between probes while not polling */

/* Raised by the count hook to stop an interrupted job (its address). */
static const char pool_interrupt_mark = 0;

static corio_pool_worker *worker_of(lua_State *L) {
#if LUA_VERSION_NUM >= 503
  return *(corio_pool_worker **)lua_getextraspace(L);
#else
  corio_pool_worker *w;
  lua_pushlightuserdata(L, (void *)&pool_interrupt_mark);
  lua_rawget(L, LUA_REGISTRYINDEX);
  w = (corio_pool_worker *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return w;
#endif
}

/* The count hook, installed by worker_interrupt (from the loop thread)
   to stop the code running in the worker's state. It checks at every
   instruction, so that a job catching the error with pcall in a loop is
   stopped in the loop itself, outside the pcall. A hook left over from an
   interrupt that came too late is removed by the next job's start. */
static void worker_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (!__atomic_load_n(&worker_of(L)->interrupt, __ATOMIC_RELAXED)) {
    lua_sethook(L, NULL, 0, 0); /* left on a coroutine by a past job */
    return;
  }
  lua_pushlightuserdata(L, (void *)&pool_interrupt_mark);
  lua_error(L);
}

/* Stops what w runs at its next VM instruction (mu held). Why the hook is
   installed only now, from another thread: in Lua 5.3 and 5.4 any count
   hook makes the VM call into the debug library at every instruction,
   whatever the count, which doubles the time of a CPU-bound job. Setting
   the hook asynchronously is what lua.c's SIGINT handler does: the fields
   it writes are read by the running VM at every instruction (5.1, 5.3,
   LuaJIT's interpreter) or at every jump and call (5.4's traps). mu keeps
   w in the same job (or init) meanwhile. The hook goes on the worker's
   state and on the coroutine it runs, if any (see worker_coro_src);
   coroutines made afterwards inherit it. The one hazard left: in 5.4 the
   call walks the running state's CallInfo list, as it does in a signal. */
void corio_worker_interrupt(corio_pool_worker *w) {
  lua_State *co = __atomic_load_n(&w->current, __ATOMIC_ACQUIRE);
  __atomic_store_n(&w->interrupt, 1, __ATOMIC_RELAXED);
  if (!w->running || !w->L) return;
  lua_sethook(w->L, worker_hook, LUA_MASKCOUNT, 1);
  if (co && co != w->L) lua_sethook(co, worker_hook, LUA_MASKCOUNT, 1);
}

#ifndef LUAJIT_VERSION_NUM
/* coroutine.resume and coroutine.wrap in a worker state: the same, but
   they keep w->current (setcur) naming the coroutine that runs, so that
   an interrupt reaches code looping inside one. C code resuming
   coroutines itself is not tracked: it is stopped when it returns. */
static const char worker_coro_src[] =
    "local setcur, create, resume, running, close, v54 = ...\n"
    "local function back(...) setcur(running()) return ... end\n"
    "local function resume_t(co, ...) setcur(co) return back(resume(co, ...)) end\n"
    "local function finish(co, ok, ...)\n"
    "  if ok then return ... end\n"
    "  local e = ...\n"
    "  if close then close(co) end\n"
    "  error(e, (v54 and type(e) == 'string') and 2 or 0)\n"
    "end\n"
    "coroutine.resume = resume_t\n"
    "coroutine.wrap = function(f)\n"
    "  local co = create(f)\n"
    "  return function(...) return finish(co, resume_t(co, ...)) end\n"
    "end\n";

static int worker_setcur(lua_State *L) {
  corio_pool_worker *w = worker_of(L);
  __atomic_store_n(&w->current, lua_tothread(L, 1), __ATOMIC_RELEASE);
  return 0;
}

static void worker_coro(lua_State *L) {
  if (luaL_loadbuffer(L, worker_coro_src, sizeof worker_coro_src - 1,
                      "=corio.worker") != LUA_OK)
    lua_error(L);
  lua_pushcfunction(L, worker_setcur);
  lua_getglobal(L, "coroutine");
  lua_getfield(L, -1, "create");
  lua_getfield(L, -2, "resume");
  lua_getfield(L, -3, "running");
  lua_getfield(L, -4, "close");
  lua_remove(L, -5);
  lua_pushboolean(L, LUA_VERSION_NUM >= 504);
  lua_call(L, 6, 0);
}
#endif

/* The message handler of a job: {error value, traceback}. */
static int worker_msgh(lua_State *L) {
  if (lua_touserdata(L, 1) == (void *)&pool_interrupt_mark) return 1;
#ifdef CORIO_NEED_51_AUX
  /* PUC 5.1's debug.traceback returns a nil message as is: give it "" */
  luaL_traceback(L, L, "", 1);
  lua_pushstring(L, lua_tostring(L, -1) + (*lua_tostring(L, -1) == '\n'));
  lua_remove(L, -2);
#else
  luaL_traceback(L, L, NULL, 1);
#endif
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 2);
  return 1;
}

/* Protected: the worker state's libraries, paths, worker pointer (for
   the hook) and function cache. */
static int worker_setup(lua_State *L) {
  corio_pool_worker *w = (corio_pool_worker *)lua_touserdata(L, 1);
  corio_pool *p = w->pool;
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) {
    if (p->path) lua_pushstring(L, p->path), lua_setfield(L, -2, "path");
    if (p->cpath) lua_pushstring(L, p->cpath), lua_setfield(L, -2, "cpath");
  }
  lua_pop(L, 1);
#ifdef LUAJIT_VERSION_NUM
  /* LuaJIT calls hooks only in the interpreter: without this, compiled
     loops could never be interrupted */
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
#else
  /* the same when LuaJIT runs a module built against PUC 5.1's headers
     (compat.h: the VM is found out at run time) */
  if (luaL_loadstring(L, "local jit = rawget(_G, 'jit')\n"
                         "if jit and jit.off then jit.off() end") == 0)
    lua_call(L, 0, 0);
  else
    lua_pop(L, 1);
#endif
#if LUA_VERSION_NUM >= 503
  *(corio_pool_worker **)lua_getextraspace(L) = w;
#else
  lua_pushlightuserdata(L, (void *)&pool_interrupt_mark);
  lua_pushlightuserdata(L, w);
  lua_rawset(L, LUA_REGISTRYINDEX);
#endif
#ifndef LUAJIT_VERSION_NUM
  worker_coro(L); /* LuaJIT's hooks are global: no need */
#endif
  lua_newtable(L);
  w->cache_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* require(init) in the worker's state; on failure pushes the message and
   returns 0. Retried on every job until it succeeds. */
static int worker_init(lua_State *L, corio_pool_worker *w) {
  const char *init = w->pool->init;
  if (w->init_ok || !init[0]) return w->init_ok = 1;
  lua_getglobal(L, "require");
  lua_pushstring(L, init);
  if (lua_pcall(L, 1, 0, 0) == LUA_OK) return w->init_ok = 1;
  /* 5.1 leaves a sentinel in package.loaded that would turn the retry's
     message into "loop or previous error": clear it */
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "loaded");
    if (lua_istable(L, -1)) {
      lua_pushnil(L);
      lua_setfield(L, -2, init);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (lua_touserdata(L, -1) == (void *)&pool_interrupt_mark) {
    lua_pop(L, 1);
    lua_pushliteral(L, "interrupted");
  }
  lua_pushfstring(L, "init module '%s' failed in a worker: %s", init,
                  lua_isstring(L, -1) ? lua_tostring(L, -1)
                                      : luaL_typename(L, -1));
  lua_remove(L, -2);
  return 0;
}

static int worker_init_p(lua_State *L) {
  worker_init(L, (corio_pool_worker *)lua_touserdata(L, 1));
  return 0;
}

/* Pushes the job's function, from the worker's cache or loaded. */
static void worker_fn(lua_State *L, corio_pool_worker *w,
                      const corio_pool_code *c) {
  int *slot;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->cache_ref);
  lua_rawgeti(L, -1, c->id);
  if (!lua_isnil(L, -1)) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  if (luaL_loadbuffer(L, c->bytes, c->n, "=blocking") != LUA_OK)
    lua_error(L);
  slot = &w->cache_ids[w->cache_pos];
  w->cache_pos = (w->cache_pos + 1) % CORIO_WORKER_CACHE;
  if (*slot) { /* evict the oldest */
    lua_pushnil(L);
    lua_rawseti(L, -3, *slot);
  }
  *slot = c->id;
  lua_pushvalue(L, -1);
  lua_rawseti(L, -3, c->id);
  lua_remove(L, -2);
}

/* Encodes a failure message as the job's outcome. */
static void job_fail(lua_State *L, corio_pool_job *j, const char *msg) {
  char err[64];
  lua_pushstring(L, msg);
  j->status = CORIO_JOB_FAIL;
  if (corio_marshal(L, lua_gettop(L), 1, &j->buf, "error", err, sizeof err))
    j->buf.n = 0;
  lua_pop(L, 1);
}

/* Encodes the error from the job's pcall (on top) as its outcome. */
static void job_error(lua_State *L, corio_pool_job *j) {
  char err[256];
  int top = lua_gettop(L);
  if (lua_touserdata(L, top) == (void *)&pool_interrupt_mark) {
    job_fail(L, j, "interrupted");
    return;
  }
  j->status = CORIO_JOB_ERROR;
  if (!lua_istable(L, top)) { /* the handler itself failed */
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, top);
    lua_rawseti(L, -2, 1);
    lua_replace(L, top);
  }
  lua_rawgeti(L, top, 1);
  lua_rawgeti(L, top, 2);
  if (corio_marshal(L, top + 1, 2, &j->buf, "error", err, sizeof err)) {
    lua_pushfstring(L, "(error object is a %s value)",
                    luaL_typename(L, top + 1));
    lua_replace(L, top + 1);
    if (corio_marshal(L, top + 1, 2, &j->buf, "error", err, sizeof err))
      job_fail(L, j, err);
  }
}

/* Protected, in the worker's state: run job j (arg 1) and encode what it
   gave in j->buf. */
static int worker_job(lua_State *L) {
  corio_pool_job *j = (corio_pool_job *)lua_touserdata(L, 1);
  corio_pool_worker *w = worker_of(L);
  char err[256];
  int n, st;
  if (!worker_init(L, w)) {
    job_fail(L, j, lua_tostring(L, -1));
    return 0;
  }
  lua_pushcfunction(L, worker_msgh); /* 2 */
  worker_fn(L, w, j->code);          /* 3 */
  n = corio_unmarshal(L, j->buf.p, j->buf.n);
  st = lua_pcall(L, n, LUA_MULTRET, 2);
  if (st != LUA_OK) {
    job_error(L, j);
    return 0;
  }
  n = lua_gettop(L) - 2;
  j->status = CORIO_JOB_OK;
  if (corio_marshal(L, 3, n, &j->buf, "results", err, sizeof err)) {
    lua_pushfstring(L, "%s: %s", j->fname, err);
    job_fail(L, j, lua_tostring(L, -1));
  }
  return 0;
}

/* Runs j in L. A failure outside the job's own pcall (out of memory, a
   function that does not load) becomes the job's failure message. */
static void worker_run(lua_State *L, corio_pool_job *j) {
  if (!L) { /* no state: an empty message says "could not run" */
    j->status = CORIO_JOB_FAIL;
    j->buf.n = 0;
    return;
  }
  lua_pushcfunction(L, worker_job);
  lua_pushlightuserdata(L, j);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK)
    job_fail(L, j, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                   : "the worker could not run the job (out of memory)");
  lua_settop(L, 0);
}

/* The worker's state, its first try of init done (unless stopping). */
static lua_State *worker_open(corio_pool_worker *w) {
  corio_pool *p = w->pool;
  lua_State *L = luaL_newstate();
  int go;
  if (!L) return NULL;
  lua_pushcfunction(L, worker_setup);
  lua_pushlightuserdata(L, w);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    lua_close(L);
    return NULL;
  }
  uv_mutex_lock(&p->mu);
  w->L = L;
  go = w->running = !p->stopping;
  uv_mutex_unlock(&p->mu);
  if (go) {
    lua_pushcfunction(L, worker_init_p);
    lua_pushlightuserdata(L, w);
    lua_pcall(L, 1, 0, 0);
    lua_settop(L, 0);
  }
  uv_mutex_lock(&p->mu);
  w->running = 0;
  uv_mutex_unlock(&p->mu);
  return L;
}

/* Called and returns with mu held, when there is no job. A job often
   follows the last one within microseconds (a task awaiting results in a
   loop): polling briefly first saves the sleep and wake-up of a thread,
   which is most of a round trip. But polling takes a CPU that the loop
   thread may need on a busy machine, so the budget adapts: a job that
   comes within SPIN_FAST (the loop thread is awake and quick) restores
   it; a job that comes later halves it; none at all stops polling, which
   is tried again every SPIN_PROBE waits. Polling workers count as idle,
   so no extra worker is started for a job one of them will take. */
static void worker_wait(corio_pool *p, corio_pool_worker *w) {
  int budget = w->spin_ns;
  p->idle++;
  if (!budget && ++w->spin_skip >= SPIN_PROBE) {
    w->spin_skip = 0;
    budget = SPIN_NS;
  }
  if (budget) {
    uint64_t t0 = uv_hrtime(), now = t0;
    int k = 0, got;
    uv_mutex_unlock(&p->mu);
    while (!(got = __atomic_load_n(&p->count, __ATOMIC_ACQUIRE)) &&
           !__atomic_load_n(&p->stopping, __ATOMIC_ACQUIRE)) {
      if (++k % 32 == 0 && (now = uv_hrtime()) - t0 > (uint64_t)budget)
        break;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    if (!got) w->spin_ns = 0;
    else if (uv_hrtime() - t0 < SPIN_FAST) w->spin_ns = SPIN_NS;
    else w->spin_ns = budget / 2 < SPIN_FAST ? 0 : budget / 2;
    uv_mutex_lock(&p->mu);
  }
  while (!p->stopping && p->count == 0) uv_cond_wait(&p->cv, &p->mu);
  p->idle--;
}

static void worker_main(void *arg) {
  corio_pool_worker *w = (corio_pool_worker *)arg;
  corio_pool *p = w->pool;
  lua_State *L = worker_open(w);
  uv_mutex_lock(&p->mu);
  for (;;) {
    corio_pool_job *j;
    int refill;
    if (!p->stopping && p->count == 0) worker_wait(p, w);
    if (p->stopping) break;
    j = corio_pool_take(p);
    j->state = CORIO_JOB_RUNNING;
    j->worker = w;
    __atomic_store_n(&w->interrupt, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&w->current, NULL, __ATOMIC_RELEASE);
    if (L) lua_sethook(L, NULL, 0, 0); /* a late interrupt's hook */
    w->running = 1;
    p->busy++;
    refill = p->overflow_n > 0; /* a slot freed: let the loop fill it */
    uv_mutex_unlock(&p->mu);
    if (refill) uv_async_send(&p->async);
    worker_run(L, j);
    uv_mutex_lock(&p->mu);
    w->running = 0;
    p->busy--;
    j->state = CORIO_JOB_DONE;
    j->worker = NULL;
    if (p->done_tail) p->done_tail->next = j;
    else p->done_head = j;
    p->done_tail = j;
    uv_mutex_unlock(&p->mu);
    uv_async_send(&p->async);
    uv_mutex_lock(&p->mu);
  }
  p->exited++;
  uv_mutex_unlock(&p->mu);
  if (L) lua_close(L); /* by the thread that used it */
  /* the loop joins this thread before it frees p */
  uv_async_send(&p->async);
}

int corio_worker_start(corio_pool *p) {
  corio_pool_worker *w = (corio_pool_worker *)calloc(1, sizeof *w);
  if (!w) return 0;
  w->pool = p;
  w->cache_ref = LUA_NOREF;
  w->spin_ns = SPIN_NS;
  if (uv_thread_create(&w->tid, worker_main, w) != 0) {
    free(w);
    return 0;
  }
  p->workers[p->started++] = w;
  return 1;
}
