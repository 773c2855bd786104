/*
 * process.c: child processes. corio.exec(argv, opts) runs a command
 * without a shell and collects its output; corio.getpid().
 *
 * Two upper layers over one lower one. The lower one (proc_*) owns a
 * child: its exit (recorded, then handed to the upper layer through
 * p->exited), the SIGTERM-then-SIGKILL escalation, reaping at teardown,
 * and the close of every handle (its own, and the pipe streams it handed
 * to Lua). It knows nothing of Lua. exec_* reads the child's
 * stdout/stderr with plain uv_read_start callbacks into growable buffers,
 * writes `input` to its stdin, and hands the result to the waiting task.
 * process_* (corio.process) gives the pipes to Lua as corio.Stream
 * objects and lets tasks wait for the exit and send signals.
 *
 * Invariants:
 *   - a proc is malloc'd and freed by the close callback of its last
 *     open handle (p->open counts them), never earlier: the uv_process_t
 *     lives until its exit callback even when the task is gone;
 *   - the kill timer belongs to the proc, not to the task;
 *   - exec returns only once the child is reaped: a timeout or a
 *     cancellation sends SIGTERM, then SIGKILL after kill_grace, and the
 *     task stays parked (its abort hook refuses) until the exit callback,
 *     so no zombie and no background child outlives the call;
 *   - a proc whose task is torn down (the runtime abandons or collects
 *     it) is orphaned: it gets SIGKILL, and the runtime's io_object
 *     teardown reaps it with waitpid if libuv has not yet;
 *   - corio.process: the proc is also held by its corio.Process userdata
 *     (p->held) and freed when both the userdata and the last handle are
 *     gone. It stays in rt->io_objects until freed, so when run returns
 *     the teardown kills and reaps a child still running and closes its
 *     pipes. Dropping (__gc) or closing the userdata while the child
 *     runs sends SIGTERM, then SIGKILL after kill_grace; libuv reaps it
 *     (or the teardown does). The pipe streams clear p->ps[i] when their
 *     memory goes (corio_stream_on_free), and a proc freed first
 *     unhooks itself from them.
 */
#include "corio.h"
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define EXEC_MAX_OUTPUT (16.0 * 1024 * 1024)
#define EXEC_KILL_GRACE 2.0
#define EXEC_READ_CHUNK 65536

/* what went wrong, decided once */
enum { FAIL_NONE, FAIL_TIMEOUT, FAIL_CANCEL, FAIL_LIMIT };
/* handles initialized (p->inited bits) */
enum { H_PROCESS = 1, H_KILLER = 2, H_IN = 4, H_OUT = 8, H_ERR = 16 };

typedef struct proc_out {
  char *buf;
  size_t len, cap;
} proc_out;

typedef struct proc proc;

struct proc {
  /* the child layer */
  uv_process_t process;
  uv_timer_t killer;      /* SIGKILL after the grace period */
  uv_pipe_t in, out, err; /* the child's stdin, stdout, stderr */
  uv_write_t wreq;
  corio_stream *ps[3];    /* corio.process: pipe streams given to Lua */
  corio_io_object node;   /* in rt->io_objects from spawn to finish */
  corio_rt *rt;
  void (*exited)(proc *p);/* the upper layer's exit hook */
  double grace;           /* seconds between SIGTERM and SIGKILL */
  int64_t code;
  int sig;
  int open;               /* handles not yet closed back */
  int inited;             /* H_* */
  uint8_t exit_seen;      /* reaped (by libuv, or by teardown) */
  uint8_t held;           /* corio.process: its userdata is alive */
  uint8_t closed;         /* corio.process: close() was called */
  corio_link waiters;     /* corio.process: tasks in pr:wait() */
  /* exec's collection */
  corio_task *t;          /* the waiting task; NULL once orphaned */
  proc_out o[2];          /* stdout, stderr */
  size_t max_output;
  int reading;            /* output pipes not at EOF */
  uint8_t fail, slot, done;
  size_t input_len;       /* the input follows the struct */
};

