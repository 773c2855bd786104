/*
 * pool.c: corio.blocking(fn, ...) and corio.pool{...}: Lua functions run
 * on corio's own worker threads (not libuv's pool, so fs and DNS requests
 * never queue behind Lua jobs), each worker with a lua_State of its own.
 * This is the loop side; the threads are in worker.c.
 *
 * A job is a corio_pool_job: the function (as bytecode, dumped once per
 * function prototype and loaded once per worker, see corio_pool_code), the
 * arguments as marshaled bytes (marshal.c), later the results in the same
 * buffer. Job structs and their buffers are reused (a free list), so a
 * steady stream of jobs allocates nothing.
 *
 *   loop thread                         worker thread
 *   submit: overflow list (queue full)
 *        -> ring (bounded, under mu) --> run in the worker's state
 *   async callback  <-- done list (under mu) + uv_async_send
 *   wake the waiting task
 *
 * Invariants:
 *   - a job is in exactly one place: the free list, the overflow list
 *     (PENDING, loop side), the ring (QUEUED), a worker (RUNNING) or the
 *     done list (DONE); its state says which, and changes under mu;
 *   - j->waiter is the task parked in the job's await, or NULL once the
 *     job is orphaned (the waiter was cancelled or the pool closed); only
 *     the loop thread reads or writes it, and frees jobs;
 *   - p->nwait counts jobs with a waiter; the async handle is referenced
 *     exactly while it is non-zero, so a task waiting on a job is not a
 *     deadlock, and an idle pool does not keep the loop alive;
 *   - uv_async coalesces sends, so the callback drains the whole done
 *     list each time: no result is ever lost.
 * Worker states never touch the loop's Lua state: values cross as bytes.
 */
#include "corio.h"
#include <stdlib.h>
#include <string.h>

#define POOL_MT "corio.Pool"
#define CODE_MT "corio.PoolCode"
#define CODES_KEY "corio.pool.codes"
#define CODES_MAX 4096        /* functions cached on the loop side */
#define FREE_MAX 1024         /* job structs kept for reuse */
#define BUF_KEEP (64 * 1024)  /* larger buffers are not kept for reuse */

#if LUA_VERSION_NUM >= 503
#define aux_dump(L, w, d) lua_dump((L), (w), (d), 0)
#else
#define aux_dump(L, w, d) lua_dump((L), (w), (d))
#endif

typedef struct pool_box {
  corio_pool *p;          /* NULL once the pool is freed */
} pool_box;

/* ================================================================ code */

typedef struct code_writer {
  corio_buf b;
  int failed;
} code_writer;

static int code_write(lua_State *L, const void *p, size_t sz, void *ud) {
  code_writer *w = (code_writer *)ud;
  (void)L;
  if (w->failed) return 1;
  if (w->b.n + sz > w->b.cap) {
    size_t cap = w->b.cap ? w->b.cap * 2 : 512;
    char *np;
    while (cap < w->b.n + sz) cap *= 2;
    if (!(np = (char *)realloc(w->b.p, cap))) return w->failed = 1;
    w->b.p = np;
    w->b.cap = cap;
  }
  memcpy(w->b.p + w->b.n, p, sz);
  w->b.n += sz;
  return 0;
}

static void code_release(corio_pool_code *c) {
  if (c && --c->refs == 0) free(c);
}

static int lcode_gc(lua_State *L) {
  corio_pool_code **box = (corio_pool_code **)luaL_checkudata(L, 1,
                                                              CODE_MT);
  code_release(*box);
  *box = NULL;
  return 0;
}

/* fn (at idx, a Lua function) may have no upvalue but _ENV. */
static void code_check(lua_State *L, int idx) {
  const char *name;
  int i;
  if (lua_iscfunction(L, idx))
    luaL_argerror(L, idx, "Lua function expected, got C function");
  for (i = 1; (name = lua_getupvalue(L, idx, i)) != NULL; i++) {
    lua_pop(L, 1);
#if LUA_VERSION_NUM >= 502
    if (strcmp(name, "_ENV") == 0) continue;
#endif
    luaL_argerror(L, idx, lua_pushfstring(L, "the function has upvalue "
                  "'%s': it runs in another Lua state, so only _ENV may "
                  "be an upvalue (pass values as arguments)", name));
  }
}

