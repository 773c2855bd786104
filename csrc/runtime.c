/*
 * runtime.c: corio.runtime{...}, rt:run(main, ...) and the scheduler.
 *
 * The scheduler resumes ready tasks in FIFO batches (a task readied during
 * a batch runs in the next one, after I/O had a chance), fires due timers,
 * and only then blocks in the loop. It never blocks while a task is ready.
 * When nothing is ready, no timer is armed and no libuv handle or request
 * is active, no task can ever wake again: that is a deadlock, reported as
 * an error of kind "deadlock" rather than a hang.
 */
#include "corio.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define RT_MT "corio.Runtime"

static void rt_dump_watch(corio_rt *rt, int on);

corio_rt *corio_rt_get(lua_State *L, const char *fname) {
  corio_rt *rt = corio_ctx_get(L)->rt;
  if (!rt)
    luaL_error(L, "%s: no corio runtime is running (call it inside "
               "corio.run)", fname);
  return rt;
}

void corio_rt_defer(corio_rt *rt, corio_deferred *d) {
  if (!corio_linked(&d->link)) corio_list_push(&rt->deferred, &d->link);
}

static void rt_run_deferred(lua_State *L, corio_rt *rt) {
  corio_link *n;
  while ((n = corio_list_shift(&rt->deferred)) != NULL) {
    corio_deferred *d = corio_container(n, corio_deferred, link);
    d->fn(L, d);
  }
}

void corio_rt_push_ready(corio_rt *rt, corio_task *t) {
  corio_list_push(&rt->ready, &t->link);
}

static corio_rt *check_rt(lua_State *L, int idx) {
  return (corio_rt *)corio_checkudata(L, idx, RT_MT);
}

/* ------------------------------------------------------------ reports */

/* The default report: one stderr line naming the task, with the message
   and the traceback's frames joined by " | ". Pops the error object.
   Runs no Lua code, so it is also what lua_close falls back to. */
static void rt_print_value(lua_State *L) {
  const char *tb, *name, *msg;
  luaL_Buffer b;
  lua_checkstack(L, 6);
  if (!lua_istable(L, -1)) {
    fprintf(stderr, "corio: unhandled error: %s\n",
            lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
    return;
  }
  /* raw reads: no user metamethod runs here (it may be lua_close) */
  lua_pushliteral(L, "traceback");
  lua_rawget(L, -2);
  lua_pushliteral(L, "task");
  lua_rawget(L, -3);
  lua_pushliteral(L, "message");
  lua_rawget(L, -4);
  tb = lua_type(L, -3) == LUA_TSTRING ? lua_tostring(L, -3) : NULL;
  name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
  msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
  if (tb) tb = strstr(tb, "stack traceback:"); /* frames only */
  luaL_buffinit(L, &b);
  for (; tb && *tb; tb++) {
    if (*tb == '\n') luaL_addstring(&b, " | ");
    else if (*tb != '\t') luaL_addchar(&b, *tb);
  }
  luaL_pushresult(&b);
  fprintf(stderr, "corio: unhandled error in task '%s': %s%s%s\n", name,
          msg, tb ? " | " : "", lua_tostring(L, -1));
  lua_pop(L, 5);
}

/* Reports the error object on top of L (and pops it). */
void corio_rt_report_value(lua_State *L, corio_rt *rt) {
  lua_checkstack(L, 4);
  if (rt->on_error_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->on_error_ref);
    lua_pushvalue(L, -2);
    if (lua_pcall(L, 1, 0, 0) == LUA_OK) {
      lua_pop(L, 1);
      return;
    }
    fprintf(stderr, "corio: error in on_error handler: %s\n",
            lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
  }
  rt_print_value(L);
}

void corio_rt_report(lua_State *L, corio_rt *rt, corio_task *t) {
  lua_checkstack(L, 2);
  lua_pushvalue(t->co, -1);
  lua_xmove(t->co, L, 1);
  corio_rt_report_value(L, rt);
}

void corio_rt_defer_value(lua_State *L, corio_rt *rt) {
  if (!rt->running) { /* run already reported it, or is gone */
    lua_pop(L, 1);
    return;
  }
  lua_checkstack(L, 3);
  if (rt->pending_ref == LUA_NOREF) {
    lua_newtable(L);
    rt->pending_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->pending_ref);
  lua_insert(L, -2);
  lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
}

void corio_rt_defer_report(lua_State *L, corio_rt *rt, corio_task *t) {
  if (!rt->running) return;
  lua_checkstack(L, 4);
  lua_pushvalue(t->co, -1);
  lua_xmove(t->co, L, 1);
  corio_rt_defer_value(L, rt);
}

/* Reports the errors queued by finalizers, from the scheduler. */
static void rt_report_pending(lua_State *L, corio_rt *rt) {
  int i, n, ref = rt->pending_ref;
  if (ref == LUA_NOREF) return;
  rt->pending_ref = LUA_NOREF;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  n = (int)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    corio_rt_report_value(L, rt);
  }
  lua_pop(L, 1);
}

