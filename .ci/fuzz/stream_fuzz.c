/*
 * libFuzzer target: the framing of stream reads (csrc/stream.c), without
 * a socket. The input is a script: byte 0 is the count of operations,
 * then two bytes per operation, then a payload. The stream's content is
 * the payload repeated; operations deliver it in chunks of any size
 * through the real read callbacks (stream_on_alloc, stream_on_read), end
 * it (EOF or a reset), and read from the buffer as a task would
 * (aux_read_now: a byte count, a line with or without its end, some,
 * all), with limits from tiny to large. Every result is compared with a
 * model of the documented semantics (an independent few lines), and the
 * buffer with the model's after every operation. While a read would
 * wait, aux_servable (what wakes a parked reader after each chunk, with
 * its incremental newline scan) must agree with whether the read can now
 * be served. At the end the rest is delivered with EOF and read as
 * lines: everything delivered was returned exactly once, in order.
 *
 * stream.c is included, so its static functions are reachable; the rest
 * of corio is linked as is. The stream's handle is never opened, which
 * keeps aux_policy away from libuv.
 *
 *   build/fuzz/stream_fuzz .ci/fuzz/corpus/stream
 */
#include "../../csrc/stream.c"
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <lualib.h>

int luaopen_corio_core(lua_State *L);

#define TOTAL_MAX (64u << 10) /* bytes delivered per input, at most */

typedef struct model {
  const uint8_t *pay;    /* the payload, repeated */
  size_t plen;
  size_t fed;            /* bytes delivered so far */
  char *base;            /* bytes delivered and not consumed: */
  char *buf;             /* buf[0, len), inside base[0, cap) */
  size_t len, cap;
  int status;            /* 0, UV_EOF or UV_ECONNRESET */
  char *out;             /* everything consumed, in order */
  size_t olen, ocap;
} model;

static uint8_t content(const model *m, size_t i) {
  return m->plen ? m->pay[i % m->plen] : (uint8_t)('a' + i % 3);
}

static void grow(char **p, size_t *cap, size_t need) {
  if (need <= *cap) return;
  while (*cap < need) *cap = *cap ? *cap * 2 : 4096;
  *p = (char *)realloc(*p, *cap);
  assert(*p);
}

/* Delivers k more bytes through libuv's callbacks, in the chunks the
   allocation callback offers. */
static void feed(corio_stream *s, model *m, size_t k) {
  if (m->status || m->fed + k > TOTAL_MAX) return;
  if (m->buf != m->base) { /* compact (reads only move buf forward) */
    if (m->len) memmove(m->base, m->buf, m->len);
    m->buf = m->base;
  }
  grow(&m->base, &m->cap, m->len + k);
  m->buf = m->base;
  while (k) {
    uv_buf_t b;
    size_t n, i;
    stream_on_alloc(&s->u.h, 65536, &b);
    assert(b.base && b.len >= READ_MIN);
    n = b.len < k ? b.len : k;
    for (i = 0; i < n; i++) {
      b.base[i] = (char)content(m, m->fed + i);
      m->buf[m->len + i] = b.base[i];
    }
    m->fed += n;
    m->len += n;
    k -= n;
    stream_on_read(&s->u.s, (ssize_t)n, &b);
  }
}

static void end(corio_stream *s, model *m, int status) {
  if (m->status) return;
  m->status = status;
  stream_on_read(&s->u.s, status, NULL);
}

/* The model's answer: -1 wait, 0 taken (*k bytes consumed, *keep of
   them returned), 1 limit error, 2 end/error of the stream. */
static int model_read(model *m, int mode, size_t n, int keep_end,
                      size_t *k, size_t *keep) {
  const char *nl = m->len ? (const char *)memchr(m->buf, '\n', m->len) : NULL;
  switch (mode) {
  case R_SOME:
    if (m->len) { *k = *keep = m->len < n ? m->len : n; return 0; }
    return m->status ? 2 : -1;
  case R_BYTES:
    if (m->len >= n) { *k = *keep = n; return 0; }
    if (!m->status) return -1;
    if (!m->len) return 2;
    *k = *keep = m->len;
    return 0;
  case R_LINE:
    if (nl) {
      *k = *keep = (size_t)(nl - m->buf) + 1;
      if (*k - 1 > n) return 1;
      if (!keep_end) {
        (*keep)--;
        if (*keep && m->buf[*keep - 1] == '\r') (*keep)--;
      }
      return 0;
    }
    if (m->len > n) return 1;
    if (!m->status) return -1;
    if (!m->len) return 2;
    *k = *keep = m->len;
    return 0;
  default:
    if (m->len > n) return 1;
    if (!m->status) return -1;
    if (m->status != UV_EOF) return 2;
    *k = *keep = m->len;
    return 0;
  }
}

typedef struct read_args {
  corio_stream *s;
  int mode, keep_end;
  size_t n;
} read_args;

static int fz_read(lua_State *L) {
  read_args *a = (read_args *)lua_touserdata(L, 1);
  lua_settop(L, 0);
  return aux_read_now(L, a->s, a->mode, a->n, a->keep_end);
}

/* The buffer holds what the model holds (its ends: every byte is
   compared when it is read out). */