/* Sets field `name` of the table on top to a new table of weak `mode`. */
static void aux_weak(lua_State *L, const char *name, const char *mode) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, name);
}

/* The codes table: weak fn -> box, and weak bytecode -> box, so that
   closures of one prototype share one id (and one load per worker). */
static void codes_push(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, CODES_KEY);
  if (lua_istable(L, -1)) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 4);
  aux_weak(L, "fns", "k");
  aux_weak(L, "bytes", "v");
  lua_pushinteger(L, 0);
  lua_setfield(L, -2, "n");             /* entries since the last reset */
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, CODES_KEY);
}

/* Makes the box for the bytecode string on top (replacing it by the box),
   with a fresh id. */
static void code_new(lua_State *L, int codes) {
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  corio_pool_code **box = (corio_pool_code **)lua_newuserdata(L, sizeof *box);
  corio_pool_code *c;
  int id;
  *box = NULL;
  luaL_setmetatable(L, CODE_MT);
  if (!(c = (corio_pool_code *)malloc(sizeof *c + n)))
    luaL_error(L, "blocking: out of memory");
  /* ids come from the per-state context, never from the codes table:
     that table is dropped when it grows past CODES_MAX, and an id used
     again would make a worker run the function its cache holds for it */
  id = ++corio_ctx_get(L)->pool_code_id;
  (void)codes;
  c->refs = 1;
  c->id = id;
  c->n = n;
  memcpy(c->bytes, s, n);
  *box = c;
  lua_getfield(L, codes, "bytes");
  lua_pushvalue(L, -3);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_remove(L, -2);
}

/* (protected) dumps the function at 1 into the writer at 2 and pushes
   the bytes as a string. */
static int code_dump_p(lua_State *L) {
  code_writer *w = (code_writer *)lua_touserdata(L, 2);
  lua_settop(L, 1);
  aux_dump(L, code_write, w);
  lua_pushlstring(L, w->b.p ? w->b.p : "", w->b.n);
  return 1;
}

/* The code of fn at idx: cached per function, dumped on first use. */
static corio_pool_code *code_get(lua_State *L, int idx) {
  code_writer w;
  corio_pool_code *c;
  int codes, n, st;
  codes_push(L);
  codes = lua_gettop(L);
  lua_getfield(L, codes, "fns");
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  if ((c = lua_isuserdata(L, -1) ? *(corio_pool_code **)lua_touserdata(L, -1)
                                 : NULL) != NULL) {
    lua_settop(L, codes - 1);
    return c;
  }
  lua_pop(L, 1);
  code_check(L, idx);
  memset(&w, 0, sizeof w);
  /* protected: the bytes are malloc'd until they are a Lua string, and
     making that string may raise (out of memory) */
  lua_pushcfunction(L, code_dump_p);
  lua_pushvalue(L, idx);
  lua_pushlightuserdata(L, &w);
  st = lua_pcall(L, 2, 1, 0);
  corio_buf_free(&w.b);
  if (st != LUA_OK) lua_error(L);
  if (w.failed) luaL_error(L, "blocking: out of memory");
  lua_getfield(L, codes, "bytes");
  lua_pushvalue(L, -2);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    code_new(L, codes);
  } else {
    lua_remove(L, -2);
  }
  c = *(corio_pool_code **)lua_touserdata(L, -1);
  lua_getfield(L, codes, "n");
  n = (int)lua_tointeger(L, -1) + 1;
  lua_pop(L, 1);
  if (n > CODES_MAX) { /* bounded: start afresh (jobs keep their code) */
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, CODES_KEY);
    n = 0;
  }
  lua_pushinteger(L, n);
  lua_setfield(L, codes, "n");
  lua_pushvalue(L, idx); /* fns[fn] = box */
  lua_pushvalue(L, -2);
  lua_rawset(L, codes + 1);
  lua_settop(L, codes - 1);
  return c;
}

/* ================================================================ jobs */