/* Reports every failure nobody observed. A handler that collects garbage
   moves tasks from the unobserved list to the pending one (their
   finalizers queue them), so both are drained until both are empty. */
static void rt_report_all(lua_State *L, corio_rt *rt) {
  corio_link *n;
  for (;;) {
    if (rt->pending_ref != LUA_NOREF) {
      rt_report_pending(L, rt);
    } else if ((n = corio_list_shift(&rt->unobserved)) != NULL) {
      corio_rt_report(L, rt, corio_failure_task(n));
    } else {
      break;
    }
  }
}

/* ---------------------------------------------------------- scheduler */

/* A started task's coroutine is always suspended in a yield when the
   scheduler resumes it, unless user code resumed it with coroutine.resume
   and it ended there. Then what its wake handed over goes back (the
   wait's abort hook) and the task fails with an error saying so. */
static int rt_hijacked(lua_State *L, corio_task *t) {
  if (!(t->flags & CORIO_TF_STARTED) || lua_status(t->co) == LUA_YIELD)
    return 0;
  if ((t->flags & CORIO_TF_WOKEN) && t->wait.abort) t->wait.abort(t, 1);
  lua_settop(t->co, 0);
  corio_error_push(t->co, "task", NULL, "the task's coroutine was resumed "
                   "by coroutine.resume or closed by coroutine.close "
                   "outside the scheduler");
  t->state = CORIO_RUNNING;
  corio_task_finish(L, t, LUA_ERRRUN, 1);
  return 1;
}

/* CORIO_GC_TORTURE: a full collection right after a task stopped at an
   await (its values still on its stack), every 1 to 2n steps, so that
   every object's finalizer can run at any scheduling point. The interval
   grows with the live tasks (a collection costs the heap, mostly tasks),
   so a spec of 100k tasks stays linear. */
static void rt_gc_torture(lua_State *L, corio_rt *rt) {
  unsigned span = 2u * (unsigned)rt->gc_torture + (unsigned)(rt->n_live / 32);
  rt->gc_rand = rt->gc_rand * 1103515245u + 12345u;
  rt->gc_left = 1 + (int)((rt->gc_rand >> 8) % span);
  lua_gc(L, LUA_GCCOLLECT, 0);
}

static void rt_step(lua_State *L, corio_rt *rt, corio_task *t) {
  int nres = 0, st;
  if (rt_hijacked(L, t)) return;
  t->flags |= CORIO_TF_STARTED;
  t->state = CORIO_RUNNING;
  t->flags &= ~CORIO_TF_WOKEN;
  rt->current = t;
  st = corio_resume(t->co, L, t->nargs, &nres);
  rt->current = NULL;
  if (rt->gc_torture && --rt->gc_left <= 0) rt_gc_torture(L, rt);
  if (t->flags & CORIO_TF_GRANTED) corio_budget_unclaimed(t);
  if (st == LUA_YIELD) {
    lua_pop(t->co, nres);
    if (t->state == CORIO_RUNNING) {
      /* a plain coroutine.yield(): the task goes to the back of the queue
         and the yield returns nothing (DESIGN: yields pass through) */
      t->nargs = 0;
      t->state = CORIO_READY;
      corio_rt_push_ready(rt, t);
    }
  } else {
    corio_task_finish(L, t, st, nres);
  }
}

/* Whether anything but our own clock handles (kept unreferenced) can
   still call back. */
static int rt_io_alive(corio_rt *rt) { return uv_loop_alive(&rt->loop); }

/* Fairness (tokio polls its drivers every 61 ticks): every tick_every
   task steps the scheduler fires the timers that are due and polls the
   loop without blocking, so tasks that are always ready cannot starve
   timers, deadlines, I/O or pool completions. A tick is not taken after
   every step because reading the clock costs a third of a whole
   corio.yield(): the interval doubles up to TICK_MAX while ticks come
   quickly, and drops back to every step as soon as one interval took
   longer than TICK_SLOW_NS (then steps are long, the clock read is free
   beside them, and a due timer waits at most one step). */
#define TICK_MAX 61
#define TICK_SLOW_NS 1000000u

