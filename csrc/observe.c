/*
 * observe.c: what the runtime can tell about itself: corio.tasks(),
 * corio.stats(), corio.dump() (also as rt:tasks(), rt:stats(), rt:dump()
 * on a runtime object, usable after run has returned).
 */
#include "corio.h"

/* The task that opened the nursery t was spawned into, or NULL. */
static corio_task *aux_parent_task(const corio_task *t) {
  return t->parent ? t->parent->owner : NULL;
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

/* corio.tasks() -> { {id, name, status, waiting_on, parent}, ... } */
static int lcorio_tasks(lua_State *L) {
  corio_rt *rt = aux_rt(L);
  corio_link *n;
  int i = 0;
  lua_newtable(L);
  if (!rt) return 1;
  for (n = rt->live.next; n != &rt->live; n = n->next) {
    corio_task *t = corio_container(n, corio_task, all);
    corio_task *p = aux_parent_task(t);
    const char *w = aux_waiting_on(t);
    lua_createtable(L, 0, 6);
    aux_setint(L, "id", t->id);
    corio_task_name(L, t);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, corio_task_status(t));
    lua_setfield(L, -2, "status");
    if (w) {
      lua_pushstring(L, w);
      lua_setfield(L, -2, "waiting_on");
    }
    if (p) aux_setint(L, "parent", p->id);
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
  corio_pool_stats(L, rt);
  return 1;
}

void corio_dump_push(lua_State *L, corio_rt *rt) {
  luaL_Buffer b;
  corio_link *n;
  int count = 0;
  luaL_buffinit(L, &b);
  for (n = rt->live.next; n != &rt->live; n = n->next) {
    corio_task *t = corio_container(n, corio_task, all);
    const char *w = aux_waiting_on(t);
    int d = aux_depth(t);
    while (d-- > 0) luaL_addstring(&b, "  ");
    lua_pushfstring(L, "#%d ", (int)t->id);
    luaL_addvalue(&b);
    corio_task_name(L, t);
    luaL_addvalue(&b);
    lua_pushfstring(L, " %s%s%s\n", corio_task_status(t),
                    w ? " on " : "", w ? w : "");
    luaL_addvalue(&b);
    if (++count >= 1000) {
      luaL_addstring(&b, "...\n");
      break;
    }
  }
  luaL_pushresult(&b);
}

/* corio.dump() -> a readable list of live tasks and what each waits on */
static int lcorio_dump(lua_State *L) {
  corio_rt *rt = aux_rt(L);
  if (!rt) lua_pushliteral(L, "");
  else corio_dump_push(L, rt);
  return 1;
}

static const luaL_Reg funcs[] = {{"tasks", lcorio_tasks},
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
