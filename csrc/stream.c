/*
 * stream.c: the one stream implementation (corio.Stream) shared by TCP,
 * Unix sockets, process pipes and stdio, over any uv_stream_t.
 *
 * Memory: the userdata is a small box pointing at a malloc'd
 * corio_stream that holds the libuv handle, the input buffer and the
 * wait lists. The corio_stream is freed only in its close callback, so
 * the userdata can be collected while uv_close is pending; the two point
 * at each other until one of them goes (the userdata's __gc clears the
 * back pointer, the close callback clears the forward one). A handle the
 * runtime closed itself (rt_close_loop walks the loop and closes every
 * handle with no callback) is recognised by uv_is_closing without our
 * CLOSING flag: then the userdata's __gc frees the memory.
 *
 * Reading: one input buffer per stream. libuv reads straight into its
 * free tail (alloc_cb), and keeps reading while the buffer holds less
 * than READ_HWM bytes, or less than what the parked reader needs, even
 * when nobody waits: a read that times out loses nothing, the bytes stay
 * buffered for the next read. A read that the buffer can serve returns
 * without waiting (no budget slot, no libuv call). Otherwise the reader
 * takes an I/O budget slot and parks; the read callback only decides
 * that the reader can now be served, gives the slot back and wakes it
 * with corio_wake_retry: the read runs again and serves itself from the
 * buffer. Nothing is handed over in the wake, so a reader cancelled
 * before it runs loses no byte (cancel safe). One reader at a time: a
 * second task that reads while one is parked gets an error raised.
 *
 * Writing: uv_try_write first (nothing allocated when the kernel takes
 * it all); the rest is copied into one malloc'd request and queued with
 * uv_write, so a write in flight never needs Lua (it may finish during
 * lua_close). While libuv's write queue holds more than WRITE_HWM bytes
 * the writer waits (backpressure) and returns true once it is below.
 * A writer cancelled or timed out while waiting returns at once; its
 * data stays queued and is sent in order in the background (it was
 * accepted). close() drops what is still queued; shutdown() flushes.
 */
#include "corio.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define STREAM_MT "corio.Stream"

#define READ_MIN 16384u            /* free tail offered to each read */
#define READ_HWM (256u * 1024u)    /* read ahead up to this much */
#define WRITE_HWM (1024u * 1024u)  /* writers wait above this queue */
#define MAX_LINE_DEFAULT 65536.0
#define MAX_READ_DEFAULT (64.0 * 1024 * 1024)

/* what the parked reader waits for */
enum { R_SOME, R_BYTES, R_LINE, R_ALL };

/* flags */
#define SF_OPENED   0x01  /* the handle was initialized (must be closed) */
#define SF_CLOSING  0x02  /* we called uv_close */
#define SF_READING  0x04  /* uv_read_start is active */
#define SF_SHUT     0x08  /* shutdown requested */
#define SF_NOREAD   0x10  /* a write-only stream (stdout) */

struct corio_stream {
  union {
    uv_handle_t h;
    uv_stream_t s;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_tty_t tty;
  } u;
  corio_rt *rt;
  struct stream_ud *ud;   /* the userdata, NULL once collected */
  char *buf;              /* input: bytes buf[off, off + len) */
  size_t off, len, cap;
  size_t scanned;         /* bytes from off known to hold no '\n' */
  size_t need;            /* R_BYTES: count; R_LINE, R_ALL: the limit */
  int nwrites;            /* write requests queued in libuv */
  int rstatus;            /* 0, or UV_EOF / the error that ended reading */
  int wstatus;            /* 0, or the error a queued write ended with */
  corio_task *reader;     /* the one parked reader */
  corio_task *woken;      /* the reader woken to serve itself, not yet run */
  corio_task *breader;    /* a reader waiting for a budget slot (maybe
                             stale: check with aux_breader) */
  lua_Integer breader_id;
  corio_link writers;     /* tasks waiting for the write queue to drain */
  corio_task *shutter;    /* the task waiting in shutdown */
  void (*on_free)(void *); /* the owner's cleanup (corio_stream_on_free) */
  void *on_free_arg;
  uv_shutdown_t sreq;
  uint8_t kind, flags, rmode;
};

