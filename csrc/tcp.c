/*
 * tcp.c: TCP and Unix-socket clients and servers. A connection is a
 * corio.Stream (stream.c); this file makes them: one connect step to one
 * address (the Lua layer, corio/net.lua, resolves names and tries each
 * address within one deadline), and listeners (corio.Listener).
 *
 * Listeners own their socket and watch it with a uv_poll, and accept(2)
 * themselves instead of going through uv_listen: libuv's accept path
 * answers EMFILE by accepting and closing the pending connections (its
 * "EMFILE trick"), so the caller could never see the error and clients
 * would be dropped. Here accept returns nil, err with code "EMFILE", the
 * connection stays in the backlog, and the next accept after descriptors
 * free up takes it. Acceptors wait FIFO; the poll runs only while one
 * waits (so a listener nobody accepts on costs no wake-ups, and its
 * backlog is the kernel's).
 *
 * Lifetime of a listener: as for streams, the userdata points at a
 * malloc'd box holding the uv_poll, freed (and the socket closed) in the
 * poll's close callback, or by the userdata's __gc when the runtime
 * closed the poll itself at teardown.
 */
#include "corio.h"
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>


#define LISTENER_MT "corio.Listener"

typedef struct listener {
  uv_poll_t poll;
  corio_rt *rt;
  struct listener_ud *ud;
  corio_link acceptors;   /* parked in accept, FIFO */
  corio_task *woken;      /* the acceptor woken to accept, not yet run */
  struct { corio_task *t; lua_Integer id; } *bq; /* acceptors waiting for
                             a budget slot (maybe stale: aux_bacceptor) */
  int bn, bcap;
  int fd;
  int port;               /* TCP: the bound port */
  uint8_t kind;           /* CORIO_SK_TCP or CORIO_SK_UNIX */
  uint8_t opened, closing, polling;
} listener;

typedef struct listener_ud {
  listener *l;
} listener_ud;

/* ------------------------------------------------------------- connect */

typedef struct connect_req {
  uv_connect_t req;
  corio_stream *s;
  corio_task *t;          /* NULL once the connecting task gave up */
  int ref;                /* registry ref of the stream's userdata */
} connect_req;

static void tcp_on_connect(uv_connect_t *req, int status) {
  connect_req *c = (connect_req *)req;
  corio_task *t = c->t;
  lua_State *co;
  if (!t) {
    free(c);
    return;
  }
  c->t = NULL;
  co = corio_wake_stack(t, 2);
  lua_rawgeti(co, LUA_REGISTRYINDEX, c->ref);
  luaL_unref(co, LUA_REGISTRYINDEX, c->ref);
  corio_io_give(t->rt);
  if (status == 0) {
    corio_stream_opened(c->s); /* start reading ahead */
    corio_wake(t, 1);
  } else {
    lua_pop(co, 1);
    corio_stream_close(c->s);
    lua_pushnil(co);
    corio_io_error_push(co, status, "connect");
    t->wait.abort = NULL;
    corio_wake(t, 2);
  }
  free(c);
}

/* Gives up: closing the stream cancels the request, whose callback
   (UV_ECANCELED) then frees it. */
static int connect_abort(corio_task *t, int woken) {
  connect_req *c = (connect_req *)t->wait.obj;
  if (woken == 1) return 0; /* connected: the stream is the task's */
  c->t = NULL;
  luaL_unref(t->co, LUA_REGISTRYINDEX, c->ref);
  c->ref = LUA_NOREF;
  corio_stream_close(c->s);
  corio_io_give(t->rt);
  return 1;
}

/* Parses a literal address; 0 or a libuv error. */
static int aux_sockaddr(const char *host, int port,
                        struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (strchr(host, ':'))
    return uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss);
  return uv_ip4_addr(host, port, (struct sockaddr_in *)ss);
}

static int aux_check_port(lua_State *L, int idx) {
  lua_Integer p = luaL_checkinteger(L, idx);
  if (p < 0 || p > 65535) luaL_argerror(L, idx, "port from 0 to 65535 "
                                        "expected");
  return (int)p;
}

