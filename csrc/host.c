/*
 * host.c: the host-loop mode, for programs that already own an event loop
 * (Neovim, luvit, a game or GUI loop). Instead of blocking in rt:run,
 *
 *   rt:start(main, ...)   spawns main and returns at once;
 *   rt:step()             runs what is ready without ever blocking (the
 *                         same scheduler turns as run, at most one batch
 *                         of tasks) and returns whether the run goes on;
 *   rt:backend_fd()       libuv's epoll fd: readable when I/O is waiting;
 *   rt:backend_timeout()  ms until step has work without I/O (0: now, -1:
 *                         only I/O can bring work);
 *   rt:result()           main's outcome once step returned false:
 *                         true, results... or false, err, like t:wait();
 *   rt:started()          whether such a run goes on.
 *
 * A run driven this way ends exactly as rt:run ends: after main returns
 * the other tasks are cancelled and step goes on until they finish;
 * unobserved failures are reported through on_error; a deadlock (nothing
 * can ever wake main) ends the run with false, err "deadlock".
 *
 * Between steps no corio code runs and ctx->rt is clear (host code cannot
 * spawn into the runtime), but rt->running stays set: run, and the
 * collector, leave a started runtime alone. The runtime is anchored in
 * the registry until its run ends, so a host that drops it without
 * rt:close leaks it until lua_close.
 */
#include "corio.h"

#define RT_MT "corio.Runtime"
/* slots of the host table at rt->host_ref */
enum { HOST_RT = 1, HOST_MAIN = 2, HOST_ERROR = 3 };

static corio_rt *check_rt(lua_State *L) {
  return (corio_rt *)corio_checkudata(L, 1, RT_MT);
}

/* Step and close drive the scheduler from the host's code only: not from
   a task (of any runtime: schedulers do not nest), nor from a handler
   that runs inside a step (on_error, a trace hook). */
static void aux_check_host_code(lua_State *L, corio_rt *rt,
                                const char *fname) {
  if (rt->host == CORIO_HOST_STEPPING || corio_ctx_get(L)->rt)
    luaL_error(L, "%s: called from inside a running corio runtime (a host "
               "loop calls it from its own code, between steps)", fname);
}

/* The run is over: tear it down and keep its error (if its own) for
   rt:result; the runtime is no longer anchored. */
static void aux_finish(lua_State *L, corio_rt *rt, int st,
                       corio_rt *outer) {
  st = corio_rt_end(L, rt, st, outer);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->host_ref);
  if (st != LUA_OK) {
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, HOST_ERROR);
  }
  lua_pushnil(L);
  lua_rawseti(L, -2, HOST_RT);
  lua_pop(L, st != LUA_OK ? 2 : 1);
  rt->host = CORIO_HOST_DONE;
}

/* Binds rt to L for one drive of the scheduler; returns whether the run
   is over (then it is finished). */
static int aux_drive(lua_State *L, corio_rt *rt, int how) {
  corio_rt *outer = corio_rt_bind(rt);
  int st, done;
  rt->L = L;
  rt->host = CORIO_HOST_STEPPING;
  rt->tick_ns = uv_hrtime(); /* time between steps is no slow step */
  st = corio_rt_drive(L, rt, how, &done);
  if (done) {
    aux_finish(L, rt, st, outer);
    return 1;
  }
  corio_rt_unbind(rt, outer);
  rt->host = CORIO_HOST_STARTED;
  return 0;
}

