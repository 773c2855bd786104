/*
 * scope.c: cancel scopes (Trio's model) and nurseries.
 *
 * Scopes and tasks form one tree. A task's own scopes are a chain from its
 * innermost scope (t->scope) outwards; the outermost one's parent is the
 * scope the task was spawned into (corio_task_parent), which belongs to
 * the task that opened that nursery. Each scope lists its child scopes
 * and the tasks spawned into it, so cancelling a scope reaches every task
 * inside it in time proportional to what is inside, not to the number of
 * tasks in the runtime. Invariants:
 *   - a task spawned into a scope (a corio_kid) is linked (scope_link) in
 *     that scope's task list for its life, and only those are: the task
 *     whose innermost scope s is, is s->owner when s->owner->scope == s,
 *     else a task in s->tasks with no scope of its own;
 *   - a scope is in its parent's children list while it is pushed;
 *   - a shield stops cancellation from outside (not its own deadlines,
 *     which are scopes inside it).
 *
 * The boundaries (timeout, shield, scope) are written in Lua around a
 * yieldable pcall (lua/corio/init.lua); this file gives them enter/exit.
 */
#include "corio.h"
#include <string.h>


#define SCOPE_MT "corio.Scope"

void corio_scope_init(corio_scope *s, corio_rt *rt, int kind) {
  memset(s, 0, sizeof *s);
  s->rt = rt;
  s->kind = (uint8_t)kind;
  s->failfast = 1;
  s->deadline.index = -1;
  corio_timer_set_kind(&s->deadline, CORIO_TIMER_SCOPE);
  s->error_ref = s->others_ref = s->ref = LUA_NOREF;
  corio_list_init(&s->sibling);
  corio_list_init(&s->children);
  corio_list_init(&s->tasks);
}

void corio_scope_push(corio_task *t, corio_scope *s) {
  s->owner = t;
  s->parent = t->scope ? t->scope : corio_task_parent(t);
  if (s->parent) corio_list_push(&s->parent->children, &s->sibling);
  t->scope = s;
  s->pushed = 1;
}

/* Clears every pointer into s (s may be freed next): its place among
   its parent's children, the child scopes' parent, the tasks whose
   innermost scope it is, the nursery children spawned into it (also
   those inside scopes of their own, found as the owners of its child
   scopes), the owner parked on it, and its deadline in the heap. A
   scope is popped with live children only when its owner is torn down
   (abandoned after a deadlock, its coroutine closed by hand): the
   children then go on as tasks of no scope. */
void corio_scope_detach(corio_scope *s) {
  corio_link *n;
  corio_list_remove(&s->sibling);
  if (s->rt && corio_timer_armed(&s->deadline))
    corio_timer_disarm(s->rt, &s->deadline);
  while ((n = corio_list_shift(&s->children))) {
    corio_scope *c = corio_container(n, corio_scope, sibling);
    c->parent = NULL;
    if (c->owner && corio_task_parent(c->owner) == s)
      corio_kid_of(c->owner)->parent = NULL;
  }
  while ((n = corio_list_shift(&s->tasks)))
    corio_container(n, corio_kid, scope_link)->parent = NULL;
  if (s->pushed && s->owner && s->owner->scope == s) s->owner->scope = NULL;
  if (s->waiter) {
    s->waiter->wait.abort = NULL;
    s->waiter->wait.obj = NULL;
    s->waiter = NULL;
  }
  s->nchildren = 0;
  s->pushed = 0;
}

/* Drops the registry anchor a pushed scope holds on its own userdata. */
static void aux_unanchor(lua_State *L, corio_scope *s) {
  if (s->ref == LUA_NOREF) return;
  luaL_unref(L, LUA_REGISTRYINDEX, s->ref);
  s->ref = LUA_NOREF;
}

void corio_scope_pop(corio_task *t, corio_scope *s) {
  if (!s->pushed || s->owner != t) return;
  /* inner scopes left pushed (an abandoned body) go first */
  while (t->scope && t->scope != s && t->scope->owner == t)
    corio_scope_pop(t, t->scope);
  t->scope = (s->parent && s->parent->owner == t) ? s->parent : NULL;
  corio_scope_detach(s);
  aux_unanchor(t->co, s); /* last: s may be collected from here on */
}

/* The next scope after c in a pre-order walk of the tree below root that
   does not enter shields (they stop cancellation from outside), or NULL
   at the end. Iterative, so a deep tree cannot overflow the C stack. */