/* Pushes a new stream of `kind` and starts connecting it to sa (TCP) or
   path (Unix); parks t in "connect" (t holds a budget slot). */
static int aux_connect(lua_State *L, corio_task *t, int kind,
                       const struct sockaddr *sa, const char *path,
                       double timeout) {
  corio_stream *s = corio_stream_push(L, t->rt, kind);
  uv_handle_t *h = corio_stream_handle(s);
  connect_req *c;
  int r = kind == CORIO_SK_TCP ? uv_tcp_init(&t->rt->loop, (uv_tcp_t *)h)
                               : uv_pipe_init(&t->rt->loop,
                                              (uv_pipe_t *)h, 0);
  if (r) {
    corio_io_give(t->rt);
    return corio_io_fail(L, r, "connect");
  }
  corio_stream_mark(s);
  if ((c = (connect_req *)calloc(1, sizeof *c)) == NULL) {
    corio_stream_close(s);
    corio_io_give(t->rt);
    return luaL_error(L, "connect: out of memory");
  }
  c->s = s;
  if (kind == CORIO_SK_TCP) {
    r = uv_tcp_connect(&c->req, (uv_tcp_t *)h, sa, tcp_on_connect);
  } else {
    uv_pipe_connect(&c->req, (uv_pipe_t *)h, path, tcp_on_connect);
  }
  if (r) {
    free(c);
    corio_stream_close(s);
    corio_io_give(t->rt);
    return corio_io_fail(L, r, "connect");
  }
  lua_pushvalue(L, -1);
  c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c->t = t;
  return corio_await(L, t, "connect", connect_abort, c, timeout);
}

/* core._tcp_connect(addr, port, timeout): one literal address; the Lua
   layer tries each address in turn and sets nodelay/keepalive. */
static int ltcp_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  int port = aux_check_port(L, 2), r;
  double timeout = luaL_checknumber(L, 3);
  struct sockaddr_storage ss;
  corio_task *t = corio_await_begin(L, "connect");
  if ((r = aux_sockaddr(host, port, &ss)) != 0)
    return corio_io_fail(L, r, "connect");
  if (!corio_io_take(t->rt))
    return corio_io_wait_slot(L, t, ltcp_connect, timeout);
  return aux_connect(L, t, CORIO_SK_TCP, (struct sockaddr *)&ss, NULL,
                     timeout);
}

/* core._unix_connect(path, timeout) */
static int lunix_connect(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  double timeout = luaL_checknumber(L, 2);
  corio_task *t = corio_await_begin(L, "connect");
  if (!corio_io_take(t->rt))
    return corio_io_wait_slot(L, t, lunix_connect, timeout);
  return aux_connect(L, t, CORIO_SK_UNIX, NULL, path, timeout);
}

/* ------------------------------------------------------------ listener */

static void listener_free(listener *l) {
  if (l->fd >= 0) close(l->fd);
  free(l->bq);
  free(l);
}

static void listener_on_close(uv_handle_t *h) {
  listener *l = (listener *)h->data;
  if (l->ud) l->ud->l = NULL;
  listener_free(l);
}

static int aux_listener_live(const listener *l) {
  return l && l->opened && !uv_is_closing((const uv_handle_t *)&l->poll);
}

/* Task t runs now: it is neither woken nor waiting for a slot. */
static void aux_running(listener *l, const corio_task *t) {
  int i, k = 0;
  if (!t) return;
  if (l->woken == t) l->woken = NULL;
  for (i = 0; i < l->bn; i++)
    if (l->bq[i].t != t) l->bq[k++] = l->bq[i];
  l->bn = k;
}

static listener *check_listener(lua_State *L, const char *fname) {
  listener_ud *ud = (listener_ud *)corio_checkudata(L, 1, LISTENER_MT);
  if (!aux_listener_live(ud->l))
    luaL_error(L, "%s: the listener is closed", fname);
  if (ud->l->rt != corio_ctx_get(L)->rt)
    luaL_error(L, "%s: the listener belongs to another runtime", fname);
  aux_running(ud->l, ud->l->rt->current);
  return ud->l;
}

