/*
 * time.c: the runtime's deadline heap, its clock (real or virtual),
 * corio.sleep and corio.now.
 *
 * One binary min-heap of corio_timer pointers per runtime, ordered by
 * (due, seq) so that timers due at the same instant fire in the order they
 * were armed. Timer nodes live inside tasks and scopes: arming allocates
 * nothing once the heap array has grown to the peak number of timers.
 * On the real clock the heap's next deadline wakes the loop through a
 * Linux timerfd armed at that exact nanosecond and watched by a uv_poll:
 * libuv's own timers count whole milliseconds, which would wake us up to a
 * millisecond late, or early (never allowed). Elsewhere one uv_timer wakes
 * us just before the deadline and the last millisecond is polled. On the
 * virtual clock the scheduler jumps straight to the next deadline.
 */
#include "corio.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/timerfd.h>
#include <unistd.h>
#endif

/* Without a timerfd, this close to a deadline the loop is polled. */
#define SPIN_NS 1000000u
/* With one, the wake-up is set this much after the deadline, so timers
   due within the same 100 us share one wake-up instead of costing one
   each (as the kernel's own timer slack does): never early, and late by
   at most this plus the scheduling delay. */
#define SLACK_NS 100000u


uint64_t corio_now_ns(corio_rt *rt) {
  return rt->virtual_clock ? rt->vnow : uv_hrtime();
}

/* The clock is 64-bit nanoseconds: a deadline past its end (about 584
   years of clock time; the virtual clock starts at 0) is never. */
uint64_t corio_deadline(corio_rt *rt, double secs) {
  double ns = ceil(secs * 1e9);
  uint64_t now = corio_now_ns(rt);
  if (!(ns < 1.8e19) || (uint64_t)ns >= UINT64_MAX - now) return UINT64_MAX;
  return now + (uint64_t)ns;
}

static int timer_less(const corio_timer *a, const corio_timer *b) {
  if (a->due != b->due) return a->due < b->due;
  return (int32_t)(a->seq - b->seq) < 0;
}

static void heap_set(corio_rt *rt, int i, corio_timer *tm) {
  rt->heap[i] = tm;
  tm->index = i;
}

static void heap_up(corio_rt *rt, int i) {
  corio_timer *tm = rt->heap[i];
  while (i > 0) {
    int p = (i - 1) / 2;
    if (!timer_less(tm, rt->heap[p])) break;
    heap_set(rt, i, rt->heap[p]);
    i = p;
  }
  heap_set(rt, i, tm);
}

static void heap_down(corio_rt *rt, int i) {
  corio_timer *tm = rt->heap[i];
  for (;;) {
    int c = 2 * i + 1;
    if (c >= rt->heap_n) break;
    if (c + 1 < rt->heap_n && timer_less(rt->heap[c + 1], rt->heap[c])) c++;
    if (!timer_less(rt->heap[c], tm)) break;
    heap_set(rt, i, rt->heap[c]);
    i = c;
  }
  heap_set(rt, i, tm);
}

/* A deadline of UINT64_MAX means never: such a timer is not armed at all,
   so a task sleeping forever counts as waiting on nothing (deadlock). */
void corio_timer_arm(corio_rt *rt, corio_timer *tm, uint64_t due) {
  if (corio_timer_armed(tm)) corio_timer_disarm(rt, tm);
  if (due == UINT64_MAX) return;
  if (rt->heap_n == rt->heap_cap) {
    int cap = rt->heap_cap ? rt->heap_cap * 2 : 64;
    corio_timer **h = (corio_timer **)realloc(rt->heap, cap * sizeof *h);
    if (!h) luaL_error(rt->L, "corio: out of memory for timers");
    rt->heap = h;
    rt->heap_cap = cap;
  }
  tm->due = due;
  tm->seq = (rt->timer_seq += 4) | (tm->seq & 3u);
  heap_set(rt, rt->heap_n++, tm);
  heap_up(rt, tm->index);
}

void corio_timer_disarm(corio_rt *rt, corio_timer *tm) {
  int i = tm->index;
  if (i < 0) return;
  tm->index = -1;
  if (--rt->heap_n == i) return;
  heap_set(rt, i, rt->heap[rt->heap_n]);
  if (i > 0 && timer_less(rt->heap[i], rt->heap[(i - 1) / 2]))
    heap_up(rt, i);
  else
    heap_down(rt, i);
}

uint64_t corio_timers_next(corio_rt *rt) {
  return rt->heap_n ? rt->heap[0]->due : UINT64_MAX;
}

static void timer_fire(corio_rt *rt, corio_timer *tm) {
  corio_task *t;
  if (corio_timer_kind(tm) == CORIO_TIMER_SCOPE) {
    corio_scope_on_deadline(rt, tm);
    return;
  }
  t = corio_container(tm, corio_task, timer);
  if (corio_timer_kind(tm) == CORIO_TIMER_SLEEP) {
    corio_wake(t, 0);
    return;
  }
  /* the timeout of a wait: the wait gives up and returns nil, err */
  if (t->wait.abort && !t->wait.abort(t, 0)) return;
  corio_wake_stack(t, 2);
  lua_pushnil(t->co);
  corio_error_push(t->co, "timeout", NULL, "%s: timed out", t->wait.what);
  t->wait.abort = NULL;
  corio_wake(t, 2);
}

int corio_timers_run(corio_rt *rt, uint64_t now) {
  int n = 0;
  while (rt->heap_n && rt->heap[0]->due <= now) {
    corio_timer *tm = rt->heap[0];
    corio_timer_disarm(rt, tm);
    timer_fire(rt, tm);
    n++;
  }
  return n;
}

