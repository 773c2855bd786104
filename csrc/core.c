/*
 * core.c: what every other file shares, the ground the dependency graph
 * grows up from: the per-state context, the class builder, the one error
 * type, the one options parser, and the Lua 5.1 shims declared in
 * compat.h. The module's opener is in module.c, at the top.
 */
#include "corio.h"
#include <math.h>
#include <stdio.h>
#include <stdarg.h>
#include <string.h>
#if LUA_VERSION_NUM < 503 && !defined(LUAJIT_VERSION_NUM)
#include <dlfcn.h>
#endif


const char corio_raise_mark = 0;
const char corio_retry_mark = 0;
CORIO_TLS corio_rt *corio_running = NULL;

#define CTX_KEY "corio.ctx"
#define ERROR_MT "corio.Error"

corio_ctx *corio_ctx_get(lua_State *L) {
  return (corio_ctx *)lua_touserdata(L, lua_upvalueindex(1));
}

/* The cache is a small open-addressed table keyed by the address of the
   class name literal: one probe in the common case. */
void *corio_testudata(lua_State *L, int idx, const char *tname) {
  corio_ctx *ctx = corio_ctx_get(L);
  void *p = lua_touserdata(L, idx);
  unsigned i, n;
  const void *mt;
  if (!p || !lua_getmetatable(L, idx)) return NULL;
  mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  i = (unsigned)(((uintptr_t)tname >> 3) % CORIO_MT_CACHE);
  for (n = 0; n < CORIO_MT_CACHE; n++, i = (i + 1) % CORIO_MT_CACHE) {
    if (ctx->mtc[i].name == tname) return ctx->mtc[i].mt == mt ? p : NULL;
    if (!ctx->mtc[i].name) { /* first use of tname */
      luaL_getmetatable(L, tname);
      ctx->mtc[i].mt = lua_topointer(L, -1);
      ctx->mtc[i].name = tname;
      lua_pop(L, 1);
      return ctx->mtc[i].mt == mt ? p : NULL;
    }
  }
  luaL_getmetatable(L, tname); /* cache full: the slow way */
  n = lua_topointer(L, -1) == mt;
  lua_pop(L, 1);
  return n ? p : NULL;
}

void *corio_checkudata(lua_State *L, int idx, const char *tname) {
  void *p = corio_testudata(L, idx, tname);
  return p ? p : luaL_checkudata(L, idx, tname);
}

/* ------------------------------------------------------ function tables */

#ifndef CORIO_YIELDK
/* Without continuations an awaiting C function returns the values it was
   resumed with; this wrapper raises when they start with the raise mark. */
/* The C function is an upvalue named like it, so that argument errors
   read "bad argument #1 to 'sleep'" as they do on 5.3+. */
static const char wrapper_src[] =
    "local %s, mark = ...\n"
    "local error, select = error, select\n"
    "local function chk(...)\n"
    "  if ... == mark then error((select(2, ...)), 0) end\n"
    "  return ...\n"
    "end\n"
    "return function(...) return chk(%s(...)) end\n";

/* The same for functions that may ask to be called again (await 2, see
   corio_await_retry): it keeps the arguments to call again with. */
static const char retry_wrapper_src[] =
    "local %s, mark, retry = ...\n"
    "local error, select, unpack = error, select, unpack\n"
    "local call\n"
    "local function fin(args, n, ...)\n"
    "  if ... == retry then return call(unpack(args, 1, n)) end\n"
    "  if ... == mark then error((select(2, ...)), 0) end\n"
    "  return ...\n"
    "end\n"
    "call = function(...) return fin({...}, select('#', ...), %s(...)) end\n"
    "return call\n";

static void aux_wrap_await(lua_State *L, const char *name, int await) {
  const char *src = lua_pushfstring(L, await == 2 ? retry_wrapper_src
                                                  : wrapper_src, name, name);
  if (luaL_loadbuffer(L, src, strlen(src), "=corio")) lua_error(L);
  lua_remove(L, -2);
  lua_insert(L, -2);
  lua_pushlightuserdata(L, (void *)&corio_raise_mark);
  lua_pushlightuserdata(L, (void *)&corio_retry_mark);
  lua_call(L, 3, 1);
}
#endif