/* The first acceptor still waiting for a budget slot (removed from the
   list), or NULL. A stale entry is compared, never dereferenced, until
   it is found in the budget queue; then it must be the same task. */
static corio_task *aux_bacceptor(listener *l) {
  while (l->bn > 0) {
    corio_task *t = l->bq[0].t;
    lua_Integer id = l->bq[0].id;
    memmove(l->bq, l->bq + 1, (size_t)--l->bn * sizeof *l->bq);
    if (corio_io_budget_waiting(l->rt, t) && t->id == id) return t;
  }
  return NULL;
}

static void listener_on_poll(uv_poll_t *h, int status, int events) {
  listener *l = (listener *)h->data;
  corio_link *n;
  corio_task *t;
  (void)events;
  (void)status; /* an error shows again in accept(2) itself */
  uv_poll_stop(h);
  l->polling = 0;
  if ((n = corio_list_shift(&l->acceptors)) != NULL) {
    l->woken = corio_container(n, corio_task, link);
    corio_io_give(l->rt);
    corio_wake_retry(l->woken);
  } else if ((t = aux_bacceptor(l)) != NULL) {
    /* waiting for a slot it no longer needs: a client is there to take
       (idle readers holding every slot must not stop a server) */
    corio_list_remove(&t->link);
    l->woken = t;
    corio_wake_retry(t);
  }
}

static void aux_poll_policy(listener *l) {
  int want = (!corio_list_empty(&l->acceptors) || l->bn > 0) &&
             aux_listener_live(l);
  if (want && !l->polling) {
    if (uv_poll_start(&l->poll, UV_READABLE, listener_on_poll) == 0)
      l->polling = 1;
  } else if (!want && l->polling) {
    uv_poll_stop(&l->poll);
    l->polling = 0;
  }
}

static int accept_abort(corio_task *t, int woken) {
  listener *l = (listener *)t->wait.obj;
  if (woken == 1) { /* woken to retry: nothing handed over; the poll
                       starts again for the acceptors behind it */
    if (l->woken == t) l->woken = NULL;
    aux_poll_policy(l);
    return 1;
  }
  corio_list_remove(&t->link);
  corio_io_give(t->rt);
  aux_poll_policy(l);
  return 1;
}

/* Wraps an accepted descriptor in a new stream (pushed). */
static int aux_wrap(lua_State *L, listener *l, int fd, int nodelay,
                    int keepalive) {
  corio_stream *s = corio_stream_push(L, l->rt, l->kind);
  uv_handle_t *h = corio_stream_handle(s);
  int r = l->kind == CORIO_SK_TCP ? uv_tcp_init(&l->rt->loop, (uv_tcp_t *)h)
                                  : uv_pipe_init(&l->rt->loop,
                                                 (uv_pipe_t *)h, 0);
  if (r) {
    close(fd);
    return corio_io_fail(L, r, "accept");
  }
  corio_stream_mark(s);
  r = l->kind == CORIO_SK_TCP ? uv_tcp_open((uv_tcp_t *)h, fd)
                              : uv_pipe_open((uv_pipe_t *)h, fd);
  if (r) {
    close(fd);
    corio_stream_close(s);
    return corio_io_fail(L, r, "accept");
  }
  if (nodelay) uv_tcp_nodelay((uv_tcp_t *)h, 1);
  if (keepalive) uv_tcp_keepalive((uv_tcp_t *)h, 1, 60);
  corio_stream_opened(s);
  return 1;
}

static const char *const accept_opts[] = {"timeout", "nodelay", "keepalive",
                                          NULL};

