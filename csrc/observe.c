/*
 * observe.c: what the runtime can tell about itself: corio.tasks(),
 * corio.stats(), corio.dump() (also as rt:tasks(), rt:stats(), rt:dump()
 * on a runtime object, usable after run has returned).
 */
#include "corio.h"
#include <stdio.h>

/* The task that opened the nursery t was spawned into, or NULL. */
static corio_task *aux_parent_task(const corio_task *t) {
  corio_scope *p = corio_task_parent(t);
  return p ? p->owner : NULL;
}

static int aux_depth(const corio_task *t) {
  int d = 0;
  while ((t = aux_parent_task(t)) != NULL && d < 64) d++;
  return d;
}

static const char *aux_waiting_on(const corio_task *t) {
  if (t->state == CORIO_WAITING) return t->wait.what;
  return NULL;
}

static corio_rt *aux_rt(lua_State *L) {
  if (lua_isuserdata(L, 1))
    return (corio_rt *)corio_checkudata(L, 1, "corio.Runtime");
  return corio_ctx_get(L)->rt;
}

static void aux_setint(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* Pushes a new table {id, name, status} of t (tasks(), trace). */
static void aux_push_info(lua_State *L, corio_task *t) {
  lua_createtable(L, 0, 8);
  aux_setint(L, "id", t->id);
  corio_task_name(L, t);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, corio_task_status(t));
  lua_setfield(L, -2, "status");
}

/* Sets `age` (seconds since spawn, on the runtime's clock) and, when it
   was recorded, `spawned_at` on the table on top. */
static void aux_age_site(lua_State *L, corio_rt *rt, corio_task *t) {
  uint64_t now = rt->virtual_clock ? rt->vnow : uv_hrtime();
  lua_pushnumber(L, now > t->born ? (lua_Number)(now - t->born) / 1e9 : 0);
  lua_setfield(L, -2, "age");
  corio_task_push(L, t);
  if (!lua_isnil(L, -1)) {
    corio_getuv(L, -1, CORIO_TASK_UV_SITE);
    lua_remove(L, -2);
  }
  if (lua_isstring(L, -1)) lua_setfield(L, -2, "spawned_at");
  else lua_pop(L, 1);
}

/* corio.tasks() -> { {id, name, status, waiting_on, parent, age,
   spawned_at}, ... } */
