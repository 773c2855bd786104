/*
 * corio.h: the one internal header shared by every file in csrc/.
 *
 * Vocabulary:
 *   runtime (corio_rt)  owns a uv_loop_t, the ready queue, the timer heap.
 *   task (corio_task)   a coroutine plus a small fixed struct; parked tasks
 *                       cost nothing else (wait record and timer are inside).
 *   scope (corio_scope) a cancel scope (Trio): cancelled, maybe a deadline,
 *                       maybe a shield; scopes and tasks form one tree.
 *
 * The await protocol (the only way a task ever waits):
 *
 *   corio_task *t = corio_await_begin(L, "acquire");  // raises if not in a
 *                                       // task, or if cancellation pending
 *   ... link t->link into the primitive's FIFO wait list ...
 *   return corio_await(L, t, "semaphore", sem_abort, sem, timeout);
 *
 * and later, from any task or callback on the loop thread:
 *
 *   lua_State *co = corio_wake_stack(t, 1);  lua_pushvalue/xmove...(co)
 *   corio_wake(t, 1);                        // the await returns 1 value
 *
 * or corio_wake_raise(t) after pushing an error object on co: the await
 * raises it. A task is in at most one list through t->link: the ready
 * queue or one primitive's wait list, never both.
 *
 * abort(t, woken) is how a wait ends early (cancellation, timeout):
 *   woken == 0: t is still linked in the primitive: unlink it and return 1,
 *               or return 0 to refuse (a wait that must not be interrupted;
 *               the cancellation stays pending for the next await).
 *   woken == 1: the primitive already woke t, which has not run yet (the
 *               values it handed over are still the top t->nargs slots of
 *               t->co, and are dropped if the hook returns 1): return
 *               1 if the primitive took back what it handed over (permit,
 *               value), so that t gets the cancellation instead; 0 lets the
 *               wake stand (the cancellation waits for the next await).
 *   woken == -1: forced teardown (the runtime abandons t after a deadlock):
 *               unlink t; the return value is ignored.
 */
#ifndef CORIO_H
#define CORIO_H

/* libuv's headers need the POSIX/GNU declarations under -std=c99; every
   file includes this header first. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "compat.h"

/* ---------------------------------------------------------------- lists */

typedef struct corio_link {
  struct corio_link *prev, *next;
} corio_link;

#define corio_container(p, type, member) \
  ((type *)(void *)((char *)(p)-offsetof(type, member)))

static inline void corio_list_init(corio_link *h) { h->prev = h->next = h; }
static inline int corio_list_empty(const corio_link *h) { return h->next == h; }
static inline int corio_linked(const corio_link *n) { return n->next != n; }

/* Append n at the tail of the list h (FIFO). */
static inline void corio_list_push(corio_link *h, corio_link *n) {
  n->prev = h->prev;
  n->next = h;
  h->prev->next = n;
  h->prev = n;
}

/* Unlink n; harmless when n is not linked (points at itself). */
static inline void corio_list_remove(corio_link *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = n;
}

/* Remove and return the head, or NULL when empty. */
static inline corio_link *corio_list_shift(corio_link *h) {
  corio_link *n = h->next;
  if (n == h) return NULL;
  corio_list_remove(n);
  return n;
}

/* --------------------------------------------------------------- types */

typedef struct corio_ctx corio_ctx;
typedef struct corio_rt corio_rt;
typedef struct corio_task corio_task;
typedef struct corio_scope corio_scope;
typedef struct corio_timer corio_timer;

typedef int (*corio_abort_fn)(corio_task *t, int woken);

/* Work a finalizer must not do itself (it may not allocate objects with
   finalizers, and runs at arbitrary points): it queues this node on the
   runtime, and the scheduler calls fn(L, node) between batches. Embedded
   in the object that needs it, so queueing allocates nothing; the object
   must stay alive while queued (or unlink the node when it goes). */
typedef struct corio_deferred {
  corio_link link;
  void (*fn)(lua_State *L, struct corio_deferred *d);
} corio_deferred;

/* What a timer does when due (the heap stores pointers to corio_timer). */
enum { CORIO_TIMER_SLEEP, CORIO_TIMER_WAIT, CORIO_TIMER_SCOPE };

/* 16 bytes: the kind lives in the two low bits of seq, which counts up in
   steps of 4, so comparing seq still orders timers by arming time. */
struct corio_timer {
  uint64_t due;    /* nanoseconds on the runtime clock */
  uint32_t seq;    /* arm order (high bits) | CORIO_TIMER_* (low 2 bits) */
  int32_t index;   /* slot in the heap, -1 when not armed */
};
#define corio_timer_kind(tm) ((int)((tm)->seq & 3u))
#define corio_timer_set_kind(tm, k) \
  ((tm)->seq = ((tm)->seq & ~3u) | (uint32_t)(k))

/* (the primitive's own datum, a count or a mode, is t->wait_arg: outside
   this record, so the task struct packs without holes) */
typedef struct corio_wait {
  const char *what;      /* "sleep", "join", "semaphore" ...: tasks()/dump */
  corio_abort_fn abort;  /* NULL: nothing to undo, always abortable */
  void *obj;             /* the primitive waited on */
} corio_wait;

enum {
  CORIO_READY, CORIO_RUNNING, CORIO_WAITING,
  CORIO_DONE, CORIO_FAILED, CORIO_CANCELLED
};

/* task flags */
#define CORIO_TF_CANCEL    0x01  /* t:cancel() was called */
#define CORIO_TF_WOKEN     0x02  /* ready because a wait ended; abortable */
#define CORIO_TF_OBSERVED  0x04  /* its outcome was joined/waited/scoped */
#define CORIO_TF_GRANTED   0x08  /* woken with a budget slot (t->wait.obj)
                                    its retried call has not claimed */