static corio_pool_job *job_get(lua_State *L, corio_pool *p) {
  corio_link *n = corio_list_shift(&p->free);
  corio_pool_job *j;
  if (n) {
    p->nfree--;
    j = corio_container(n, corio_pool_job, link);
  } else {
    if (!(j = (corio_pool_job *)calloc(1, sizeof *j)))
      luaL_error(L, "blocking: out of memory");
    corio_list_init(&j->link);
    corio_list_init(&j->all);
    j->pool = p;
  }
  return j;
}

/* Back to the free list (loop thread). */
static void job_put(corio_pool *p, corio_pool_job *j) {
  corio_list_remove(&j->link);
  corio_list_remove(&j->all);
  code_release(j->code);
  j->code = NULL;
  j->waiter = NULL;
  j->worker = NULL;
  j->next = NULL;
  if (p->nfree >= FREE_MAX) {
    corio_buf_free(&j->buf);
    free(j);
    return;
  }
  if (j->buf.cap > BUF_KEEP) corio_buf_free(&j->buf);
  corio_list_push(&p->free, &j->link);
  p->nfree++;
}

/* ---------------------------------------------------------------- ring */

/* count changes under mu, but is also read without it by spinning
   workers: hence the atomic accesses. */
static void ring_count(corio_pool *p, int delta) {
  __atomic_store_n(&p->count, p->count + delta, __ATOMIC_RELEASE);
}

static void ring_push(corio_pool *p, corio_pool_job *j) {
  p->ring[(p->head + p->count) % p->cap] = j;
  ring_count(p, 1);
  j->state = CORIO_JOB_QUEUED;
}

corio_pool_job *corio_pool_take(corio_pool *p) {
  corio_pool_job *j = p->ring[p->head];
  p->head = (p->head + 1) % p->cap;
  ring_count(p, -1);
  return j;
}

/* Removes a queued job (a cancelled waiter's): O(queue), rare. */
static void ring_remove(corio_pool *p, corio_pool_job *j) {
  int k, found = 0;
  for (k = 0; k < p->count; k++) {
    int at = (p->head + k) % p->cap;
    if (!found && p->ring[at] == j) found = 1;
    if (found && k + 1 < p->count)
      p->ring[at] = p->ring[(p->head + k + 1) % p->cap];
  }
  if (found) ring_count(p, -1);
}

/* ================================================================ pool */

static void pool_ref_update(corio_pool *p) {
  int want = p->nwait > 0 && !uv_is_closing((uv_handle_t *)&p->async);
  if (want == p->refd) return;
  if (want) uv_ref((uv_handle_t *)&p->async);
  else uv_unref((uv_handle_t *)&p->async);
  p->refd = want;
}

/* Puts jobs in the ring: the overflow first (FIFO), then j if any.
   Wakes idle workers and starts more while jobs outnumber the workers
   not busy (idle, polling, or starting up). */
static void pool_fill(corio_pool *p, corio_pool_job *j) {
  corio_link *n;
  int more;
  uv_mutex_lock(&p->mu);
  while (p->count < p->cap && (n = corio_list_shift(&p->overflow))) {
    p->overflow_n--;
    ring_push(p, corio_container(n, corio_pool_job, link));
  }
  if (j && p->count < p->cap && corio_list_empty(&p->overflow)) {
    ring_push(p, j);
  } else if (j) {
    j->state = CORIO_JOB_PENDING;
    corio_list_push(&p->overflow, &j->link);
    p->overflow_n++;
  }
  if (p->idle > 0) {
    if (p->count > 1) uv_cond_broadcast(&p->cv);
    else if (p->count == 1) uv_cond_signal(&p->cv);
  }
  more = p->count - (p->started - p->exited - p->busy);
  uv_mutex_unlock(&p->mu);
  while (more-- > 0 && p->started < p->nworkers)
    if (!corio_worker_start(p)) break;
}

static void pool_on_closed(uv_handle_t *h) {
  free(corio_container(h, corio_pool, async));
}

/* Frees p once every worker has exited (joined here: a job stuck in a C
   call delays this). No Lua code. The memory goes in the close callback. */