static int lcorio_tasks(lua_State *L) {
  corio_rt *rt = aux_rt(L);
  corio_live *v;
  int k, n, i = 0;
  if (!rt) {
    lua_newtable(L);
    return 1;
  }
  n = corio_live_list(L, rt, &v);
  lua_createtable(L, n, 0);
  for (k = 0; k < n; k++) {
    corio_task *t = corio_live_get(rt, &v[k]);
    corio_task *p;
    const char *w;
    if (!t) continue;
    p = aux_parent_task(t);
    w = aux_waiting_on(t);
    aux_push_info(L, t);
    if (w) {
      lua_pushstring(L, w);
      lua_setfield(L, -2, "waiting_on");
    }
    if (p) aux_setint(L, "parent", p->id);
    aux_age_site(L, rt, t);
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

/* corio.stats() -> counters */
static int lcorio_stats(lua_State *L) {
  corio_rt *rt = aux_rt(L);
  corio_link *n;
  lua_Integer ready = 0;
  lua_createtable(L, 0, 13);
  if (!rt) return 1;
  for (n = rt->ready.next; n != &rt->ready; n = n->next)
    if (n != &rt->batch_end) ready++;
  aux_setint(L, "spawned", rt->n_spawned);
  aux_setint(L, "alive", rt->n_live);
  aux_setint(L, "done", rt->n_done);
  aux_setint(L, "failed", rt->n_failed);
  aux_setint(L, "cancelled", rt->n_cancelled);
  aux_setint(L, "ready", ready);
  aux_setint(L, "timers", rt->heap_n);
  aux_setint(L, "io_inflight", rt->io.used);
  aux_setint(L, "io_waiting", corio_io_waiting(rt));
  aux_setint(L, "handles", corio_io_handles(rt));
  corio_pool_stats(L, rt);
  return 1;
}

void corio_dump_push(lua_State *L, corio_rt *rt) {
  luaL_Buffer b;
  corio_live *v;
  char age[32];
  int k, n = corio_live_list(L, rt, &v), count = 0;
  luaL_buffinit(L, &b);
  for (k = 0; k < n; k++) {
    corio_task *t = corio_live_get(rt, &v[k]);
    const char *w;
    int d;
    if (!t) continue;
    w = aux_waiting_on(t);
    d = aux_depth(t);
    while (d-- > 0) luaL_addstring(&b, "  ");
    lua_pushfstring(L, "#%d ", (int)t->id);
    luaL_addvalue(&b);
    corio_task_name(L, t);
    luaL_addvalue(&b);
    lua_pushfstring(L, " %s%s%s", corio_task_status(t),
                    w ? " on " : "", w ? w : "");
    luaL_addvalue(&b);
    lua_createtable(L, 0, 2);
    aux_age_site(L, rt, t);
    lua_getfield(L, -1, "age");
    snprintf(age, sizeof age, "%.3f", (double)lua_tonumber(L, -1));
    lua_getfield(L, -2, "spawned_at");
    lua_pushfstring(L, " (age %s s%s%s)\n", age,
                    lua_isstring(L, -1) ? ", spawned at " : "",
                    lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
    lua_replace(L, -4);
    lua_pop(L, 2);
    luaL_addvalue(&b);
    if (++count >= 1000) {
      luaL_addstring(&b, "...\n");
      break;
    }
  }
  luaL_pushresult(&b);
  lua_remove(L, -2); /* the list */
}

/* corio.dump() -> a readable list of live tasks and what each waits on */
static int lcorio_dump(lua_State *L) {
  corio_rt *rt = aux_rt(L);
  if (!rt) lua_pushliteral(L, "");
  else corio_dump_push(L, rt);
  return 1;
}

/* ---------------------------------------------------------- tracing */

/* Calls the hook with (event, {id, name, parent, status, error,
   spawned_at}). Not re-entered: what the hook itself spawns is not
   traced. An error in the hook goes to the runtime's error report. */
void corio_trace(lua_State *L, corio_rt *rt, const char *event,
                 corio_task *t) {
  corio_task *p;
  if (rt->in_trace || !lua_checkstack(L, 6)) return;
  rt->in_trace = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->trace_ref);
  lua_pushstring(L, event);
  aux_push_info(L, t);
  if ((p = aux_parent_task(t)) != NULL) aux_setint(L, "parent", p->id);
  if (t->state == CORIO_FAILED || t->state == CORIO_CANCELLED) {
    lua_pushvalue(t->co, -1);
    lua_xmove(t->co, L, 1);
    lua_setfield(L, -2, "error");
  }
  aux_age_site(L, rt, t);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) corio_rt_report_value(L, rt);
  rt->in_trace = 0;
}

/* corio.trace(fn | nil), rt:trace(fn | nil): sets the runtime's hook,
   called on spawn, done, fail and cancel; returns the previous one. */
static int lcorio_trace(lua_State *L) {
  int arg = lua_isuserdata(L, 1) ? 2 : 1;
  corio_rt *rt = arg == 2 ? aux_rt(L) : corio_rt_get(L, "trace");
  if (!lua_isnoneornil(L, arg)) luaL_checktype(L, arg, LUA_TFUNCTION);
  if (rt->trace_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->trace_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->trace_ref);
  } else {
    lua_pushnil(L);
  }
  rt->trace_ref = LUA_NOREF;
  if (!lua_isnoneornil(L, arg)) {
    lua_pushvalue(L, arg);
    rt->trace_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 1;
}

/* ---------------------------------------------------------- context */

/* corio.context() -> the current task's context table (made on first
   use; a child starts with a shallow copy of its parent's, task.c). */
static int lcorio_context(lua_State *L) {
  corio_rt *rt = corio_rt_get(L, "context");
  if (!rt->current)
    return luaL_error(L, "context: not inside a corio task");
  if (lua_isboolean(L, 1) && !lua_toboolean(L, 1) &&
      rt->context_ref == LUA_NOREF) { /* context(false): peek, no table */
    lua_pushnil(L);
    return 1;
  }
  if (rt->context_ref == LUA_NOREF) {
    lua_newtable(L); /* task -> context, weak keys */
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    rt->context_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->context_ref);
  corio_task_push(L, corio_task_logical(rt->current));
  lua_rawget(L, -2);
  if (lua_istable(L, -1) || (lua_isboolean(L, 1) && !lua_toboolean(L, 1)))
    return 1;
  lua_pop(L, 1);
  lua_newtable(L);
  corio_task_push(L, corio_task_logical(rt->current));
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  return 1;
}

/* core._log_sink() -> the runtime's on_log function, or nil */
static int lcorio_log_sink(lua_State *L) {
  corio_rt *rt = corio_ctx_get(L)->rt;
  if (rt && rt->on_log_ref != LUA_NOREF)
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->on_log_ref);
  else
    lua_pushnil(L);
  return 1;
}

static const luaL_Reg funcs[] = {{"tasks", lcorio_tasks},
                                 {"trace", lcorio_trace},
                                 {"context", lcorio_context},
                                 {"_log_sink", lcorio_log_sink},
                                 {"stats", lcorio_stats},
                                 {"dump", lcorio_dump},
                                 {NULL, NULL}};

void corio_open_observe(lua_State *L) {
  corio_setfuncs(L, funcs, 0);
  luaL_getmetatable(L, "corio.Runtime");
  lua_getfield(L, -1, "__index");
  corio_setfuncs(L, funcs, 0);
  lua_pop(L, 2);
}