static void rt_tick(corio_rt *rt) {
  uint64_t real = uv_hrtime();
  corio_timers_run(rt, rt->virtual_clock ? rt->vnow : real);
  if (rt_io_alive(rt)) uv_run(&rt->loop, UV_RUN_NOWAIT);
  if (real - rt->tick_ns >= TICK_SLOW_NS) rt->tick_every = 1;
  else if (rt->tick_every < TICK_MAX)
    rt->tick_every = rt->tick_every * 2 < TICK_MAX ? rt->tick_every * 2
                                                   : TICK_MAX;
  rt->tick_ns = real;
  rt->tick_left = rt->tick_every;
}

/* Run the tasks ready now; those readied meanwhile (by the steps, or by
   a tick's timers and I/O) wait for the next batch. A marker node at the
   tail ends the batch. */
static void rt_run_batch(lua_State *L, corio_rt *rt) {
  corio_link *n;
  corio_list_push(&rt->ready, &rt->batch_end);
  while ((n = corio_list_shift(&rt->ready)) != &rt->batch_end) {
    rt_step(L, rt, corio_container(n, corio_task, link));
    if (--rt->tick_left == 0) rt_tick(rt);
  }
}

/* Main has returned (or nothing can run): cancel every live task; tasks
   spawned from now on start cancelled (corio_task_spawn). */
static void rt_reap(lua_State *L, corio_rt *rt) {
  corio_live *v;
  int k, n = corio_live_list(L, rt, &v);
  rt->reaping = 1;
  for (k = 0; k < n; k++) {
    corio_task *t = corio_live_get(rt, &v[k]);
    corio_scope *p = t ? corio_task_parent(t) : NULL;
    /* a nursery child is reached through its owner's cancellation, as
       t:cancel() reaches it: not through a shield around the nursery */
    if (!t || (p && p->owner && p->owner->state < CORIO_DONE)) continue;
    corio_task_cancel(t);
  }
  lua_pop(L, 1);
}

