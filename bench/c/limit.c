/*
 * bench/c/limit.c: the "limit" implementation for the core workloads, a
 * minimal coroutine scheduler in C over bare Lua 5.4 coroutines, built by
 * bench/rt_limit.lua. It shows what is physically possible on this Lua:
 * it does only what the workloads need, the way corio must (FIFO ready
 * queue, FIFO hand-off semaphore and channel, joinable results, sleeps
 * that never wake early), and nothing else: no cancellation, no
 * deadlines, no error handling beyond aborting the run, one scheduler per
 * process, one run at a time. Lua 5.4 only (lua_resume's signature, the
 * extra space).
 *
 * API, as bench/rt_luv.lua: run(main, ...), spawn(fn, ...) -> task,
 * task:join() -> results, yield(), now(), sleep(secs), semaphore(n) with
 * :acquire() -> the semaphore itself and :release(), channel(cap) with
 * :send(v) -> true and :recv() -> v.
 *
 * Design: a task handle is its bare thread; every thread shares one
 * metatable whose __index has `join` (so this module takes over the thread
 * metatable of the state that loads it). While a task is unfinished its
 * thread is anchored in one Lua table at a slot taken from a C free list,
 * and its C state (struct task, from a C free list, outside the Lua heap)
 * hangs off the thread's extra space (LUA_EXTRASPACE); a finished task's
 * extra space holds a "done" mark and its results are all its stack holds.
 * The ready queue is a C ring of task pointers. A task waits by queueing
 * itself somewhere and returning lua_yield(L, 0) from the C function it
 * called; whoever wakes it pushes the values that wait returns straight
 * onto its (suspended) stack and sets nargs, and the scheduler resumes it
 * with them. Semaphores and channels are tables of C closures over their
 * state; a channel's ring is a Lua table (an upvalue), and a parked
 * sender's value stays in its own C frame (stack index 2) until a
 * receiver takes it. Coroutines are not reused. Sleeps are a binary heap of deadlines on CLOCK_MONOTONIC; when
 * nothing is ready the loop sleeps to the first one (clock_nanosleep,
 * absolute), and due timers fire after each batch of ready tasks.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lua.h"
#include "lauxlib.h"

typedef struct task {
  lua_State *co;
  struct task *next;       /* link in the one wait queue it is on; free list */
  struct task *jhead, *jtail; /* tasks waiting in join */
  int slot;                /* anchor slot */
  int nargs;               /* values on co's stack for the next resume */
} task;

/* A thread's task: the task while it runs, &done_mark once it has
 * finished, NULL for a thread that is no task. */
#define TASK(co) (*(task **)lua_getextraspace(co))
static task done_mark;
#define DONE (&done_mark)

typedef struct { task *head, *tail; } waitq;

typedef struct { double at; unsigned long seq; task *t; } timer;

typedef struct {
  int n;
  waitq waiters;
} sem;

typedef struct {
  int cap, head, count;
  waitq senders, receivers;
} chan;

/* Scheduler state: one per process. */
static task *current;
static task **rq;              /* ready ring, capacity rq_cap (power of 2) */
static size_t rq_head, rq_n, rq_cap;
static timer *heap;
static size_t heap_n, heap_cap;
static unsigned long timer_seq;
static int *free_slots;        /* anchor slots free for reuse */
static int nfree, free_cap, next_slot;
static int anchors_ref = LUA_NOREF; /* registry: the anchor table */
static task *spare;            /* free task structs */

static void *grow(lua_State *L, void *p, size_t size) {
  void *q = realloc(p, size);
  if (!q) luaL_error(L, "limit: out of memory");
  return q;
}

/* Queues ------------------------------------------------------------- */

static void wake(lua_State *L, task *t, int nargs) {
  if (rq_n == rq_cap) {
    size_t cap = rq_cap ? rq_cap * 2 : 1024;
    task **r = grow(L, NULL, cap * sizeof *r);
    for (size_t i = 0; i < rq_n; i++) r[i] = rq[(rq_head + i) & (rq_cap - 1)];
    free(rq);
    rq = r;
    rq_head = 0;
    rq_cap = cap;
  }
  t->nargs = nargs;
  rq[(rq_head + rq_n++) & (rq_cap - 1)] = t;
}