/* ------------------------------------------------------ child layer */

static void proc_stream_gone(void *slot) { *(corio_stream **)slot = NULL; }

static void proc_free(proc *p) {
  int i;
  corio_list_remove(&p->node.link);
  for (i = 0; i < 3; i++)
    if (p->ps[i]) corio_stream_on_free(p->ps[i], NULL, NULL);
  free(p->o[0].buf);
  free(p->o[1].buf);
  free(p);
}

static void proc_on_close(uv_handle_t *h) {
  proc *p = (proc *)h->data;
  if (--p->open || p->held) return;
  proc_free(p);
}

static void proc_close(proc *p, uv_handle_t *h, int bit) {
  if (!(p->inited & bit) || uv_is_closing(h)) return;
  uv_close(h, proc_on_close);
}

static void proc_close_streams(proc *p) {
  int i;
  for (i = 0; i < 3; i++)
    if (p->ps[i]) corio_stream_close(p->ps[i]);
}

static void proc_close_all(proc *p) {
  proc_close_streams(p);
  proc_close(p, (uv_handle_t *)&p->process, H_PROCESS);
  proc_close(p, (uv_handle_t *)&p->killer, H_KILLER);
  proc_close(p, (uv_handle_t *)&p->in, H_IN);
  proc_close(p, (uv_handle_t *)&p->out, H_OUT);
  proc_close(p, (uv_handle_t *)&p->err, H_ERR);
}

static int proc_init(proc *p, uv_handle_t *h, int bit, int r) {
  h->data = p;
  if (r == 0) {
    p->inited |= bit;
    p->open++;
  }
  return r;
}

static void proc_on_kill_timer(uv_timer_t *tm) {
  proc *p = (proc *)tm->data;
  if (!p->exit_seen) uv_process_kill(&p->process, SIGKILL);
}

/* SIGTERM now, SIGKILL after the grace period. */
static void proc_terminate(proc *p) {
  if (p->exit_seen || (p->inited & H_KILLER)) return;
  uv_process_kill(&p->process, SIGTERM);
  if (proc_init(p, (uv_handle_t *)&p->killer, H_KILLER,
                uv_timer_init(p->process.loop, &p->killer)) != 0 ||
      uv_timer_start(&p->killer, proc_on_kill_timer,
                     (uint64_t)(p->grace * 1000.0 + 0.5), 0) != 0)
    uv_process_kill(&p->process, SIGKILL); /* no timer: no grace */
}

static void proc_on_exit(uv_process_t *h, int64_t code, int sig) {
  proc *p = (proc *)h->data;
  p->exit_seen = 1;
  p->code = code;
  p->sig = sig;
  if (p->inited & H_KILLER) uv_timer_stop(&p->killer);
  p->exited(p);
}

/* Runtime teardown of an orphan: kill and reap it now, close the rest.
   waitpid is ours: libuv reaps only inside uv_run, and forgets the child
   once its handle is closed. */
static void proc_teardown(lua_State *L, corio_io_object *o) {
  proc *p = corio_container(o, proc, node);
  (void)L;
  if (!p->exit_seen) {
    p->exit_seen = 1;
    p->sig = SIGKILL;
    uv_process_kill(&p->process, SIGKILL);
    while (waitpid(p->process.pid, NULL, 0) < 0 && errno == EINTR) {
    }
  }
  proc_close_all(p);
}

/* Pushes {code = n} or {signal = "SIGTERM"} (a number when unnamed). */
static void proc_push_status(lua_State *L, proc *p, int extra) {
  lua_createtable(L, 0, 1 + extra);
  if (p->sig) {
    const char *s = corio_signal_name(p->sig);
    if (s) lua_pushstring(L, s);
    else lua_pushinteger(L, p->sig);
    lua_setfield(L, -2, "signal");
  } else {
    lua_pushinteger(L, (lua_Integer)p->code);
    lua_setfield(L, -2, "code");
  }
}

/* ------------------------------------------------------- exec layer */