static int aux_optbool(lua_State *L, int idx, const char *key) {
  int v;
  if (!lua_istable(L, idx)) return 0;
  lua_getfield(L, idx, key);
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* srv:accept([{timeout =, nodelay =, keepalive =}]) -> stream | nil, err */
static int llistener_accept(lua_State *L) {
  listener *l = check_listener(L, "accept");
  double timeout = corio_io_timeout(L, 2, "accept", accept_opts);
  corio_task *t = corio_await_begin(L, "accept");
  int fd, err;
  do {
    fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  err = errno;
  aux_poll_policy(l); /* others may wait: polling goes on for them */
  if (fd >= 0)
    return aux_wrap(L, l, fd, l->kind == CORIO_SK_TCP &&
                    aux_optbool(L, 2, "nodelay"),
                    l->kind == CORIO_SK_TCP && aux_optbool(L, 2,
                                                           "keepalive"));
  if (err != EAGAIN && err != EWOULDBLOCK && err != ECONNABORTED)
    return corio_io_fail(L, uv_translate_sys_error(err), "accept");
  if (!corio_io_take(t->rt)) {
    if (l->bn == l->bcap) {
      int cap = l->bcap ? l->bcap * 2 : 4;
      void *p = realloc(l->bq, (size_t)cap * sizeof *l->bq);
      if (!p) return luaL_error(L, "accept: out of memory");
      l->bq = p;
      l->bcap = cap;
    }
    l->bq[l->bn].t = t;
    l->bq[l->bn++].id = t->id;
    aux_poll_policy(l); /* a client coming wakes it (listener_on_poll) */
    return corio_io_wait_slot(L, t, llistener_accept, timeout);
  }
  corio_list_push(&l->acceptors, &t->link);
  aux_poll_policy(l);
  return corio_await_retry(L, t, llistener_accept, "accept", accept_abort,
                           l, timeout);
}

/* srv:port() -> the bound TCP port */
static int llistener_port(lua_State *L) {
  listener *l = check_listener(L, "port");
  if (l->kind != CORIO_SK_TCP) return luaL_error(L, "port: not a TCP "
                                                 "listener");
  lua_pushinteger(L, l->port);
  return 1;
}

static void aux_wake_closed(listener *l) {
  corio_link *n;
  while ((n = corio_list_shift(&l->acceptors)) != NULL) {
    corio_io_give(l->rt);
    corio_io_wake_closed(corio_container(n, corio_task, link), "accept");
  }
}

static void aux_listener_close(listener *l) {
  corio_task *t;
  if (!aux_listener_live(l)) return;
  l->closing = 1;
  if (l->woken) { /* woken to accept, has not run: it gets "closed" too */
    corio_io_unretry_closed(l->woken, "accept");
    l->woken = NULL;
  }
  aux_wake_closed(l);
  while ((t = aux_bacceptor(l)) != NULL) { /* waiting for a slot: closed */
    corio_list_remove(&t->link);
    corio_io_wake_closed(t, "accept");
  }
  uv_close((uv_handle_t *)&l->poll, listener_on_close);
  /* the poll no longer watches it: close the socket now, so the port is
     free and pending clients are refused when close() returns */
  close(l->fd);
  l->fd = -1;
}

static int llistener_close(lua_State *L) {
  listener_ud *ud = (listener_ud *)corio_checkudata(L, 1, LISTENER_MT);
  if (aux_listener_live(ud->l)) aux_listener_close(ud->l);
  return 0;
}

static int llistener_gc(lua_State *L) {
  listener_ud *ud = (listener_ud *)corio_checkudata(L, 1, LISTENER_MT);
  listener *l = ud->l;
  if (!l) return 0;
  ud->l = NULL;
  l->ud = NULL;
  if (!l->opened || (!l->closing && uv_is_closing((uv_handle_t *)&l->poll)))
    listener_free(l); /* never opened, or closed by the runtime */
  else
    aux_listener_close(l);
  return 0;
}

static int llistener_tostring(lua_State *L) {
  listener_ud *ud = (listener_ud *)corio_checkudata(L, 1, LISTENER_MT);
  if (!aux_listener_live(ud->l))
    lua_pushliteral(L, "corio.Listener (closed)");
  else if (ud->l->kind == CORIO_SK_TCP)
    lua_pushfstring(L, "corio.Listener (tcp, port %d)", ud->l->port);
  else
    lua_pushliteral(L, "corio.Listener (unix)");
  return 1;
}

/* Pushes a listener userdata whose box has no socket yet. */
static listener *aux_listener_push(lua_State *L, corio_rt *rt, int kind) {
  listener_ud *ud = (listener_ud *)lua_newuserdata(L, sizeof *ud);
  listener *l;
  ud->l = NULL;
  luaL_setmetatable(L, LISTENER_MT);
  l = (listener *)calloc(1, sizeof *l);
  if (!l) luaL_error(L, "listen: out of memory");
  l->fd = -1;
  l->rt = rt;
  l->kind = (uint8_t)kind;
  l->ud = ud;
  l->poll.data = l;
  corio_list_init(&l->acceptors);
  ud->l = l;
  return l;
}

/* Binds, listens and starts watching; the listener is on top. Returns 1,
   or pushes nil, err and returns 2 (the userdata frees its box). */
static int aux_listen(lua_State *L, listener *l, struct sockaddr *sa,
                      socklen_t len, int backlog, int reuseport) {
  int one = 1, r;
  l->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                 0);
  if (l->fd < 0) return corio_io_fail(L, uv_translate_sys_error(errno),
                                      "listen");
  if (sa->sa_family != AF_UNIX)
    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
#ifdef SO_REUSEPORT
  if (reuseport &&
      setsockopt(l->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
    return corio_io_fail(L, uv_translate_sys_error(errno), "listen");
#else
  if (reuseport) return corio_io_fail(L, UV_ENOTSUP, "listen");
#endif
  if (bind(l->fd, sa, len) != 0 || listen(l->fd, backlog) != 0)
    return corio_io_fail(L, uv_translate_sys_error(errno), "listen");
  if (sa->sa_family != AF_UNIX) {
    struct sockaddr_storage ss;
    socklen_t n = sizeof ss;
    if (getsockname(l->fd, (struct sockaddr *)&ss, &n) == 0)
      l->port = ntohs(ss.ss_family == AF_INET6
                          ? ((struct sockaddr_in6 *)&ss)->sin6_port
                          : ((struct sockaddr_in *)&ss)->sin_port);
  }
  if ((r = uv_poll_init(&l->rt->loop, &l->poll, l->fd)) != 0)
    return corio_io_fail(L, r, "listen");
  l->opened = 1;
  return 1;
}

static int aux_backlog(lua_State *L, int idx) {
  double b = corio_opt_number(L, idx, "backlog", 511, "listen");
  if (!(b >= 0 && b <= 65535))
    luaL_error(L, "bad option 'backlog' to 'listen' (0 to 65535 expected)");
  return (int)b;
}

/* core._tcp_listen(addr, port, [{backlog = 511, reuseport = false}]) */
static int ltcp_listen(lua_State *L) {
  static const char *const allowed[] = {"backlog", "reuseport", "timeout",
                                        NULL};
  const char *host = luaL_checkstring(L, 1);
  int port = aux_check_port(L, 2), r;
  corio_rt *rt = corio_rt_get(L, "listen");
  struct sockaddr_storage ss;
  listener *l;
  corio_opt_present(L, 3, "listen", allowed);
  if ((r = aux_sockaddr(host, port, &ss)) != 0)
    return corio_io_fail(L, r, "listen");
  l = aux_listener_push(L, rt, CORIO_SK_TCP);
  return aux_listen(L, l, (struct sockaddr *)&ss,
                    ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                             : sizeof(struct sockaddr_in),
                    aux_backlog(L, 3), aux_optbool(L, 3, "reuseport"));
}

/* core._unix_listen(path, [{backlog = 511}]) */
static int lunix_listen(lua_State *L) {
  static const char *const allowed[] = {"backlog", "timeout", NULL};
  size_t n;
  const char *path = luaL_checklstring(L, 1, &n);
  corio_rt *rt = corio_rt_get(L, "listen");
  struct sockaddr_un sun;
  listener *l;
  corio_opt_present(L, 2, "listen", allowed);
  if (n == 0 || n >= sizeof sun.sun_path)
    return luaL_argerror(L, 1, "socket path too long or empty");
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  memcpy(sun.sun_path, path, n);
  l = aux_listener_push(L, rt, CORIO_SK_UNIX);
  return aux_listen(L, l, (struct sockaddr *)&sun, sizeof sun,
                    aux_backlog(L, 2), 0);
}

/* ------------------------------------------------- stream: addresses */

/* Methods of corio.Stream that only sockets have, added to its class by
   corio_open_tcp. */

/* s:local_addr() / s:peer_addr() -> host, port (Unix: path); nil, err
   where the stream has no address. */
static int aux_addr(lua_State *L, int peer) {
  corio_stream *s = corio_stream_check(L, 1, peer ? "peer_addr"
                                                  : "local_addr");
  int kind = corio_stream_kind(s), len = sizeof(struct sockaddr_storage), r;
  uv_handle_t *h = corio_stream_handle(s);
  struct sockaddr_storage ss;
  if (kind == CORIO_SK_TCP) {
    struct sockaddr *sa = (struct sockaddr *)&ss;
    r = peer ? uv_tcp_getpeername((uv_tcp_t *)h, sa, &len)
             : uv_tcp_getsockname((uv_tcp_t *)h, sa, &len);
    if (r) return corio_io_fail(L, r, peer ? "peer_addr" : "local_addr");
    return corio_addr_push(L, (struct sockaddr *)&ss);
  }
  if (kind == CORIO_SK_UNIX) {
    char path[1024];
    size_t n = sizeof path;
    r = peer ? uv_pipe_getpeername((uv_pipe_t *)h, path, &n)
             : uv_pipe_getsockname((uv_pipe_t *)h, path, &n);
    if (r) return corio_io_fail(L, r, peer ? "peer_addr" : "local_addr");
    lua_pushlstring(L, path, n);
    return 1;
  }
  return corio_fail(L, "io", "%s: the stream has no address",
                    peer ? "peer_addr" : "local_addr");
}

static int lstream_local_addr(lua_State *L) { return aux_addr(L, 0); }
static int lstream_peer_addr(lua_State *L) { return aux_addr(L, 1); }

static corio_stream *aux_check_tcp(lua_State *L, const char *fname) {
  corio_stream *s = corio_stream_check(L, 1, fname);
  if (corio_stream_kind(s) != CORIO_SK_TCP)
    luaL_error(L, "%s: not a TCP stream", fname);
  return s;
}

/* s:nodelay(on) ; s:keepalive(on, [delay secs, default 60]) */
static int lstream_nodelay(lua_State *L) {
  corio_stream *s = aux_check_tcp(L, "nodelay");
  int r = uv_tcp_nodelay((uv_tcp_t *)corio_stream_handle(s),
                         lua_isnone(L, 2) || lua_toboolean(L, 2));
  if (r) return corio_io_fail(L, r, "nodelay");
  lua_pushboolean(L, 1);
  return 1;
}

static int lstream_keepalive(lua_State *L) {
  corio_stream *s = aux_check_tcp(L, "keepalive");
  lua_Number d = luaL_optnumber(L, 3, 60);
  int r;
  if (!(d >= 1 && d <= 1e6)) return luaL_argerror(L, 3, "delay in seconds "
                                                  "from 1 expected");
  r = uv_tcp_keepalive((uv_tcp_t *)corio_stream_handle(s),
                       lua_isnone(L, 2) || lua_toboolean(L, 2), (unsigned)d);
  if (r) return corio_io_fail(L, r, "keepalive");
  lua_pushboolean(L, 1);
  return 1;
}

/* s:fileno() -> the socket's descriptor (LuaSocket's getfd): for
   setsockopt and the like; corio still owns it (do not close it). */
static int lstream_fileno(lua_State *L) {
  corio_stream *s = corio_stream_check(L, 1, "fileno");
  uv_os_fd_t fd;
  int r = uv_fileno(corio_stream_handle(s), &fd);
  if (r) return corio_io_fail(L, r, "fileno");
  lua_pushinteger(L, (lua_Integer)fd);
  return 1;
}

/* s:linger(secs | false): SO_LINGER. With secs, close() discards unsent
   data and resets the connection after at most secs (0: at once, RST);
   false restores the default (a graceful close in the background). */
static int lstream_linger(lua_State *L) {
  corio_stream *s = aux_check_tcp(L, "linger");
  struct linger lg;
  uv_os_fd_t fd;
  int r;
  lg.l_onoff = lua_toboolean(L, 2);
  lg.l_linger = 0;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Number v = lua_tonumber(L, 2);
    if (!(v >= 0 && v <= 65535))
      return luaL_argerror(L, 2, "seconds from 0 to 65535 expected");
    lg.l_linger = (int)v;
  } else if (lg.l_onoff) {
    return luaL_argerror(L, 2, "seconds or false expected");
  }
  if ((r = uv_fileno(corio_stream_handle(s), &fd)) != 0)
    return corio_io_fail(L, r, "linger");
  if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0)
    return corio_io_fail(L, uv_translate_sys_error(errno), "linger");
  lua_pushboolean(L, 1);
  return 1;
}

/* srv:fileno() -> the listening socket's descriptor */
static int llistener_fileno(lua_State *L) {
  listener *l = check_listener(L, "fileno");
  lua_pushinteger(L, l->fd);
  return 1;
}

/* core._io_timeout(opts, fname): the deadline of a connect (its options
   checked), for the Lua layer that spends it over several addresses. */
static int lio_timeout(lua_State *L) {
  static const char *const allowed[] = {"timeout", "nodelay", "keepalive",
                                        NULL};
  const char *fname = luaL_checkstring(L, 2);
  lua_pushnumber(L, corio_io_timeout(L, 1, fname, allowed));
  return 1;
}

/* ---------------------------------------------------------------- open */

static const luaL_Reg listener_methods[] = {
    {"port", llistener_port}, {"close", llistener_close},
    {"fileno", llistener_fileno}, {NULL, NULL}};
static const luaL_Reg listener_retry[] = {{"accept", llistener_accept},
                                          {NULL, NULL}};
static const luaL_Reg listener_meta[] = {{"__gc", llistener_gc},
                                         {"__close", llistener_close},
                                         {"__tostring", llistener_tostring},
                                         {NULL, NULL}};
static const luaL_Reg retry_funcs[] = {{"_tcp_connect", ltcp_connect},
                                       {"_unix_connect", lunix_connect},
                                       {NULL, NULL}};
static const luaL_Reg funcs[] = {{"_io_timeout", lio_timeout},
                                 {"_tcp_listen", ltcp_listen},
                                 {"_unix_listen", lunix_listen},
                                 {NULL, NULL}};

static const luaL_Reg stream_methods[] = {
    {"local_addr", lstream_local_addr}, {"peer_addr", lstream_peer_addr},
    {"nodelay", lstream_nodelay},       {"keepalive", lstream_keepalive},
    {"fileno", lstream_fileno},         {"linger", lstream_linger},
    {NULL, NULL}};

void corio_open_tcp(lua_State *L) {
  luaL_getmetatable(L, "corio.Stream"); /* made by corio_open_stream */
  lua_getfield(L, -1, "__index");
  corio_setfuncs(L, stream_methods, 0);
  lua_pop(L, 2);
  corio_class_retry(L, LISTENER_MT, listener_methods, listener_retry,
                    listener_meta);
  lua_pop(L, 1);
  corio_setfuncs(L, retry_funcs, 2);
  corio_setfuncs(L, funcs, 0);
}
