/*
 * time.c: the runtime's deadline heap, its clock (real or virtual),
 * corio.sleep and corio.now.
 *
 * One binary min-heap of corio_timer pointers per runtime, ordered by
 * (due, seq) so that timers due at the same instant fire in the order they
 * were armed. Timer nodes live inside tasks and scopes: arming allocates
 * nothing once the heap array has grown to the peak number of timers.
 * The heap is driven by one uv_timer (see runtime.c); on the virtual clock
 * the scheduler jumps straight to the next deadline instead.
 */
#include "corio.h"
#include <math.h>
#include <stdlib.h>


uint64_t corio_now_ns(corio_rt *rt) {
  return rt->virtual_clock ? rt->vnow : uv_hrtime();
}

uint64_t corio_deadline(corio_rt *rt, double secs) {
  double ns = ceil(secs * 1e9);
  uint64_t now = corio_now_ns(rt);
  if (!(ns < 9e18) || (uint64_t)ns > UINT64_MAX - now) return UINT64_MAX;
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

int corio_timers_run(corio_rt *rt) {
  uint64_t now = corio_now_ns(rt);
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

static const luaL_Reg funcs[] = {{"now", lcorio_now}, {NULL, NULL}};
static const luaL_Reg await_funcs[] = {{"sleep", lcorio_sleep},
                                       {NULL, NULL}};

void corio_open_time(lua_State *L) {
  corio_setfuncs(L, funcs, 0);
  corio_setfuncs(L, await_funcs, 1);
}