static void exec_give(proc *p) {
  if (!p->slot) return;
  p->slot = 0;
  corio_io_give(p->rt);
}

static void exec_push_result(lua_State *L, proc *p) {
  static const char *const names[] = {"stdout", "stderr"};
  int i;
  proc_push_status(L, p, 2);
  for (i = 0; i < 2; i++) {
    lua_pushlstring(L, p->o[i].buf ? p->o[i].buf : "", p->o[i].len);
    lua_setfield(L, -2, names[i]);
  }
}

/* Hands the outcome to the task, if it still waits. */
static void exec_deliver(proc *p) {
  corio_task *t = p->t;
  corio_scope *by;
  lua_State *co;
  p->t = NULL;
  if (!t) return;
  co = corio_wake_stack(t, 3);
  t->wait.abort = NULL;
  switch (p->fail) {
    case FAIL_TIMEOUT:
      lua_pushnil(co);
      corio_error_push(co, "timeout", NULL, "exec: timed out");
      corio_wake(t, 2);
      return;
    case FAIL_LIMIT:
      lua_pushnil(co);
      corio_error_push(co, "limit", NULL, "exec: output larger than "
                       "max_output (%f bytes)", (double)p->max_output);
      corio_wake(t, 2);
      return;
    case FAIL_CANCEL:
      if ((by = corio_task_cancelled_by(t)) != NULL) {
        corio_push_cancel(co, by);
        corio_wake_raise(t);
        return;
      }
      break;
  }
  exec_push_result(co, p);
  corio_wake(t, 1);
}

/* Done when the child is reaped and both outputs reached their end (a
   timeout or cancellation does not wait for outputs a grandchild holds).
   Idempotent. */
static void exec_check_done(proc *p) {
  if (p->done || !p->exit_seen || (p->reading && p->fail == FAIL_NONE))
    return;
  p->done = 1;
  corio_list_remove(&p->node.link);
  exec_deliver(p);
  exec_give(p);
  proc_close_all(p);
}

static void exec_fail(proc *p, int why) {
  if (p->fail == FAIL_NONE) p->fail = (uint8_t)why;
  proc_terminate(p);
  exec_check_done(p);
}

static proc_out *exec_out(proc *p, uv_stream_t *s) {
  return &p->o[s == (uv_stream_t *)&p->out ? 0 : 1];
}

static void exec_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  proc *p = (proc *)h->data;
  proc_out *o = exec_out(p, (uv_stream_t *)h);
  (void)hint;
  if (o->cap - o->len < EXEC_READ_CHUNK) {
    size_t ncap = o->cap ? o->cap * 2 : EXEC_READ_CHUNK;
    char *nb;
    while (ncap - o->len < EXEC_READ_CHUNK) ncap *= 2;
    if (!(nb = (char *)realloc(o->buf, ncap))) {
      *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
      return;
    }
    o->buf = nb;
    o->cap = ncap;
  }
  *buf = uv_buf_init(o->buf + o->len, (unsigned)(o->cap - o->len));
}

static void exec_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  proc *p = (proc *)s->data;
  proc_out *o = exec_out(p, s);
  (void)buf;
  if (n > 0) {
    o->len += (size_t)n;
    if (o->len <= p->max_output) return;
    o->len = p->max_output;
  } else if (n == 0) {
    return;
  }
  /* end of stream, error, or over the limit: this output is done */
  uv_read_stop(s);
  p->reading--;
  proc_close(p, (uv_handle_t *)s, s == (uv_stream_t *)&p->out ? H_OUT
                                                               : H_ERR);
  if (n > 0) exec_fail(p, FAIL_LIMIT);
  else exec_check_done(p);
}

static void exec_on_written(uv_write_t *w, int status) {
  proc *p = (proc *)w->data;
  (void)status; /* a child that does not read its input is no error */
  proc_close(p, (uv_handle_t *)&p->in, H_IN);
}

/* Timeout or cancellation: the child is stopped and reaped first. A
   result already handed over stands; teardown orphans the child. */