void corio_setfuncs(lua_State *L, const luaL_Reg *l, int await) {
  lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  for (; l && l->name; l++) {
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l->func, 1);
#ifndef CORIO_YIELDK
    if (await) aux_wrap_await(L, l->name[0] == '_' ? "f" : l->name, await);
#else
    (void)await;
#endif
    lua_setfield(L, -3, l->name);
  }
  lua_pop(L, 1);
}

static void aux_class(lua_State *L, const char *name, const luaL_Reg *methods,
                      const luaL_Reg *awaits, int await,
                      const luaL_Reg *meta) {
  luaL_newmetatable(L, name);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  corio_setfuncs(L, methods, 0);
  corio_setfuncs(L, awaits, await);
  lua_setfield(L, -2, "__index");
  corio_setfuncs(L, meta, 0);
}

void corio_class_ref(lua_State *L, int which) {
  corio_ctx *ctx;
  lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  ctx = (corio_ctx *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (ctx->mt_ref[which] > 0) return; /* opened again: the same table */
  lua_pushvalue(L, -1);
  ctx->mt_ref[which] = luaL_ref(L, LUA_REGISTRYINDEX);
}

void corio_class(lua_State *L, const char *name, const luaL_Reg *methods,
                 const luaL_Reg *await_methods, const luaL_Reg *meta) {
  aux_class(L, name, methods, await_methods, 1, meta);
}

void corio_class_retry(lua_State *L, const char *name,
                       const luaL_Reg *methods, const luaL_Reg *retry_methods,
                       const luaL_Reg *meta) {
  aux_class(L, name, methods, retry_methods, 2, meta);
}

/* ---------------------------------------------------------- error type */

static void aux_error_new(lua_State *L, const char *kind, const char *code) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_insert(L, -2); /* message below the table -> move it in */
  lua_setfield(L, -2, "message");
  if (code) {
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
  }
  luaL_getmetatable(L, ERROR_MT);
  lua_setmetatable(L, -2);
}

void corio_error_push(lua_State *L, const char *kind, const char *code,
                      const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  aux_error_new(L, kind, code);
}

int corio_error_raise(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  aux_error_new(L, kind, NULL);
  return lua_error(L);
}

int corio_fail(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  lua_pushnil(L);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  aux_error_new(L, kind, NULL);
  return 2;
}

int corio_is_error(lua_State *L, int idx, const char *kind) {
  int ok;
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, ERROR_MT);
  ok = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!ok || !kind) return ok;
  idx = lua_absindex(L, idx);
  lua_pushliteral(L, "kind");
  lua_rawget(L, idx); /* raw: a user's __index must not run (or raise) */
  ok = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), kind) == 0;
  lua_pop(L, 1);
  return ok;
}

/* tostring(err): one readable line, "kind: message [CODE] (in task 'x')" */
static int lerror_tostring(lua_State *L) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_getfield(L, 1, "kind");
  luaL_addvalue(&b);
  luaL_addstring(&b, ": ");
  lua_getfield(L, 1, "message");
  if (!lua_isstring(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "?");
  }
  luaL_addvalue(&b);
  lua_getfield(L, 1, "code");
  if (lua_isstring(L, -1)) {
    luaL_addstring(&b, " [");
    luaL_addvalue(&b);
    luaL_addstring(&b, "]");
  } else {
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "task");
  if (lua_isstring(L, -1)) {
    luaL_addstring(&b, " (in task '");
    luaL_addvalue(&b);
    luaL_addstring(&b, "')");
  } else {
    lua_pop(L, 1);
  }
  luaL_pushresult(&b);
  return 1;
}

static int aux_is_kind(lua_State *L, const char *kind) {
  lua_pushboolean(L, corio_is_error(L, 1, kind));
  return 1;
}
static int lcorio_is_cancelled(lua_State *L) {
  return aux_is_kind(L, "cancelled");
}
static int lcorio_is_timeout(lua_State *L) { return aux_is_kind(L, "timeout"); }