static void qpush(waitq *q, task *t) {
  t->next = NULL;
  if (q->tail) q->tail->next = t; else q->head = t;
  q->tail = t;
}

static task *qpop(waitq *q) {
  task *t = q->head;
  if (t) {
    q->head = t->next;
    if (!q->head) q->tail = NULL;
  }
  return t;
}

/* The running task, checked to be the caller. */
static task *self(lua_State *L) {
  task *t = current;
  if (!t || t->co != L) luaL_error(L, "limit: not called from a task");
  return t;
}

/* Tasks ---------------------------------------------------------------- */

static void anchor(lua_State *L, task *t, int idx) {
  int slot;
  if (nfree) slot = free_slots[--nfree];
  else slot = ++next_slot;
  t->slot = slot;
  lua_rawgeti(L, LUA_REGISTRYINDEX, anchors_ref);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
}

static void unanchor(lua_State *L, task *t) {
  if (nfree == free_cap) {
    free_cap = free_cap ? free_cap * 2 : 1024;
    free_slots = grow(L, free_slots, (size_t)free_cap * sizeof *free_slots);
  }
  free_slots[nfree++] = t->slot;
  lua_rawgeti(L, LUA_REGISTRYINDEX, anchors_ref);
  lua_pushnil(L);
  lua_rawseti(L, -2, t->slot);
  lua_pop(L, 1);
}

static void release(task *t) {
  t->next = spare;
  spare = t;
}

/* spawn(fn, ...) -> task: leaves the task's thread on L's stack. */
static lua_State *spawn_task(lua_State *L) {
  int n = lua_gettop(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  task *t = spare;
  if (t) spare = t->next;
  else t = grow(L, NULL, sizeof *t);
  lua_State *co = lua_newthread(L);
  t->co = co;
  t->jhead = t->jtail = NULL;
  TASK(co) = t;
  lua_rotate(L, 1, 1);         /* thread, fn, args... */
  lua_xmove(L, co, n);         /* fn and args onto the new thread */
  anchor(L, t, 1);
  wake(L, t, n - 1);
  return co;
}

static int l_spawn(lua_State *L) {
  spawn_task(L);
  return 1;
}

/* Copies the results of the finished task `co` onto `to`'s stack. */
static int push_results(lua_State *co, lua_State *to) {
  int n = lua_gettop(co);
  if (!n) return 0;
  luaL_checkstack(co, n, "limit: too many results");
  luaL_checkstack(to, n, "limit: too many results");
  for (int i = 1; i <= n; i++) lua_pushvalue(co, i);
  lua_xmove(co, to, n);
  return n;
}

/* Marks the task done, hands its results (all its stack holds) to the
 * joiners and lets it go: only its handle keeps the thread alive now. */
static void finish(lua_State *L, task *t) {
  task *j;
  TASK(t->co) = DONE;
  while ((j = t->jhead)) {
    t->jhead = j->next;
    wake(L, j, push_results(t->co, j->co));
  }
  unanchor(L, t);
  release(t);
}

static int l_join(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  if (!co) luaL_typeerror(L, 1, "task");
  task *t = TASK(co);
  if (t == DONE) return push_results(co, L);
  if (!t) luaL_argerror(L, 1, "not a task");
  task *me = self(L);
  me->next = NULL;
  if (t->jtail) t->jtail->next = me; else t->jhead = me;
  t->jtail = me;
  return lua_yield(L, 0); /* finish() pushes the results */
}

static int l_yield(lua_State *L) {
  wake(L, self(L), 0);
  return lua_yield(L, 0);
}

/* Clock and sleep ------------------------------------------------------- */

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, mono());
  return 1;
}

static int before(const timer *a, const timer *b) {
  return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static int l_sleep(lua_State *L) {
  double secs = luaL_checknumber(L, 1);
  task *t = self(L);
  if (heap_n == heap_cap) {
    heap_cap = heap_cap ? heap_cap * 2 : 1024;
    heap = grow(L, heap, heap_cap * sizeof *heap);
  }
  timer x = { mono() + (secs > 0 ? secs : 0), timer_seq++, t };
  size_t i = heap_n++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!before(&x, &heap[p])) break;
    heap[i] = heap[p];
    i = p;
  }
  heap[i] = x;
  return lua_yield(L, 0);
}