typedef struct stream_ud {
  corio_stream *s;
} stream_ud;

typedef struct write_req {
  uv_write_t req;
  corio_stream *s;
  char data[1];           /* the bytes the kernel did not take at once */
} write_req;

static const char *const read_what[] = {"tcp read", "unix read",
                                        "pipe read", "stdio read"};
static const char *const write_what[] = {"tcp write", "unix write",
                                         "pipe write", "stdio write"};

/* ------------------------------------------------------------ lifetime */

/* The end of a stream's memory (its handle is closed): no Lua here. */
static void stream_free(corio_stream *s) {
  if (s->on_free) s->on_free(s->on_free_arg);
  free(s->buf);
  free(s);
}

static void stream_on_close(uv_handle_t *h) {
  corio_stream *s = (corio_stream *)h->data;
  if (s->ud) s->ud->s = NULL;
  stream_free(s);
}

void corio_stream_on_free(corio_stream *s, void (*fn)(void *), void *arg) {
  s->on_free = fn;
  s->on_free_arg = arg;
}

corio_stream *corio_stream_push(lua_State *L, corio_rt *rt, int kind) {
  stream_ud *ud = (stream_ud *)lua_newuserdata(L, sizeof *ud);
  corio_stream *s;
  ud->s = NULL;
  luaL_setmetatable(L, STREAM_MT);
  s = (corio_stream *)calloc(1, sizeof *s);
  if (!s) luaL_error(L, "corio: out of memory for a stream");
  s->rt = rt;
  s->ud = ud;
  s->kind = (uint8_t)kind;
  s->u.h.data = s;
  corio_list_init(&s->writers);
  ud->s = s;
  return s;
}

uv_handle_t *corio_stream_handle(corio_stream *s) { return &s->u.h; }

/* The runtime closed the handle itself (loop teardown): no callback. */
static int aux_orphaned(const corio_stream *s) {
  return (s->flags & SF_OPENED) && !(s->flags & SF_CLOSING) &&
         uv_is_closing(&s->u.h);
}

static int aux_live(const corio_stream *s) {
  return (s->flags & SF_OPENED) && !uv_is_closing(&s->u.h);
}

corio_stream *corio_stream_check(lua_State *L, int idx, const char *fname) {
  stream_ud *ud = (stream_ud *)corio_checkudata(L, idx, STREAM_MT);
  corio_stream *s = ud->s;
  if (!s || !aux_live(s))
    luaL_error(L, "%s: the stream is closed", fname);
  if (s->rt != corio_ctx_get(L)->rt)
    luaL_error(L, "%s: the stream belongs to another runtime", fname);
  if (s->rt->current) { /* it runs: it is neither woken nor queued */
    if (s->woken == s->rt->current) s->woken = NULL;
    if (s->breader == s->rt->current) s->breader = NULL;
  }
  return s;
}

/* ------------------------------------------------------------- reading */

static void stream_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  corio_stream *s = (corio_stream *)h->data;
  (void)hint;
  if (s->cap - s->off - s->len < READ_MIN) {
    if (s->off && s->cap - s->len >= READ_MIN + s->len / 2) {
      memmove(s->buf, s->buf + s->off, s->len); /* compact, mostly empty */
      s->off = 0;
    } else {
      size_t cap = s->cap ? s->cap : READ_MIN;
      char *p;
      while (cap - s->off - s->len < READ_MIN) cap *= 2;
      p = (char *)realloc(s->buf, cap);
      if (!p) { /* libuv reports UV_ENOBUFS to the read callback */
        *b = uv_buf_init(NULL, 0);
        return;
      }
      s->buf = p;
      s->cap = cap;
    }
  }
  *b = uv_buf_init(s->buf + s->off + s->len,
                   (unsigned)(s->cap - s->off - s->len));
}

