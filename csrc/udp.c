/*
 * udp.c: corio.udp.bind(host, port) -> corio.UdpSocket, with
 * sock:send(data, host, port), sock:recv([opts]) -> data, host, port,
 * sock:local_addr() and close(). Addresses are literals here; the Lua
 * layer (corio/net.lua) resolves names first.
 *
 * Receiving runs only while a task waits in recv (parked, or waiting for
 * an I/O budget slot): datagrams that arrive meanwhile wait in the
 * kernel's buffer (which drops the excess, as UDP does), so nothing is
 * buffered without bound. One receiver at a time. A datagram that comes
 * in is kept in the socket (one at most; receiving stops meanwhile) and
 * the receiver is woken to take it (corio_wake_retry), so a receiver
 * cancelled before it runs leaves it for the next recv: no datagram that
 * left the kernel is lost. A receiver waiting for a budget slot is woken
 * the same way and takes it without one. At most RECV_MAX bytes of a
 * datagram are returned (the rest is truncated, as recvfrom does).
 *
 * Sending tries uv_udp_try_send first; when the kernel's buffer is full
 * the datagram is copied into a malloc'd request and the sender waits in
 * "udp send" for it (taking an I/O budget slot). A sender that gives up
 * leaves the request to finish in the background; it frees itself.
 * Memory follows stream.c: the userdata points at a malloc'd box freed in
 * its close callback, or by __gc when the runtime closed the handle.
 */
#include "corio.h"
#include <stdlib.h>
#include <string.h>


#define UDP_MT "corio.UdpSocket"
#define RECV_MAX 65536

typedef struct udp_sock {
  uv_udp_t h;
  corio_rt *rt;
  struct udp_ud *ud;
  corio_task *reader;     /* parked in recv, holding a budget slot */
  corio_task *breader;    /* in recv, waiting for a slot (maybe stale) */
  lua_Integer breader_id;
  corio_task *woken;      /* woken to take the datagram, not yet run */
  ssize_t plen;           /* the datagram kept (< 0: an error) when */
  int pending;            /* pending is 1 */
  struct sockaddr_storage paddr;
  uint8_t opened, closing, receiving;
  char buf[RECV_MAX];
} udp_sock;

typedef struct udp_ud {
  udp_sock *u;
} udp_ud;

typedef struct send_req {
  uv_udp_send_t req;
  corio_task *t;          /* NULL once the sender gave up */
  char data[1];
} send_req;

static void udp_on_close(uv_handle_t *h) {
  udp_sock *u = (udp_sock *)h->data;
  if (u->ud) u->ud->u = NULL;
  free(u);
}

static int aux_live(const udp_sock *u) {
  return u && u->opened && !uv_is_closing((const uv_handle_t *)&u->h);
}

static udp_sock *check_udp(lua_State *L, const char *fname) {
  udp_ud *ud = (udp_ud *)corio_checkudata(L, 1, UDP_MT);
  if (!aux_live(ud->u)) luaL_error(L, "%s: the socket is closed", fname);
  if (ud->u->rt != corio_ctx_get(L)->rt)
    luaL_error(L, "%s: the socket belongs to another runtime", fname);
  if (ud->u->rt->current) { /* it runs: neither woken nor queued */
    if (ud->u->woken == ud->u->rt->current) ud->u->woken = NULL;
    if (ud->u->breader == ud->u->rt->current) ud->u->breader = NULL;
  }
  return ud->u;
}

static int aux_sockaddr(lua_State *L, int hidx, int pidx,
                        struct sockaddr_storage *ss) {
  const char *host = luaL_checkstring(L, hidx);
  lua_Integer port = luaL_checkinteger(L, pidx);
  if (port < 0 || port > 65535)
    luaL_argerror(L, pidx, "port from 0 to 65535 expected");
  memset(ss, 0, sizeof *ss);
  if (strchr(host, ':'))
    return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss);
  return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss);
}

/* ------------------------------------------------------------- receive */

static void udp_on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *b,
                        const struct sockaddr *addr, unsigned flags);

static void udp_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  udp_sock *u = (udp_sock *)h->data;
  (void)hint;
  *b = uv_buf_init(u->buf, RECV_MAX);
}

/* The receiver waiting for a budget slot, or NULL (a stale pointer is
   compared, never dereferenced, until found in the budget queue). */
static corio_task *aux_breader(udp_sock *u) {
  corio_task *t = u->breader;
  if (t && corio_io_budget_waiting(u->rt, t) && t->id == u->breader_id)
    return t;
  u->breader = NULL;
  return NULL;
}

/* Receiving runs while someone waits and no datagram is kept. */
static int aux_recv_policy(udp_sock *u) {
  int on = (u->reader || u->breader) && !u->pending && aux_live(u), r = 0;
  if (on && !u->receiving) {
    if ((r = uv_udp_recv_start(&u->h, udp_on_alloc, udp_on_recv)) == 0)
      u->receiving = 1;
  } else if (!on && u->receiving) {
    uv_udp_recv_stop(&u->h);
    u->receiving = 0;
  }
  return r;
}