static int exec_abort(corio_task *t, int woken) {
  proc *p = (proc *)t->wait.obj;
  if (woken == 1) return 0;
  if (woken == -1) {
    p->t = NULL;
    exec_give(p);
    if (!p->exit_seen) uv_process_kill(&p->process, SIGKILL);
    return 1;
  }
  exec_fail(p, corio_task_cancelled_by(t) ? FAIL_CANCEL : FAIL_TIMEOUT);
  return 0;
}

/* --------------------------------------------------------- arguments */

/* argv table -> NULL-terminated array in a temporary userdata */
static char **aux_argv(lua_State *L, int idx) {
  int i, n;
  char **v;
  luaL_checktype(L, idx, LUA_TTABLE);
  n = (int)lua_rawlen(L, idx);
  if (n < 1) luaL_argerror(L, idx, "argv must name a command");
  v = (char **)lua_newuserdata(L, (size_t)(n + 1) * sizeof *v);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, idx, lua_pushfstring(L, "argv[%d] must be a string",
                                            i));
    v[i - 1] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1); /* still referenced by the table */
  }
  v[n] = NULL;
  return v;
}

/* env {NAME = value} -> "NAME=value" array; the strings are kept in a
   table left on the stack. NULL when the option is absent. */
static char **aux_env(lua_State *L, int opt, const char *fname) {
  char **v;
  int n = 0, i = 0;
  if (!lua_istable(L, opt)) return NULL;
  lua_getfield(L, opt, "env");
  if (lua_isnil(L, -1)) return NULL;
  if (!lua_istable(L, -1))
    luaL_error(L, "bad option 'env' to '%s' (table expected)", fname);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    n++;
    lua_pop(L, 1);
  }
  v = (char **)lua_newuserdata(L, (size_t)(n + 1) * sizeof *v);
  lua_newtable(L); /* keeps the strings alive */
  lua_pushnil(L);
  while (lua_next(L, -4)) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "bad option 'env' to '%s' (string keys and values "
                 "expected)", fname);
    lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
    v[i] = (char *)lua_tostring(L, -1);
    lua_rawseti(L, -4, ++i);
    lua_pop(L, 1);
  }
  v[i] = NULL;
  return v;
}

/* kill_grace: seconds between SIGTERM and SIGKILL */
static double aux_grace(lua_State *L, int opt, const char *fname) {
  double g = corio_opt_number(L, opt, "kill_grace", EXEC_KILL_GRACE, fname);
  if (g != g || g < 0 || g > 1e6)
    luaL_error(L, "bad option 'kill_grace' to '%s' (seconds expected)",
               fname);
  return g;
}

static size_t aux_size_opt(lua_State *L, int opt, const char *key,
                           double def) {
  double v = corio_opt_number(L, opt, key, def, "exec");
  if (v != v || v < 0)
    luaL_error(L, "bad option '%s' to 'exec' (non-negative number "
               "expected)", key);
  return v > 1e15 ? (size_t)1e15 : (size_t)v;
}

/* ------------------------------------------------------------- spawn */

static void exec_start_io(proc *p, int has_input);

static int exec_spawn(proc *p, uv_loop_t *loop, uv_process_options_t *po,
                      int has_input) {
  uv_stdio_container_t stdio[3];
  int r;
  memset(stdio, 0, sizeof stdio);
  stdio[0].flags = UV_IGNORE;
  if (has_input) {
    if ((r = proc_init(p, (uv_handle_t *)&p->in, H_IN,
                       uv_pipe_init(loop, &p->in, 0))) != 0)
      return r;
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&p->in;
  }
  if ((r = proc_init(p, (uv_handle_t *)&p->out, H_OUT,
                     uv_pipe_init(loop, &p->out, 0))) != 0 ||
      (r = proc_init(p, (uv_handle_t *)&p->err, H_ERR,
                     uv_pipe_init(loop, &p->err, 0))) != 0)
    return r;
  stdio[1].flags = stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&p->out;
  stdio[2].data.stream = (uv_stream_t *)&p->err;
  po->stdio = stdio;
  po->stdio_count = 3;
  po->exit_cb = proc_on_exit;
  p->exited = exec_check_done;
  /* the process handle needs closing even when the spawn fails */
  r = uv_spawn(loop, &p->process, po);
  proc_init(p, (uv_handle_t *)&p->process, H_PROCESS, 0);
  if (r) return r;
  exec_start_io(p, has_input);
  return 0;
}

