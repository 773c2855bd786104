/*
 * signal.c: corio.signal(name) waits for a signal; corio.shutdown() gives
 * the watch that turns true on the first SIGINT or SIGTERM.
 *
 * corio.signal: the first wait for a signal in a run installs a watcher
 * (one uv_signal_t, malloc'd, freed in its close callback) that stays
 * until run returns, so the signal never falls back to its default action
 * between two waits (a `while corio.signal("SIGHUP") do reload() end`
 * loop does not die of a SIGHUP that comes during reload). One delivery
 * wakes every waiting task; a delivery while nobody waits is kept (as
 * one, however many came) and returned by the next wait at once. The
 * handle is referenced only while a task waits, so an idle watcher is no
 * wake source for the deadlock check.
 *
 * corio.shutdown: one watcher per run, kept in the registry: two signal
 * handles, the watch, and an io_object node, so the runtime closes it
 * when run returns (the process gets its default SIGINT/SIGTERM back) or
 * when it is collected. The handles stay referenced as long as the
 * watcher exists: a server parked in sd:changed() waits for a signal that
 * can come, which is not a deadlock. The watch is set from a deferred
 * call on the scheduler (no Lua code runs in a libuv callback); a second
 * SIGINT/SIGTERM restores the default action and re-raises it at once.
 */
#include "corio.h"
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define SHUTDOWN_KEY "corio.shutdown"
#define WATCH_NEW_KEY "corio.watch_new"

static const struct { const char *name; int num; } sig_names[] = {
    {"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},     {"SIGQUIT", SIGQUIT},
    {"SIGILL", SIGILL},   {"SIGTRAP", SIGTRAP},   {"SIGABRT", SIGABRT},
    {"SIGBUS", SIGBUS},   {"SIGFPE", SIGFPE},     {"SIGKILL", SIGKILL},
    {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV},   {"SIGUSR2", SIGUSR2},
    {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM},   {"SIGTERM", SIGTERM},
    {"SIGCHLD", SIGCHLD}, {"SIGCONT", SIGCONT},   {"SIGSTOP", SIGSTOP},
    {"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN},   {"SIGTTOU", SIGTTOU},
    {"SIGURG", SIGURG},   {"SIGXCPU", SIGXCPU},   {"SIGXFSZ", SIGXFSZ},
    {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH},
    {"SIGIO", SIGIO},     {"SIGSYS", SIGSYS},     {NULL, 0}};

int corio_signal_number(const char *name) {
  int i;
  if (strncmp(name, "SIG", 3) != 0) return 0;
  for (i = 0; sig_names[i].name; i++)
    if (strcmp(sig_names[i].name, name) == 0) return sig_names[i].num;
  return 0;
}

const char *corio_signal_name(int num) {
  int i;
  for (i = 0; sig_names[i].name; i++)
    if (sig_names[i].num == num) return sig_names[i].name;
  return NULL;
}

int corio_check_signal(lua_State *L, int arg) {
  const char *name = luaL_checkstring(L, arg);
  int num = corio_signal_number(name);
  if (!num)
    return luaL_argerror(L, arg, lua_pushfstring(L, "unknown signal name "
                                                 "'%s'", name));
  return num;
}

/* ------------------------------------------------------- corio.signal */

/* One watcher per signal and run, found through rt->io_objects (its
   teardown function tells it apart). */
typedef struct sig_watch {
  uv_signal_t h;
  corio_io_object node;
  corio_link waiters;   /* tasks in corio.signal, FIFO */
  int signum;
  int pending;          /* delivered while nobody waited */
} sig_watch;

static void sig_on_close(uv_handle_t *h) { free(h->data); }

static void sig_teardown(lua_State *L, corio_io_object *o) {
  sig_watch *w = corio_container(o, sig_watch, node);
  (void)L;
  uv_close((uv_handle_t *)&w->h, sig_on_close);
}

static void sig_on_signal(uv_signal_t *h, int signum) {
  sig_watch *w = (sig_watch *)h->data;
  corio_link *n;
  if (corio_list_empty(&w->waiters)) {
    w->pending = 1;
    return;
  }
  while ((n = corio_list_shift(&w->waiters)) != NULL) {
    corio_task *t = corio_container(n, corio_task, link);
    lua_pushstring(corio_wake_stack(t, 1), corio_signal_name(signum));
    corio_wake(t, 1);
  }
  uv_unref((uv_handle_t *)h); /* nobody waits: not a wake source */
}

/* A delivered signal stands; a parked waiter leaves the list. */
static int sig_abort(corio_task *t, int woken) {
  sig_watch *w = (sig_watch *)t->wait.obj;
  if (woken == 1) return 0;
  corio_list_remove(&t->link);
  if (corio_list_empty(&w->waiters)) uv_unref((uv_handle_t *)&w->h);
  return 1;
}

/* The run's watcher of signum, started on first use. NULL and *err set
   when libuv refuses. */
static sig_watch *sig_watcher(corio_rt *rt, int signum, int *err) {
  corio_link *n;
  sig_watch *w;
  for (n = rt->io_objects.next; n != &rt->io_objects; n = n->next) {
    corio_io_object *o = corio_container(n, corio_io_object, link);
    if (o->teardown != sig_teardown) continue;
    w = corio_container(o, sig_watch, node);
    if (w->signum == signum) return w;
  }
  if (!(w = (sig_watch *)calloc(1, sizeof *w))) {
    *err = UV_ENOMEM;
    return NULL;
  }
  w->h.data = w;
  w->signum = signum;
  corio_list_init(&w->waiters);
  if ((*err = uv_signal_init(&rt->loop, &w->h)) != 0) {
    free(w);
    return NULL;
  }
  if ((*err = uv_signal_start(&w->h, sig_on_signal, signum)) != 0) {
    uv_close((uv_handle_t *)&w->h, sig_on_close);
    return NULL;
  }
  uv_unref((uv_handle_t *)&w->h);
  w->node.teardown = sig_teardown;
  corio_io_register(rt, &w->node);
  return w;
}

/* corio.signal(name, [{timeout = s}]) -> name | nil, err */
static int lcorio_signal(lua_State *L) {
  int num = corio_check_signal(L, 1), r = 0;
  double timeout = corio_io_timeout(L, 2, "signal", NULL);
  corio_task *t = corio_await_begin(L, "signal");
  sig_watch *w = sig_watcher(t->rt, num, &r);
  if (!w) return corio_io_fail(L, r, "signal");
  if (w->pending) {
    w->pending = 0;
    lua_pushstring(L, corio_signal_name(num));
    return 1;
  }
  corio_list_push(&w->waiters, &t->link);
  uv_ref((uv_handle_t *)&w->h); /* a waiter: a signal can wake it */
  return corio_await(L, t, "signal", sig_abort, w, timeout);
}

/* ----------------------------------------------------- corio.shutdown */

typedef struct shutdown_rec {
  uv_signal_t sigint, sigterm;
  corio_io_object node;    /* in rt->io_objects until teardown */
  corio_deferred set;      /* queued on the first signal */
  corio_rt *rt;
  int watch_ref;
  int fired;
  int open;                /* handles not closed yet */
} shutdown_rec;

static void shutdown_on_close(uv_handle_t *h) {
  shutdown_rec *s = (shutdown_rec *)h->data;
  if (--s->open == 0) free(s);
}

/* On the scheduler: watch:set(true). */
static void shutdown_set(lua_State *L, corio_deferred *d) {
  shutdown_rec *s = corio_container(d, shutdown_rec, set);
  lua_checkstack(L, 4);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->watch_ref);
  lua_getfield(L, -1, "set");
  lua_insert(L, -2);
  lua_pushboolean(L, 1);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) lua_pop(L, 1);
}

