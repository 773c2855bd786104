/*
 * io.c: what every I/O file (stream.c, tcp.c, fs.c, process.c, ...)
 * shares: the deadline of an I/O call, errors from libuv codes, and the
 * runtime's budgets (max_io, and max_tasks for task.c).
 *
 * Deadlines: every I/O call takes {timeout = s}; without it the runtime's
 * io_timeout applies, so no I/O call waits forever by accident. An
 * enclosing corio.timeout still bounds it (it cancels the wait).
 *
 * Budgets (corio_budget): at most rt->max_io I/O operations are in
 * flight at once (started in libuv and not yet completed), and at most
 * max_tasks tasks are alive. A call that would go past a limit waits,
 * FIFO ("io budget", "task budget": backpressure, never a failure), and
 * starts over when a slot is handed to it (corio_await_retry).
 * Invariants:
 *   - used counts slots taken and not yet given back; a slot is given
 *     back exactly once, when its operation completes or is abandoned
 *     (cancelled, timed out, its handle closed), or its task ends;
 *   - a slot freed while tasks wait goes straight to the first of them
 *     (it stays counted), so a newcomer cannot overtake the queue; its
 *     retried call claims it (corio_budget_take), and one it does not
 *     claim is given back when the task waits again or its step ends;
 *   - a waiter woken with a slot and cancelled before it runs passes the
 *     slot on (its abort hook), so no slot is ever lost.
 */
#include "corio.h"
#include <string.h>


/* ------------------------------------------------------------- options */

double corio_io_timeout(lua_State *L, int idx, const char *fname,
                        const char *const allowed[]) {
  static const char *const only_timeout[] = {"timeout", NULL};
  corio_rt *rt = corio_rt_get(L, fname);
  double v;
  if (idx == 0 || lua_isnoneornil(L, idx)) return rt->io_timeout;
  corio_opt_present(L, idx, fname, allowed ? allowed : only_timeout);
  v = corio_opt_number(L, idx, "timeout", rt->io_timeout, fname);
  if (v != v || v < 0)
    luaL_error(L, "bad option 'timeout' to '%s' (non-negative number of "
               "seconds expected)", fname);
  return v;
}

/* -------------------------------------------------------------- errors */

/* The error of a libuv status: kind "closed" for the end of a stream or
   a peer that went away, "cancelled" for a request libuv cancelled,
   "io" otherwise; code is libuv's errno name ("ECONNREFUSED"). */
void corio_io_error_push(lua_State *L, int status, const char *what) {
  const char *kind = "io";
  if (status == UV_EOF || status == UV_EPIPE || status == UV_ECONNRESET)
    kind = "closed";
  else if (status == UV_ECANCELED)
    kind = "cancelled";
  corio_error_push(L, kind, status == UV_EOF ? NULL : uv_err_name(status),
                   "%s: %s", what, status == UV_EOF ? "end of stream"
                                                    : uv_strerror(status));
}

int corio_io_fail(lua_State *L, int status, const char *what) {
  lua_pushnil(L);
  corio_io_error_push(L, status, what);
  return 2;
}

/* Wakes t, parked in an I/O wait, with true (status 0) or nil, err. */
void corio_io_wake_status(corio_task *t, int status, const char *what) {
  lua_State *co = corio_wake_stack(t, 2);
  t->wait.abort = NULL; /* nothing handed back: a cancellation wins */
  if (status == 0) {
    lua_pushboolean(co, 1);
    corio_wake(t, 1);
  } else {
    lua_pushnil(co);
    corio_io_error_push(co, status, what);
    corio_wake(t, 2);
  }
}

void corio_io_wake_closed(corio_task *t, const char *what) {
  lua_State *co = corio_wake_stack(t, 2);
  t->wait.abort = NULL;
  lua_pushnil(co);
  corio_error_push(co, "closed", NULL, "%s: closed while waiting", what);
  corio_wake(t, 2);
}

void corio_io_unretry_closed(corio_task *t, const char *what) {
  lua_State *co = t->co;
  if (!t->rt || t->state != CORIO_READY || !(t->flags & CORIO_TF_WOKEN))
    return;
  lua_pop(co, t->nargs); /* the retry mark */
  lua_checkstack(co, 3);
  lua_pushnil(co);
  corio_error_push(co, "closed", NULL, "%s: closed while waiting", what);
  t->nargs = 2;
  t->wait.abort = NULL;
}

