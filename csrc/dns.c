/*
 * dns.c: corio.resolve(host, [opts]) -> list of address strings, with
 * getaddrinfo on libuv's request pool, and socket addresses as Lua values.
 *
 * A literal address resolves to itself at once (no request, no slot).
 * Otherwise the caller takes an I/O budget slot and parks in "resolve".
 * The request lives in malloc'd memory that only its callback frees: a
 * caller that gives up (cancelled, timed out, torn down) detaches itself
 * from the request (r->t = NULL) and asks libuv to cancel it; the answer
 * that comes anyway is dropped, without touching Lua.
 */
#include "corio.h"
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>


typedef struct dns_req {
  uv_getaddrinfo_t req;
  corio_task *t;      /* NULL once the caller gave up */
} dns_req;

int corio_addr_push(lua_State *L, const struct sockaddr *sa) {
  char host[INET6_ADDRSTRLEN + 1];
  int port = 0;
  host[0] = '\0';
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(a, host, sizeof host);
    port = ntohs(a->sin6_port);
  } else if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    uv_ip4_name(a, host, sizeof host);
    port = ntohs(a->sin_port);
  } else {
    lua_pushnil(L);
    lua_pushnil(L);
    return 2;
  }
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  return 2;
}

int corio_addr_literal(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return uv_inet_pton(AF_INET, host, buf) == 0 ||
         uv_inet_pton(AF_INET6, host, buf) == 0;
}

/* Pushes the list of distinct addresses of res (in getaddrinfo's order). */
static void aux_push_list(lua_State *L, const struct addrinfo *res) {
  int n = 0;
  lua_newtable(L);
  for (; res; res = res->ai_next) {
    int i, dup = 0;
    if (res->ai_family != AF_INET && res->ai_family != AF_INET6) continue;
    corio_addr_push(L, res->ai_addr);
    lua_pop(L, 1); /* the port */
    for (i = 1; i <= n && !dup; i++) {
      lua_rawgeti(L, -2, i);
      dup = lua_rawequal(L, -1, -2);
      lua_pop(L, 1);
    }
    if (dup) lua_pop(L, 1);
    else lua_rawseti(L, -2, ++n);
  }
}

static void dns_on_resolved(uv_getaddrinfo_t *req, int status,
                            struct addrinfo *res) {
  dns_req *r = (dns_req *)req;
  corio_task *t = r->t;
  if (t) {
    lua_State *co = corio_wake_stack(t, 3);
    corio_io_give(t->rt);
    t->wait.abort = NULL; /* a list is cheap to drop: cancel wins */
    if (status == 0 && res) {
      aux_push_list(co, res);
      corio_wake(t, 1);
    } else {
      lua_pushnil(co);
      corio_io_error_push(co, status ? status : UV_EAI_NONAME, "resolve");
      corio_wake(t, 2);
    }
  }
  if (res) uv_freeaddrinfo(res);
  free(r);
}

static int resolve_abort(corio_task *t, int woken) {
  dns_req *r = (dns_req *)t->wait.obj;
  if (woken == 1) return 1;
  r->t = NULL;
  uv_cancel((uv_req_t *)&r->req); /* fails harmlessly once running */
  corio_io_give(t->rt);
  return 1;
}

/* corio.resolve(host, [{timeout =, family = "inet" | "inet6"}]) */
static int lcorio_resolve(lua_State *L) {
  static const char *const allowed[] = {"timeout", "family", NULL};
  const char *host = luaL_checkstring(L, 1);
  double timeout = corio_io_timeout(L, 2, "resolve", allowed);
  const char *fam = corio_opt_string(L, 2, "family", NULL, "resolve");
  corio_task *t = corio_await_begin(L, "resolve");
  struct addrinfo hints;
  dns_req *r;
  int err;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  if (fam && strcmp(fam, "inet") == 0) hints.ai_family = AF_INET;
  else if (fam && strcmp(fam, "inet6") == 0) hints.ai_family = AF_INET6;
  else if (fam)
    return luaL_error(L, "bad option 'family' to 'resolve' ('inet' or "
                      "'inet6' expected)");
  hints.ai_socktype = SOCK_STREAM;
  if (corio_addr_literal(host)) {
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    return 1;
  }
  if (!corio_io_take(t->rt))
    return corio_io_wait_slot(L, t, lcorio_resolve, timeout);
  r = (dns_req *)calloc(1, sizeof *r);
  if (!r) {
    corio_io_give(t->rt);
    return luaL_error(L, "resolve: out of memory");
  }
  err = uv_getaddrinfo(&t->rt->loop, &r->req, dns_on_resolved, host, NULL,
                       &hints);
  if (err) {
    free(r);
    corio_io_give(t->rt);
    return corio_io_fail(L, err, "resolve");
  }
  r->t = t;
  return corio_await(L, t, "resolve", resolve_abort, r, timeout);
}

/* core._gethostname() -> this machine's host name | nil, err (a system
   call that does not wait: uv_os_gethostname) */
static int lcorio_gethostname(lua_State *L) {
  char name[UV_MAXHOSTNAMESIZE];
  size_t n = sizeof name;
  int r = uv_os_gethostname(name, &n);
  if (r) return corio_io_fail(L, r, "gethostname");
  lua_pushlstring(L, name, n);
  return 1;
}

static const luaL_Reg retry_funcs[] = {{"resolve", lcorio_resolve},
                                       {NULL, NULL}};
static const luaL_Reg funcs[] = {{"_gethostname", lcorio_gethostname},
                                 {NULL, NULL}};

void corio_open_dns(lua_State *L) {
  corio_setfuncs(L, retry_funcs, 2);
  corio_setfuncs(L, funcs, 0);
}