/* Raise-later: record the deadlock error (with the dump) in the registry. */
static void rt_deadlock(lua_State *L, corio_rt *rt) {
  corio_dump_push(L, rt);
  corio_error_push(L, "deadlock", NULL,
                   "every task is waiting and nothing can wake "
                   "them\n%s", lua_tostring(L, -1));
  lua_remove(L, -2);
  rt->deadlock_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Tears down t's wait for good (abort with woken == -1), once: the hook
   is cleared first, since what follows may raise (out of memory) and an
   abandon is then tried again, and a second call would free twice. */
static void rt_unwait(corio_task *t) {
  corio_abort_fn abort = t->wait.abort;
  if (t->state != CORIO_WAITING || !abort) return;
  t->wait.abort = NULL;
  abort(t, -1);
}

/* After a deadlock the tasks were cancelled; those still parked (their
   cleanup waited again on something that cannot happen) are abandoned. */
static void rt_abandon_one(lua_State *L, corio_task *t) {
  rt_unwait(t);
  if (t->flags & CORIO_TF_GRANTED) corio_budget_unclaimed(t);
  corio_list_remove(&t->link);
  lua_settop(t->co, 0);
  /* it ends cancelled, whatever shield it was parked in */
  while (t->scope && t->scope->owner == t) corio_scope_pop(t, t->scope);
  t->flags |= CORIO_TF_CANCEL;
  corio_error_push(t->co, "cancelled", NULL,
                   "task abandoned after a deadlock");
  corio_task_finish(L, t, LUA_ERRRUN, 1);
}

static void rt_abandon(lua_State *L, corio_rt *rt) {
  while (rt->n_live > 0) { /* cleanup code may spawn more */
    corio_live *v;
    int k, n = corio_live_list(L, rt, &v);
    if (n == 0) break;
    for (k = 0; k < n; k++) {
      corio_task *t = corio_live_get(rt, &v[k]);
      if (t) rt_abandon_one(L, t);
    }
    lua_pop(L, 1);
  }
}

/* What one turn of the scheduler did. */
enum { RT_MORE, RT_BATCH, RT_IDLE, RT_DONE };

/* The host loop's stand-in for blocking (rt_turn with block == 0): poll
   the loop once without waiting (which also registers new watchers, and
   the real clock's wake-up at next, with the backend fd), and jump the
   virtual clock where run would. RT_IDLE: only the outside world (I/O,
   real time) can bring work now. */
static int rt_poll(corio_rt *rt, uint64_t next) {
  int alive = rt_io_alive(rt);
  if (!rt->virtual_clock) corio_clock_poll(rt, next);
  else if (alive) uv_run(&rt->loop, UV_RUN_NOWAIT);
  if (!corio_list_empty(&rt->ready)) return RT_MORE;
  if (next == UINT64_MAX && !rt_io_alive(rt)) return RT_MORE; /* check */
  if (!rt->virtual_clock || (alive && (next == UINT64_MAX ||
                                       corio_pool_busy(rt))))
    return RT_IDLE;
  rt->vnow = next;
  return RT_MORE;
}

/* One turn: a batch of ready tasks, due timers, the end of the run, or a
   wait for the loop (block: as run does; else rt_poll). */
static int rt_turn(lua_State *L, corio_rt *rt, int block) {
  uint64_t next;
  if (rt->pending_ref != LUA_NOREF) rt_report_pending(L, rt);
  if (!corio_list_empty(&rt->deferred)) rt_run_deferred(L, rt);
  if (!corio_list_empty(&rt->ready)) {
    rt->gc_tried = 0;
    rt_run_batch(L, rt);
    return RT_BATCH;
  }
  if (corio_timers_run(rt, corio_now_ns(rt))) return RT_MORE;
  if (rt->main->state >= CORIO_DONE || rt->deadlock_ref != LUA_NOREF) {
    if (!rt->n_live) return RT_DONE;
    if (!rt->reaping) {
      rt_reap(L, rt);
      return RT_MORE;
    }
  }
  next = corio_timers_next(rt);
  if (next == UINT64_MAX && !rt_io_alive(rt)) {
    if (!rt->gc_tried) {
      /* a forgotten permit or guard comes back when collected, and may
         wake a waiter: collect once before calling it a deadlock */
      rt->gc_tried = 1;
      lua_gc(L, LUA_GCCOLLECT, 0);
      return RT_MORE;
    }
    if (rt->deadlock_ref == LUA_NOREF) {
      rt_deadlock(L, rt);
      rt_reap(L, rt);
      return RT_MORE;
    }
    rt_abandon(L, rt);
    return RT_DONE;
  }
  if (!block) return rt_poll(rt, next);
  if (!rt->virtual_clock) {
    corio_clock_block(rt, next);
    rt->tick_ns = uv_hrtime(); /* idle time is no slow step; and it
                                  dates the tasks spawned next */
  } else if (rt_io_alive(rt)) {
    /* a pool job takes real time: virtual time waits for it rather
       than jumping past a deadline meant to bound it */
    int hold = next == UINT64_MAX || corio_pool_busy(rt);
    uv_run(&rt->loop, hold ? UV_RUN_ONCE : UV_RUN_NOWAIT);
    if (!hold && corio_list_empty(&rt->ready)) rt->vnow = next;
  } else {
    rt->vnow = next; /* nothing else can happen first: jump */
  }
  return RT_MORE;
}

/* Turns until the run is done (returns 1); for a host step (block == 0)
   also until the loop would block, or one batch has run and more tasks
   are ready (0): at most one batch per step, so tasks that are always
   ready cannot starve the host (backend_timeout then says 0). The one
   caller of rt_turn, kept out of line so that the scheduler's helpers
   stay inlined into it as into one loop. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int rt_turns(lua_State *L, corio_rt *rt, int block) {
  int r, batches = 0;
  for (;;) {
    if (!block && batches && !corio_list_empty(&rt->ready)) return 0;
    r = rt_turn(L, rt, block);
    if (r == RT_DONE || r == RT_IDLE) return r == RT_DONE;
    batches += r == RT_BATCH;
  }
}

static void rt_loop(lua_State *L, corio_rt *rt) { rt_turns(L, rt, 1); }

static void rt_on_close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Closes the loop and the clock's file descriptors (no Lua code). Only
   when no task is live, so no handle of a task is left. */
static void rt_close_loop(corio_rt *rt) {
  if (!rt->loop_open) return;
  rt->loop_open = 0;
  corio_pool_rt_close(rt); /* joins the workers, closes its handles */
  uv_walk(&rt->loop, rt_on_close_walk, NULL);
  uv_run(&rt->loop, UV_RUN_DEFAULT);
  uv_loop_close(&rt->loop);
  corio_clock_close(rt);
}

static int rt_protected_report(lua_State *L) {
  rt_report_all(L, (corio_rt *)lua_touserdata(L, 1));
  return 0;
}

static int rt_protected_abandon(lua_State *L) {
  corio_rt *rt = (corio_rt *)lua_touserdata(L, 1);
  corio_list_remove(&rt->batch_end);
  rt->current = NULL;
  rt_abandon(L, rt);
  return 0;
}

static int rt_run_protected(lua_State *L, corio_rt *rt, lua_CFunction f) {
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, rt);
  return lua_pcall(L, 1, 0, 0);
}

