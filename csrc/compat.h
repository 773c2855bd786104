/*
 * compat.h: the one place where Lua 5.1, LuaJIT 2.1, 5.3 and 5.4 differ.
 *
 * The rest of csrc/ is written against the 5.4 API plus the corio_* helpers
 * below. CORIO_YIELDK is set where C functions can yield with a continuation
 * (5.2+); without it (5.1, LuaJIT) an awaiting C function returns whatever
 * the scheduler resumes it with, and a small Lua wrapper (see
 * corio_setfuncs_await in core.c) turns a raise request into an error.
 */
#ifndef CORIO_COMPAT_H
#define CORIO_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#if LUA_VERSION_NUM == 501 && defined(__has_include)
#if __has_include(<luajit.h>)
#include <luajit.h>
#endif
#endif

#ifndef LUA_OK
#define LUA_OK 0
#endif

#if LUA_VERSION_NUM >= 503
#define CORIO_YIELDK 1
#endif

#if LUA_VERSION_NUM < 502
#define lua_rawlen(L, i) lua_objlen((L), (i))
#ifndef LUAJIT_VERSION_NUM
/* PUC 5.1 lacks these; LuaJIT 2.1 provides them. */
#define CORIO_NEED_51_AUX 1
void corio_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup);
void *corio_compat_testudata(lua_State *L, int ud, const char *tname);
void corio_compat_traceback(lua_State *L, lua_State *L1, const char *msg,
                            int level);
#define luaL_setfuncs corio_compat_setfuncs
#define luaL_testudata corio_compat_testudata
#define luaL_traceback corio_compat_traceback
#define luaL_setmetatable(L, n) \
  (luaL_getmetatable((L), (n)), lua_setmetatable((L), -2))
#endif
#define lua_absindex(L, i) \
  (((i) > 0 || (i) <= LUA_REGISTRYINDEX) ? (i) : lua_gettop(L) + (i) + 1)
#endif

#if LUA_VERSION_NUM < 503
#define lua_isinteger(L, i) 0
#endif

/* After a task dies by an error, run its pending to-be-closed variables
   (5.4 leaves them for coroutine.close). Returns the final status. */
static inline int corio_closethread(lua_State *co, lua_State *from) {
#if LUA_VERSION_NUM >= 504 && LUA_VERSION_RELEASE_NUM >= 50406
  return lua_closethread(co, from);
#elif LUA_VERSION_NUM >= 504
  (void)from;
  return lua_resetthread(co);
#else
  (void)co;
  (void)from;
  return LUA_OK;
#endif
}

/* Resume co with narg values on its stack; *nres gets the number of values
   it yielded or returned (they are the top *nres slots of co). */
static inline int corio_resume(lua_State *co, lua_State *from, int narg,
                               int *nres) {
#if LUA_VERSION_NUM >= 504
  return lua_resume(co, from, narg, nres);
#elif LUA_VERSION_NUM >= 502
  int st = lua_resume(co, from, narg);
  *nres = lua_gettop(co);
  return st;
#else
  int st;
  (void)from;
  st = lua_resume(co, narg);
  *nres = lua_gettop(co);
  return st;
#endif
}

/* Full userdata with nuv user value slots (kept in a table in 5.1 and 5.3,
   where a userdata has at most one user value). */
static inline void *corio_newudata(lua_State *L, size_t size, int nuv) {
#if LUA_VERSION_NUM >= 504
  return lua_newuserdatauv(L, size, nuv);
#else
  void *p = lua_newuserdata(L, size);
  if (nuv > 0) { /* 5.1's default environment is a table too: replace it */
    lua_createtable(L, nuv, 0);
#if LUA_VERSION_NUM >= 502
    lua_setuservalue(L, -2);
#else
    lua_setfenv(L, -2);
#endif
  }
  return p;
#endif
}

#if LUA_VERSION_NUM < 504
/* pushes the table holding the user values of the userdata at idx (made
   by corio_newudata), or nil */
static inline void corio_uvtable(lua_State *L, int idx) {
#if LUA_VERSION_NUM >= 502
  lua_getuservalue(L, idx);
#else
  lua_getfenv(L, idx);
#endif
}
#endif

/* Pops a value and stores it as user value n of the userdata at idx. */
static inline void corio_setuv(lua_State *L, int idx, int n) {
  idx = lua_absindex(L, idx);
#if LUA_VERSION_NUM >= 504
  lua_setiuservalue(L, idx, n);
#else
  corio_uvtable(L, idx);
  if (!lua_istable(L, -1)) luaL_error(L, "corio: userdata has no user values");
  lua_insert(L, -2);
  lua_rawseti(L, -2, n);
  lua_pop(L, 1);
#endif
}

/* Pushes user value n of the userdata at idx (nil if none). */
static inline void corio_getuv(lua_State *L, int idx, int n) {
  idx = lua_absindex(L, idx);
#if LUA_VERSION_NUM >= 504
  lua_getiuservalue(L, idx, n);
#else
  corio_uvtable(L, idx);
  if (lua_istable(L, -1)) {
    lua_rawgeti(L, -1, n);
    lua_remove(L, -2);
  }
#endif
}

/* Whether the running coroutine L may yield here (not across a C call
   boundary such as pcall on 5.1, a C iterator or a sort comparator).
   `vm` is the running VM's own lua_isyieldable, or NULL: a module built
   against PUC 5.1's headers is also loaded by LuaJIT (Debian installs 5.1
   modules where LuaJIT looks), so which VM runs it is found out when the
   module is opened (corio_probe_vm), not trusted from the headers. */
typedef int (*corio_yieldable_fn)(lua_State *L);
#if LUA_VERSION_NUM >= 503 || defined(LUAJIT_VERSION_NUM)
#define corio_isyieldable(vm, L) ((void)(vm), lua_isyieldable(L))
#define corio_probe_vm() ((corio_yieldable_fn)0)
#else
int corio_isyieldable(corio_yieldable_fn vm, lua_State *L);
corio_yieldable_fn corio_probe_vm(void);
#endif

#endif