/* Whether the parked reader can be served by the buffer now. */
static int aux_servable(corio_stream *s) {
  if (s->rstatus) return 1;
  switch (s->rmode) {
  case R_SOME: return s->len > 0;
  case R_BYTES: return s->len >= s->need;
  case R_LINE: {
    if (s->len > s->scanned &&
        memchr(s->buf + s->off + s->scanned, '\n', s->len - s->scanned))
      return 1;
    s->scanned = s->len;
    return s->len > s->need;
  }
  default: return s->len > s->need; /* R_ALL: only past the limit */
  }
}

static void stream_on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *b);

/* What libuv should do for the stream now. Reading runs while the buffer
   is below its high-water mark (or below what the parked reader needs)
   and the stream can still deliver. The handle is referenced only while
   a task waits on it: a stream nobody waits on (reading ahead, idle)
   does not keep the loop alive, so it does not hide a deadlock. */
static void aux_policy(corio_stream *s) {
  size_t want = READ_HWM;
  int on;
  if ((s->reader || s->breader) && s->rmode != R_SOME && s->need + 1 > want)
    want = s->need + 1;
  on = !s->rstatus && !(s->flags & (SF_CLOSING | SF_NOREAD)) &&
       aux_live(s) && s->len < want;
  if (on && !(s->flags & SF_READING)) {
    int r = uv_read_start(&s->u.s, stream_on_alloc, stream_on_read);
    if (r == 0) s->flags |= SF_READING;
    else s->rstatus = r;
  } else if (!on && (s->flags & SF_READING)) {
    uv_read_stop(&s->u.s);
    s->flags &= ~SF_READING;
  }
  if (!aux_live(s)) return;
  if (s->reader || s->shutter || !corio_list_empty(&s->writers))
    uv_ref(&s->u.h);
  else
    uv_unref(&s->u.h);
}

/* Wakes the parked reader to serve itself (or see rstatus). */
static void aux_wake_reader(corio_stream *s) {
  corio_task *t = s->reader;
  s->reader = NULL;
  s->woken = t;
  corio_io_give(s->rt);
  corio_wake_retry(t);
}

/* The reader waiting in the budget queue, or NULL (a stale pointer is
   dropped: it is compared, never dereferenced, until it is found in the
   queue, and then it must still be the same task). */
static corio_task *aux_breader(corio_stream *s) {
  corio_task *t = s->breader;
  if (t && corio_io_budget_waiting(s->rt, t) && t->id == s->breader_id)
    return t;
  s->breader = NULL;
  return NULL;
}

static void stream_on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *b) {
  corio_stream *s = (corio_stream *)h->data;
  corio_task *t;
  (void)b;
  if (n > 0) s->len += (size_t)n;
  else if (n < 0) s->rstatus = (int)n;
  else return;
  if (s->reader) {
    if (aux_servable(s)) aux_wake_reader(s);
  } else if (s->breader && aux_servable(s) && (t = aux_breader(s))) {
    /* it waits for a slot it no longer needs: the buffer serves it now
       (else a server's idle readers holding every slot would starve a
       connection whose data came in) */
    corio_list_remove(&t->link);
    s->breader = NULL;
    s->woken = t;
    corio_wake_retry(t);
  }
  aux_policy(s);
}

static int read_abort(corio_task *t, int woken) {
  corio_stream *s = (corio_stream *)t->wait.obj;
  if (woken == 1) { /* woken to retry: nothing was handed over */
    if (s->woken == t) s->woken = NULL;
    return 1;
  }
  s->reader = NULL;
  corio_io_give(s->rt);
  aux_policy(s);
  return 1;
}

/* Pushes k bytes from the front of the buffer (the first `keep` of
   them, to drop a line end) and consumes them. */