static void pool_free(corio_pool *p) {
  corio_link *n;
  corio_pool_job *d;
  int i;
  for (i = 0; i < p->started; i++) {
    uv_thread_join(&p->workers[i]->tid);
    free(p->workers[i]);
  }
  for (d = p->done_head; d; d = d->next) corio_list_remove(&d->all);
  while ((n = corio_list_shift(&p->jobs))) { /* stray: detach, free */
    corio_pool_job *j = corio_container(n, corio_pool_job, all);
    job_put(p, j);
  }
  while ((d = p->done_head)) {
    p->done_head = d->next;
    job_put(p, d);
  }
  while ((n = corio_list_shift(&p->free))) {
    corio_pool_job *j = corio_container(n, corio_pool_job, link);
    corio_buf_free(&j->buf);
    free(j);
  }
  free(p->workers);
  free(p->ring);
  free(p->path);
  free(p->cpath);
  uv_mutex_destroy(&p->mu);
  uv_cond_destroy(&p->cv);
  corio_list_remove(&p->link);
  if (p->box) p->box->p = NULL;
  if (p->rt && p->rt->pool == p) p->rt->pool = NULL;
  uv_close((uv_handle_t *)&p->async, pool_on_closed);
}

/* Stops p: no new jobs; queued ones are dropped, running ones
   interrupted; waiters get a "closed" error (raised) when L is given,
   else (teardown) are detached. Workers exit on their own; the async
   callback (or corio_pool_rt_close) joins them. No Lua code runs. */
static void pool_stop(lua_State *L, corio_pool *p) {
  corio_link *n;
  int i, state;
  if (p->closed) return;
  p->closed = 1;
  uv_mutex_lock(&p->mu);
  __atomic_store_n(&p->stopping, 1, __ATOMIC_RELEASE);
  ring_count(p, -p->count);
  p->overflow_n = 0;
  for (i = 0; i < p->started; i++) corio_worker_interrupt(p->workers[i]);
  uv_cond_broadcast(&p->cv);
  uv_mutex_unlock(&p->mu);
  for (n = p->jobs.next; n != &p->jobs;) {
    corio_pool_job *j = corio_container(n, corio_pool_job, all);
    corio_task *t = j->waiter;
    n = n->next;
    if (t) {
      j->waiter = NULL;
      p->nwait--;
      t->wait.abort = NULL;
      t->wait.obj = NULL;
      if (L && t->rt) {
        corio_error_push(L, "closed", NULL, "%s: the pool was closed",
                         j->fname);
        lua_xmove(L, corio_wake_stack(t, 1), 1);
        corio_wake_raise(t);
      }
    }
    /* those never started are freed now; the rest come back orphaned
       (none starts any more: the ring is empty and stopping is set) */
    uv_mutex_lock(&p->mu);
    state = j->state;
    uv_mutex_unlock(&p->mu);
    if (state == CORIO_JOB_PENDING || state == CORIO_JOB_QUEUED) job_put(p, j);
  }
  pool_ref_update(p);
  if (p->started == 0) pool_free(p);
}

static void pool_deliver_value(lua_State *L, corio_pool_job *j) {
  lua_State *co;
  corio_task *t = (corio_task *)lua_touserdata(L, 2);
  int n;
  if (j->status == CORIO_JOB_OK) {
    n = corio_unmarshal(L, j->buf.p, j->buf.n);
    co = corio_wake_stack(t, n);
    lua_xmove(L, co, n);
    corio_wake(t, n);
    return;
  }
  n = j->buf.n ? corio_unmarshal(L, j->buf.p, j->buf.n) : 0;
  if (j->status == CORIO_JOB_ERROR && n == 2 && lua_istable(L, -2)) {
    lua_getfield(L, -2, "kind");
    lua_getfield(L, -3, "message");
    if (lua_type(L, -2) == LUA_TSTRING && lua_isstring(L, -1)) {
      lua_pop(L, 2); /* a corio-style error: the copy is the error */
      luaL_getmetatable(L, "corio.Error");
      lua_setmetatable(L, -3);
      lua_getfield(L, -2, "traceback");
      if (lua_isnil(L, -1)) {
        lua_pushvalue(L, -2);
        lua_setfield(L, -4, "traceback");
      }
      lua_pop(L, 2);
      lua_xmove(L, corio_wake_stack(t, 1), 1);
      corio_wake_raise(t);
      return;
    }
    lua_pop(L, 2);
  }
  /* stack: [value, traceback] (ERROR) or [message] (FAIL) or nothing */
  if (n >= 1 && lua_isstring(L, -n))
    corio_error_push(L, "task", NULL, "%s", lua_tostring(L, -n));
  else if (n >= 1)
    corio_error_push(L, "task", NULL, "(error object is a %s value)",
                     luaL_typename(L, -n));
  else
    corio_error_push(L, "task", NULL, "%s: the worker could not run the "
                     "job (out of memory)", j->fname);
  if (j->status == CORIO_JOB_ERROR && n == 2) {
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "traceback");
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "value");
  }
  lua_xmove(L, corio_wake_stack(t, 1), 1);
  corio_wake_raise(t);
}

