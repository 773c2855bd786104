/*
 * channel.c: corio.channel(capacity), a bounded multi-producer
 * multi-consumer FIFO on the await protocol of corio.h.
 *
 * Storage: a ring of `capacity` slots. On Lua 5.4 it is reached through
 * the channel object, at index 1 of every method and of a parked
 * receiver's suspended frame (so abort hooks find it at index 1 of
 * t->co): up to RING_UV_MAX slots the ring is the channel's own user
 * values, so a send or receive is one lua_setiuservalue or
 * lua_getiuservalue; above, a Lua table that is user value 1. Before
 * 5.4 (where a yield moves the frame, and a userdata has one user value)
 * it is a table anchored by a registry reference. A table is made once
 * at creation (its array part, keys 1..capacity, never rehashed). A
 * parked sender keeps its value in a registry reference (t->wait_arg)
 * until a receiver takes it or the send ends; luaL_ref recycles its
 * slots, so a steady stream of parked sends does not grow the registry
 * either.
 *
 * Invariants (between any two calls):
 *   - receivers are parked only while the ring is empty;
 *   - senders are parked only while the ring is full (count == capacity),
 *     which with capacity 0 (a rendezvous channel) is always;
 *   - so at most one of the two wait lists is non-empty;
 *   - values leave in the order they were accepted: ring order first, then
 *     parked senders in FIFO order. A value is accepted when it enters the
 *     ring or is handed to a parked receiver (direct handoff).
 *
 * Cancel safety: a send cancelled or timed out while parked leaves the
 * queue and its value is dropped (never enqueued); once a receiver has
 * accepted the value the send reports success and the cancellation waits
 * for the next await. A receiver cancelled after a value was handed to it
 * but before it ran gives the value back: to the next parked receiver, or
 * to the front of the ring; only when neither is possible (the ring filled
 * up meanwhile) does it keep the value and defer the cancellation.
 */
#include "corio.h"
#include <stdio.h>
#include <string.h>


#define CHAN_MT "corio.Channel"
#define CHAN_MAX ((lua_Integer)1 << 24) /* documented capacity limit */

/* t->wait_arg of a receiver once a value was handed to it */
#define RECV_GOT 1

typedef struct chan {
  const char *tag;        /* CHAN_MT (corio_checktagged) */
  lua_Integer cap;
  lua_Integer head;       /* ring index of the oldest value */
  lua_Integer count;      /* values in the ring */
  corio_link senders;     /* FIFO; t->wait_arg = registry ref of the value */
  corio_link receivers;   /* FIFO; t->wait_arg = 0, RECV_GOT once served */
  int buf_ref;            /* before 5.4: registry ref of the ring table */
  uint8_t uvring;         /* the ring is the user values (see above) */
  uint8_t closed;
} chan;

static chan *check_chan(lua_State *L) {
  return (chan *)corio_checktagged(L, 1, CHAN_MT, sizeof(chan));
}

static int aux_gone(corio_task *t) { return t->rt == NULL; }

/* ----------------------------------------------------------------- ring */

#if LUA_VERSION_NUM >= 504
#define RING_UV_MAX 65534 /* lua_newuserdatauv's limit */
#else
#define RING_UV_MAX 0
#endif

/* Pushes the ring table (table mode; on 5.4 the channel is at index 1). */
static void ring_table(lua_State *X, chan *ch) {
#if LUA_VERSION_NUM >= 504
  (void)ch;
  lua_getiuservalue(X, 1, 1);
#else
  lua_rawgeti(X, LUA_REGISTRYINDEX, ch->buf_ref);
#endif
}

/* Pops the value on top of X into ring slot i (0-based). */
static void ring_set(lua_State *X, chan *ch, lua_Integer i) {
#if RING_UV_MAX
  if (ch->uvring) {
    lua_setiuservalue(X, 1, (int)i + 1);
    return;
  }
#endif
  ring_table(X, ch);
  lua_insert(X, -2);
  lua_rawseti(X, -2, (int)i + 1);
  lua_pop(X, 1);
}

/* Stores a copy of X's index idx into ring slot i (0-based). */
static void ring_store(lua_State *X, chan *ch, int idx, lua_Integer i) {
  lua_pushvalue(X, idx);
  ring_set(X, ch, i);
}

static void ring_push_back(lua_State *X, chan *ch, int idx) {
  ring_store(X, ch, idx, (ch->head + ch->count) % ch->cap);
  ch->count++;
}

static void ring_push_front(lua_State *X, chan *ch, int idx) {
  ch->head = (ch->head + ch->cap - 1) % ch->cap;
  ring_store(X, ch, idx, ch->head);
  ch->count++;
}