/* rt:start(main, ...): main runs at the first step */
static int lrt_start(lua_State *L) {
  corio_rt *rt = check_rt(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (rt->host == CORIO_HOST_STARTED || rt->host == CORIO_HOST_STEPPING)
    return luaL_error(L, "start: the runtime is already started (drive it "
                      "with rt:step until it returns false)");
  if (corio_ctx_get(L)->rt || rt->running)
    return luaL_error(L, "start: a corio runtime is running (start cannot "
                      "be called inside a task)");
  if (!rt->loop_open) return luaL_error(L, "start: runtime is closed");
  if (rt->host_ref != LUA_NOREF) { /* the last hosted run's outcome */
    luaL_unref(L, LUA_REGISTRYINDEX, rt->host_ref);
    rt->host_ref = LUA_NOREF;
  }
  /* first the allocations: a memory error leaves rt as it was */
  lua_createtable(L, 3, 0);
  lua_insert(L, 2);
  lua_pushvalue(L, 2);
  rt->host_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  corio_rt_begin(L, rt, 3, lua_gettop(L) - 3); /* spawns main first */
  lua_rawseti(L, 2, HOST_MAIN); /* (preallocated slots: cannot raise) */
  lua_pushvalue(L, 1);
  lua_rawseti(L, 2, HOST_RT);
  rt->host = CORIO_HOST_STARTED;
  return 0;
}

/* rt:step() -> true while the run goes on, false once it is over */
static int lrt_step(lua_State *L) {
  corio_rt *rt = check_rt(L);
  if (rt->host == CORIO_HOST_NONE)
    return luaL_error(L, "step: the runtime was not started (call "
                      "rt:start(main) first)");
  aux_check_host_code(L, rt, "step");
  lua_pushboolean(L, rt->host == CORIO_HOST_STARTED &&
                         !aux_drive(L, rt, CORIO_DRIVE_STEP));
  return 1;
}

void corio_host_cancel(lua_State *L, corio_rt *rt) {
  aux_check_host_code(L, rt, "close");
  aux_drive(L, rt, CORIO_DRIVE_CANCEL);
}

/* rt:result() -> true, main's results... | false, err (once done) */
static int lrt_result(lua_State *L) {
  corio_rt *rt = check_rt(L);
  int raise;
  if (rt->host != CORIO_HOST_DONE)
    return luaL_error(L, rt->host == CORIO_HOST_NONE
                             ? "result: the runtime was not started (call "
                               "rt:start(main) first)"
                             : "result: main has not finished (call rt:step "
                               "until it returns false)");
  lua_settop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->host_ref);
  lua_rawgeti(L, 2, HOST_ERROR);
  if (!lua_isnil(L, -1)) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_rawgeti(L, 2, HOST_MAIN);
  return corio_task_outcome(L, corio_check_task(L, 4), 4, 1, &raise);
}

/* rt:started() -> whether a run started by rt:start goes on (rt:step
   has not returned false yet) */
static int lrt_started(lua_State *L) {
  corio_rt *rt = check_rt(L);
  lua_pushboolean(L, rt->host == CORIO_HOST_STARTED ||
                         rt->host == CORIO_HOST_STEPPING);
  return 1;
}

/* rt:backend_fd() -> the loop's epoll fd, for the host to poll */
static int lrt_backend_fd(lua_State *L) {
  corio_rt *rt = check_rt(L);
  if (!rt->loop_open) return luaL_error(L, "backend_fd: runtime is closed");
  lua_pushinteger(L, uv_backend_fd(&rt->loop));
  return 1;
}

/* Milliseconds until t on the real clock, rounded up: never early. */
static lua_Integer aux_ms_until(uint64_t t) {
  uint64_t now = uv_hrtime();
  return t <= now ? 0 : (lua_Integer)((t - now + 999999u) / 1000000u);
}

static lua_Integer aux_min_timeout(lua_Integer a, lua_Integer b) {
  if (a < 0) return b;
  return b < 0 || a < b ? a : b;
}

/* rt:backend_timeout() -> ms until step has work without I/O, 0 for
   now, -1 when only I/O (the backend fd) can bring work or when the run
   is not going on. Mirrors the turns of rt_turn. */
static int lrt_backend_timeout(lua_State *L) {
  corio_rt *rt = check_rt(L);
  lua_Integer ms = -1;
  uint64_t next;
  int alive;
  if (rt->host != CORIO_HOST_STARTED || !rt->loop_open) {
    lua_pushinteger(L, -1);
    return 1;
  }
  next = corio_timers_next(rt);
  alive = uv_loop_alive(&rt->loop);
  if (!corio_list_empty(&rt->ready) || !corio_list_empty(&rt->deferred) ||
      rt->pending_ref != LUA_NOREF || (next == UINT64_MAX && !alive)) {
    ms = 0; /* tasks to run, or a deadlock or the end to find */
  } else if (next != UINT64_MAX) {
    if (!rt->virtual_clock) ms = aux_ms_until(next);
    else if (!alive || !corio_pool_busy(rt)) ms = 0; /* time jumps */
  }
  if (alive) {
    uv_update_time(&rt->loop); /* its cached time is the last step's */
    ms = aux_min_timeout(ms, uv_backend_timeout(&rt->loop));
  }
  lua_pushinteger(L, ms);
  return 1;
}

static const luaL_Reg host_methods[] = {
    {"start", lrt_start}, {"step", lrt_step}, {"result", lrt_result},
    {"started", lrt_started},
    {"backend_fd", lrt_backend_fd}, {"backend_timeout", lrt_backend_timeout},
    {NULL, NULL}};

void corio_open_host(lua_State *L) {
  luaL_getmetatable(L, RT_MT);
  lua_getfield(L, -1, "__index");
  corio_setfuncs(L, host_methods, 0);
  lua_pop(L, 2);
}