static int pool_deliver_p(lua_State *L) {
  pool_deliver_value(L, (corio_pool_job *)lua_touserdata(L, 1));
  return 0;
}

/* Hands a finished job's outcome to its waiter, or drops an orphan. */
static void job_finish(corio_pool *p, corio_pool_job *j) {
  corio_task *t = j->waiter;
  lua_State *L = p->rt->L;
  p->jobs_done++;
  if (t && t->rt && L) {
    j->waiter = NULL;
    p->nwait--;
    lua_pushcfunction(L, pool_deliver_p);
    lua_pushlightuserdata(L, j);
    lua_pushlightuserdata(L, t);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) { /* out of memory: raise it */
      if (t->state == CORIO_WAITING && lua_checkstack(t->co, 3)) {
        lua_xmove(L, t->co, 1);
        corio_wake_raise(t);
      } else {
        lua_pop(L, 1);
      }
    }
  }
  job_put(p, j);
}

static void pool_on_async(uv_async_t *h) {
  corio_pool *p = corio_container(h, corio_pool, async);
  corio_pool_job *done;
  int gone;
  uv_mutex_lock(&p->mu);
  done = p->done_head;
  p->done_head = p->done_tail = NULL;
  gone = p->stopping && p->exited == p->started;
  uv_mutex_unlock(&p->mu);
  while (done) {
    corio_pool_job *next = done->next;
    job_finish(p, done);
    done = next;
  }
  if (gone) {
    pool_free(p);
    return;
  }
  if (!p->closed && !corio_list_empty(&p->overflow)) pool_fill(p, NULL);
  pool_ref_update(p);
}

static corio_pool *pool_new(lua_State *L, corio_rt *rt, int workers,
                            int queue, const char *init) {
  corio_pool *p;
  if (!rt->loop_open) luaL_error(L, "pool: the runtime is closed");
  if (strlen(init) >= sizeof p->init)
    luaL_error(L, "bad option 'init' to 'pool' (module name too long)");
  if (!(p = (corio_pool *)calloc(1, sizeof *p)))
    luaL_error(L, "pool: out of memory");
  p->ring = (corio_pool_job **)calloc((size_t)queue, sizeof *p->ring);
  p->workers = (corio_pool_worker **)calloc((size_t)workers,
                                            sizeof *p->workers);
  if (!p->ring || !p->workers || uv_mutex_init(&p->mu) != 0) {
    free(p->ring);
    free(p->workers);
    free(p);
    luaL_error(L, "pool: out of memory");
  }
  if (uv_cond_init(&p->cv) != 0 ||
      uv_async_init(&rt->loop, &p->async, pool_on_async) != 0) {
    uv_mutex_destroy(&p->mu); /* (a failed cond init leaves nothing) */
    free(p->ring);
    free(p->workers);
    free(p);
    luaL_error(L, "pool: cannot create the pool's wake-up handle");
  }
  uv_unref((uv_handle_t *)&p->async);
  p->async.data = rt; /* the runtime's own handle: not an I/O object's */
  p->cap = queue;
  p->nworkers = workers;
  p->rt = rt;
  strcpy(p->init, init);
  corio_list_init(&p->overflow);
  corio_list_init(&p->jobs);
  corio_list_init(&p->free);
  corio_list_push(&rt->pools, &p->link);
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "path");
    lua_getfield(L, -2, "cpath");
    if (lua_isstring(L, -2)) p->path = strdup(lua_tostring(L, -2));
    if (lua_isstring(L, -1)) p->cpath = strdup(lua_tostring(L, -1));
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  return p;
}