static void aux_take(lua_State *L, corio_stream *s, size_t k, size_t keep) {
  /* ("a" at the end of a stream that never got a byte: buf is NULL) */
  lua_pushlstring(L, s->buf ? s->buf + s->off : "", keep);
  s->off += k;
  s->len -= k;
  s->scanned = s->scanned > k ? s->scanned - k : 0;
  if (s->len == 0) {
    s->off = s->scanned = 0;
    if (s->cap > 2 * READ_HWM) { /* a large read is over: give it back */
      free(s->buf);
      s->buf = NULL;
      s->cap = 0;
    }
  }
  aux_policy(s);
}

static int aux_read_end(lua_State *L, corio_stream *s) {
  return corio_io_fail(L, s->rstatus, read_what[s->kind]);
}

/* A line: returns the count pushed, 0 when it must wait. */
static int aux_read_line(lua_State *L, corio_stream *s, int keep_end,
                         size_t max) {
  /* (no arithmetic on buf before any byte came: it is NULL then) */
  const char *p = s->len ? s->buf + s->off : NULL;
  const char *nl = p ? (const char *)memchr(p, '\n', s->len) : NULL;
  if (nl) {
    size_t k = (size_t)(nl - p) + 1, keep = k;
    if (k - 1 > max)
      return corio_fail(L, "limit", "%s: line longer than max_line (%d)",
                        read_what[s->kind], (int)max);
    if (!keep_end) {
      keep--;
      if (keep && p[keep - 1] == '\r') keep--;
    }
    aux_take(L, s, k, keep);
    return 1;
  }
  if (s->len > max)
    return corio_fail(L, "limit", "%s: line longer than max_line (%d)",
                      read_what[s->kind], (int)max);
  if (!s->rstatus) return 0;
  if (s->len == 0) return aux_read_end(L, s);
  aux_take(L, s, s->len, s->len); /* the last line has no end */
  return 1;
}

/* Serves a read from the buffer: the count of values pushed, or 0 when
   the read must wait. */
static int aux_read_now(lua_State *L, corio_stream *s, int mode, size_t n,
                        int keep_end) {
  switch (mode) {
  case R_SOME:
    if (s->len) {
      aux_take(L, s, s->len < n ? s->len : n, s->len < n ? s->len : n);
      return 1;
    }
    return s->rstatus ? aux_read_end(L, s) : 0;
  case R_BYTES:
    if (s->len >= n) {
      aux_take(L, s, n, n);
      return 1;
    }
    if (!s->rstatus) return 0;
    if (s->len == 0) return aux_read_end(L, s);
    aux_take(L, s, s->len, s->len); /* fewer only at the end */
    return 1;
  case R_LINE:
    return aux_read_line(L, s, keep_end, n);
  default:
    if (s->len > n)
      return corio_fail(L, "limit", "%s: more than max_read (%d bytes) "
                        "before the end of the stream", read_what[s->kind],
                        (int)n);
    if (!s->rstatus) return 0;
    if (s->rstatus != UV_EOF) return aux_read_end(L, s);
    aux_take(L, s, s->len, s->len);
    return 1;
  }
}

static const char *const read_opts[] = {"timeout", "max_line", "max_read",
                                        NULL};

static size_t aux_limit(lua_State *L, int idx, const char *key, double def) {
  return (size_t)corio_opt_range(L, idx, key, def, 1, 1e15, "read");
}

/* Parks the reader until the buffer can serve it (or reading ended). */
static int aux_read_wait(lua_State *L, corio_stream *s, corio_task *t,
                         lua_CFunction fn, int mode, size_t n,
                         double timeout) {
  if (s->reader || aux_breader(s))
    return luaL_error(L, "read: another task is already reading this "
                      "stream (one reader at a time)");
  s->rmode = (uint8_t)mode;
  s->need = n;
  if (!corio_io_take(t->rt)) {
    s->breader = t; /* data that serves it wakes it (stream_on_read) */
    s->breader_id = t->id;
    aux_policy(s);
    return corio_io_wait_slot(L, t, fn, timeout);
  }
  s->reader = t;
  aux_policy(s);
  return corio_await_retry(L, t, fn, read_what[s->kind], read_abort, s,
                           timeout);
}