/* corio.is_error(e [, kind]) */
static int lcorio_is_error(lua_State *L) {
  lua_pushboolean(L, corio_is_error(L, 1, luaL_optstring(L, 2, NULL)));
  return 1;
}

/* core.error(kind, message [, code]) -> a new error object (Lua layer) */
static int lcorio_error(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  const char *msg = luaL_checkstring(L, 2);
  const char *code = luaL_optstring(L, 3, NULL);
  corio_error_push(L, kind, code, "%s", msg);
  return 1;
}

/* ------------------------------------------------------------- options */

int corio_opt_present(lua_State *L, int idx, const char *fname,
                      const char *const allowed[]) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (!lua_istable(L, idx))
    return luaL_error(L, "bad argument #%d to '%s' (options table expected, "
                      "got %s)", idx, fname, luaL_typename(L, idx));
  if (!allowed) return 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *const *a = allowed;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);
      while (*a && strcmp(*a, k) != 0) a++;
    }
    if (!*a)
      return luaL_error(L, "bad option '%s' to '%s' (unknown option)",
                        lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                       : "?", fname);
  }
  return 1;
}

double corio_opt_number(lua_State *L, int idx, const char *key, double def,
                        const char *fname) {
  double v;
  if (idx == 0 || !lua_istable(L, idx)) return def;
  lua_getfield(L, idx, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return def;
  }
  if (lua_type(L, -1) != LUA_TNUMBER)
    return luaL_error(L, "bad option '%s' to '%s' (number expected, got %s)",
                      key, fname, luaL_typename(L, -1));
  v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* writes v as a reader expects a bound: 0, 1, 64, 1e6, 1e15 */
static void aux_bound(char *buf, size_t n, double v) {
  double e = floor(log10(v > 0 ? v : 1));
  if (v >= 1e6 && pow(10, e) == v) snprintf(buf, n, "1e%d", (int)e);
  else snprintf(buf, n, "%.15g", v);
}

double corio_opt_range(lua_State *L, int idx, const char *key, double def,
                       double lo, double hi, const char *fname) {
  double v = corio_opt_number(L, idx, key, def, fname);
  if (v != v || v < lo || v > hi) {
    char a[32], b[32];
    aux_bound(a, sizeof a, lo);
    aux_bound(b, sizeof b, hi);
    luaL_error(L, "bad option '%s' to '%s' (number from %s to %s expected)",
               key, fname, a, b);
  }
  return v;
}

const char *corio_opt_string(lua_State *L, int idx, const char *key,
                             const char *def, const char *fname) {
  const char *s;
  if (idx == 0 || !lua_istable(L, idx)) return def;
  lua_getfield(L, idx, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return def;
  }
  if (lua_type(L, -1) != LUA_TSTRING) {
    luaL_error(L, "bad option '%s' to '%s' (string expected, got %s)", key,
               fname, luaL_typename(L, -1));
    return NULL;
  }
  /* the string stays alive in the options table the caller holds */
  s = lua_tostring(L, -1);
  lua_pop(L, 1);
  return s;
}

double corio_opt_timeout(lua_State *L, int idx, const char *fname) {
  static const char *const allowed[] = {"timeout", NULL};
  double v;
  if (lua_gettop(L) < idx) return -1; /* the common case: no options */
  if (!corio_opt_present(L, idx, fname, allowed)) return -1;
  v = corio_opt_number(L, idx, "timeout", -1, fname);
  if (lua_istable(L, idx)) {
    lua_getfield(L, idx, "timeout");
    if (!lua_isnil(L, -1) && (v != v || v < 0))
      luaL_error(L, "bad option 'timeout' to '%s' (non-negative number of "
                 "seconds expected)", fname);
    lua_pop(L, 1);
  }
  return v;
}

double corio_check_seconds(lua_State *L, int arg) {
  double s = luaL_checknumber(L, arg);
  if (s != s || s < 0)
    luaL_argerror(L, arg, "non-negative number of seconds expected");
  return s;
}

/* --------------------------------------------------------- 5.1 shims */

#if LUA_VERSION_NUM < 503 && !defined(LUAJIT_VERSION_NUM)
/* The running VM's lua_isyieldable if it has one: LuaJIT 2.1 exports it,
   PUC 5.1 does not. The process's global symbols are the interpreter's
   (a module's Lua API calls resolve to them too). */
corio_yieldable_fn corio_probe_vm(void) {
  void *f = dlsym(RTLD_DEFAULT, "lua_isyieldable");
  corio_yieldable_fn fn;
  memcpy(&fn, &f, sizeof fn); /* ISO C has no cast from void * */
  return fn;
}

/* PUC Lua 5.1 has no lua_isyieldable. Its lua_State layout is frozen
   (5.1.5), so mirror the head of it to read the C-call counters that
   lua_yield itself checks: yielding fails when nCcalls > baseCcalls.
   Under LuaJIT (which loads this 5.1 build too) that layout is wrong:
   use the VM's own function. */
struct corio_lua51_state {
  void *next;
  unsigned char tt, marked, status;
  void *top, *base, *l_G, *ci;
  const void *savedpc;
  void *stack_last, *stack, *end_ci, *base_ci;
  int stacksize, size_ci;
  unsigned short nCcalls, baseCcalls;
};

int corio_isyieldable(corio_yieldable_fn vm, lua_State *L) {
  const struct corio_lua51_state *s = (const struct corio_lua51_state *)L;
  if (vm) return vm(L);
  return s->nCcalls <= s->baseCcalls;
}
#endif

#ifdef CORIO_NEED_51_AUX
void corio_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup, "too many upvalues");
  for (; l->name; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}