/* ========================================================== the waits */

/* The abort hook of a task waiting on its job. */
static int pool_abort(corio_task *t, int woken) {
  corio_pool_job *j = (corio_pool_job *)t->wait.obj;
  corio_pool *p;
  int state;
  if (woken == 1) return 1; /* the results are dropped */
  p = j->pool;
  j->waiter = NULL;
  p->nwait--;
  uv_mutex_lock(&p->mu);
  state = j->state;
  if (state == CORIO_JOB_PENDING) {
    p->overflow_n--;
  } else if (state == CORIO_JOB_QUEUED) {
    ring_remove(p, j);
  } else if (state == CORIO_JOB_RUNNING) { /* stop it at its next check */
    corio_worker_interrupt(j->worker);
  }
  uv_mutex_unlock(&p->mu);
  if (state == CORIO_JOB_PENDING || state == CORIO_JOB_QUEUED) {
    job_put(p, j);
    if (state == CORIO_JOB_QUEUED && woken == 0) pool_fill(p, NULL);
  }
  pool_ref_update(p);
  return 1;
}

/* Queues fn (at fnidx) with the arguments above it, and parks t until its
   job has finished. */
static int pool_submit(lua_State *L, corio_pool *p, corio_task *t, int fnidx,
                       const char *fname) {
  char err[256];
  corio_pool_code *c = code_get(L, fnidx);
  corio_pool_job *j = job_get(L, p);
  if (corio_marshal(L, fnidx + 1, lua_gettop(L) - fnidx, &j->buf, "args",
                    err, sizeof err)) {
    job_put(p, j);
    return luaL_error(L, "%s: %s", fname, err);
  }
  if (p->started == 0 && !corio_worker_start(p)) { /* not even one */
    job_put(p, j);
    return luaL_error(L, "%s: cannot start a worker thread", fname);
  }
  c->refs++;
  j->code = c;
  j->fname = fname;
  j->waiter = t;
  corio_list_push(&p->jobs, &j->all);
  p->nwait++;
  pool_fill(p, j);
  pool_ref_update(p);
  return corio_await(L, t, "blocking", pool_abort, j, -1);
}

/* corio.blocking(fn, ...) -> fn's results, run on the default pool */
static int lcorio_blocking(lua_State *L) {
  corio_rt *rt;
  corio_task *t;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  rt = corio_rt_get(L, "blocking");
  t = corio_await_begin(L, "blocking");
  if (!rt->pool) rt->pool = pool_new(L, rt, rt->workers, rt->queue,
                                     rt->init);
  return pool_submit(L, rt->pool, t, 1, "blocking");
}

/* ============================================================ corio.Pool */

static pool_box *check_pool(lua_State *L) {
  return (pool_box *)corio_checkudata(L, 1, POOL_MT);
}

static int aux_size(lua_State *L, const char *key, int def) {
  return (int)corio_opt_range(L, 1, key, def, 1, 1e6, "pool");
}

/* corio.pool{workers =, queue =, init =} */
static int lcorio_pool(lua_State *L) {
  static const char *const allowed[] = {"workers", "queue", "init", NULL};
  corio_rt *rt = corio_rt_get(L, "pool");
  int workers, queue;
  const char *init;
  pool_box *b;
  corio_opt_present(L, 1, "pool", allowed);
  workers = aux_size(L, "workers", rt->workers);
  queue = aux_size(L, "queue", rt->queue);
  init = corio_opt_string(L, 1, "init", "", "pool");
  b = (pool_box *)lua_newuserdata(L, sizeof *b);
  b->p = NULL;
  luaL_setmetatable(L, POOL_MT);
  b->p = pool_new(L, rt, workers, queue, init);
  b->p->box = b;
  return 1;
}