/* One recovery attempt: cancel every live task and run the loop again. It
   allocates (error objects), so it runs protected like the loop. */
static int rt_protected_reap(lua_State *L) {
  corio_rt *rt = (corio_rt *)lua_touserdata(L, 1);
  corio_list_remove(&rt->batch_end);
  rt->current = NULL;
  rt_reap(L, rt);
  rt_loop(L, rt);
  return 0;
}

/* An error escaped the scheduler (out of memory, an error from a finalizer
   on 5.1/5.3): run must still not return with tasks alive. Cancel them
   and drive them to the end, then abandon whatever is left. The error
   that escaped stays on top of L. */
static void rt_recover(lua_State *L, corio_rt *rt) {
  int tries;
  /* every retry makes progress (each failing finalizer runs once), so a
     bound this size only stops a runtime that cannot make any */
  for (tries = 0; rt->n_live && tries < 100000; tries++)
    if (rt_run_protected(L, rt, rt_protected_reap) != LUA_OK)
      lua_pop(L, 1); /* keep the first error */
  corio_list_remove(&rt->batch_end);
  rt->current = NULL;
  for (tries = 0; rt->n_live && tries < 100000; tries++)
    if (rt_run_protected(L, rt, rt_protected_abandon) != LUA_OK)
      lua_pop(L, 1);
}

/* ------------------------------------- a run's phases (run, host.c) */

corio_rt *corio_rt_bind(corio_rt *rt) {
  corio_rt *outer = corio_running; /* another Lua state's, or NULL */
  rt->ctx->rt = rt;
  corio_running = rt;
  return outer;
}

void corio_rt_unbind(corio_rt *rt, corio_rt *outer) {
  rt->ctx->rt = NULL;
  corio_running = outer;
  rt->current = NULL;
}

/* Binds rt to L for a run and spawns main (fn at fnidx, nargs arguments
   on top); pushes the main task. */
void corio_rt_begin(lua_State *L, corio_rt *rt, int fnidx, int nargs) {
  rt->reaping = 0;
  rt->deadlock_ref = LUA_NOREF;
  rt->tick_ns = uv_hrtime();
  /* spawning main may raise (out of memory): before anything is marked
     running, or no runtime could ever run in this state again */
  rt->main = corio_task_spawn(L, rt, fnidx, nargs, "main", NULL);
  rt->main->flags |= CORIO_TF_OBSERVED; /* the run hands its outcome */
  if (rt->max_tasks) rt->tasks.used++; /* main's slot: nothing is alive */
  rt->L = L;
  rt->running = 1;
  rt_dump_watch(rt, 1);
}

/* The scheduler runs under lua_pcall so that a memory error cannot leave
   the runtime marked as running. */
static int rt_protected_drive(lua_State *L) {
  corio_rt *rt = (corio_rt *)lua_touserdata(L, 1);
  int how = (int)lua_tointeger(L, 2);
  if (how == CORIO_DRIVE_STEP) {
    lua_pushboolean(L, rt_turns(L, rt, 0));
    return 1;
  }
  if (how == CORIO_DRIVE_CANCEL) rt_reap(L, rt);
  rt_loop(L, rt);
  lua_pushboolean(L, 1);
  return 1;
}

int corio_rt_drive(lua_State *L, corio_rt *rt, int how, int *done) {
  int st;
  lua_pushcfunction(L, rt_protected_drive);
  lua_pushlightuserdata(L, rt);
  lua_pushinteger(L, how);
  st = lua_pcall(L, 2, 1, 0);
  if (st == LUA_OK) {
    *done = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return st;
  }
  rt_recover(L, rt); /* the error stays on top of L */
  *done = 1;
  return st;
}

int corio_rt_end(lua_State *L, corio_rt *rt, int st, corio_rt *outer) {
  /* rt->running stays set while reporting, so on_error cannot re-enter
     run on this runtime; with ctx->rt clear it cannot spawn into it */
  corio_rt_unbind(rt, outer);
  /* (protected: a memory error must not skip the teardown below) */
  if (st == LUA_OK) st = rt_run_protected(L, rt, rt_protected_report);
  rt_dump_watch(rt, 0);
  corio_io_teardown(L, rt); /* no task is left to use them */
  rt->running = 0;
  if (rt->close_after_run && !rt->n_live) rt_close_loop(rt);
  if (rt->deadlock_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->deadlock_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->deadlock_ref);
    rt->deadlock_ref = LUA_NOREF;
    if (st == LUA_OK) st = LUA_ERRRUN; /* else the escaped error wins */
    else lua_pop(L, 1);
  }
  rt->main = NULL;
  return st;
}

