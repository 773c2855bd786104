/*
 * stdio.c: corio.stdin() and corio.stdout(), the process's own standard
 * input and output as corio.Stream objects, so a script can read input
 * without blocking the loop.
 *
 * One object per runtime for each (cached in the registry, keyed by the
 * runtime); once closed, the next call makes a new one. The stream works
 * on a duplicate of the descriptor, so closing it never closes fd 0 or 1
 * (the process keeps its stdio; print and io.write go on working).
 *
 * Pipes, sockets and terminals are watched by the loop directly. libuv
 * puts the descriptor in non-blocking mode, which the duplicate shares
 * with the original (the mode belongs to the open file description), as
 * luv and Node do too.
 *
 * A regular file or a device (`< file`, `> file`, /dev/null) cannot be
 * watched by epoll. Then a copier thread moves the bytes between the
 * descriptor and one end of a socketpair with blocking calls (a regular
 * file never blocks for long), and the stream is the other end: reads
 * and writes keep their meaning, the loop never blocks. The thread ends
 * when the file ends (stdin) or when the stream is closed (its end of the
 * pair closes: the copier's send fails with EPIPE, or its read sees the
 * end), and is joined when the stream's memory is freed.
 */
#include "corio.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
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

/* ------------------------------------------------------------ copier */

typedef struct copier {
  uv_thread_t thread;
  int from, to;           /* blocking descriptors, closed by the thread */
} copier;

/* Copies from -> to until the end, an error, or the far end closing. */
static void copier_run(void *arg) {
  copier *c = (copier *)arg;
  char buf[16384];
  for (;;) {
    ssize_t n = read(c->from, buf, sizeof buf), off = 0;
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    while (off < n) {
      /* send: no SIGPIPE when the stream side is gone; write: a file */
      ssize_t w = send(c->to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
      if (w < 0 && errno == ENOTSOCK)
        w = write(c->to, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) goto done;
      off += w;
    }
  }
done:
  close(c->from);
  close(c->to);
}

static void copier_join(void *arg) {
  copier *c = (copier *)arg;
  uv_thread_join(&c->thread);
  free(c);
}

/* Gives a descriptor the loop can watch for dfd (a file or device, owned
   by the caller until this succeeds): one end of a socketpair whose other
   end a copier thread serves. Returns it, or a negative libuv error. */
static int aux_copier(int dfd, int input, copier **out) {
  int sv[2], r;
  copier *c = (copier *)malloc(sizeof *c);
  if (!c) return UV_ENOMEM;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    free(c);
    return uv_translate_sys_error(errno);
  }
  c->from = input ? dfd : sv[1];
  c->to = input ? sv[1] : dfd;
  if ((r = uv_thread_create(&c->thread, copier_run, c)) != 0) {
    close(sv[0]);
    close(sv[1]);
    free(c);
    return r;
  }
  *out = c;
  return sv[0];
}

/* ---------------------------------------------------------------- open */

/* Opens fd (0 or 1) of this process as a stream; pushes it or nil, err. */
static int aux_open(lua_State *L, corio_rt *rt, int fd) {
  uv_handle_type type = uv_guess_handle(fd);
  const char *what = fd ? "stdout" : "stdin";
  corio_stream *s;
  copier *cp = NULL;
  uv_handle_t *h;
  int dfd, r, ufd;
  if (type == UV_UNKNOWN_HANDLE || type == UV_UDP)
    return corio_fail(L, "io", "%s: not open, or not a stream", what);
  s = corio_stream_push(L, rt, CORIO_SK_STDIO);
  h = corio_stream_handle(s);
  if ((dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0)
    return corio_io_fail(L, uv_translate_sys_error(errno), what);
  if (type == UV_FILE) { /* the loop cannot watch it: a copier can */
    int sfd = aux_copier(dfd, fd == 0, &cp);
    if (sfd < 0) {
      close(dfd);
      return corio_io_fail(L, sfd, what);
    }
    dfd = sfd; /* the copier owns the duplicate now */
    type = UV_NAMED_PIPE;
  }
  if (type == UV_TTY) {
    r = uv_tty_init(&rt->loop, (uv_tty_t *)h, dfd, fd == 0);
    /* libuv may reopen the terminal and leave our duplicate aside */
    if (r == 0 && uv_fileno(h, &ufd) == 0 && ufd != dfd) close(dfd);
  } else if ((r = uv_pipe_init(&rt->loop, (uv_pipe_t *)h, 0)) == 0) {
    corio_stream_mark(s);
    if (cp) corio_stream_on_free(s, copier_join, cp);
    if ((r = uv_pipe_open((uv_pipe_t *)h, dfd)) != 0) {
      close(dfd); /* (the copier then ends, and is joined when freed) */
      corio_stream_close(s);
      return corio_io_fail(L, r, what);
    }
  }
  if (r) { /* no handle: nothing will join the copier, so end it here */
    close(dfd);
    if (cp) copier_join(cp);
    return corio_io_fail(L, r, what);
  }
  corio_stream_mark(s);
  if (fd == 1) corio_stream_set_writeonly(s);
  else corio_stream_opened(s);
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