#define CORIO_TF_INLINE    0x10  /* the body of a protected call on PUC 5.1
                                    (init.lua's ypcall): it stands for the
                                    task that opened its nursery */
#define CORIO_TF_KID      0x20  /* spawned into a scope: a corio_kid */
#define CORIO_TF_STARTED   0x40  /* resumed at least once */
#define CORIO_TF_MOVED     0x80  /* done: its coroutine went back to the
                                    runtime's idle pool; its one result,
                                    if any, is kept (TASK_KEEP, task.c)
                                    (co == NULL) */
#define CORIO_TF_ARMED    0x100  /* failed unobserved: a corio_failure
                                    (task.c) is at index 1 of co */

/* 120 bytes on 64-bit machines (task.c checks): a parked task costs its
   coroutine plus this and a userdata header, which is what the memory
   benchmark holds against a bare coroutine. What only some tasks need
   lives elsewhere: the links of a task spawned into a scope in a
   corio_kid tail, live tasks' order in the runtime's slot table, an
   unobserved failure's list node in its finalizer object. */
struct corio_task {
  corio_link link;        /* ready queue or one wait list */
  corio_link *joiners;    /* ring (no head node) of the links of tasks
                             parked in join/wait on this one, or NULL */
  corio_rt *rt;           /* NULL once the runtime is gone */
  lua_State *co;          /* the coroutine (anchored: see task.c) */
  corio_scope *scope;     /* innermost scope this task pushed, or NULL */
  corio_wait wait;
  corio_timer timer;      /* sleep, and the timeout of the current wait */
  lua_Integer id;
  uint64_t born;          /* runtime clock at spawn (ns), for `age` */
  int32_t wait_arg;       /* the waited-on primitive's datum */
  int ref;                /* slot in rt->slots anchoring it while live,
                             or LUA_NOREF */
  int nargs;              /* values on co handed over at the next resume */
  uint8_t state;          /* CORIO_READY ... */
  uint16_t flags;         /* CORIO_TF_* */
};

/* A task spawned into a scope (a nursery child): its place in that
   scope's task list for its whole life, and the scope. */
typedef struct corio_kid {
  corio_task task;
  corio_link scope_link;  /* in parent->tasks */
  corio_scope *parent;    /* the scope it was spawned into, or NULL once
                             that scope is gone */
} corio_kid;

/* A task's own user values (see task.c): on 5.4 none (its outcome is
   kept in a weak-key table), before 5.4 one (the coroutine, or the
   result); its name and spawn site follow. */
#if LUA_VERSION_NUM >= 504
#define CORIO_TASK_UVS 0
#else
#define CORIO_TASK_UVS 1
#endif
#define CORIO_TASK_UV_NAME (CORIO_TASK_UVS + 1)
#define CORIO_TASK_UV_SITE (CORIO_TASK_UVS + 2)

#define corio_kid_of(t) ((corio_kid *)(void *)(t))
/* the scope t was spawned into, or NULL */
static inline corio_scope *corio_task_parent(const corio_task *t) {
  return (t->flags & CORIO_TF_KID) ? ((const corio_kid *)t)->parent : NULL;
}

/* Scope kinds: the owner of the scope decides what its boundary does. */
enum { CORIO_SCOPE_PLAIN, CORIO_SCOPE_TIMEOUT, CORIO_SCOPE_SHIELD,
       CORIO_SCOPE_NURSERY };

struct corio_scope {
  corio_scope *parent;    /* enclosing scope (maybe in another task) */
  corio_link sibling;     /* in parent->children */
  corio_link children;    /* scopes whose parent is this one */
  corio_link tasks;       /* tasks whose innermost scope is this one */
  corio_timer deadline;   /* armed when the scope has a deadline */
  corio_rt *rt;
  corio_task *owner;      /* the task that pushed it */
  uint8_t kind;           /* CORIO_SCOPE_* */
  uint8_t cancelled;      /* cancel requested (directly or by deadline) */
  uint8_t expired;        /* cancelled because its deadline passed */
  uint8_t inherited;      /* found inside a cancelled scope (or a task's
                             t:cancel()) by the cancelling walk: 1, or 2
                             when that was a deadline. Cancellation only
                             grows while a scope is pushed, so this lets
                             a task's walk up the tree stop here */
  uint8_t pushed;         /* on its owner's stack */
  uint8_t failfast;       /* nursery: a child failure cancels the rest */
  uint8_t closing;        /* nursery: its owner is done waiting; no spawn */
  uint8_t inline_call;    /* nursery of a PUC 5.1 protected call: its
                             child is CORIO_TF_INLINE */
  double secs;            /* the timeout, for the error message */
  /* nursery bookkeeping (CORIO_SCOPE_NURSERY), see scope.c */
  int nchildren;          /* live child tasks */
  int error_ref;          /* first child failure, LUA_NOREF if none */
  int others_ref;         /* table of later failures, LUA_NOREF if none */
  int ref;                /* registry anchor while pushed, or LUA_NOREF */
  corio_task *waiter;     /* owner parked until the children finish */
};

/* Per-Lua-state context: upvalue 1 of every function the module exports. */
#define CORIO_MT_CACHE 32
enum { CORIO_MTR_TASK, CORIO_MTR_PERMIT, CORIO_MTR_GUARD };

struct corio_ctx {
  corio_rt *rt;           /* the runtime running now, or NULL */
  lua_Integer next_id;
  corio_yieldable_fn vm_isyieldable; /* see compat.h */
  int pool_code_id;       /* last id given to a pool function (pool.c) */
  /* registry refs of the metatables set on hot paths (an integer key:
     no string lookup), CORIO_MTR_* */
  int mt_ref[3];
  /* class name (the literal's address) -> its metatable, so that checking
     a userdata's type is a pointer compare, not a registry string lookup */
  struct { const char *name; const void *mt; } mtc[CORIO_MT_CACHE];
};

/* -------------------------------------------------------------- core.c */

/* The marker that turns a wake into a raise (see corio_wake_raise). */
extern const char corio_raise_mark;
/* The marker that makes a waiting call start over (corio_wake_retry). */
extern const char corio_retry_mark;

corio_ctx *corio_ctx_get(lua_State *L);

/* The runtime running on this OS thread (set by rt:run, saved and put
   back around it), so hot paths find the running task without reading
   an upvalue: the task is rt->current when its coroutine is L. Initial-
   exec TLS: a dlopen'd module gets it from glibc's static TLS surplus,
   and an access is one instruction (the default model calls a function,
   which measured no better than the upvalue). */
#if defined(__GNUC__)
#define CORIO_TLS __thread __attribute__((tls_model("initial-exec")))
#else
#define CORIO_TLS
#endif
extern CORIO_TLS corio_rt *corio_running;
/* Registers l into the table on top, each with the ctx as upvalue 1. On Lua
   5.1/LuaJIT, awaiting functions are wrapped so that a raise request turns
   into an error: register every function that may park with await=1, and
   every one that may park with corio_await_retry with await=2. */
void corio_setfuncs(lua_State *L, const luaL_Reg *l, int await);
/* Creates the metatable `name` (corio.Task, ...): __name, __index = a table
   of methods + await_methods, and the metamethods in meta. Leaves it on the
   stack. Any of the lists may be NULL. */
void corio_class(lua_State *L, const char *name, const luaL_Reg *methods,
                 const luaL_Reg *await_methods, const luaL_Reg *meta);
/* The same for a class whose waiting methods may start over after a
   budget wait (corio_await_retry): they are registered with await=2. */
/* Records the metatable on top of L as ctx->mt_ref[which] (L must be in
   an opener: the ctx comes from the registry). */
void corio_class_ref(lua_State *L, int which);
void corio_class_retry(lua_State *L, const char *name,
                       const luaL_Reg *methods, const luaL_Reg *retry_methods,
                       const luaL_Reg *meta);

/* luaL_checkudata with a fast path; the error on a mismatch is the same.
   Only for functions registered with corio_setfuncs (ctx upvalue). */
void *corio_checkudata(lua_State *L, int idx, const char *tname);
void *corio_testudata(lua_State *L, int idx, const char *tname); /* NULL */

/* The hot classes (channel, semaphore) begin their struct with a pointer
   to their metatable's name literal: checking self costs two API calls
   and a compare, no metatable lookup. A foreign userdata cannot hold that
   address by chance; on a mismatch the error is corio_checkudata's. */
static inline void *corio_checktagged(lua_State *L, int idx,
                                      const char *tname, size_t size) {
  void *p = lua_touserdata(L, idx);
  if (p && lua_rawlen(L, idx) == size && *(const char *const *)p == tname)
    return p;
  return corio_checkudata(L, idx, tname);
}

/* The one error type. Pushes a new error table {kind, message, code}. */
void corio_error_push(lua_State *L, const char *kind, const char *code,
                      const char *fmt, ...);
int corio_error_raise(lua_State *L, const char *kind, const char *fmt, ...);
/* Pushes nil and a new error: `return corio_fail(L, "closed", ...)`. */
int corio_fail(lua_State *L, const char *kind, const char *fmt, ...);
/* 1 if the value at idx is a corio error (of this kind, unless NULL). */
int corio_is_error(lua_State *L, int idx, const char *kind);

/* Options: a trailing table. idx may be none/nil (no options). Unknown keys
   and wrong types raise, naming fname. */
int corio_opt_present(lua_State *L, int idx, const char *fname,
                      const char *const allowed[]);
double corio_opt_number(lua_State *L, int idx, const char *key, double def,
                        const char *fname);
/* A number option that must lie in [lo, hi] (def when absent). */
double corio_opt_range(lua_State *L, int idx, const char *key, double def,
                       double lo, double hi, const char *fname);
const char *corio_opt_string(lua_State *L, int idx, const char *key,
                             const char *def, const char *fname);
/* The {timeout = s} option of a wait: seconds, or -1 for none. */
double corio_opt_timeout(lua_State *L, int idx, const char *fname);
/* checks a duration argument (number >= 0, not NaN) */
double corio_check_seconds(lua_State *L, int arg);

/* A budget of slots with a FIFO of tasks waiting for one (io.c). */
typedef struct corio_budget {
  int used, max;
  corio_link waiters;
  const char *what;        /* the waiting_on word: "io budget" ... */
} corio_budget;

/* ----------------------------------------------------------- runtime.c */

struct corio_rt {
  uv_loop_t loop;
  uv_timer_t uvtimer;      /* drives the heap where there is no timerfd */
  uv_poll_t tpoll;         /* polls tfd */
  int tfd;                 /* Linux timerfd armed at the next deadline */
  corio_ctx *ctx;
  lua_State *L;            /* the state rt:run() was called from */
  corio_task *current;     /* the task running now, or NULL */
  corio_task *main;
  corio_link ready;        /* FIFO of READY tasks */
  corio_link batch_end;    /* marker ending the batch being run (linked in
                              ready only while a batch runs) */
  corio_link unobserved;   /* corio_failure nodes (task.c): failed tasks
                              nobody joined yet */
  corio_link deferred;     /* corio_deferred nodes queued by finalizers */
  int gc_tried;            /* collected once since the last progress */
  corio_timer **heap;      /* min-heap on (due, seq) */
  int heap_n, heap_cap;
  uint32_t timer_seq;
  uint64_t vnow;           /* virtual clock, ns */
  uint64_t armed_due;      /* what uvtimer is armed for, 0 = stopped */
  int virtual_clock;
  int running;             /* inside rt:run(), or started by rt:start */
  int reaping;             /* main finished: the rest are being cancelled */
  int deadlock_ref;        /* the deadlock error, LUA_NOREF if none */
  int pending_ref;         /* errors of collected, unobserved failed tasks
                              waiting to be reported (a list), or NOREF */
  int loop_open;           /* uv_loop_init succeeded and not yet closed */
  int close_after_run;     /* corio.run's private runtime */
  int on_error_ref;        /* user error handler, LUA_NOREF: default */
  int on_log_ref;          /* corio.log's sink, LUA_NOREF: stderr */
  int trace_ref;           /* corio.trace hook, or LUA_NOREF */
  int context_ref;         /* weak table task -> context, or LUA_NOREF */
  int max_tasks;           /* 0: no limit */
  int debug;               /* record where each task was spawned */
  int in_trace;            /* the trace hook is running */
  int dump_sig;            /* dump_on: the signal that prints the dump */
  int dump_init;           /* dump_handle is initialized */
  uv_signal_t dump_handle;
  corio_budget io;         /* max_io: I/O operations in flight (io.c) */
  corio_budget tasks;      /* max_tasks: live tasks, if max > 0 */
  /* Live tasks are anchored in a table at slots from a C free list
     (task.c), and slot_task[slot] is the task (the live set, walked by
     corio_live_tasks); finished tasks' coroutines wait in an idle pool
     for reuse until the next collection. */
  int slots_ref;
  int kept_ref;            /* Lua 5.4: weak-key table task -> outcome */
  int *slot_free;
  corio_task **slot_task;
  int slot_nfree, slot_top, slot_cap;
  int idle_ref;            /* weak table 1..nidle of idle coroutines */
  int nidle;
  corio_link io_objects;   /* corio_io_object nodes (io.c): torn down
                              when run returns and when collected */
  int tick_every;          /* task steps between two ticks (fairness) */
  int tick_left;           /* steps until the next tick */
  uint64_t tick_ns;        /* real time of the last tick */
  double io_timeout;
  int max_io;
  int workers;
  int queue;
  char init[128];          /* option init: module each worker requires */
  struct corio_pool *pool; /* the default pool (corio.blocking), or NULL */
  corio_link pools;        /* every pool of this runtime (pool.c) */
  /* counters for corio.stats() */
  lua_Integer n_spawned, n_done, n_failed, n_cancelled, n_live;
  /* host-loop mode (host.c) */
  int host;                /* CORIO_HOST_* */
  int host_ref;            /* {rt while started, main, the run's error} */
  /* CORIO_GC_TORTURE=n (a test aid, read when the runtime is made): a
     full collection after a random one of every n task steps */
  int gc_torture;
  int gc_left;             /* steps until the next forced collection */
  uint32_t gc_rand;        /* its pseudo-random sequence */
};

/* The task whose coroutine is L, if L is the running task of the runtime
   running on this thread; NULL otherwise (not in a task, a nested
   coroutine, another Lua state): then take the slow path. */
static inline corio_task *corio_task_running(lua_State *L) {
  corio_rt *rt = corio_running;
  corio_task *t = rt ? rt->current : NULL;
  return t && t->co == L ? t : NULL;
}

/* Queue d (no-op if already queued); see corio_deferred. */
void corio_rt_defer(corio_rt *rt, corio_deferred *d);

/* The running runtime, or a raise naming fname when there is none. */
corio_rt *corio_rt_get(lua_State *L, const char *fname);
void corio_rt_push_ready(corio_rt *rt, corio_task *t);
/* Report the error object on top of L (popped) through the handler. */
void corio_rt_report_value(lua_State *L, corio_rt *rt);
/* Report a failure nobody observed through the runtime's error handler. */
void corio_rt_report(lua_State *L, corio_rt *rt, corio_task *t);
/* From a task's __gc: queue its error; the scheduler reports it (no user
   code runs inside a finalizer, nor during lua_close). */
void corio_rt_defer_report(lua_State *L, corio_rt *rt, corio_task *t);
/* The same for the value on top of L (popped). */
void corio_rt_defer_value(lua_State *L, corio_rt *rt);

/* A run's phases, shared by rt:run and the host loop (host.c): begin
   binds rt to L and spawns main (pushed); drive runs the scheduler
   protected, with rt bound by the caller, and sets *done when every
   task has finished (an error that escaped is left on top of L, after the
   tasks were cancelled and driven to their end); end reports what nobody
   observed, tears the run down and returns its status: not LUA_OK with
   the run's own error on top of L (escaped, or the deadlock), LUA_OK when
   main's outcome is the run's. */
enum { CORIO_DRIVE_RUN,    /* until done, blocking (rt:run) */
       CORIO_DRIVE_STEP,   /* never blocks; at most one batch (rt:step) */
       CORIO_DRIVE_CANCEL  /* cancel every task, then as RUN (rt:close) */
};
/* bind makes rt the runtime running (ctx->rt, corio_running) and returns
   the one it replaces; unbind puts that one back (end does it first). */
corio_rt *corio_rt_bind(corio_rt *rt);
void corio_rt_unbind(corio_rt *rt, corio_rt *outer);
void corio_rt_begin(lua_State *L, corio_rt *rt, int fnidx, int nargs);
int corio_rt_drive(lua_State *L, corio_rt *rt, int how, int *done);
int corio_rt_end(lua_State *L, corio_rt *rt, int st, corio_rt *outer);

/* -------------------------------------------------------------- host.c */

/* rt->host: not started by rt:start (or run by rt:run), started, inside
   rt:step (or rt:close driving it), finished (rt:result holds). */
enum { CORIO_HOST_NONE, CORIO_HOST_STARTED, CORIO_HOST_STEPPING,
       CORIO_HOST_DONE };
/* rt:close on a started runtime: cancel every task and run to the end. */
void corio_host_cancel(lua_State *L, corio_rt *rt);

/* -------------------------------------------------------------- task.c */

corio_task *corio_check_task(lua_State *L, int idx);
/* The runtime's slot table and idle pool: made by rt_new, freed by the
   runtime's __gc. The pool keeps at most CORIO_IDLE_MAX coroutines (about
   1 KiB each: enough for a server's wave of short tasks), weakly: the
   collector takes them back like other garbage. */
#define CORIO_IDLE_MAX 1024
void corio_task_slots_init(lua_State *L, corio_rt *rt);
void corio_task_slots_free(lua_State *L, corio_rt *rt);
/* Spawns fn (at fnidx, followed by nargs arguments at the top of L) as a new
   task of rt, inside scope parent (or NULL), named name (NULL: default).
   Pushes the task object and returns it. */
corio_task *corio_task_spawn(lua_State *L, corio_rt *rt, int fnidx, int nargs,
                             const char *name, corio_scope *parent);
/* Parses ([opts,] fn, ...) from index `first` (opts: {name =}) and spawns
   into parent (NULL: owned by the runtime); pushes the task, returns 1.
   Past max_tasks a task waits for a slot and `self` (the calling Lua C
   function, registered with await=2) runs again. */
int corio_spawn_args(lua_State *L, int first, corio_rt *rt,
                     corio_scope *parent, lua_CFunction self);
/* Calls the corio.trace hook with (event, info about t) (observe.c). */
void corio_trace(lua_State *L, corio_rt *rt, const char *event,
                 corio_task *t);
/* Pushes t's outcome (t has finished, its object is at dst's index idx)
   onto dst: mode 1 (wait) gives
   true, results... | false, err; mode 0 (join) gives results... | err
   with *raise set. Returns the count. Marks the outcome observed. */
int corio_task_outcome(lua_State *dst, corio_task *t, int idx, int mode,
                       int *raise);
/* The task t stands for: itself, or for the body of a protected call on
   PUC 5.1 (CORIO_TF_INLINE), the task that made the call. */
corio_task *corio_task_logical(corio_task *t);
/* Pushes the task object of a live task (or a finished one that is still
   referenced); used by corio.current() and tasks(). */
void corio_task_push(lua_State *L, corio_task *t);
const char *corio_task_name(lua_State *L, corio_task *t); /* pushes it too */
const char *corio_task_status(const corio_task *t);

corio_task *corio_await_begin(lua_State *L, const char *fname);
/* Same, but never raises a pending cancellation (for waits that finish a
   protocol, like a nursery waiting for its children). */
corio_task *corio_await_begin_nocancel(lua_State *L, const char *fname);
int corio_await(lua_State *L, corio_task *t, const char *what,
                corio_abort_fn abort, void *obj, double timeout);
/* Like corio_await, for a call that waits for a resource before it can
   even start (an I/O budget slot): woken by corio_wake_retry, fn is
   called again with the same arguments; a timeout returns nil, err; a
   raise raises. fn must be registered with await=2. */
int corio_await_retry(lua_State *L, corio_task *t, lua_CFunction fn,
                      const char *what, corio_abort_fn abort, void *obj,
                      double timeout);
void corio_wake_retry(corio_task *t);
/* Park t at the back of the ready queue (corio.yield, sleep(0)). */
int corio_yield_now(lua_State *L, corio_task *t);
lua_State *corio_wake_stack(corio_task *t, int n);
void corio_wake(corio_task *t, int nres);
/* corio_wake keeps t->wait.abort so that a cancellation arriving before t
   runs can still undo the wake (abort(t, 1)). A wake that hands nothing
   back (nil, err results) should clear t->wait.abort first. */
void corio_wake_raise(corio_task *t);    /* error object on top of t->co */
/* Deliver the task's pending cancellation if it is parked (or woken but
   not yet run) and its wait allows it; no-op otherwise. */
void corio_task_poke(corio_task *t);
/* The same when the caller knows t is cancelled by `by`. */
void corio_task_poke_by(corio_task *t, corio_scope *by);
/* t:cancel(): flags t and wakes it and its scopes' tasks (not through a
   shield); nothing when t has finished. */
void corio_task_cancel(corio_task *t);
/* corio_task_cancelled_by at a checkpoint: also fires the deadlines on
   the way that have passed but whose timer has not run yet. */
corio_scope *corio_task_checkpoint(corio_task *t);
/* The same, answering at once for a task in no scope (the common case
   on fast paths): only its own t:cancel() can apply. */
static inline int corio_task_cancel_pending(corio_task *t) {
  if (!t->scope && !corio_task_parent(t))
    return (t->flags & CORIO_TF_CANCEL) != 0;
  return corio_task_checkpoint(t) != NULL;
}
/* The scope whose cancellation applies to t now, or NULL. A t:cancel() of
   t or of a task it runs inside (through nurseries) is reported as the
   pseudo-scope CORIO_SELF_CANCEL. */
#define CORIO_SELF_CANCEL ((corio_scope *)(void *)&corio_raise_mark)
corio_scope *corio_task_cancelled_by(const corio_task *t);
/* Pushes the cancellation error for a cancellation by `by`. */
void corio_push_cancel(lua_State *L, corio_scope *by);
/* Called by the scheduler when a task has finished (results or error on
   t->co); wakes joiners, updates counters, unanchors. */
void corio_task_finish(lua_State *L, corio_task *t, int status, int nres);
/* The live tasks in spawn order, for walks that may run code (which can
   finish or spawn tasks): pushes a scratch userdata of n entries onto L,
   sets *out to it and returns n. corio_live_get gives an entry's task
   while it is still live, else NULL. */
typedef struct corio_live { int slot; lua_Integer id; } corio_live;
int corio_live_list(lua_State *L, corio_rt *rt, corio_live **out);
corio_task *corio_live_get(corio_rt *rt, const corio_live *e);
/* The task of a node of rt->unobserved. */
corio_task *corio_failure_task(corio_link *n);

/* -------------------------------------------------------------- time.c */

uint64_t corio_now_ns(corio_rt *rt);
/* now + secs, rounded up so a deadline is never early. */
uint64_t corio_deadline(corio_rt *rt, double secs);
void corio_timer_arm(corio_rt *rt, corio_timer *tm, uint64_t due);
void corio_timer_disarm(corio_rt *rt, corio_timer *tm);
static inline int corio_timer_armed(const corio_timer *tm) {
  return tm->index >= 0;
}
/* Fire every timer due by `now` (the runtime's clock); returns how many
   fired. */
int corio_timers_run(corio_rt *rt, uint64_t now);
/* Next deadline, or UINT64_MAX with no timer. */
uint64_t corio_timers_next(corio_rt *rt);
void corio_timers_free(corio_rt *rt);
/* The real clock's wake-up source: set up with the loop, closed after it.
   corio_clock_block runs the loop once, returning on I/O or at `next`. */
void corio_clock_init(corio_rt *rt);
void corio_clock_block(corio_rt *rt, uint64_t next);
/* The same without waiting (the host loop's step): runs the loop once
   with the wake-up source armed, so the backend fd turns readable at
   next (Linux timerfd). */
void corio_clock_poll(corio_rt *rt, uint64_t next);
void corio_clock_close(corio_rt *rt);

/* ------------------------------------------------------------- scope.c */

void corio_scope_init(corio_scope *s, corio_rt *rt, int kind);
/* Push s as t's innermost scope / pop it (s must be innermost). */
void corio_scope_push(corio_task *t, corio_scope *s);
void corio_scope_pop(corio_task *t, corio_scope *s);
/* Cancel s and everything inside it; wakes parked tasks. */
void corio_scope_cancel(corio_scope *s);
/* Deliver the cancellation by `by` (s itself, or CORIO_SELF_CANCEL) to
   every task inside s; no flag is set. Iterative, linear in the tree. */
void corio_scope_poke_tree(corio_scope *s, corio_scope *by);
/* Detach s from the tree (GC of an abandoned scope). */
void corio_scope_detach(corio_scope *s);
/* A child task of nursery s finished (status CORIO_DONE/FAILED/...). */
void corio_scope_child_done(lua_State *L, corio_scope *s, corio_task *t);
void corio_scope_on_deadline(corio_rt *rt, corio_timer *tm);

/* ---------------------------------------------------------------- io.c */

/* The deadline of an I/O call from its options table at idx (none/nil:
   the runtime's io_timeout). allowed: the option names the call takes
   (NULL: only "timeout"). Raises on bad options or outside a runtime. */
double corio_io_timeout(lua_State *L, int idx, const char *fname,
                        const char *const allowed[]);
/* The error object of a libuv status (kind "closed", "cancelled" or
   "io"; code = the errno name), as "<what>: <strerror>". */
void corio_io_error_push(lua_State *L, int status, const char *what);
/* Pushes nil, that error; returns 2. */
int corio_io_fail(lua_State *L, int status, const char *what);
/* Wake t from an I/O wait with true (status 0) or nil, err of status /
   nil, err of kind "closed" ("<what>: closed while waiting"). Both clear
   the abort hook: nothing is handed back, a cancellation wins. */
void corio_io_wake_status(corio_task *t, int status, const char *what);
void corio_io_wake_closed(corio_task *t, const char *what);
/* t was woken to start over (corio_wake_retry) and has not run yet, but
   the object it waited on was closed meanwhile: its wait ends with nil,
   err "closed" instead of a call that would raise "use after close". */
void corio_io_unretry_closed(corio_task *t, const char *what);
/* The I/O budget (max_io). Take a slot before starting an operation in
   libuv; if corio_io_take returns 0, return corio_io_wait_slot(L, t, fn,
   timeout) from fn (registered with await=2): fn runs again, with its
   arguments, once a slot is handed over (taken for it). Give the slot
   back exactly once when the operation completes or is abandoned. */
int corio_io_take(corio_rt *rt);
void corio_io_give(corio_rt *rt);
/* The call that runs again after a budget wait owns the slot handed to
   it: corio_io_take claims it for the running task. A slot it does not
   claim is given back when its step ends (corio_budget_unclaimed, called
   by the scheduler), so a call that completes at once or raises loses
   none. */
void corio_budget_unclaimed(corio_task *t);
/* 1 if t (any pointer, never dereferenced) is parked in rt's budget
   queue. An object whose would-be user waits there for a slot can wake
   it early when it can serve it without one (data already buffered, a
   connection to accept): unlink t->link and corio_wake_retry(t). */
int corio_io_budget_waiting(corio_rt *rt, const corio_task *t);
int corio_io_wait_slot(lua_State *L, corio_task *t, lua_CFunction fn,
                       double timeout);
int corio_io_waiting(corio_rt *rt);
/* The same over any budget: take a slot (1) or not (0) — claimer, the
   running task, gets the slot handed to it by a wake; give one back (to
   the first waiter if any, woken to retry); park the current call until
   one is handed over (fn is called again, await=2). */
void corio_budget_init(corio_budget *b, int max, const char *what);
int corio_budget_take(corio_budget *b, corio_task *claimer);
void corio_budget_give(corio_budget *b);
int corio_budget_wait(lua_State *L, corio_task *t, corio_budget *b,
                      lua_CFunction fn, double timeout);
int corio_budget_waiting(const corio_budget *b);
/* A task woken with a slot (CORIO_TF_GRANTED) that did not claim it:
   give it back. The scheduler calls it after a step, and every await
   before it reuses t->wait. */
void corio_budget_unclaimed(corio_task *t);
/* libuv handles open on the loop, but the runtime's own (data == rt). */
int corio_io_handles(corio_rt *rt);

/* An I/O object whose libuv handles can outlive the tasks that use it (a
   child still being killed and reaped, the shutdown watcher) links this
   node into rt->io_objects. The runtime calls teardown(L, node) when run
   returns (every task has finished) and when it is collected, before it
   closes its loop; the node is unlinked first. teardown closes the
   object's handles with its own close callbacks (which free its memory
   and run no Lua code); it must not wait for anything but a bounded
   system call. */
typedef struct corio_io_object {
  corio_link link;
  void (*teardown)(lua_State *L, struct corio_io_object *o);
} corio_io_object;
void corio_io_register(corio_rt *rt, corio_io_object *o);
void corio_io_teardown(lua_State *L, corio_rt *rt);

/* ------------------------------------------------------------ signal.c */

/* "SIGTERM" -> SIGTERM, or 0 when unknown; and back (NULL when unknown). */
int corio_signal_number(const char *name);
const char *corio_signal_name(int num);
/* The signal named by argument arg; an argument error when unknown. */
int corio_check_signal(lua_State *L, int arg);
/* ----------------------------------------------- marshal.c, pool.c */

/* Values crossing between Lua states as bytes (see marshal.c). */
#define CORIO_MARSHAL_DEPTH 64                 /* nested tables */
#define CORIO_MARSHAL_MAX ((size_t)64 << 20)   /* bytes per message */
typedef struct corio_buf {
  char *p;
  size_t n, cap;
} corio_buf;
void corio_buf_free(corio_buf *b);
/* Encodes the n values from index first into b (replacing its contents).
   Never raises: returns -1 with "<what>[2].x: function ..." in err. */
int corio_marshal(lua_State *L, int first, int n, corio_buf *b,
                  const char *what, char *err, size_t errsz);
/* Pushes the values encoded in p; returns how many. May raise (memory). */
int corio_unmarshal(lua_State *L, const char *p, size_t n);

/* The thread pool: pool.c (the loop side: jobs, queue, Lua API) and
   worker.c (the threads). pool.c's top comment explains the design. */
typedef struct corio_pool corio_pool;
typedef struct corio_pool_worker corio_pool_worker;

/* a job's state (changes under the pool's mu) and outcome */
enum { CORIO_JOB_PENDING, CORIO_JOB_QUEUED, CORIO_JOB_RUNNING,
       CORIO_JOB_DONE };
enum { CORIO_JOB_OK, CORIO_JOB_ERROR, CORIO_JOB_FAIL };
#define CORIO_WORKER_CACHE 256  /* functions cached per worker */

/* A dumped function, shared by the jobs running it. Its reference count
   is touched on the loop thread only: a worker reads the bytes while its
   job, which holds a reference, runs. */
typedef struct corio_pool_code {
  int refs;
  int id;           /* unique in this Lua state: the workers' cache key */
  size_t n;
  char bytes[1];
} corio_pool_code;

typedef struct corio_pool_job {
  corio_link link;        /* overflow list, or the free list */
  corio_link all;         /* p->jobs while submitted */
  struct corio_pool_job *next; /* the done list */
  corio_pool *pool;
  corio_task *waiter;     /* NULL once orphaned */
  corio_pool_worker *worker; /* while RUNNING (under mu) */
  corio_pool_code *code;
  const char *fname;      /* "blocking" or "run", for messages */
  corio_buf buf;          /* the arguments, then the results */
  int state;              /* CORIO_JOB_PENDING ... (under mu) */
  int status;             /* CORIO_JOB_OK ... once DONE */
} corio_pool_job;

struct corio_pool_worker {
  corio_pool *pool;
  uv_thread_t tid;
  int interrupt;          /* atomic: stop the running code */
  lua_State *current;     /* atomic: the coroutine it runs, NULL: main */
  /* under mu */
  lua_State *L;           /* its state, once made */
  int running;            /* it runs Lua code (init or a job) */
  /* worker thread only */
  int init_ok;
  int spin_ns;            /* current polling budget (adaptive) */
  int spin_skip;          /* waits since the last probe */
  int cache_ref;          /* registry table: code id -> function */
  int cache_pos;
  int cache_ids[CORIO_WORKER_CACHE];
};

struct corio_pool {
  uv_mutex_t mu;
  uv_cond_t cv;           /* idle workers wait here */
  /* under mu */
  corio_pool_job **ring;  /* QUEUED jobs, FIFO */
  int cap, head, count;
  int idle, busy, exited, stopping, overflow_n;
  corio_pool_job *done_head, *done_tail;
  /* loop thread only */
  uv_async_t async;
  corio_rt *rt;
  corio_link link;        /* in rt->pools */
  corio_link overflow;    /* PENDING jobs: the ring was full */
  corio_link jobs;        /* every submitted job not yet freed */
  corio_link free;
  int nfree;
  struct pool_box *box;   /* the corio.Pool object, if any */
  corio_pool_worker **workers;
  int nworkers, started;
  int nwait, refd, closed;
  lua_Integer jobs_done;
  char init[128];
  char *path, *cpath;     /* the loop state's package paths */
};

/* pool.c: the next queued job, taken off the ring (mu held, count > 0). */
corio_pool_job *corio_pool_take(corio_pool *p);
/* worker.c: starts one more worker thread (loop thread); 0 on failure. */
int corio_worker_start(corio_pool *p);
/* worker.c: stops what w runs at its next VM instruction (mu held). */
void corio_worker_interrupt(corio_pool_worker *w);

/* Stops every pool of rt and joins its threads (a job stuck in a C call
   delays this). No Lua code runs. Called before the loop closes. */
void corio_pool_rt_close(corio_rt *rt);
/* Whether a task of rt waits on a pool job (real work in flight). For
   rt_loop: on a virtual clock, time must not jump while this holds. */
int corio_pool_busy(corio_rt *rt);
/* Adds workers, workers_busy, jobs_queued, jobs_done to the table on top. */
void corio_pool_stats(lua_State *L, corio_rt *rt);
/* ------------------------------------------------------------ stream.c */

/* One stream implementation (corio.Stream) over any uv_stream_t: TCP,
   Unix sockets, process pipes, stdio. A file that makes the libuv handle
   (tcp.c, stdio.c, process.c for child pipes) does, in this order:

     corio_stream *s = corio_stream_push(L, rt, CORIO_SK_PIPE); // pushes
     uv_pipe_init(&rt->loop, (uv_pipe_t *)corio_stream_handle(s), 0);
     corio_stream_mark(s);   // the handle exists: closing must uv_close it
     ... uv_pipe_open / uv_spawn's stdio / a connect ...
     corio_stream_opened(s); // usable: reading ahead starts

   If the init fails, return without marking: the userdata's __gc frees
   the box. Between mark and opened the stream must not be read (a
   connect in progress). corio_stream_close(s) closes it (idempotent);
   parked readers and writers get nil, err "closed". The kind names the
   waits: "tcp read"/"tcp write", "unix ...", "pipe ...", "stdio ...". */
enum { CORIO_SK_TCP, CORIO_SK_UNIX, CORIO_SK_PIPE, CORIO_SK_STDIO };
typedef struct corio_stream corio_stream;
corio_stream *corio_stream_push(lua_State *L, corio_rt *rt, int kind);
uv_handle_t *corio_stream_handle(corio_stream *s);
void corio_stream_mark(corio_stream *s);
void corio_stream_opened(corio_stream *s);
/* A stream nobody reads (stdout, a child's stdin): no reading ahead. */
void corio_stream_set_writeonly(corio_stream *s);
void corio_stream_close(corio_stream *s);
/* The stream at idx of the running runtime; raises naming fname when it
   is not a stream, is closed, or belongs to another runtime. */
corio_stream *corio_stream_check(lua_State *L, int idx, const char *fname);
/* The open stream at idx, or NULL (not a stream, or closed). */
corio_stream *corio_stream_test(lua_State *L, int idx);
corio_rt *corio_stream_runtime(const corio_stream *s);
int corio_stream_kind(const corio_stream *s); /* CORIO_SK_* */
/* fn(arg) runs once when the stream's memory is freed (its handle is
   closed, by close, __gc or the runtime's teardown): no Lua code. */
void corio_stream_on_free(corio_stream *s, void (*fn)(void *), void *arg);

/* --------------------------------------------------------------- dns.c */

struct sockaddr;
/* Pushes host, port of an IPv4/IPv6 address (nil, nil otherwise). */
int corio_addr_push(lua_State *L, const struct sockaddr *sa);
/* 1 if host is a literal IPv4 or IPv6 address. */
int corio_addr_literal(const char *host);

/* -------------------------------------------------- per-file openers */

/* Called by module.c, in this order. corio_open_ctx creates the per-state
   context and the error metatable; the rest add to the module table on
   top of the stack. */
void corio_open_ctx(lua_State *L);
void corio_open_core(lua_State *L);

void corio_open_runtime(lua_State *L);   /* each adds to the module table */
void corio_open_task(lua_State *L);      /* on top of the stack */
void corio_open_time(lua_State *L);
void corio_open_scope(lua_State *L);
void corio_open_sync(lua_State *L);
void corio_open_channel(lua_State *L);
void corio_open_observe(lua_State *L);
void corio_open_fs(lua_State *L);
void corio_open_file(lua_State *L);      /* after fs */
void corio_open_process(lua_State *L);
void corio_open_signal(lua_State *L);
void corio_open_pool(lua_State *L);
void corio_open_stream(lua_State *L);
void corio_open_tcp(lua_State *L);
void corio_open_udp(lua_State *L);
void corio_open_dns(lua_State *L);
void corio_open_stdio(lua_State *L);
void corio_open_host(lua_State *L);      /* after runtime */

/* observe.c: a readable tree of the runtime's tasks (pushes a string). */
void corio_dump_push(lua_State *L, corio_rt *rt);

#endif