static task *heap_pop(void) {
  task *t = heap[0].t;
  timer x = heap[--heap_n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= heap_n) break;
    if (c + 1 < heap_n && before(&heap[c + 1], &heap[c])) c++;
    if (!before(&heap[c], &x)) break;
    heap[i] = heap[c];
    i = c;
  }
  if (heap_n) heap[i] = x;
  return t;
}

static void fire_due(lua_State *L) {
  double now = mono();
  while (heap_n && heap[0].at <= now) wake(L, heap_pop(), 0);
}

static void wait_first_timer(void) {
  double at = heap[0].at;
  struct timespec ts;
  ts.tv_sec = (time_t)at;
  ts.tv_nsec = (long)((at - (double)ts.tv_sec) * 1e9) + 1;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {}
}

/* Semaphore and channel objects are plain tables whose methods are C
 * closures over the object's C state (upvalue 1, a userdata) and, for a
 * channel, its ring (upvalue 2, a table): a method call is one table
 * lookup, and reaching the state or the ring is no lookup at all. */
#define STATE lua_upvalueindex(1)
#define RING lua_upvalueindex(2)

static void method(lua_State *L, const char *name, lua_CFunction f, int nup) {
  for (int i = 0; i < nup; i++) lua_pushvalue(L, -nup);
  lua_pushcclosure(L, f, nup);
  lua_setfield(L, -2 - nup, name);
}

/* Semaphore: FIFO; a release hands its permit to the first waiter --- */

/* The permit is the semaphore itself: `p:release()` works as in corio. */
static int l_acquire(lua_State *L) {
  sem *s = lua_touserdata(L, STATE);
  if (s->n > 0) { /* waiters exist only while n == 0 */
    s->n--;
    lua_settop(L, 1);
    return 1;
  }
  qpush(&s->waiters, self(L));
  return lua_yield(L, 0); /* release() pushes the semaphore */
}

static int l_release(lua_State *L) {
  sem *s = lua_touserdata(L, STATE);
  task *w = qpop(&s->waiters);
  if (w) {
    lua_settop(L, 1);
    lua_pushvalue(L, 1);
    lua_xmove(L, w->co, 1);
    wake(L, w, 1);
  } else {
    s->n++;
  }
  return 0;
}

static int l_semaphore(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  lua_createtable(L, 0, 2);
  sem *s = lua_newuserdatauv(L, sizeof(sem), 0);
  memset(s, 0, sizeof *s);
  s->n = (int)n;
  method(L, "acquire", l_acquire, 1);
  method(L, "release", l_release, 1);
  lua_pop(L, 1);
  return 1;
}

/* Channel: a ring in a table, FIFO queues of parked tasks ------------ */