/* p:run(fn, ...) -> fn's results */
static int lpool_run(lua_State *L) {
  pool_box *b = check_pool(L);
  corio_task *t;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  t = corio_await_begin(L, "run");
  if (!b->p || b->p->closed)
    return corio_error_raise(L, "closed", "run: the pool is closed");
  if (b->p->rt != t->rt)
    return luaL_error(L, "run: the pool belongs to another runtime");
  return pool_submit(L, b->p, t, 2, "run");
}

/* p:close(): waiting callers get a "closed" error; workers stop after
   their job (interrupted). Idempotent. */
static int lpool_close(lua_State *L) {
  pool_box *b = check_pool(L);
  if (b->p) pool_stop(L, b->p);
  return 0;
}

static int lpool_gc(lua_State *L) {
  pool_box *b = check_pool(L);
  if (b->p) {
    b->p->box = NULL;
    pool_stop(NULL, b->p);
    b->p = NULL;
  }
  return 0;
}

static int lpool_tostring(lua_State *L) {
  pool_box *b = check_pool(L);
  if (!b->p || b->p->closed) lua_pushliteral(L, "corio.Pool(closed)");
  else lua_pushfstring(L, "corio.Pool(%d workers, queue %d)",
                       b->p->nworkers, b->p->cap);
  return 1;
}

/* ============================================================== runtime */

void corio_pool_rt_close(corio_rt *rt) {
  corio_link *n;
  while ((n = rt->pools.next) != &rt->pools && n) {
    corio_pool *p = corio_container(n, corio_pool, link);
    pool_stop(NULL, p);
    if (p->link.next == &p->link) continue; /* freed by the stop */
    pool_free(p);
  }
}

int corio_pool_busy(corio_rt *rt) {
  corio_link *n;
  for (n = rt->pools.next; n && n != &rt->pools; n = n->next)
    if (corio_container(n, corio_pool, link)->nwait > 0) return 1;
  return 0;
}

void corio_pool_stats(lua_State *L, corio_rt *rt) {
  lua_Integer workers = 0, busy = 0, queued = 0, done = 0;
  corio_link *n;
  for (n = rt->pools.next; n && n != &rt->pools; n = n->next) {
    corio_pool *p = corio_container(n, corio_pool, link);
    uv_mutex_lock(&p->mu);
    workers += p->started - p->exited;
    busy += p->busy;
    queued += p->count + p->overflow_n;
    uv_mutex_unlock(&p->mu);
    done += p->jobs_done;
  }
  lua_pushinteger(L, workers);
  lua_setfield(L, -2, "workers");
  lua_pushinteger(L, busy);
  lua_setfield(L, -2, "workers_busy");
  lua_pushinteger(L, queued);
  lua_setfield(L, -2, "jobs_queued");
  lua_pushinteger(L, queued);
  lua_setfield(L, -2, "queued_jobs"); /* the name DESIGN.md uses */
  lua_pushinteger(L, done);
  lua_setfield(L, -2, "jobs_done");
}

static const luaL_Reg pool_methods[] = {{"close", lpool_close},
                                        {NULL, NULL}};
static const luaL_Reg pool_await[] = {{"run", lpool_run}, {NULL, NULL}};
static const luaL_Reg pool_meta[] = {{"__gc", lpool_gc},
                                     {"__tostring", lpool_tostring},
#if LUA_VERSION_NUM >= 504
                                     {"__close", lpool_close},
#endif
                                     {NULL, NULL}};
static const luaL_Reg funcs[] = {{"pool", lcorio_pool}, {NULL, NULL}};
static const luaL_Reg await_funcs[] = {{"blocking", lcorio_blocking},
                                       {NULL, NULL}};

void corio_open_pool(lua_State *L) {
  corio_class(L, POOL_MT, pool_methods, pool_await, pool_meta);
  lua_pop(L, 1);
  luaL_newmetatable(L, CODE_MT);
  lua_pushcfunction(L, lcode_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  corio_setfuncs(L, funcs, 0);
  corio_setfuncs(L, await_funcs, 1);
}