static corio_scope *aux_walk_next(corio_scope *root, corio_scope *c) {
  corio_link *n = c->children.next, *end = &c->children;
  for (;;) {
    for (; n != end; n = n->next) {
      corio_scope *k = corio_container(n, corio_scope, sibling);
      if (k->kind != CORIO_SCOPE_SHIELD) return k;
    }
    if (c == root || !c->parent) return NULL;
    n = c->sibling.next; /* c's later siblings, then c's parent's */
    end = &c->parent->children;
    c = c->parent;
  }
}

/* Delivers the cancellation by `by` to every task inside s. Every task
   reached is cancelled (by s or by a cancelled scope inside it): the walk
   does not enter shields, so no per-task walk up the tree is needed, and
   cancelling the outside of n nested scopes costs O(n), not O(n^2).
   Poking only readies tasks and never changes the tree (scopes are
   anchored while pushed, so no finalizer detaches one meanwhile). */
void corio_scope_poke_tree(corio_scope *s, corio_scope *by) {
  uint8_t mark = (by != CORIO_SELF_CANCEL && by->expired) ? 2 : 1;
  corio_scope *c;
  for (c = s; c; c = aux_walk_next(s, c)) {
    corio_link *n;
    if (!c->inherited) c->inherited = mark;
    if (c->pushed && c->owner && c->owner->scope == c)
      corio_task_poke_by(c->owner, by);
    for (n = c->tasks.next; n != &c->tasks; n = n->next) {
      corio_task *t = &corio_container(n, corio_kid, scope_link)->task;
      if (!t->scope) corio_task_poke_by(t, by); /* else in its own scope */
    }
  }
}

void corio_scope_cancel(corio_scope *s) {
  if (s->cancelled) return;
  s->cancelled = 1;
  if (s->rt && corio_timer_armed(&s->deadline))
    corio_timer_disarm(s->rt, &s->deadline);
  corio_scope_poke_tree(s, s);
}

void corio_scope_on_deadline(corio_rt *rt, corio_timer *tm) {
  corio_scope *s = corio_container(tm, corio_scope, deadline);
  (void)rt;
  if (s->cancelled) return;
  s->expired = 1;
  corio_scope_cancel(s);
}

/* ---------------------------------------------------------- nurseries */

/* Records the error on top of L as a failure of the nursery: the first
   becomes the error the scope raises, later ones go to err.others. */
static void aux_record_other(lua_State *L, corio_scope *s);

static void aux_record(lua_State *L, corio_scope *s) {
  if (s->error_ref == LUA_NOREF) s->error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else aux_record_other(L, s);
}

static void aux_wake_waiter(corio_scope *s) {
  corio_task *w = s->waiter;
  if (!w || s->nchildren > 0) return;
  s->waiter = NULL;
  s->closing = 1; /* no late spawn may outlive the scope's return */
  /* keep nursery_abort: a cancellation arriving before w runs must not
     undo this wake, or the scope's exit (and its recorded failure) would
     be skipped; it is delivered at the next checkpoint instead */
  corio_wake(w, 0);
}

/* Appends the error on top of L to s's list of failures that were not
   raised (others_ref). */
static void aux_record_other(lua_State *L, corio_scope *s) {
  if (s->others_ref == LUA_NOREF) {
    lua_newtable(L);
    s->others_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->others_ref);
  lua_insert(L, -2);
  lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
}

/* A failfast nursery (scope, try_join, select) records a child's failure
   to raise it and cancels the rest; failfast 2 (try_join) counts a
   child's own cancellation (t:cancel() of it) as a failure too, since
   the child then has no result to return. A nursery that is not failfast
   (join) hands outcomes back as values, but still keeps the failures: if
   its owner is cancelled, they go with the cancellation it raises. */
void corio_scope_child_done(lua_State *L, corio_scope *s, corio_task *t) {
  int failed = t->state == CORIO_FAILED ||
               (s->failfast == 2 && t->state == CORIO_CANCELLED &&
                (t->flags & CORIO_TF_CANCEL));
  s->nchildren--;
  if (failed) {
    lua_pushvalue(t->co, -1);
    lua_xmove(t->co, L, 1);
    if (s->failfast) {
      aux_record(L, s);
      corio_scope_cancel(s);
    } else {
      aux_record_other(L, s);
    }
  }
  aux_wake_waiter(s);
}

/* A nursery's owner waiting for its children cannot be interrupted: its
   cancellation reaches the children, and it waits for their cleanup. */
static int nursery_abort(corio_task *t, int woken) {
  corio_scope *s = (corio_scope *)t->wait.obj;
  if (woken < 0 && s->waiter == t) s->waiter = NULL;
  return 0;
}

/* ---------------------------------------------------------------- Lua */