void *corio_compat_testudata(lua_State *L, int ud, const char *tname) {
  void *p = lua_touserdata(L, ud);
  if (p && lua_getmetatable(L, ud)) {
    luaL_getmetatable(L, tname);
    if (!lua_rawequal(L, -1, -2)) p = NULL;
    lua_pop(L, 2);
    return p;
  }
  return NULL;
}

void corio_compat_traceback(lua_State *L, lua_State *L1, const char *msg,
                            int level) {
  lua_getglobal(L, "debug");
  lua_getfield(L, -1, "traceback");
  lua_remove(L, -2);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    lua_pushstring(L, msg ? msg : "");
    return;
  }
  if (L1 != L) {
    lua_pushthread(L1);
    lua_xmove(L1, L, 1);
  }
  if (msg) lua_pushstring(L, msg); else lua_pushnil(L);
  lua_pushinteger(L, level);
  if (lua_pcall(L, L1 != L ? 3 : 2, 1, 0) != 0 || !lua_isstring(L, -1)) {
    lua_pop(L, 1);
    lua_pushstring(L, msg ? msg : "");
  }
}
#endif

/* ---------------------------------------------------------------- open */

static const luaL_Reg core_funcs[] = {
    {"is_cancelled", lcorio_is_cancelled},
    {"is_timeout", lcorio_is_timeout},
    {"is_error", lcorio_is_error},
    {"error", lcorio_error},
    {NULL, NULL}};

static const luaL_Reg error_meta[] = {{"__tostring", lerror_tostring},
                                      {NULL, NULL}};

void corio_open_ctx(lua_State *L) {
  corio_ctx *ctx;
  lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    ctx = (corio_ctx *)lua_newuserdata(L, sizeof *ctx);
    memset(ctx, 0, sizeof *ctx);
    ctx->next_id = 1;
    ctx->vm_isyieldable = corio_probe_vm();
    lua_setfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  } else {
    lua_pop(L, 1);
  }
  luaL_newmetatable(L, ERROR_MT);
  lua_pushliteral(L, ERROR_MT);
  lua_setfield(L, -2, "__name");
  corio_setfuncs(L, error_meta, 0);
  lua_pop(L, 1);
}

void corio_open_core(lua_State *L) {
  corio_setfuncs(L, core_funcs, 0);
  luaL_getmetatable(L, ERROR_MT);
  lua_setfield(L, -2, "Error");
}