/* rt:run(main, ...) -> main's results; raises main's error */
static int lrt_run(lua_State *L) {
  corio_rt *rt = check_rt(L, 1);
  corio_ctx *ctx = corio_ctx_get(L);
  corio_rt *outer;
  corio_task *m;
  int st, n, raise, done, mi;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (rt->host == CORIO_HOST_STARTED)
    return luaL_error(L, "run: the runtime was started by rt:start (drive "
                      "it with rt:step, or rt:close it)");
  if (ctx->rt || rt->running)
    return luaL_error(L, "run: a corio runtime is already running (run "
                      "cannot be called inside a task)");
  if (!rt->loop_open) return luaL_error(L, "run: runtime is closed");
  corio_rt_begin(L, rt, 2, lua_gettop(L) - 2);
  outer = corio_rt_bind(rt);
  m = rt->main; /* on L's stack: anchored */
  mi = lua_gettop(L);
  st = corio_rt_drive(L, rt, CORIO_DRIVE_RUN, &done);
  if ((st = corio_rt_end(L, rt, st, outer)) != LUA_OK) return lua_error(L);
  n = corio_task_outcome(L, m, mi, 0, &raise);
  return raise ? lua_error(L) : n;
}

/* ------------------------------------------------------------ create */

/* workers, queue, max_io, max_tasks: whole counts from 1 to 1e6 */
static int aux_count(lua_State *L, int opt, const char *key, double def) {
  return (int)corio_opt_range(L, opt, key, def, 1, 1e6, "runtime");
}

/* dump_on = "SIGQUIT": the signal that prints corio.dump() to stderr
   while the runtime runs (like a Go goroutine dump), 0 when absent. */
static int aux_signal_option(lua_State *L, int opt) {
  const char *name = corio_opt_string(L, opt, "dump_on", NULL, "runtime");
  int num;
  if (!name) return 0;
  if ((num = corio_signal_number(name)) == 0)
    return luaL_error(L, "bad option 'dump_on' to 'runtime' (a signal name "
                      "such as 'SIGQUIT' expected, got '%s')", name);
  return num;
}

/* The dump_on signal arrived: print the dump. It runs inside uv_run,
   called by the scheduler on rt->L, so it may build Lua strings. */
static void rt_on_dump_signal(uv_signal_t *h, int signum) {
  corio_rt *rt = (corio_rt *)h->data;
  lua_State *L = rt->L;
  (void)signum;
  if (!lua_checkstack(L, 4)) return;
  corio_dump_push(L, rt);
  fprintf(stderr, "corio: task dump (%d alive)\n%s", (int)rt->n_live,
          lua_tostring(L, -1));
  fflush(stderr);
  lua_pop(L, 1);
}

/* Starts (on) or stops the dump_on watcher; it never keeps the loop alive
   and, with data == rt, counts as the runtime's own handle. */
static void rt_dump_watch(corio_rt *rt, int on) {
  if (!rt->dump_sig) return;
  if (on) {
    if (!rt->dump_init) {
      if (uv_signal_init(&rt->loop, &rt->dump_handle) != 0) return;
      rt->dump_handle.data = rt;
      rt->dump_init = 1;
    }
    uv_signal_start(&rt->dump_handle, rt_on_dump_signal, rt->dump_sig);
    uv_unref((uv_handle_t *)&rt->dump_handle);
  } else if (rt->dump_init) {
    uv_signal_stop(&rt->dump_handle);
  }
}