/* -------------------------------------------------------------- budget */

/* Hands a free slot to the first waiter that can still run (it stays
   counted in used) and wakes it to retry. The retried call claims it in
   corio_budget_take; a slot it does not claim (the call found it needs
   none after all, or raised) is given back as soon as the task waits
   again or its step ends (corio_budget_unclaimed), so none is lost. */
static int budget_pass(corio_budget *b) {
  corio_link *n;
  while ((n = corio_list_shift(&b->waiters)) != NULL) {
    corio_task *t = corio_container(n, corio_task, link);
    if (!t->rt) continue; /* its runtime is gone: never runs again */
    t->flags |= CORIO_TF_GRANTED;
    corio_wake_retry(t); /* t->wait.obj stays b until t waits again */
    return 1;
  }
  return 0;
}

void corio_budget_unclaimed(corio_task *t) {
  t->flags &= ~CORIO_TF_GRANTED;
  corio_budget_give((corio_budget *)t->wait.obj);
}

void corio_budget_init(corio_budget *b, int max, const char *what) {
  b->used = 0;
  b->max = max;
  b->what = what;
  corio_list_init(&b->waiters);
}

int corio_budget_take(corio_budget *b, corio_task *t) {
  if (t && (t->flags & CORIO_TF_GRANTED) && t->wait.obj == b) {
    t->flags &= ~CORIO_TF_GRANTED; /* the slot handed to it */
    return 1;
  }
  if (b->used >= b->max || !corio_list_empty(&b->waiters)) return 0;
  b->used++;
  return 1;
}

void corio_budget_give(corio_budget *b) {
  if (!budget_pass(b)) b->used--;
}

/* A parked waiter leaves the queue. One woken with a slot and cancelled
   before it ran passes the slot on, so none is ever lost. */
static int budget_abort(corio_task *t, int woken) {
  if (woken <= 0) {
    corio_list_remove(&t->link);
    return 1;
  }
  if (t->flags & CORIO_TF_GRANTED) corio_budget_unclaimed(t);
  return 1;
}

int corio_budget_wait(lua_State *L, corio_task *t, corio_budget *b,
                      lua_CFunction fn, double timeout) {
  corio_list_push(&b->waiters, &t->link);
  return corio_await_retry(L, t, fn, b->what, budget_abort, b, timeout);
}

/* Whether t waits in the I/O budget's queue (a read woken by its data
   while it waits for a slot: see stream.c). */
int corio_io_budget_waiting(corio_rt *rt, const corio_task *t) {
  const corio_link *n;
  for (n = rt->io.waiters.next; n != &rt->io.waiters; n = n->next)
    if (n == &t->link) return 1;
  return 0;
}

int corio_budget_waiting(const corio_budget *b) {
  const corio_link *n;
  int k = 0;
  for (n = b->waiters.next; n != &b->waiters; n = n->next) k++;
  return k;
}

int corio_io_take(corio_rt *rt) {
  return corio_budget_take(&rt->io, rt->current);
}
void corio_io_give(corio_rt *rt) { corio_budget_give(&rt->io); }

int corio_io_wait_slot(lua_State *L, corio_task *t, lua_CFunction fn,
                       double timeout) {
  return corio_budget_wait(L, t, &t->rt->io, fn, timeout);
}

int corio_io_waiting(corio_rt *rt) { return corio_budget_waiting(&rt->io); }

/* ------------------------------------------------------------- handles */

/* Handles of the runtime itself (its clock, its pools' wake-ups, the
   dump_on watcher: data == rt) are not counted: what is left belongs to
   I/O objects. */
static void aux_count_handle(uv_handle_t *h, void *arg) {
  if (h->data == h->loop->data) return;
  if (!uv_is_closing(h)) (*(int *)arg)++;
}

int corio_io_handles(corio_rt *rt) {
  int n = 0;
  if (rt->loop_open) uv_walk(&rt->loop, aux_count_handle, &n);
  return n;
}

/* ------------------------------------------------------------ teardown */

void corio_io_register(corio_rt *rt, corio_io_object *o) {
  corio_list_push(&rt->io_objects, &o->link);
}

void corio_io_teardown(lua_State *L, corio_rt *rt) {
  corio_link *n;
  while ((n = corio_list_shift(&rt->io_objects)) != NULL) {
    corio_io_object *o = corio_container(n, corio_io_object, link);
    o->teardown(L, o);
  }
}