static int l_send(lua_State *L) {
  chan *c = lua_touserdata(L, STATE);
  lua_settop(L, 2);
  task *r = qpop(&c->receivers); /* receivers wait only while empty */
  if (r) {
    lua_xmove(L, r->co, 1);
    wake(L, r, 1);
  } else if (c->count < c->cap) {
    int i = c->head + c->count++;
    lua_rawseti(L, RING, (i < c->cap ? i : i - c->cap) + 1);
  } else {
    qpush(&c->senders, self(L));
    return lua_yield(L, 0); /* recv() takes index 2, pushes true */
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_recv(lua_State *L) {
  chan *c = lua_touserdata(L, STATE);
  if (c->count == 0) {
    qpush(&c->receivers, self(L));
    return lua_yield(L, 0); /* send() pushes the value */
  }
  int head = c->head;
  lua_rawgeti(L, RING, head + 1);      /* the value */
  task *s = qpop(&c->senders);         /* the ring was full: refill */
  if (s) {
    lua_pushvalue(s->co, 2);
    lua_xmove(s->co, L, 1);
    lua_rawseti(L, RING, head + 1);    /* the freed slot is the new tail */
    lua_pushboolean(s->co, 1);
    wake(L, s, 1);
  } else {
    lua_pushnil(L);
    lua_rawseti(L, RING, head + 1);
    c->count--;
  }
  c->head = head + 1 < c->cap ? head + 1 : 0;
  return 1;
}

static int l_channel(lua_State *L) {
  lua_Integer cap = luaL_checkinteger(L, 1);
  luaL_argcheck(L, cap >= 1 && cap <= 1 << 24, 1, "capacity must be 1..2^24");
  lua_createtable(L, 0, 2);
  chan *c = lua_newuserdatauv(L, sizeof(chan), 0);
  memset(c, 0, sizeof *c);
  c->cap = (int)cap;
  lua_createtable(L, (int)cap, 0);
  method(L, "send", l_send, 2);
  method(L, "recv", l_recv, 2);
  lua_pop(L, 2);
  return 1;
}

/* Run ------------------------------------------------------------------- */

static void new_anchors(lua_State *L) {
  luaL_unref(L, LUA_REGISTRYINDEX, anchors_ref);
  lua_newtable(L);
  anchors_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  nfree = 0;
  next_slot = 0;
}

/* Drops every task left: their threads become garbage once unanchored
 * (and no task any more for a handle kept somewhere). */
static void reset(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, anchors_ref);
  for (int i = 1; i <= next_slot; i++) {
    lua_State *co;
    if (lua_rawgeti(L, -1, i) == LUA_TTHREAD && (co = lua_tothread(L, -1))) {
      release(TASK(co));
      TASK(co) = NULL;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  rq_head = rq_n = 0;
  heap_n = 0;
  current = NULL;
  new_anchors(L);
}

static void step(lua_State *L, task *t) {
  int nres, st;
  current = t;
  st = lua_resume(t->co, L, t->nargs, &nres);
  if (st == LUA_YIELD) {
    if (nres) lua_pop(t->co, nres);
  } else if (st == LUA_OK) {
    int extra = lua_gettop(t->co) - nres; /* keep only the results */
    if (extra > 0) {
      lua_rotate(t->co, 1, -extra);
      lua_settop(t->co, nres);
    }
    finish(L, t);
  } else {
    const char *msg = lua_tostring(t->co, -1);
    luaL_traceback(L, t->co, msg ? msg : "(error object is not a string)", 0);
    reset(L);
    lua_error(L);
  }
}

static int l_run(lua_State *L) {
  if (current) return luaL_error(L, "limit: run inside run");
  lua_State *main = spawn_task(L); /* the stack is now just main's thread */
  while (TASK(main) != DONE) {
    if (rq_n == 0) {
      if (heap_n == 0) {
        reset(L);
        return luaL_error(L, "deadlock: every task waits and nothing can wake one");
      }
      wait_first_timer();
      fire_due(L);
      continue;
    }
    for (size_t batch = rq_n; batch > 0; batch--) {
      task *t = rq[rq_head];
      rq_head = (rq_head + 1) & (rq_cap - 1);
      rq_n--;
      step(L, t);
    }
    current = NULL;
    if (heap_n) fire_due(L);
  }
  reset(L);
  return push_results(main, L);
}

/* Module ---------------------------------------------------------------- */

int luaopen_limit(lua_State *L) {
  static const luaL_Reg task_m[] = { { "join", l_join }, { NULL, NULL } };
  static const luaL_Reg funcs[] = {
    { "run", l_run }, { "spawn", l_spawn }, { "yield", l_yield },
    { "now", l_now }, { "sleep", l_sleep }, { "semaphore", l_semaphore },
    { "channel", l_channel }, { NULL, NULL } };
  /* every thread: t:join(); threads made from now on copy the main
   * thread's extra space, so make it say "no task" */
  lua_pushthread(L);
  lua_newtable(L);
  lua_newtable(L);
  luaL_setfuncs(L, task_m, 0);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  TASK(lua_tothread(L, -1)) = NULL;
  lua_pop(L, 1);
  new_anchors(L);
  luaL_newlib(L, funcs);
  return 1;
}