void corio_timers_free(corio_rt *rt) {
  int i;
  for (i = 0; i < rt->heap_n; i++) rt->heap[i]->index = -1;
  free(rt->heap);
  rt->heap = NULL;
  rt->heap_n = rt->heap_cap = 0;
}

/* ------------------------------------------------------- real clock */

static void clock_on_timer(uv_timer_t *h) {
  ((corio_rt *)h->data)->armed_due = 0;
}

#ifdef __linux__
static void clock_on_fd(uv_poll_t *h, int status, int events) {
  corio_rt *rt = (corio_rt *)h->data;
  uint64_t expirations;
  (void)status;
  (void)events;
  if (read(rt->tfd, &expirations, sizeof expirations) < 0) {
    /* EAGAIN: re-armed since it fired; nothing to clear */
  }
  rt->armed_due = 0;
}
#endif

/* Both handles stay unreferenced, so they never keep the loop alive (the
   deadlock check relies on that); corio_clock_block references the one
   in use only while it blocks. */
void corio_clock_init(corio_rt *rt) {
  uv_timer_init(&rt->loop, &rt->uvtimer);
  rt->uvtimer.data = rt;
  uv_unref((uv_handle_t *)&rt->uvtimer);
  rt->tfd = -1;
#ifdef __linux__
  rt->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (rt->tfd < 0) return;
  if (uv_poll_init(&rt->loop, &rt->tpoll, rt->tfd) != 0) {
    close(rt->tfd);
    rt->tfd = -1;
    return;
  }
  rt->tpoll.data = rt;
  uv_poll_start(&rt->tpoll, UV_READABLE, clock_on_fd);
  uv_unref((uv_handle_t *)&rt->tpoll);
#endif
}

void corio_clock_close(corio_rt *rt) {
#ifdef __linux__
  if (rt->tfd >= 0) close(rt->tfd);
#endif
  rt->tfd = -1;
}

/* Arms the wake-up source for `next`; returns the handle to reference
   while blocking, or NULL to poll without blocking. */
static uv_handle_t *clock_arm(corio_rt *rt, uint64_t next) {
#ifdef __linux__
  if (rt->tfd >= 0) {
    if (rt->armed_due != next) {
      struct itimerspec its;
      memset(&its, 0, sizeof its);
      uint64_t at = next + SLACK_NS;
      its.it_value.tv_sec = (time_t)(at / 1000000000u);
      its.it_value.tv_nsec = (long)(at % 1000000000u);
      timerfd_settime(rt->tfd, TFD_TIMER_ABSTIME, &its, NULL);
      rt->armed_due = next;
    }
    return (uv_handle_t *)&rt->tpoll;
  }
#endif
  {
    uint64_t now = uv_hrtime();
    if (next <= now + SPIN_NS) return NULL;
    if (rt->armed_due != next) {
      uv_update_time(&rt->loop);
      uv_timer_start(&rt->uvtimer, clock_on_timer,
                     (next - now - SPIN_NS) / 1000000u, 0);
      rt->armed_due = next;
    }
    return (uv_handle_t *)&rt->uvtimer;
  }
}

void corio_clock_block(corio_rt *rt, uint64_t next) {
  uv_handle_t *h = NULL;
  if (next != UINT64_MAX) {
    h = clock_arm(rt, next);
    if (!h) {
      uv_run(&rt->loop, UV_RUN_NOWAIT);
      return;
    }
    uv_ref(h);
  }
  uv_run(&rt->loop, UV_RUN_ONCE);
  if (h) uv_unref(h);
}

/* The host loop's step (host.c): the same without waiting. The wake-up
   source is armed and referenced while the loop is polled, so that libuv
   registers it with its backend fd: a host polling that fd wakes at
   next too (and a stale expiry is read, not left readable forever). */
void corio_clock_poll(corio_rt *rt, uint64_t next) {
  uv_handle_t *h = next == UINT64_MAX ? NULL : clock_arm(rt, next);
  if (h) uv_ref(h);
  uv_run(&rt->loop, UV_RUN_NOWAIT);
  if (h) uv_unref(h);
}

/* ---------------------------------------------------------------- Lua */

/* corio.sleep(secs): never returns early; sleep(0) is corio.yield(). */
static int lcorio_sleep(lua_State *L) {
  double secs = corio_check_seconds(L, 1);
  corio_task *t = corio_await_begin(L, "sleep");
  if (secs == 0) return corio_yield_now(L, t);
  corio_timer_set_kind(&t->timer, CORIO_TIMER_SLEEP);
  corio_timer_arm(t->rt, &t->timer, corio_deadline(t->rt, secs));
  return corio_await(L, t, "sleep", NULL, NULL, -1);
}

/* corio.now(): monotonic seconds; virtual seconds on a virtual clock. */
static int lcorio_now(lua_State *L) {
  corio_rt *rt = corio_ctx_get(L)->rt;
  uint64_t ns = rt ? corio_now_ns(rt) : uv_hrtime();
  lua_pushnumber(L, (lua_Number)ns / 1e9);
  return 1;
}

/* core._gettime() -> wall-clock seconds since the epoch, with
   microseconds (LuaSocket's gettime); never virtual. */
static int lcorio_gettime(lua_State *L) {
  uv_timeval64_t tv;
  if (uv_gettimeofday(&tv) != 0) return luaL_error(L, "gettime failed");
  lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec / 1e6);
  return 1;
}

static const luaL_Reg funcs[] = {{"now", lcorio_now},
                                 {"_gettime", lcorio_gettime},
                                 {NULL, NULL}};
static const luaL_Reg await_funcs[] = {{"sleep", lcorio_sleep},
                                       {NULL, NULL}};

void corio_open_time(lua_State *L) {
  corio_setfuncs(L, funcs, 0);
  corio_setfuncs(L, await_funcs, 1);
}