static void udp_on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *b,
                        const struct sockaddr *addr, unsigned flags) {
  udp_sock *u = (udp_sock *)h->data;
  corio_task *t;
  (void)b;
  (void)flags;
  if (n == 0 && !addr) return; /* nothing more to read now */
  u->pending = 1;
  u->plen = n;
  if (n >= 0 && addr) memcpy(&u->paddr, addr, sizeof u->paddr);
  if ((t = u->reader) != NULL) {
    u->reader = NULL;
    corio_io_give(u->rt);
  } else if ((t = aux_breader(u)) != NULL) {
    corio_list_remove(&t->link); /* it needs no slot to take it */
    u->breader = NULL;
  }
  if (t) {
    u->woken = t;
    corio_wake_retry(t);
  }
  aux_recv_policy(u);
}

static int recv_abort(corio_task *t, int woken) {
  udp_sock *u = (udp_sock *)t->wait.obj;
  if (woken == 1) { /* woken to take the datagram: it stays kept */
    if (u->woken == t) u->woken = NULL;
    return 1;
  }
  u->reader = NULL;
  corio_io_give(t->rt);
  aux_recv_policy(u);
  return 1;
}

/* Pushes the datagram kept (data, host, port) or its error. */
static int aux_take(lua_State *L, udp_sock *u) {
  u->pending = 0;
  aux_recv_policy(u);
  if (u->plen < 0) return corio_io_fail(L, (int)u->plen, "udp recv");
  lua_pushlstring(L, u->buf, (size_t)u->plen);
  return 1 + corio_addr_push(L, (struct sockaddr *)&u->paddr);
}

/* sock:recv([opts]) -> data, host, port | nil, err */
static int ludp_recv(lua_State *L) {
  udp_sock *u = check_udp(L, "recv");
  double timeout = corio_io_timeout(L, 2, "recv", NULL);
  corio_task *t = corio_await_begin(L, "recv");
  int r;
  if (u->pending) return aux_take(L, u);
  if (u->reader || aux_breader(u))
    return luaL_error(L, "recv: another task is already receiving on this "
                      "socket (one receiver at a time)");
  if (!corio_io_take(t->rt)) {
    u->breader = t; /* a datagram that comes wakes it (udp_on_recv) */
    u->breader_id = t->id;
    if ((r = aux_recv_policy(u)) != 0) {
      u->breader = NULL;
      return corio_io_fail(L, r, "udp recv");
    }
    return corio_io_wait_slot(L, t, ludp_recv, timeout);
  }
  u->reader = t;
  if ((r = aux_recv_policy(u)) != 0) {
    u->reader = NULL;
    corio_io_give(u->rt);
    return corio_io_fail(L, r, "udp recv");
  }
  return corio_await_retry(L, t, ludp_recv, "udp recv", recv_abort, u,
                           timeout);
}

/* ---------------------------------------------------------------- send */

static void udp_on_sent(uv_udp_send_t *req, int status) {
  send_req *s = (send_req *)req;
  if (s->t) {
    corio_io_give(s->t->rt);
    corio_io_wake_status(s->t, status, "udp send");
  }
  free(s);
}

static int send_abort(corio_task *t, int woken) {
  send_req *s = (send_req *)t->wait.obj;
  if (woken == 1) return 1;
  s->t = NULL; /* sent in the background; the request frees itself */
  corio_io_give(t->rt);
  return 1;
}

/* sock:send(data, host, port, [opts]) -> true | nil, err */
static int ludp_send(lua_State *L) {
  udp_sock *u = check_udp(L, "send");
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  /* libuv counts a buffer's bytes in an unsigned int */
  luaL_argcheck(L, n <= 0x7fffffffu, 2, "more than 2 GiB in one call");
  struct sockaddr_storage ss;
  int r = aux_sockaddr(L, 3, 4, &ss);
  double timeout = corio_io_timeout(L, 5, "send", NULL);
  corio_task *t = corio_await_begin(L, "send");
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  send_req *s;
  if (r) return corio_io_fail(L, r, "udp send");
  r = uv_udp_try_send(&u->h, &b, 1, (struct sockaddr *)&ss);
  if (r >= 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r != UV_EAGAIN) return corio_io_fail(L, r, "udp send");
  if (!corio_io_take(t->rt))
    return corio_io_wait_slot(L, t, ludp_send, timeout);
  s = (send_req *)malloc(offsetof(send_req, data) + (n ? n : 1));
  if (!s) {
    corio_io_give(u->rt);
    return luaL_error(L, "send: out of memory");
  }
  memcpy(s->data, p, n);
  s->t = t;
  b = uv_buf_init(s->data, (unsigned)n);
  if ((r = uv_udp_send(&s->req, &u->h, &b, 1, (struct sockaddr *)&ss,
                       udp_on_sent)) != 0) {
    free(s);
    corio_io_give(u->rt);
    return corio_io_fail(L, r, "udp send");
  }
  return corio_await(L, t, "udp send", send_abort, s, timeout);
}