/* The spawned child's pipes: read its outputs, write its input. */
static void exec_start_io(proc *p, int has_input) {
  p->reading = 2;
  /* cannot fail on a pipe just created by uv_spawn; were it to, the
     output would look empty, and the exit is still awaited */
  if (uv_read_start((uv_stream_t *)&p->out, exec_on_alloc, exec_on_read))
    p->reading--;
  if (uv_read_start((uv_stream_t *)&p->err, exec_on_alloc, exec_on_read))
    p->reading--;
  if (has_input) {
    uv_buf_t b = uv_buf_init((char *)(p + 1), (unsigned)p->input_len);
    p->wreq.data = p;
    /* a failed write leaves the child an empty input, like EPIPE */
    if (!p->input_len || uv_write(&p->wreq, (uv_stream_t *)&p->in, &b, 1,
                                  exec_on_written) != 0)
      proc_close(p, (uv_handle_t *)&p->in, H_IN);
  }
}

/* corio.exec(argv, [{input, env, cwd, timeout, max_output, kill_grace}])
   -> {code | signal, stdout, stderr} | nil, err */
static int lcorio_exec(lua_State *L) {
  static const char *const allowed[] = {"input", "env", "cwd", "timeout",
                                        "max_output", "kill_grace", NULL};
  uv_process_options_t po;
  size_t in_len = 0;
  const char *input, *cwd;
  double timeout, grace;
  size_t p_max;
  corio_task *t;
  proc *p;
  int r;
  memset(&po, 0, sizeof po);
  lua_settop(L, 2); /* argv, opts: what a budget retry starts over with */
  timeout = corio_io_timeout(L, 2, "exec", allowed);
  input = lua_istable(L, 2) ? corio_opt_string(L, 2, "input", NULL, "exec")
                            : NULL;
  if (input) {
    lua_getfield(L, 2, "input");
    input = lua_tolstring(L, -1, &in_len);
  }
  cwd = corio_opt_string(L, 2, "cwd", NULL, "exec");
  po.cwd = cwd;
  grace = aux_grace(L, 2, "exec");
  p_max = aux_size_opt(L, 2, "max_output", EXEC_MAX_OUTPUT);
  po.args = aux_argv(L, 1);
  po.file = po.args[0];
  po.env = aux_env(L, 2, "exec");
  t = corio_await_begin(L, "exec");
  if (!corio_io_take(t->rt)) {
    lua_settop(L, 2);
    return corio_io_wait_slot(L, t, lcorio_exec, timeout);
  }
  if (!(p = (proc *)calloc(1, sizeof *p + in_len))) {
    corio_io_give(t->rt);
    return luaL_error(L, "exec: not enough memory");
  }
  p->rt = t->rt;
  p->slot = 1;
  p->grace = grace;
  p->max_output = p_max;
  p->input_len = in_len;
  if (in_len) memcpy(p + 1, input, in_len);
  corio_list_init(&p->node.link);
  p->node.teardown = proc_teardown;
  if ((r = exec_spawn(p, &t->rt->loop, &po, input != NULL)) != 0) {
    exec_give(p);
    if (p->open) proc_close_all(p); /* the callbacks free p */
    else free(p);
    return corio_io_fail(L, r, lua_pushfstring(L, "exec %s", po.file));
  }
  p->t = t;
  corio_io_register(t->rt, &p->node);
  return corio_await(L, t, "process", exec_abort, p, timeout);
}

/* ---------------------------------------------------- process layer */