static void check_buffer(const corio_stream *s, const model *m) {
  size_t e = m->len < 64 ? m->len : 64;
  assert(s->len == m->len);
  assert(!e || memcmp(s->buf + s->off, m->buf, e) == 0);
  assert(!e || memcmp(s->buf + s->off + s->len - e, m->buf + m->len - e, e) == 0);
  assert(s->off + s->len <= s->cap);
  assert(s->scanned <= s->len);
}

/* One read, checked against the model; returns whether it would wait. */
static int do_read(lua_State *L, corio_stream *s, model *m, int mode,
                   size_t n, int keep_end) {
  read_args a;
  size_t k = 0, keep = 0;
  int want = model_read(m, mode, n, keep_end, &k, &keep), got;
  a.s = s;
  a.mode = mode;
  a.n = n;
  a.keep_end = keep_end;
  lua_pushcfunction(L, fz_read);
  lua_pushlightuserdata(L, &a);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) {
    fprintf(stderr, "read raised: %s\n", lua_tostring(L, -1));
    abort();
  }
  got = lua_gettop(L);
  if (want == -1) {
    assert(got == 0);
  } else if (want == 0) {
    size_t len;
    const char *v;
    assert(got == 1 && lua_type(L, 1) == LUA_TSTRING);
    v = lua_tolstring(L, 1, &len);
    assert(len == keep && (!keep || memcmp(v, m->buf, keep) == 0));
    if (k) {
      grow(&m->out, &m->ocap, m->olen + k);
      memcpy(m->out + m->olen, m->buf, k);
      m->buf += k;
    }
    m->olen += k;
    m->len -= k;
  } else {
    assert(got == 2 && lua_isnil(L, 1) && lua_istable(L, 2));
    lua_getfield(L, 2, "kind");
    assert(strcmp(lua_tostring(L, -1), want == 1 ? "limit" : "io") == 0 ||
           (want == 2 && strcmp(lua_tostring(L, -1), "closed") == 0));
  }
  lua_settop(L, 0);
  check_buffer(s, m);
  return want == -1;
}

static size_t amount(uint8_t p) {
  return (p & 0x80) ? (size_t)(p & 0x7f) * 512 + 1 : (size_t)p + 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static lua_State *L;
  corio_stream *s;
  model m;
  size_t nops, i;
  int waiting = 0; /* a read that would wait: its mode and limit */
  if (!L) { /* one state for every input: corio's error machinery */
    L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "corio.core", luaopen_corio_core, 0);
    lua_settop(L, 0);
  }
  if (size == 0) return 0;
  nops = data[0];
  if (1 + 2 * nops > size) nops = (size - 1) / 2;
  memset(&m, 0, sizeof m);
  m.pay = data + 1 + 2 * nops;
  m.plen = size - 1 - 2 * nops;
  s = (corio_stream *)calloc(1, sizeof *s);
  assert(s);
  s->u.h.data = s;
  for (i = 0; i < nops; i++) {
    uint8_t op = data[1 + 2 * i], p = data[2 + 2 * i];
    switch (op % 10) {
    case 0: case 1: case 2:
      feed(s, &m, amount(p));
      if (waiting) {
        /* what wakes the parked reader must agree with the read */
        size_t k, keep;
        int can = model_read(&m, s->rmode, s->need, 0, &k, &keep) != -1;
        assert(aux_servable(s) == can);
        check_buffer(s, &m);
      }
      break;
    case 3: end(s, &m, (p & 1) ? UV_ECONNRESET : UV_EOF); break;
    case 4: waiting = do_read(L, s, &m, R_BYTES, amount(p), 0); break;
    case 5: waiting = do_read(L, s, &m, R_SOME, amount(p), 0); break;
    case 6: waiting = do_read(L, s, &m, R_LINE, p == 255 ? 65536 : p + 1, 0);
      break;
    case 7: waiting = do_read(L, s, &m, R_LINE, p == 255 ? 65536 : p + 1, 1);
      break;
    case 8: waiting = do_read(L, s, &m, R_ALL, amount(p) * 16, 0); break;
    default: waiting = 0; break; /* the reader gave up (timeout) */
    }
    if (waiting) { /* as aux_read_wait records it */
      int mode = op % 10 == 4 ? R_BYTES : op % 10 == 5 ? R_SOME
                 : op % 10 == 8 ? R_ALL : R_LINE;
      s->rmode = (uint8_t)mode;
      s->need = mode == R_BYTES ? amount(p) : mode == R_SOME ? amount(p)
                : mode == R_ALL ? amount(p) * 16 : (p == 255 ? 65536u : p + 1u);
    }
  }
  /* the rest, then everything out as lines (with their ends) */
  if (!m.status) {
    size_t rest = m.plen > m.fed ? m.plen - m.fed : 0;
    if (rest) feed(s, &m, rest);
    end(s, &m, UV_EOF);
  }
  while (m.len) assert(!do_read(L, s, &m, R_LINE, TOTAL_MAX, 1));
  assert(m.olen == m.fed);
  for (i = 0; i < m.olen; i++) assert((uint8_t)m.out[i] == content(&m, i));
  free(s->buf);
  free(s);
  free(m.base);
  free(m.out);
  return 0;
}
