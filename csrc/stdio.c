/*
 * stdio.c: corio.stdin() and corio.stdout(), the process's own standard
 * input and output as corio.Stream objects, so a script can read input
 * without blocking the loop.
 *
 * One object per runtime for each (cached in the registry, keyed by the
 * runtime); once closed, the next call makes a new one. The stream works
 * on a duplicate of the descriptor, so closing it never closes fd 0 or 1
 * (the process keeps its stdio; print and io.write go on working). libuv
 * puts the descriptor in non-blocking mode, which the duplicate shares
 * with the original (that is the file description's mode), as luv and
 * Node do too.
 *
 * Pipes, sockets and terminals work. A regular file or a character
 * device such as /dev/null cannot be watched by the loop: corio.stdin()
 * then returns nil, err (kind "io", code "ENOTSUP"); read such input with
 * the fs calls instead.
 */
#include "corio.h"
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>


#define STDIO_KEY "corio.stdio"

/* Pushes the cache: registry[STDIO_KEY][rt] = {stdin, stdout}. Strong
   references: a stdin collected while unread input sits in its buffer
   would lose it. An entry left by a finished runtime holds closed
   streams (the runtime closed their handles) and is replaced when a new
   runtime gets the same address. */
static void aux_cache(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, STDIO_KEY);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, STDIO_KEY);
  }
}

/* Opens fd (0 or 1) of this process as a stream; pushes it or nil, err. */
static int aux_open(lua_State *L, corio_rt *rt, int fd) {
  uv_handle_type type = uv_guess_handle(fd);
  corio_stream *s;
  uv_handle_t *h;
  int dfd, r, ufd;
  if (type != UV_TTY && type != UV_NAMED_PIPE && type != UV_TCP)
    return corio_fail(L, "io", "%s: not a pipe, socket or terminal (a "
                      "file? use corio.fs)", fd ? "stdout" : "stdin");
  s = corio_stream_push(L, rt, CORIO_SK_STDIO);
  h = corio_stream_handle(s);
  if ((dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0)
    return corio_io_fail(L, uv_translate_sys_error(errno), "stdio");
  if (type == UV_TTY) {
    r = uv_tty_init(&rt->loop, (uv_tty_t *)h, dfd, fd == 0);
    /* libuv may reopen the terminal and leave our duplicate aside */
    if (r == 0 && uv_fileno(h, &ufd) == 0 && ufd != dfd) close(dfd);
  } else {
    r = uv_pipe_init(&rt->loop, (uv_pipe_t *)h, 0);
    if (r == 0) {
      corio_stream_mark(s);
      if ((r = uv_pipe_open((uv_pipe_t *)h, dfd)) != 0) {
        close(dfd);
        corio_stream_close(s);
        return corio_io_fail(L, r, "stdio");
      }
    }
  }
  if (r) {
    close(dfd);
    return corio_io_fail(L, r, "stdio");
  }
  if (fd == 1) {
    corio_stream_mark(s);
    corio_stream_set_writeonly(s);
  } else {
    corio_stream_opened(s);
  }
  return 1;
}

static int aux_stdio(lua_State *L, int fd) {
  corio_rt *rt = corio_rt_get(L, fd ? "stdout" : "stdin");
  int n;
  lua_settop(L, 0);
  aux_cache(L);
  lua_pushlightuserdata(L, rt);
  lua_rawget(L, 1);
  if (lua_istable(L, -1)) {
    lua_rawgeti(L, -1, fd + 1);
    if (corio_stream_test(L, -1) &&
        corio_stream_runtime(corio_stream_test(L, -1)) == rt)
      return 1;
    lua_pop(L, 1);
  } else {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushlightuserdata(L, rt);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
  }
  /* stack: cache, entry */
  n = aux_open(L, rt, fd);
  if (n == 1) {
    lua_pushvalue(L, -1);
    lua_rawseti(L, 2, fd + 1);
  }
  return n;
}

static int lcorio_stdin(lua_State *L) { return aux_stdio(L, 0); }
static int lcorio_stdout(lua_State *L) { return aux_stdio(L, 1); }

static const luaL_Reg funcs[] = {{"stdin", lcorio_stdin},
                                 {"stdout", lcorio_stdout},
                                 {NULL, NULL}};

void corio_open_stdio(lua_State *L) { corio_setfuncs(L, funcs, 0); }