/* s:read(n | "l" | "L" | "a", [opts]) */
static int lstream_read(lua_State *L) {
  corio_stream *s = corio_stream_check(L, 1, "read");
  int mode = R_BYTES, keep_end = 0, r;
  size_t n = 0;
  double timeout = corio_io_timeout(L, 3, "read", read_opts);
  corio_task *t;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Number v = lua_tonumber(L, 2);
    if (!(v >= 0 && v <= 1e15))
      return luaL_argerror(L, 2, "non-negative byte count expected");
    n = (size_t)v;
    if (n > aux_limit(L, 3, "max_read", MAX_READ_DEFAULT))
      return corio_fail(L, "limit", "read: %d bytes is more than max_read",
                        (int)(v > 2e9 ? 2e9 : v));
  } else {
    const char *f = luaL_optstring(L, 2, "l");
    if (*f == '*') f++; /* LuaSocket's "*l", "*a" */
    if ((f[0] == 'l' || f[0] == 'L') && !f[1]) {
      mode = R_LINE;
      keep_end = f[0] == 'L';
      n = aux_limit(L, 3, "max_line", MAX_LINE_DEFAULT);
    } else if (f[0] == 'a' && !f[1]) {
      mode = R_ALL;
      n = aux_limit(L, 3, "max_read", MAX_READ_DEFAULT);
    } else {
      return luaL_argerror(L, 2, "invalid format (number, 'l', 'L' or 'a' "
                           "expected)");
    }
  }
  t = corio_await_begin(L, "read");
  if (s->flags & SF_NOREAD)
    return luaL_error(L, "read: the stream is not readable");
  if (mode == R_BYTES && n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  if ((r = aux_read_now(L, s, mode, n, keep_end)) != 0) return r;
  return aux_read_wait(L, s, t, lstream_read, mode, n, timeout);
}

/* s:read_some([max], [opts]): what is buffered (at most max bytes, default
   64 KiB), waiting only when nothing is. */
static int lstream_read_some(lua_State *L) {
  corio_stream *s = corio_stream_check(L, 1, "read_some");
  int opt = lua_istable(L, 2) ? 2 : 3, r;
  lua_Number max = lua_istable(L, 2) ? 65536 : luaL_optnumber(L, 2, 65536);
  double timeout = corio_io_timeout(L, opt, "read_some", NULL);
  corio_task *t;
  if (!(max >= 1 && max <= 1e15))
    return luaL_argerror(L, 2, "positive byte count expected");
  t = corio_await_begin(L, "read_some");
  if (s->flags & SF_NOREAD)
    return luaL_error(L, "read_some: the stream is not readable");
  if ((r = aux_read_now(L, s, R_SOME, (size_t)max, 0)) != 0) return r;
  return aux_read_wait(L, s, t, lstream_read_some, R_SOME, (size_t)max,
                       timeout);
}

/* s:buffered() -> the count of bytes buffered now, and whether reading
   has ended (end of stream or an error, which the next read returns). A
   probe that never waits and consumes nothing (LuaSocket's dirty() and
   select build on it). */
static int lstream_buffered(lua_State *L) {
  corio_stream *s = corio_stream_check(L, 1, "buffered");
  lua_pushinteger(L, (lua_Integer)s->len);
  lua_pushboolean(L, s->rstatus != 0);
  return 2;
}

/* s:readable([opts]) -> true | nil, err: waits until a read would not
   wait (a byte is buffered, or reading has ended), consuming nothing.
   Cancel safe as read_some is. */