static corio_scope *check_scope(lua_State *L, int idx) {
  return (corio_scope *)corio_checkudata(L, idx, SCOPE_MT);
}

static corio_task *aux_owner_task(lua_State *L, const char *fname) {
  corio_rt *rt = corio_rt_get(L, fname);
  corio_task *t = rt->current;
  if (!t || t->co != L)
    luaL_error(L, "%s: must be called from a task's own coroutine", fname);
  return t;
}

/* core._scope_enter(kind [, secs [, failfast]]) -> scope, pushed on the
   current task. kind: "plain", "timeout", "shield" or "nursery". */
static int lscope_enter(lua_State *L) {
  static const char *const kinds[] = {"plain", "timeout", "shield",
                                      "nursery", NULL};
  int kind = luaL_checkoption(L, 1, NULL, kinds);
  double secs = lua_isnoneornil(L, 2) ? -1 : corio_check_seconds(L, 2);
  corio_task *t = aux_owner_task(L, kind == CORIO_SCOPE_TIMEOUT ? "timeout"
                                    : kind == CORIO_SCOPE_SHIELD ? "shield"
                                    : "scope");
  corio_scope *s = (corio_scope *)lua_newuserdata(L, sizeof *s);
  corio_scope_init(s, t->rt, kind);
  luaL_setmetatable(L, SCOPE_MT);
  if (lua_type(L, 3) == LUA_TNUMBER) {
    s->failfast = (uint8_t)(lua_tointeger(L, 3) == 2 ? 2 : 1);
  } else if (lua_type(L, 3) == LUA_TSTRING) { /* "inline": see ypcall */
    s->failfast = 0;
    s->inline_call = 1;
  } else {
    s->failfast = (uint8_t)(lua_isnoneornil(L, 3) || lua_toboolean(L, 3));
  }
  s->secs = secs;
  /* anchored while pushed: tasks and the heap point at it, and its
     owner's stack (which normally holds it) can be lost to a
     coroutine.close() or a teardown */
  lua_pushvalue(L, -1);
  s->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  corio_scope_push(t, s);
  if (secs >= 0)
    corio_timer_arm(t->rt, &s->deadline, corio_deadline(t->rt, secs));
  return 1;
}

static int aux_results(lua_State *L, int first) {
  return lua_gettop(L) - first + 1;
}

/* core._scope_exit(scope, ok, ...): pops the scope; returns ... when ok;
   converts the scope's own cancellation (a timeout error for a timeout,
   nothing for others); re-raises any other error. */
static int lscope_exit(lua_State *L) {
  corio_scope *s = check_scope(L, 1);
  int ok = lua_toboolean(L, 2);
  if (s->owner) corio_scope_pop(s->owner, s);
  if (ok) return aux_results(L, 3);
  lua_settop(L, 3);
  if (s->cancelled && corio_is_error(L, 3, "cancelled")) {
    if (s->kind == CORIO_SCOPE_TIMEOUT) {
      lua_pushnumber(L, s->secs);
      corio_error_push(L, "timeout", NULL, "timed out after %ss",
                       lua_tostring(L, -1));
      lua_pushliteral(L, "others"); /* failures that rode along */
      lua_pushliteral(L, "others");
      lua_rawget(L, 3);
      lua_rawset(L, -3);
      return lua_error(L);
    }
    if (s->kind != CORIO_SCOPE_SHIELD) return 0;
  }
  return lua_error(L);
}

/* core._nursery_wait(scope, ok, err): records a failure of the body, then
   parks (uninterruptibly) until every child has finished. */
static int lnursery_wait(lua_State *L) {
  corio_scope *s = check_scope(L, 1);
  corio_task *t = corio_await_begin_nocancel(L, "scope");
  /* a body unwound by a cancellation of s, or of a scope around it (then
     every child is being cancelled too, and the exit's checkpoint raises
     it), is no failure: recording it would cancel the whole subtree again
     at every level of a deep tree */
  if (!lua_toboolean(L, 2) &&
      !((s->cancelled || s->inherited) && corio_is_error(L, 3, "cancelled"))) {
    lua_pushvalue(L, 3);
    aux_record(L, s);
    corio_scope_cancel(s);
  }
  if (s->nchildren == 0) {
    s->closing = 1;
    return 0;
  }
  s->waiter = t;
  return corio_await(L, t, "scope", nursery_abort, s, -1);
}

/* core._nursery_exit(scope, ok, ...): pops; raises the first failure
   (with err.others), else the cancellation of an enclosing scope (waiting
   for the children was a checkpoint, as in Trio), else returns the body's
   results. */
