/*
 * module.c: luaopen_corio_core, the one exported symbol. It sits at the
 * top of the dependency graph: it knows every file's opener, and no file
 * knows it. Everything else reads upward from core.c.
 */
#include "corio.h"

__attribute__((visibility("default"))) int luaopen_corio_core(lua_State *L) {
  corio_open_ctx(L); /* first: every class builder needs the context */
  lua_newtable(L);
  corio_open_core(L);
  corio_open_runtime(L);
  corio_open_host(L);
  corio_open_task(L);
  corio_open_time(L);
  corio_open_scope(L);
  corio_open_sync(L);
  corio_open_channel(L);
  corio_open_observe(L);
  corio_open_fs(L);
  corio_open_file(L);
  corio_open_process(L);
  corio_open_signal(L);
  corio_open_pool(L);
  corio_open_stream(L);
  corio_open_tcp(L);
  corio_open_udp(L);
  corio_open_dns(L);
  corio_open_stdio(L);
  lua_pushstring(L, uv_version_string());
  lua_setfield(L, -2, "_uv_version");
  return 1;
}