static void shutdown_on_signal(uv_signal_t *h, int signum) {
  shutdown_rec *s = (shutdown_rec *)h->data;
  if (!s->fired) {
    s->fired = 1;
    corio_rt_defer(s->rt, &s->set);
    return;
  }
  /* second one: the user insists; die the way the signal kills */
  uv_signal_stop(&s->sigint);
  uv_signal_stop(&s->sigterm);
  signal(signum, SIG_DFL);
  raise(signum);
}

/* Run end or collection: close the handles, forget the watch. */
static void shutdown_teardown(lua_State *L, corio_io_object *o) {
  shutdown_rec *s = corio_container(o, shutdown_rec, node);
  corio_list_remove(&s->set.link);
  luaL_unref(L, LUA_REGISTRYINDEX, s->watch_ref);
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, SHUTDOWN_KEY);
  uv_close((uv_handle_t *)&s->sigint, shutdown_on_close);
  uv_close((uv_handle_t *)&s->sigterm, shutdown_on_close);
}

static int aux_shutdown_start(shutdown_rec *s, uv_signal_t *h, int num) {
  int r = uv_signal_init(&s->rt->loop, h);
  h->data = s;
  if (r) return r;
  s->open++;
  return uv_signal_start(h, shutdown_on_signal, num);
}

/* corio.shutdown() -> the run's shutdown watch (false, then true) */
static int lcorio_shutdown(lua_State *L) {
  corio_rt *rt = corio_rt_get(L, "shutdown");
  shutdown_rec *s;
  int r;
  lua_getfield(L, LUA_REGISTRYINDEX, SHUTDOWN_KEY);
  s = (shutdown_rec *)lua_touserdata(L, -1);
  if (s && s->rt == rt) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->watch_ref);
    return 1;
  }
  lua_getfield(L, LUA_REGISTRYINDEX, WATCH_NEW_KEY);
  lua_pushboolean(L, 0);
  lua_call(L, 1, 1);
  if (!(s = (shutdown_rec *)calloc(1, sizeof *s)))
    return luaL_error(L, "shutdown: not enough memory");
  s->rt = rt;
  corio_list_init(&s->set.link);
  s->set.fn = shutdown_set;
  if ((r = aux_shutdown_start(s, &s->sigint, SIGINT)) != 0 ||
      (r = aux_shutdown_start(s, &s->sigterm, SIGTERM)) != 0) {
    int open = s->open; /* the close callbacks free s */
    if (open == 0) free(s);
    if (open >= 1) uv_close((uv_handle_t *)&s->sigint, shutdown_on_close);
    if (open == 2) uv_close((uv_handle_t *)&s->sigterm, shutdown_on_close);
    return luaL_error(L, "shutdown: cannot watch signals: %s",
                      uv_strerror(r));
  }
  lua_pushvalue(L, -1);
  s->watch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  s->node.teardown = shutdown_teardown;
  corio_io_register(rt, &s->node);
  lua_pushlightuserdata(L, s);
  lua_setfield(L, LUA_REGISTRYINDEX, SHUTDOWN_KEY);
  return 1;
}

static const luaL_Reg signal_funcs[] = {{"signal", lcorio_signal},
                                        {NULL, NULL}};
static const luaL_Reg plain_funcs[] = {{"shutdown", lcorio_shutdown},
                                       {NULL, NULL}};

void corio_open_signal(lua_State *L) {
  lua_getfield(L, -1, "watch"); /* sync.c opened first */
  lua_setfield(L, LUA_REGISTRYINDEX, WATCH_NEW_KEY);
  corio_setfuncs(L, signal_funcs, 1);
  corio_setfuncs(L, plain_funcs, 0);
}