static int lnursery_exit(lua_State *L) {
  corio_scope *s = check_scope(L, 1);
  corio_task *owner = s->owner;
  corio_scope *by;
  int ok = lua_toboolean(L, 2);
  if (owner) corio_scope_pop(owner, s);
  if (s->error_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->error_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, s->error_ref);
    s->error_ref = LUA_NOREF;
    if (s->others_ref != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, s->others_ref);
      luaL_unref(L, LUA_REGISTRYINDEX, s->others_ref);
      s->others_ref = LUA_NOREF;
      if (lua_istable(L, -2)) {
        lua_pushliteral(L, "others");
        lua_insert(L, -2);
        lua_rawset(L, -3); /* raw: no user __newindex runs */
      } else { /* nowhere to attach them: report them, never lose them */
        int i, n = (int)lua_rawlen(L, -1);
        for (i = 1; i <= n && s->rt; i++) {
          lua_rawgeti(L, -1, i);
          corio_rt_report_value(L, s->rt);
        }
        lua_pop(L, 1);
      }
    }
    return lua_error(L);
  }
  if (owner && (by = corio_task_checkpoint(owner)) != NULL) {
    corio_push_cancel(L, by);
    if (s->others_ref != LUA_NOREF) { /* join's failures: never lost */
      lua_pushliteral(L, "others");
      lua_rawgeti(L, LUA_REGISTRYINDEX, s->others_ref);
      lua_rawset(L, -3);
      luaL_unref(L, LUA_REGISTRYINDEX, s->others_ref);
      s->others_ref = LUA_NOREF;
    }
    return lua_error(L);
  }
  if (s->others_ref != LUA_NOREF) { /* join returns them as outcomes */
    luaL_unref(L, LUA_REGISTRYINDEX, s->others_ref);
    s->others_ref = LUA_NOREF;
  }
  return ok ? aux_results(L, 3) : 0;
}

/* s:spawn([opts], fn, ...) */
static int lscope_spawn(lua_State *L) {
  corio_scope *s = check_scope(L, 1);
  corio_rt *rt = corio_rt_get(L, "spawn");
  if (!s->pushed || s->closing || s->kind != CORIO_SCOPE_NURSERY)
    return luaL_error(L, "spawn: the scope is closed");
  if (s->rt != rt)
    return luaL_error(L, "spawn: the scope belongs to another runtime");
  return corio_spawn_args(L, 2, rt, s, lscope_spawn);
}

static int lscope_cancel(lua_State *L) {
  corio_scope_cancel(check_scope(L, 1));
  return 0;
}

static int lscope_cancelled(lua_State *L) {
  lua_pushboolean(L, check_scope(L, 1)->cancelled);
  return 1;
}

/* A pushed scope is anchored, so only lua_close (or a direct call) gets
   here with one. */
static int lscope_gc(lua_State *L) {
  corio_scope *s = check_scope(L, 1);
  if (s->pushed) corio_scope_detach(s);
  aux_unanchor(L, s);
  if (s->error_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, s->error_ref);
  if (s->others_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, s->others_ref);
  s->error_ref = s->others_ref = LUA_NOREF;
  return 0;
}

static int lscope_tostring(lua_State *L) {
  static const char *const kinds[] = {"plain", "timeout", "shield",
                                      "nursery"};
  corio_scope *s = check_scope(L, 1);
  lua_pushfstring(L, "corio.Scope(%s%s%s)", kinds[s->kind],
                  s->cancelled ? ", cancelled" : "",
                  s->pushed ? "" : ", closed");
  return 1;
}

static const luaL_Reg scope_methods[] = {{"cancel", lscope_cancel},
                                         {"cancelled", lscope_cancelled},
                                         {NULL, NULL}};
static const luaL_Reg scope_meta[] = {
    {"__gc", lscope_gc}, {"__tostring", lscope_tostring}, {NULL, NULL}};
static const luaL_Reg funcs[] = {{"_scope_enter", lscope_enter},
                                 {"_scope_exit", lscope_exit},
                                 {"_nursery_exit", lnursery_exit},
                                 {NULL, NULL}};
static const luaL_Reg await_funcs[] = {{"_nursery_wait", lnursery_wait},
                                       {NULL, NULL}};

/* s:spawn may wait for the task budget (await 2: it runs again) */
static const luaL_Reg scope_retry[] = {{"spawn", lscope_spawn},
                                       {NULL, NULL}};

void corio_open_scope(lua_State *L) {
  corio_class_retry(L, SCOPE_MT, scope_methods, scope_retry, scope_meta);
  lua_pop(L, 1);
  corio_setfuncs(L, funcs, 0);
  corio_setfuncs(L, await_funcs, 1);
}