static int lstream_readable(lua_State *L) {
  corio_stream *s = corio_stream_check(L, 1, "readable");
  double timeout = corio_io_timeout(L, 2, "readable", NULL);
  corio_task *t = corio_await_begin(L, "readable");
  if (s->flags & SF_NOREAD)
    return luaL_error(L, "readable: the stream is not readable");
  if (s->len || s->rstatus) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return aux_read_wait(L, s, t, lstream_readable, R_SOME, 1, timeout);
}

/* ------------------------------------------------------------- writing */

/* Wakes the writers waiting for the queue to drain: every one with an
   error status; else writers (t->wait_arg = WRITE_HWM) once the queue is
   at or below it, flushers (t->wait_arg = 0) once no write is queued. */
static void aux_wake_writers(corio_stream *s, int status) {
  corio_link *n = s->writers.next;
  size_t q = s->u.s.write_queue_size;
  while (n != &s->writers) {
    corio_task *t = corio_container(n, corio_task, link);
    n = n->next;
    if (status == 0 && (t->wait_arg ? q > (size_t)t->wait_arg
                                    : s->nwrites > 0))
      continue;
    corio_io_give(s->rt);
    corio_io_wake_status(t, status, write_what[s->kind]);
  }
  aux_policy(s);
}

static void stream_on_written(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  corio_stream *s = w->s;
  free(w);
  s->nwrites--;
  if (status < 0 && status != UV_ECANCELED && !s->wstatus)
    s->wstatus = status;
  if (uv_is_closing(&s->u.h)) return;
  aux_wake_writers(s, s->wstatus);
}

static int write_abort(corio_task *t, int woken) {
  corio_stream *s = (corio_stream *)t->wait.obj;
  if (woken == 1) return 1; /* nothing handed back (the data is queued) */
  corio_list_remove(&t->link);
  corio_io_give(s->rt);
  aux_policy(s);
  return 1;
}

/* Queues what uv_try_write did not take. 0 or a libuv error. */
static int aux_queue(corio_stream *s, const char *p, size_t n) {
  write_req *w = (write_req *)malloc(offsetof(write_req, data) + n);
  uv_buf_t b;
  int r;
  if (!w) return UV_ENOMEM;
  memcpy(w->data, p, n);
  w->s = s;
  b = uv_buf_init(w->data, (unsigned)n);
  if ((r = uv_write(&w->req, &s->u.s, &b, 1, stream_on_written)) != 0)
    free(w);
  else
    s->nwrites++;
  return r;
}