/* corio.process(argv, opts): the child's pipes as corio.Stream objects
   (user values 1-3 of the corio.Process userdata), pr:wait(), pr:kill(),
   pr:close(). See the invariants at the top for who frees what. */

#define PROCESS_MT "corio.Process"

enum { STDIO_PIPE, STDIO_NULL, STDIO_INHERIT };

typedef struct process_box {
  proc *p; /* NULL once collected */
} process_box;

/* The process handle keeps the loop alive only while a task waits for
   the exit: an idle child, like an idle stream, hides no deadlock. */
static void process_ref(proc *p) {
  uv_handle_t *h = (uv_handle_t *)&p->process;
  if (p->exit_seen || uv_is_closing(h)) return;
  if (corio_list_empty(&p->waiters)) uv_unref(h);
  else uv_ref(h);
}

/* The child's exit: every waiter gets the status; the process handle and
   the kill timer are done (the pipes live on: output may be unread). */
static void process_on_exited(proc *p) {
  corio_link *n;
  while ((n = corio_list_shift(&p->waiters)) != NULL) {
    corio_task *t = corio_container(n, corio_task, link);
    proc_push_status(corio_wake_stack(t, 1), p, 0);
    corio_io_give(p->rt);
    corio_wake(t, 1);
  }
  proc_close(p, (uv_handle_t *)&p->process, H_PROCESS);
  proc_close(p, (uv_handle_t *)&p->killer, H_KILLER);
}

/* Only __gc clears b->p; a finalizer of 5.4 may still reach the object. */
static proc *check_process(lua_State *L, int idx) {
  process_box *b = (process_box *)corio_checkudata(L, idx, PROCESS_MT);
  if (!b->p) luaL_error(L, "corio.Process: used after it was collected");
  return b->p;
}

/* Cancel safe: the status stays in the proc, a later wait gets it. */
static int process_wait_abort(corio_task *t, int woken) {
  proc *p = (proc *)t->wait.obj;
  if (woken == 1) return 1; /* its slot went back with the wake */
  corio_list_remove(&t->link);
  corio_io_give(p->rt);
  process_ref(p);
  return 1;
}

/* pr:wait([{timeout}]) -> {code = n} | {signal = name} | nil, err. A
   timeout or a cancellation leaves the child running. */
static int lprocess_wait(lua_State *L) {
  proc *p = check_process(L, 1);
  double timeout = corio_io_timeout(L, 2, "wait", NULL);
  corio_task *t = corio_await_begin(L, "wait");
  if (p->exit_seen) {
    proc_push_status(L, p, 0);
    return 1;
  }
  if (p->rt != t->rt)
    return luaL_error(L, "wait: the process belongs to another runtime");
  if (!corio_io_take(t->rt)) {
    lua_settop(L, 2);
    return corio_io_wait_slot(L, t, lprocess_wait, timeout);
  }
  corio_list_push(&p->waiters, &t->link);
  process_ref(p);
  return corio_await(L, t, "process", process_wait_abort, p, timeout);
}

/* pr:kill([sig]) -> true | nil, err (default SIGTERM; ESRCH once the
   child has exited: its pid may already be another process's) */
static int lprocess_kill(lua_State *L) {
  proc *p = check_process(L, 1);
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : corio_check_signal(L, 2);
  int r;
  if (p->exit_seen) return corio_io_fail(L, UV_ESRCH, "kill");
  if ((r = uv_process_kill(&p->process, sig)) != 0)
    return corio_io_fail(L, r, "kill");
  lua_pushboolean(L, 1);
  return 1;
}

/* pr:close(): closes the pipes; a child still running gets SIGTERM, then
   SIGKILL after kill_grace, and is reaped in the background (pr:wait()
   still waits for that). Idempotent; also __close. */
static int lprocess_close(lua_State *L) {
  proc *p = check_process(L, 1);
  if (p->closed) return 0;
  p->closed = 1;
  proc_close_streams(p);
  if (!p->exit_seen) proc_terminate(p);
  return 0;
}