/* Pushes the oldest value onto X and clears its slot. */
static void ring_pop_front(lua_State *X, chan *ch) {
  int slot = (int)(ch->head + 1);
#if RING_UV_MAX
  if (ch->uvring) {
    lua_getiuservalue(X, 1, slot);
    lua_pushnil(X);
    lua_setiuservalue(X, 1, slot);
  } else
#endif
  {
    ring_table(X, ch);
    lua_rawgeti(X, -1, slot);
    lua_pushnil(X);
    lua_rawseti(X, -3, slot);
    lua_remove(X, -2);
  }
  ch->head = slot < ch->cap ? slot : 0;
  ch->count--;
}

/* -------------------------------------------------------------- waiters */

/* The first parked task of h that can still run (dropping dead ones). */
static corio_task *aux_first(lua_State *L, corio_link *h, int senders) {
  while (!corio_list_empty(h)) {
    corio_task *t = corio_container(h->next, corio_task, link);
    if (!aux_gone(t)) return t;
    corio_list_remove(&t->link);
    if (senders) luaL_unref(L, LUA_REGISTRYINDEX, t->wait_arg);
  }
  return NULL;
}

/* Hands a copy of X's index idx to parked receiver r. The abort hook
   stays: a cancellation before r runs gives the value back. */
static void aux_hand(lua_State *X, int idx, corio_task *r) {
  lua_pushvalue(X, idx);
  lua_xmove(X, corio_wake_stack(r, 1), 1);
  r->wait_arg = RECV_GOT;
  corio_wake(r, 1);
}

/* Takes parked sender s's value: pushes it onto X and wakes s with true.
   The abort hook stays so that a cancellation now does not pretend the
   value was not sent (send_abort refuses once woken). */
static void aux_take(lua_State *X, corio_task *s) {
  lua_rawgeti(X, LUA_REGISTRYINDEX, s->wait_arg);
  luaL_unref(X, LUA_REGISTRYINDEX, s->wait_arg);
  s->wait_arg = LUA_NOREF;
  lua_pushboolean(corio_wake_stack(s, 1), 1);
  corio_wake(s, 1);
}

/* Wakes t with nil, err "closed"; nothing is handed over, so the hook is
   cleared and a cancellation arriving before t runs wins. */
static void aux_wake_closed(lua_State *L, corio_task *t) {
  lua_State *co;
  corio_error_push(L, "closed", NULL, "channel is closed");
  co = corio_wake_stack(t, 2);
  lua_pushnil(co);
  lua_xmove(L, co, 1);
  t->wait.abort = NULL;
  corio_wake(t, 2);
}

/* Accepts the value at L's index idx without waiting: hands it to the
   first parked receiver, or appends it to the ring. 0 if full. */
static int ch_offer(lua_State *L, chan *ch, int idx) {
  corio_task *r = aux_first(L, &ch->receivers, 0);
  if (r) {
    aux_hand(L, idx, r);
    return 1;
  }
  if (ch->count >= ch->cap) return 0;
  ring_push_back(L, ch, idx);
  return 1;
}

/* Pushes the next value without waiting (ring first, then the first
   parked sender, whose value refills the ring). 0 if there is none. */
static int ch_take(lua_State *L, chan *ch) {
  corio_task *s;
  if (ch->count > 0) {
    ring_pop_front(L, ch);
    if ((s = aux_first(L, &ch->senders, 1)) != NULL) {
      aux_take(L, s);
      ring_push_back(L, ch, -1);
      lua_pop(L, 1);
    }
    return 1;
  }
  if ((s = aux_first(L, &ch->senders, 1)) != NULL) { /* rendezvous */
    aux_take(L, s);
    return 1;
  }
  return 0;
}

/* ---------------------------------------------------------- abort hooks */

static int send_abort(corio_task *t, int woken) {
  if (woken == 1) return 0; /* a receiver accepted the value: sent */
  corio_list_remove(&t->link);
  luaL_unref(t->co, LUA_REGISTRYINDEX, t->wait_arg);
  t->wait_arg = LUA_NOREF;
  return 1;
}

/* A woken receiver's value is on top of t->co: give it back where it
   keeps its place in line (the next receiver, or the front of the ring,
   ahead of everything accepted after it). */