/* s:write(data, [opts]) -> true | nil, err */
static int lstream_write(lua_State *L) {
  corio_stream *s = corio_stream_check(L, 1, "write");
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  /* libuv counts a buffer's bytes in an unsigned int */
  luaL_argcheck(L, n <= 0x7fffffffu, 2, "more than 2 GiB in one call");
  double timeout = corio_io_timeout(L, 3, "write", NULL);
  corio_task *t = corio_await_begin(L, "write");
  int r = 0;
  if (s->wstatus) return corio_io_fail(L, s->wstatus, write_what[s->kind]);
  if (s->flags & SF_SHUT)
    return luaL_error(L, "write: the stream was shut down for writing");
  /* a write already queued means this one will queue and likely wait:
     take the budget slot first, while nothing is done yet */
  if (s->u.s.write_queue_size > 0 || !corio_list_empty(&s->writers)) {
    if (!corio_io_take(t->rt))
      return corio_io_wait_slot(L, t, lstream_write, timeout);
    corio_io_give(s->rt); /* taken again below if it parks */
  }
  if (n > 0) {
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    r = uv_try_write(&s->u.s, &b, 1);
    if (r == UV_EAGAIN || r == UV_ENOSYS) r = 0;
    if (r < 0) return corio_io_fail(L, r, write_what[s->kind]);
    if ((size_t)r < n && (r = aux_queue(s, p + r, n - (size_t)r)) != 0)
      return corio_io_fail(L, r, write_what[s->kind]);
  }
  if (s->u.s.write_queue_size <= WRITE_HWM || !corio_io_take(t->rt)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  t->wait_arg = WRITE_HWM;
  corio_list_push(&s->writers, &t->link);
  aux_policy(s);
  return corio_await(L, t, write_what[s->kind], write_abort, s, timeout);
}

/* s:flush([opts]) -> true | nil, err: waits until everything written so
   far has been handed to the kernel (close() drops what is still queued;
   flush first to keep it). Cancel safe: nothing is undone by giving up. */
static int lstream_flush(lua_State *L) {
  corio_stream *s = corio_stream_check(L, 1, "flush");
  double timeout = corio_io_timeout(L, 2, "flush", NULL);
  corio_task *t = corio_await_begin(L, "flush");
  if (s->wstatus) return corio_io_fail(L, s->wstatus, write_what[s->kind]);
  if (s->nwrites == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!corio_io_take(t->rt)) return corio_io_wait_slot(L, t, lstream_flush,
                                                    timeout);
  t->wait_arg = 0;
  corio_list_push(&s->writers, &t->link);
  aux_policy(s);
  return corio_await(L, t, write_what[s->kind], write_abort, s, timeout);
}

/* ------------------------------------------------------------ shutdown */

static void stream_on_shutdown(uv_shutdown_t *req, int status) {
  corio_stream *s = (corio_stream *)req->data;
  corio_task *t = s->shutter;
  if (!t) return;
  s->shutter = NULL;
  corio_io_give(s->rt);
  aux_policy(s);
  if (status == UV_ENOTCONN || status == UV_ENOTSOCK) status = 0;
  corio_io_wake_status(t, status, "shutdown");
}

static int shutdown_abort(corio_task *t, int woken) {
  corio_stream *s = (corio_stream *)t->wait.obj;
  if (woken == 1) return 1;
  s->shutter = NULL; /* the request finishes in the background */
  corio_io_give(s->rt);
  aux_policy(s);
  return 1;
}

/* s:shutdown([opts]): flushes what is queued, then ends the writing side
   (the peer reads end of stream). Reading goes on. */
static int lstream_shutdown(lua_State *L) {
  corio_stream *s = corio_stream_check(L, 1, "shutdown");
  double timeout = corio_io_timeout(L, 2, "shutdown", NULL);
  corio_task *t = corio_await_begin(L, "shutdown");
  int r;
  if (s->flags & SF_SHUT) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!corio_io_take(t->rt))
    return corio_io_wait_slot(L, t, lstream_shutdown, timeout);
  s->sreq.data = s;
  if ((r = uv_shutdown(&s->sreq, &s->u.s, stream_on_shutdown)) != 0) {
    corio_io_give(s->rt);
    return corio_io_fail(L, r, "shutdown");
  }
  s->flags |= SF_SHUT;
  s->shutter = t;
  aux_policy(s);
  return corio_await(L, t, "shutdown", shutdown_abort, s, timeout);
}

/* --------------------------------------------------------------- close */

static void aux_wake_closed(corio_stream *s, corio_task *t) {
  corio_io_give(s->rt);
  corio_io_wake_closed(t, t->wait.what);
}

/* Closes the handle (idempotent). Parked tasks get nil, err "closed".
   What is still queued for writing is dropped. */
void corio_stream_close(corio_stream *s) {
  if (!(s->flags & SF_OPENED) || uv_is_closing(&s->u.h)) return;
  s->flags |= SF_CLOSING;
  if (s->woken) { /* woken to read, has not run: it gets "closed" too */
    corio_io_unretry_closed(s->woken, read_what[s->kind]);
    s->woken = NULL;
  }
  if (aux_breader(s)) { /* waiting for a slot to read: closed too */
    corio_list_remove(&s->breader->link);
    corio_io_wake_closed(s->breader, read_what[s->kind]);
    s->breader = NULL;
  }
  if (s->reader) {
    corio_task *t = s->reader;
    s->reader = NULL;
    aux_wake_closed(s, t);
  }
  if (s->shutter) {
    corio_task *t = s->shutter;
    s->shutter = NULL;
    aux_wake_closed(s, t);
  }
  while (!corio_list_empty(&s->writers))
    aux_wake_closed(s, corio_container(corio_list_shift(&s->writers),
                                       corio_task, link));
  uv_close(&s->u.h, stream_on_close);
}