/* No Lua code. A child still running is terminated like close() does,
   but the pipes are left to their own userdata (they may be referenced
   elsewhere). A child not yet exited means its runtime's loop is open:
   the teardown that precedes its close marks every child reaped. */
static int lprocess_gc(lua_State *L) {
  process_box *b = (process_box *)corio_checkudata(L, 1, PROCESS_MT);
  proc *p = b->p;
  if (!p) return 0;
  b->p = NULL;
  if (!p->exit_seen) proc_terminate(p);
  p->held = 0;
  if (!p->open) proc_free(p);
  return 0;
}

/* pr.pid, pr.stdin, pr.stdout, pr.stderr, then the methods */
static int lprocess_index(lua_State *L) {
  static const char *const fields[] = {"pid", "stdin", "stdout", "stderr",
                                       NULL};
  /* a plain closure (upvalue 1: the methods), so no corio_checkudata */
  process_box *b = (process_box *)luaL_checkudata(L, 1, PROCESS_MT);
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  int i;
  for (i = 0; k && fields[i] && strcmp(fields[i], k) != 0; i++) {
  }
  if (k && fields[i]) {
    if (i == 0 && !b->p) lua_pushnil(L); /* collected (see check_process) */
    else if (i == 0) lua_pushinteger(L, (lua_Integer)b->p->process.pid);
    else corio_getuv(L, 1, i);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int aux_stdio_mode(lua_State *L, int opt, const char *key) {
  const char *m = corio_opt_string(L, opt, key, "pipe", "process");
  if (strcmp(m, "pipe") == 0) return STDIO_PIPE;
  if (strcmp(m, "null") == 0) return STDIO_NULL;
  if (strcmp(m, "inherit") == 0) return STDIO_INHERIT;
  return luaL_error(L, "bad option '%s' to 'process' ('pipe', 'null' or "
                    "'inherit' expected)", key);
}

/* Pipe i as a stream: user value i + 1 of the box. */
static int process_pipe(lua_State *L, proc *p, int box, int i,
                        uv_stdio_container_t *c) {
  corio_stream *s = corio_stream_push(L, p->rt, CORIO_SK_PIPE);
  uv_pipe_t *h = (uv_pipe_t *)corio_stream_handle(s);
  int r;
  corio_setuv(L, box, i + 1);
  if ((r = uv_pipe_init(&p->rt->loop, h, 0)) != 0) return r;
  corio_stream_mark(s);
  p->ps[i] = s;
  corio_stream_on_free(s, proc_stream_gone, &p->ps[i]);
  c->flags = UV_CREATE_PIPE | (i ? UV_WRITABLE_PIPE : UV_READABLE_PIPE);
  c->data.stream = (uv_stream_t *)h;
  return 0;
}

static int process_spawn(lua_State *L, proc *p, int box,
                         uv_process_options_t *po, const int mode[3]) {
  uv_stdio_container_t stdio[3];
  int i, r;
  memset(stdio, 0, sizeof stdio);
  for (i = 0; i < 3; i++) {
    if (mode[i] == STDIO_NULL) {
      stdio[i].flags = UV_IGNORE; /* libuv opens /dev/null for fds 0-2 */
    } else if (mode[i] == STDIO_INHERIT) {
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = i;
    } else if ((r = process_pipe(L, p, box, i, &stdio[i])) != 0) {
      return r;
    }
  }
  po->stdio = stdio;
  po->stdio_count = 3;
  po->exit_cb = proc_on_exit;
  p->exited = process_on_exited;
  r = uv_spawn(&p->rt->loop, &p->process, po);
  proc_init(p, (uv_handle_t *)&p->process, H_PROCESS, 0); /* close it */
  return r;
}

/* corio.process(argv, [{env, cwd, stdin, stdout, stderr, kill_grace}])
   -> corio.Process | nil, err. Starting a child waits for nothing, so it
   takes no I/O budget slot (pr:wait and the pipes' reads do). */
static int lcorio_process(lua_State *L) {
  static const char *const allowed[] = {"env", "cwd", "stdin", "stdout",
                                        "stderr", "kill_grace", NULL};
  static const char *const keys[] = {"stdin", "stdout", "stderr"};
  corio_rt *rt = corio_rt_get(L, "process");
  uv_process_options_t po;
  int mode[3], i, box, r;
  process_box *b;
  proc *p;
  double grace;
  memset(&po, 0, sizeof po);
  lua_settop(L, 2);
  corio_opt_present(L, 2, "process", allowed);
  for (i = 0; i < 3; i++) mode[i] = aux_stdio_mode(L, 2, keys[i]);
  grace = aux_grace(L, 2, "process");
  po.cwd = corio_opt_string(L, 2, "cwd", NULL, "process");
  po.args = aux_argv(L, 1);
  po.file = po.args[0];
  po.env = aux_env(L, 2, "process");
  /* the userdata first: nothing leaks if an allocation fails */
  b = (process_box *)corio_newudata(L, sizeof *b, 3);
  b->p = NULL;
  luaL_setmetatable(L, PROCESS_MT);
  box = lua_gettop(L);
  if (!(p = (proc *)calloc(1, sizeof *p)))
    return luaL_error(L, "process: not enough memory");
  b->p = p;
  p->held = 1;
  p->exit_seen = 1; /* nothing to signal or reap until the spawn */
  p->rt = rt;
  p->grace = grace;
  corio_list_init(&p->waiters);
  corio_list_init(&p->node.link);
  p->node.teardown = proc_teardown;
  if ((r = process_spawn(L, p, box, &po, mode)) != 0) {
    proc_close_all(p); /* the box's __gc frees p */
    return corio_io_fail(L, r, lua_pushfstring(L, "process %s", po.file));
  }
  p->exit_seen = 0;
  corio_io_register(rt, &p->node);
  process_ref(p);
  if (p->ps[0]) corio_stream_set_writeonly(p->ps[0]);
  for (i = 1; i < 3; i++)
    if (p->ps[i]) corio_stream_opened(p->ps[i]); /* reading ahead */
  lua_settop(L, box);
  return 1;
}

static const luaL_Reg process_methods[] = {{"kill", lprocess_kill},
                                           {"close", lprocess_close},
                                           {NULL, NULL}};
/* may start over for a budget slot (await 2) */
static const luaL_Reg process_retry[] = {{"wait", lprocess_wait},
                                         {NULL, NULL}};
static const luaL_Reg process_meta[] = {{"__gc", lprocess_gc},
                                        {"__close", lprocess_close},
                                        {NULL, NULL}};

/* corio_class's __index table stays the method table; __index becomes a
   function that serves the fields first. */
static void process_open_class(lua_State *L) {
  corio_class_retry(L, PROCESS_MT, process_methods, process_retry,
                    process_meta);
  lua_getfield(L, -1, "__index");
  lua_pushcclosure(L, lprocess_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* corio.getpid() -> this process's id (to signal oneself in tests) */
static int lcorio_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_os_getpid());
  return 1;
}

static const luaL_Reg exec_funcs[] = {{"exec", lcorio_exec}, {NULL, NULL}};
static const luaL_Reg process_funcs[] = {{"process", lcorio_process},
                                         {NULL, NULL}};
static const luaL_Reg plain_funcs[] = {{"getpid", lcorio_getpid},
                                       {NULL, NULL}};

void corio_open_process(lua_State *L) {
  struct sigaction sa;
  /* Writing to a pipe whose reader is gone (a child that exits without
     reading its input; a peer that closed) must be an EPIPE error, not
     the death of the process: ignore SIGPIPE unless the host set its
     own handler. Children get the default back (libuv resets their
     signal dispositions). */
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
    signal(SIGPIPE, SIG_IGN);
  corio_setfuncs(L, exec_funcs, 2); /* may wait for a budget slot */
  corio_setfuncs(L, plain_funcs, 0);
  corio_setfuncs(L, process_funcs, 0); /* spawns: never waits */
  process_open_class(L);
}