static int recv_abort(corio_task *t, int woken) {
  chan *ch = (chan *)t->wait.obj;
  lua_State *co = t->co;
  corio_task *r;
  if (woken != 1) {
    corio_list_remove(&t->link);
    return 1;
  }
  if (t->wait_arg != RECV_GOT || !lua_checkstack(co, 3)) return 0;
  if ((r = aux_first(co, &ch->receivers, 0)) != NULL) {
    aux_hand(co, -1, r);
    return 1;
  }
  if (ch->count < ch->cap) {
    ring_push_front(co, ch, -1);
    return 1;
  }
  return 0;
}

/* --------------------------------------------------------------- methods */

/* corio.channel(capacity): 0 makes a rendezvous channel. */
static int lch_new(lua_State *L) {
  lua_Integer cap = luaL_checkinteger(L, 1);
  chan *ch;
  luaL_argcheck(L, cap >= 0 && cap <= CHAN_MAX, 1,
                "capacity must be between 0 and 2^24");
  {
    int uv = cap > 0 && cap <= RING_UV_MAX;
#if LUA_VERSION_NUM >= 504
    ch = (chan *)lua_newuserdatauv(L, sizeof *ch, uv ? (int)cap : 1);
#else
    ch = (chan *)lua_newuserdata(L, sizeof *ch);
#endif
    memset(ch, 0, sizeof *ch);
    ch->uvring = (uint8_t)uv;
  }
  ch->tag = CHAN_MT;
  ch->cap = cap;
  ch->buf_ref = LUA_NOREF; /* before the metatable: its __gc reads it */
  corio_list_init(&ch->senders);
  corio_list_init(&ch->receivers);
  luaL_setmetatable(L, CHAN_MT);
  if (!ch->uvring) {
    lua_createtable(L, (int)cap, 0);
#if LUA_VERSION_NUM >= 504
    lua_setiuservalue(L, -2, 1);
#else
    ch->buf_ref = luaL_ref(L, LUA_REGISTRYINDEX);
#endif
  }
  return 1;
}

static void aux_check_value(lua_State *L) {
  luaL_argcheck(L, !lua_isnoneornil(L, 2), 2,
                "nil cannot be sent on a channel");
}

/* The fast paths: a task's send or recv without options that neither
   parks nor hands a value to a parked task (the ring has room, or
   values) is a few stack operations on the ring, the user value of the
   channel at index 1; the wait machinery is not touched. Cancellation
   and the right to wait are checked as at any await. */
static int aux_fast_ok(lua_State *L, chan *ch, int nargs) {
  corio_task *t;
  if (lua_gettop(L) != nargs || ch->closed) return 0;
  t = corio_task_running(L);
  return t && corio_isyieldable(t->rt->ctx->vm_isyieldable, L) &&
         !corio_task_cancel_pending(t);
}