/* ------------------------------------------------------- open / close */

static void aux_close(udp_sock *u) {
  if (!aux_live(u)) return;
  u->closing = 1;
  if (u->woken) { /* woken to take a datagram, not yet run */
    corio_io_unretry_closed(u->woken, "udp recv");
    u->woken = NULL;
  }
  if (aux_breader(u)) {
    corio_list_remove(&u->breader->link);
    corio_io_wake_closed(u->breader, "udp recv");
    u->breader = NULL;
  }
  if (u->reader) {
    corio_task *t = u->reader;
    u->reader = NULL;
    corio_io_give(u->rt);
    corio_io_wake_closed(t, "udp recv");
  }
  uv_close((uv_handle_t *)&u->h, udp_on_close);
}

static int ludp_close(lua_State *L) {
  udp_ud *ud = (udp_ud *)corio_checkudata(L, 1, UDP_MT);
  aux_close(ud->u);
  return 0;
}

static int ludp_gc(lua_State *L) {
  udp_ud *ud = (udp_ud *)corio_checkudata(L, 1, UDP_MT);
  udp_sock *u = ud->u;
  if (!u) return 0;
  ud->u = NULL;
  u->ud = NULL;
  if (!u->opened || (!u->closing && uv_is_closing((uv_handle_t *)&u->h)))
    free(u); /* never opened, or closed by the runtime at teardown */
  else
    aux_close(u);
  return 0;
}

static int ludp_local_addr(lua_State *L) {
  udp_sock *u = check_udp(L, "local_addr");
  struct sockaddr_storage ss;
  int len = sizeof ss, r;
  if ((r = uv_udp_getsockname(&u->h, (struct sockaddr *)&ss, &len)) != 0)
    return corio_io_fail(L, r, "local_addr");
  return corio_addr_push(L, (struct sockaddr *)&ss);
}

/* u:fileno() -> the socket's descriptor (LuaSocket's getfd) */
static int ludp_fileno(lua_State *L) {
  udp_sock *u = check_udp(L, "fileno");
  uv_os_fd_t fd;
  int r = uv_fileno((uv_handle_t *)&u->h, &fd);
  if (r) return corio_io_fail(L, r, "fileno");
  lua_pushinteger(L, (lua_Integer)fd);
  return 1;
}

static int ludp_tostring(lua_State *L) {
  udp_ud *ud = (udp_ud *)corio_checkudata(L, 1, UDP_MT);
  if (aux_live(ud->u)) lua_pushfstring(L, "corio.UdpSocket (%p)", ud->u);
  else lua_pushliteral(L, "corio.UdpSocket (closed)");
  return 1;
}

/* core._udp_bind(addr, port) -> socket | nil, err */
static int ludp_bind(lua_State *L) {
  corio_rt *rt = corio_rt_get(L, "bind");
  struct sockaddr_storage ss;
  int r = aux_sockaddr(L, 1, 2, &ss);
  udp_ud *ud;
  udp_sock *u;
  if (r) return corio_io_fail(L, r, "udp bind");
  ud = (udp_ud *)lua_newuserdata(L, sizeof *ud);
  ud->u = NULL;
  luaL_setmetatable(L, UDP_MT);
  u = (udp_sock *)calloc(1, sizeof *u);
  if (!u) return luaL_error(L, "bind: out of memory");
  u->rt = rt;
  u->ud = ud;
  u->h.data = u;
  ud->u = u;
  if ((r = uv_udp_init(&rt->loop, &u->h)) != 0)
    return corio_io_fail(L, r, "udp bind");
  u->opened = 1;
  if ((r = uv_udp_bind(&u->h, (struct sockaddr *)&ss, 0)) != 0) {
    aux_close(u);
    return corio_io_fail(L, r, "udp bind");
  }
  return 1;
}

static const luaL_Reg methods[] = {{"close", ludp_close},
                                   {"local_addr", ludp_local_addr},
                                   {"fileno", ludp_fileno},
                                   {NULL, NULL}};
static const luaL_Reg retry_methods[] = {{"recv", ludp_recv},
                                         {"send", ludp_send},
                                         {NULL, NULL}};
static const luaL_Reg meta[] = {{"__gc", ludp_gc},
                                {"__close", ludp_close},
                                {"__tostring", ludp_tostring},
                                {NULL, NULL}};
static const luaL_Reg funcs[] = {{"_udp_bind", ludp_bind}, {NULL, NULL}};

void corio_open_udp(lua_State *L) {
  corio_class_retry(L, UDP_MT, methods, retry_methods, meta);
  lua_pop(L, 1);
  corio_setfuncs(L, funcs, 0);
}