void corio_stream_mark(corio_stream *s) { s->flags |= SF_OPENED; }

corio_rt *corio_stream_runtime(const corio_stream *s) { return s->rt; }
int corio_stream_kind(const corio_stream *s) { return s->kind; }

void corio_stream_opened(corio_stream *s) {
  s->flags |= SF_OPENED;
  aux_policy(s);
}

void corio_stream_set_writeonly(corio_stream *s) {
  s->flags |= SF_NOREAD;
  aux_policy(s);
}

/* The handle of an initialized stream; NULL when it is closed. */
corio_stream *corio_stream_test(lua_State *L, int idx) {
  stream_ud *ud = (stream_ud *)corio_testudata(L, idx, STREAM_MT);
  return ud && ud->s && aux_live(ud->s) ? ud->s : NULL;
}

static int lstream_close(lua_State *L) {
  stream_ud *ud = (stream_ud *)corio_checkudata(L, 1, STREAM_MT);
  if (ud->s && aux_live(ud->s)) corio_stream_close(ud->s);
  return 0;
}

/* Never touches the runtime unless the handle is still open on a live
   loop (then its runtime is alive: closing a loop closes its handles). */
static int lstream_gc(lua_State *L) {
  stream_ud *ud = (stream_ud *)corio_checkudata(L, 1, STREAM_MT);
  corio_stream *s = ud->s;
  if (!s) return 0;
  ud->s = NULL;
  s->ud = NULL;
  if (!(s->flags & SF_OPENED) || aux_orphaned(s)) {
    stream_free(s);
  } else {
    corio_stream_close(s); /* no-op when already closing */
  }
  return 0;
}

static int lstream_closed(lua_State *L) {
  stream_ud *ud = (stream_ud *)corio_checkudata(L, 1, STREAM_MT);
  lua_pushboolean(L, !ud->s || !aux_live(ud->s));
  return 1;
}

static int lstream_tostring(lua_State *L) {
  static const char *const names[] = {"tcp", "unix", "pipe", "stdio"};
  stream_ud *ud = (stream_ud *)corio_checkudata(L, 1, STREAM_MT);
  corio_stream *s = ud->s;
  if (!s || !aux_live(s))
    lua_pushliteral(L, "corio.Stream (closed)");
  else
    lua_pushfstring(L, "corio.Stream (%s, %p)", names[s->kind], (void *)s);
  return 1;
}

/* ---------------------------------------------------------------- open */

/* (local_addr, peer_addr, nodelay and keepalive are added by tcp.c) */
static const luaL_Reg methods[] = {
    {"close", lstream_close}, {"closed", lstream_closed},
    {"buffered", lstream_buffered}, {NULL, NULL}};
/* waiting methods that may start over for a budget slot (await 2) */
static const luaL_Reg retry_methods[] = {
    {"read", lstream_read},       {"read_some", lstream_read_some},
    {"write", lstream_write},     {"shutdown", lstream_shutdown},
    {"flush", lstream_flush},     {"readable", lstream_readable},
    {NULL, NULL}};
static const luaL_Reg meta[] = {{"__gc", lstream_gc},
                                {"__close", lstream_close},
                                {"__tostring", lstream_tostring},
                                {NULL, NULL}};

void corio_open_stream(lua_State *L) {
  corio_class_retry(L, STREAM_MT, methods, retry_methods, meta);
  lua_pop(L, 1);
}