/* ch:send(v, [{timeout = s}]) -> true | nil, err */
static int lch_send(lua_State *L) {
  chan *ch = check_chan(L);
  double timeout;
  corio_task *t;
  if (ch->count < ch->cap && corio_list_empty(&ch->receivers) &&
      !lua_isnil(L, 2) && aux_fast_ok(L, ch, 2)) {
    lua_Integer i = ch->head + ch->count;
    lua_settop(L, 2);
    ring_set(L, ch, i < ch->cap ? i : i - ch->cap);
    ch->count++;
    lua_pushboolean(L, 1);
    return 1;
  }
  aux_check_value(L);
  timeout = corio_opt_timeout(L, 3, "send");
  t = corio_await_begin(L, "send");
  if (ch->closed) return corio_fail(L, "closed", "channel is closed");
  if (ch_offer(L, ch, 2)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushvalue(L, 2);
  t->wait_arg = luaL_ref(L, LUA_REGISTRYINDEX);
  corio_list_push(&ch->senders, &t->link);
  return corio_await(L, t, "channel send", send_abort, ch, timeout);
}

/* ch:try_send(v) -> true | false (full) | nil, err (closed) */
static int lch_try_send(lua_State *L) {
  chan *ch = check_chan(L);
  aux_check_value(L);
  if (ch->closed) return corio_fail(L, "closed", "channel is closed");
  lua_pushboolean(L, ch_offer(L, ch, 2));
  return 1;
}

/* ch:recv([{timeout = s}]) -> v | nil, err ("closed" once drained) */
static int lch_recv(lua_State *L) {
  chan *ch = check_chan(L);
  double timeout;
  corio_task *t;
  if (ch->count > 0 && corio_list_empty(&ch->senders) &&
      aux_fast_ok(L, ch, 1)) {
    ring_pop_front(L, ch);
    return 1;
  }
  timeout = corio_opt_timeout(L, 2, "recv");
  t = corio_await_begin(L, "recv");
  if (ch_take(L, ch)) return 1;
  if (ch->closed) return corio_fail(L, "closed", "channel is closed");
  t->wait_arg = 0;
  corio_list_push(&ch->receivers, &t->link);
  return corio_await(L, t, "channel recv", recv_abort, ch, timeout);
}

/* ch:try_recv() -> v | nil (empty) | nil, err (closed and drained) */
static int lch_try_recv(lua_State *L) {
  chan *ch = check_chan(L);
  if (ch_take(L, ch)) return 1;
  if (ch->closed) return corio_fail(L, "closed", "channel is closed");
  lua_pushnil(L);
  return 1;
}

/* ch:close(): parked senders get nil, err "closed" (their values were
   not accepted); buffered values can still be received, then recv
   returns nil, err "closed". Closing twice is harmless. */
static int lch_close(lua_State *L) {
  chan *ch = check_chan(L);
  corio_link *h;
  if (ch->closed) return 0;
  ch->closed = 1;
  while ((h = corio_list_shift(&ch->senders)) != NULL) {
    corio_task *t = corio_container(h, corio_task, link);
    luaL_unref(L, LUA_REGISTRYINDEX, t->wait_arg);
    t->wait_arg = LUA_NOREF;
    if (!aux_gone(t)) aux_wake_closed(L, t);
  }
  while ((h = corio_list_shift(&ch->receivers)) != NULL) {
    corio_task *t = corio_container(h, corio_task, link);
    if (!aux_gone(t)) aux_wake_closed(L, t);
  }
  return 0;
}

static int lch_len(lua_State *L) {
  lua_pushinteger(L, check_chan(L)->count);
  return 1;
}

static int lch_capacity(lua_State *L) {
  lua_pushinteger(L, check_chan(L)->cap);
  return 1;
}

static int lch_is_closed(lua_State *L) {
  lua_pushboolean(L, check_chan(L)->closed);
  return 1;
}

/* Normally nobody waits on a collected channel (a parked task's stack
   holds it); at lua_close anything goes: detach, drop the references. */
static int lch_gc(lua_State *L) {
  chan *ch = check_chan(L);
  corio_link *h;
  while ((h = corio_list_shift(&ch->senders)) != NULL) {
    corio_task *t = corio_container(h, corio_task, link);
    luaL_unref(L, LUA_REGISTRYINDEX, t->wait_arg);
    t->wait_arg = LUA_NOREF;
  }
  while (corio_list_shift(&ch->receivers) != NULL) {
  }
  if (ch->buf_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, ch->buf_ref);
  ch->buf_ref = LUA_NOREF;
  ch->count = ch->head = 0;
  ch->cap = 0;
  ch->closed = 1;
  return 0;
}

static int aux_count(const corio_link *h) {
  const corio_link *n;
  int k = 0;
  for (n = h->next; n != h; n = n->next) k++;
  return k;
}

static int lch_tostring(lua_State *L) {
  chan *ch = check_chan(L);
  char buf[160];
  int n = snprintf(buf, sizeof buf,
                   "corio.Channel: %p (%lld/%lld, %d senders and %d "
                   "receivers waiting%s)", (void *)ch, (long long)ch->count,
                   (long long)ch->cap, aux_count(&ch->senders),
                   aux_count(&ch->receivers), ch->closed ? ", closed" : "");
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof buf) n = (int)sizeof buf - 1;
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

static const luaL_Reg ch_methods[] = {{"try_send", lch_try_send},
                                      {"try_recv", lch_try_recv},
                                      {"close", lch_close},
                                      {"len", lch_len},
                                      {"capacity", lch_capacity},
                                      {"is_closed", lch_is_closed},
                                      {NULL, NULL}};
static const luaL_Reg ch_await[] = {{"send", lch_send},
                                    {"recv", lch_recv},
                                    {NULL, NULL}};
static const luaL_Reg ch_meta[] = {{"__gc", lch_gc},
                                   {"__close", lch_close},
                                   {"__tostring", lch_tostring},
                                   {NULL, NULL}};
static const luaL_Reg ch_funcs[] = {{"channel", lch_new}, {NULL, NULL}};

void corio_open_channel(lua_State *L) {
  int mod = lua_gettop(L);
  corio_class(L, CHAN_MT, ch_methods, ch_await, ch_meta);
  lua_getfield(L, -1, "__index"); /* the Lua layer adds iter() */
  lua_setfield(L, mod, "_Channel_methods");
  lua_pop(L, 1);
  corio_setfuncs(L, ch_funcs, 0);
}