/* A function option: its registry ref, or LUA_NOREF when absent. */
static int aux_opt_function(lua_State *L, int opt, const char *key) {
  if (!opt || !lua_istable(L, opt)) return LUA_NOREF;
  lua_getfield(L, opt, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  if (!lua_isfunction(L, -1))
    luaL_error(L, "bad option '%s' to 'runtime' (function expected, got "
               "%s)", key, luaL_typename(L, -1));
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Pushes a new runtime configured by the options table at opt (0: none). */
static corio_rt *rt_new(lua_State *L, int opt) {
  static const char *const allowed[] = {"workers", "queue", "io_timeout",
                                        "max_io", "max_tasks", "clock",
                                        "on_error", "on_log", "debug",
                                        "dump_on", "init", NULL};
  const char *clock, *init, *env;
  double io_timeout;
  corio_rt *rt;
  int r;
  if (opt) corio_opt_present(L, opt, "runtime", allowed);
  clock = corio_opt_string(L, opt, "clock", "real", "runtime");
  if (strcmp(clock, "real") != 0 && strcmp(clock, "virtual") != 0)
    luaL_error(L, "bad option 'clock' to 'runtime' ('real' or 'virtual' "
               "expected, got '%s')", clock);
  init = corio_opt_string(L, opt, "init", "", "runtime");
  if (strlen(init) >= sizeof rt->init)
    luaL_error(L, "bad option 'init' to 'runtime' (module name too long)");
  io_timeout = corio_opt_number(L, opt, "io_timeout", 30, "runtime");
  if (io_timeout != io_timeout || io_timeout <= 0)
    luaL_error(L, "bad option 'io_timeout' to 'runtime' (positive number "
               "of seconds expected)");
  rt = (corio_rt *)lua_newuserdata(L, sizeof *rt);
  memset(rt, 0, sizeof *rt);
  rt->tfd = -1; /* no clock fd until corio_clock_init: never close fd 0 */
  rt->on_error_ref = rt->on_log_ref = rt->trace_ref = LUA_NOREF;
  rt->context_ref = LUA_NOREF;
  rt->deadlock_ref = LUA_NOREF;
  rt->pending_ref = LUA_NOREF;
  rt->host_ref = LUA_NOREF;
  corio_list_init(&rt->ready);
  corio_list_init(&rt->unobserved);
  corio_list_init(&rt->deferred);
  corio_list_init(&rt->batch_end);
  corio_list_init(&rt->io_objects);
  corio_list_init(&rt->pools);
  rt->slots_ref = rt->idle_ref = LUA_NOREF;
  strcpy(rt->init, init);
  luaL_setmetatable(L, RT_MT);
  rt->ctx = corio_ctx_get(L);
  rt->L = L;
  rt->virtual_clock = clock[0] == 'v';
  rt->tick_every = rt->tick_left = 1;
  if ((env = getenv("CORIO_GC_TORTURE")) && atoi(env) > 0) {
    rt->gc_torture = rt->gc_left = atoi(env);
    rt->gc_rand = (uint32_t)rt->gc_torture;
  }
  rt->io_timeout = io_timeout;
  rt->workers = aux_count(L, opt, "workers",
                          (double)uv_available_parallelism());
  rt->queue = aux_count(L, opt, "queue", 1024);
  rt->max_io = aux_count(L, opt, "max_io", 256);
  corio_budget_init(&rt->io, rt->max_io, "io budget");
  if (opt && lua_istable(L, opt)) {
    lua_getfield(L, opt, "max_tasks");
    if (!lua_isnil(L, -1)) rt->max_tasks = aux_count(L, opt, "max_tasks", 0);
    lua_pop(L, 1);
    lua_getfield(L, opt, "debug");
    rt->debug = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  corio_budget_init(&rt->tasks, rt->max_tasks, "task budget");
  rt->dump_sig = aux_signal_option(L, opt);
  rt->on_error_ref = aux_opt_function(L, opt, "on_error");
  rt->on_log_ref = aux_opt_function(L, opt, "on_log");
  corio_task_slots_init(L, rt); /* Lua allocations before the loop's */
  if ((r = uv_loop_init(&rt->loop)) != 0)
    luaL_error(L, "runtime: cannot create event loop: %s", uv_strerror(r));
  rt->loop_open = 1;
  rt->loop.data = rt; /* handles with data == rt are the runtime's own */
  corio_clock_init(rt);
  return rt;
}

/* corio.runtime{workers=, queue=, io_timeout=, max_io=, clock=, on_error=} */
static int lcorio_runtime(lua_State *L) {
  rt_new(L, lua_isnoneornil(L, 1) ? 0 : 1);
  return 1;
}

/* corio.run(main, ...) = corio.runtime():run(main, ...) */
static int lcorio_run(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  rt_new(L, 0)->close_after_run = 1; /* nobody else can run it again */
  lua_insert(L, 1);
  return lrt_run(L);
}


/* rt:close(): releases the loop and its file descriptors now rather than
   when the runtime is collected; run fails afterwards. Idempotent. A
   runtime started by rt:start is first cancelled and run to its end. */
static int lrt_close(lua_State *L) {
  corio_rt *rt = check_rt(L, 1);
  if (rt->host == CORIO_HOST_STARTED || rt->host == CORIO_HOST_STEPPING)
    corio_host_cancel(L, rt);
  if (rt->running) return luaL_error(L, "close: the runtime is running");
  rt_close_loop(rt);
  return 0;
}

static void aux_unref(lua_State *L, int *ref) {
  if (*ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

/* rt:config() -> the runtime's budgets, as set or defaulted */
static int lrt_config(lua_State *L) {
  corio_rt *rt = check_rt(L, 1);
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, rt->workers);
  lua_setfield(L, -2, "workers");
  lua_pushinteger(L, rt->queue);
  lua_setfield(L, -2, "queue");
  lua_pushnumber(L, rt->io_timeout);
  lua_setfield(L, -2, "io_timeout");
  lua_pushinteger(L, rt->max_io);
  lua_setfield(L, -2, "max_io");
  if (rt->max_tasks) {
    lua_pushinteger(L, rt->max_tasks);
    lua_setfield(L, -2, "max_tasks");
  }
  lua_pushstring(L, rt->virtual_clock ? "virtual" : "real");
  lua_setfield(L, -2, "clock");
  lua_pushboolean(L, rt->debug);
  lua_setfield(L, -2, "debug");
  return 1;
}

/* Detach every task still pointing at rt, close the loop. No Lua code. */
static int lrt_gc(lua_State *L) {
  corio_rt *rt = (corio_rt *)corio_checkudata(L, 1, RT_MT);
  corio_link *n;
  int k;
  /* A running runtime is anchored by run's stack, so only lua_close
     finalizes it, and that calls finalizers on the main thread. Anything
     else is user code calling __gc by hand: refuse. */
  if (rt->running) {
    int main = lua_pushthread(L);
    lua_pop(L, 1);
    if (!main) return luaL_error(L, "__gc: the runtime is running");
  }
  for (k = 1; k <= rt->slot_top; k++) { /* live ones: only at lua_close */
    corio_task *t = rt->slot_task ? rt->slot_task[k] : NULL;
    if (!t) continue;
    rt->slot_task[k] = NULL;
    rt_unwait(t);
    corio_list_remove(&t->link);
    if (t->flags & CORIO_TF_KID)
      corio_list_remove(&corio_kid_of(t)->scope_link);
    t->rt = NULL;
  }
  /* the state is closing during run (or the runtime was dropped): errors
     nobody observed are printed, with no Lua code */
  while ((n = corio_list_shift(&rt->unobserved))) {
    corio_task *t = corio_failure_task(n);
    lua_pushvalue(t->co, -1);
    lua_xmove(t->co, L, 1);
    rt_print_value(L);
    t->rt = NULL;
  }
  if (rt->pending_ref != LUA_NOREF) {
    int i, len;
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->pending_ref);
    len = (int)lua_rawlen(L, -1);
    for (i = 1; i <= len; i++) {
      lua_rawgeti(L, -1, i);
      rt_print_value(L);
    }
    lua_pop(L, 1);
  }
  while ((n = corio_list_shift(&rt->ready))) {
  }
  while ((n = corio_list_shift(&rt->deferred))) { /* never run: closing */
  }
  corio_timers_free(rt);
  if (rt->loop_open) corio_io_teardown(L, rt);
  rt_close_loop(rt);
  aux_unref(L, &rt->on_error_ref);
  aux_unref(L, &rt->on_log_ref);
  aux_unref(L, &rt->trace_ref);
  aux_unref(L, &rt->context_ref);
  aux_unref(L, &rt->host_ref);
  corio_task_slots_free(L, rt);
  if (rt->pending_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, rt->pending_ref);
    rt->pending_ref = LUA_NOREF;
  }
  return 0;
}

static int lrt_tostring(lua_State *L) {
  corio_rt *rt = check_rt(L, 1);
  lua_pushfstring(L, "corio.Runtime(%s clock, %s)",
                  rt->virtual_clock ? "virtual" : "real",
                  rt->running ? "running" : "idle");
  return 1;
}

static const luaL_Reg rt_methods[] = {
    {"run", lrt_run}, {"close", lrt_close}, {"config", lrt_config},
    {NULL, NULL}};
static const luaL_Reg rt_meta[] = {
    {"__gc", lrt_gc}, {"__tostring", lrt_tostring}, {NULL, NULL}};
static const luaL_Reg funcs[] = {
    {"runtime", lcorio_runtime}, {"run", lcorio_run}, {NULL, NULL}};

void corio_open_runtime(lua_State *L) {
  corio_class(L, RT_MT, rt_methods, NULL, rt_meta);
  lua_pop(L, 1);
  corio_setfuncs(L, funcs, 0);
}
