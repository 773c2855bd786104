/*
 * marshal.c: values crossing between Lua states (the loop's and a pool
 * worker's) as compact tagged bytes.
 *
 * What crosses: nil, booleans, integers and floats (the subtype is kept on
 * 5.3+), binary-safe strings, and tables of these, nested at most
 * CORIO_MARSHAL_DEPTH deep. A table reached twice is copied twice; a table
 * inside itself is a cycle and an error; metatables are not copied. Keys
 * may be strings, numbers or booleans. Anything else is refused with the
 * path that leads to it: "args[2].list[3]: function".
 *
 * The encoder never raises (it runs on the loop thread before a job is
 * queued, and in a worker after the job returned): it reports a failure
 * as a message in the caller's buffer. The decoder allocates Lua objects,
 * so it may raise a memory error; its callers run it protected.
 *
 * Format (all integers little-endian as in memory: both ends are one
 * process): a varint count of values, then each value:
 *   NIL | FALSE | TRUE | INT i64 | FLOAT f64 | STR varint-len bytes
 *   | TABLE varint-narr value*narr (key value)* END
 * The array part holds t[1..#t] (nils included, skipped when decoding).
 */
#include "corio.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { M_NIL, M_FALSE, M_TRUE, M_INT, M_FLOAT, M_STR, M_TABLE, M_END };

/* one step of the path to a value, for error messages */
enum { P_ARG, P_INT, P_KEY };
typedef struct enc_step {
  int kind;
  int idx;          /* P_KEY: stack index of the key */
  lua_Integer i;    /* P_ARG, P_INT: the index */
} enc_step;

typedef struct enc {
  lua_State *L;
  corio_buf *b;
  const char *what;                         /* "args" or "results" */
  char *err;
  size_t errsz;
  int depth;                                /* tables open */
  const void *anc[CORIO_MARSHAL_DEPTH + 1]; /* those tables, for cycles */
  enc_step path[CORIO_MARSHAL_DEPTH + 2];   /* path[0]: the argument */
} enc;

/* ------------------------------------------------------------ buffer */

void corio_buf_free(corio_buf *b) {
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}

/* Room for k more bytes; 0 on failure (size limit or out of memory). */
static int buf_reserve(corio_buf *b, size_t k) {
  size_t cap;
  char *np;
  if (b->n + k <= b->cap) return 1;
  if (b->n + k > CORIO_MARSHAL_MAX) return 0;
  cap = b->cap ? b->cap : 256;
  while (cap < b->n + k) cap *= 2;
  if (cap > CORIO_MARSHAL_MAX) cap = CORIO_MARSHAL_MAX;
  np = (char *)realloc(b->p, cap);
  if (!np) return 0;
  b->p = np;
  b->cap = cap;
  return 1;
}

/* ------------------------------------------------------------ encode */

/* Formats the path of the value being encoded into e->err, followed by
   ": " and the reason. depth steps are shown (the last may be a key). */
static int enc_fail(enc *e, int steps, const char *fmt, const char *arg) {
  size_t n = 0;
  int i;
  n += (size_t)snprintf(e->err, e->errsz, "%s", e->what);
  for (i = 0; i < steps && n < e->errsz; i++) {
    const enc_step *s = &e->path[i];
    char *o = e->err + n;
    size_t room = e->errsz - n;
    if (s->kind != P_KEY) {
      n += (size_t)snprintf(o, room, "[%lld]", (long long)s->i);
    } else if (lua_type(e->L, s->idx) == LUA_TSTRING) {
      size_t len, k;
      const char *k_s = lua_tolstring(e->L, s->idx, &len);
      int ident = len > 0 && len <= 40 && !(k_s[0] >= '0' && k_s[0] <= '9');
      for (k = 0; ident && k < len; k++)
        ident = (k_s[k] == '_' || (k_s[k] >= 'a' && k_s[k] <= 'z') ||
                 (k_s[k] >= 'A' && k_s[k] <= 'Z') ||
                 (k_s[k] >= '0' && k_s[k] <= '9'));
      if (ident) n += (size_t)snprintf(o, room, ".%s", k_s);
      else n += (size_t)snprintf(o, room, "[\"%.*s%s\"]", len > 20 ? 20 :
                                 (int)len, k_s, len > 20 ? "..." : "");
    } else if (lua_type(e->L, s->idx) == LUA_TBOOLEAN) {
      n += (size_t)snprintf(o, room, "[%s]", lua_toboolean(e->L, s->idx)
                                                ? "true" : "false");
    } else {
      n += (size_t)snprintf(o, room, "[%.14g]",
                            (double)lua_tonumber(e->L, s->idx));
    }
  }
  if (n < e->errsz) snprintf(e->err + n, e->errsz - n, fmt, arg);
  return -1;
}

static int enc_put(enc *e, const void *p, size_t k) {
  if (!buf_reserve(e->b, k))
    return enc_fail(e, e->depth + 1, ": too large (the limit is %s)",
                    "64 MiB");
  memcpy(e->b->p + e->b->n, p, k);
  e->b->n += k;
  return 0;
}

static int enc_tag(enc *e, int tag) {
  unsigned char c = (unsigned char)tag;
  return enc_put(e, &c, 1);
}

static int enc_varint(enc *e, size_t v) {
  unsigned char tmp[10];
  int k = 0;
  do {
    tmp[k] = (unsigned char)(v & 0x7f);
    v >>= 7;
    if (v) tmp[k] |= 0x80;
    k++;
  } while (v);
  return enc_put(e, tmp, (size_t)k);
}

static int enc_number(enc *e, int idx) {
#if LUA_VERSION_NUM >= 503
  if (lua_isinteger(e->L, idx)) {
    lua_Integer i = lua_tointeger(e->L, idx);
    int64_t v = (int64_t)i;
    return enc_tag(e, M_INT) || enc_put(e, &v, sizeof v);
  }
#endif
  {
    double d = (double)lua_tonumber(e->L, idx);
    return enc_tag(e, M_FLOAT) || enc_put(e, &d, sizeof d);
  }
}

static int enc_value(enc *e, int idx);

/* Whether the key at idx is an index of the array part 1..narr. */
static int aux_array_key(lua_State *L, int idx, size_t narr) {
  lua_Number d;
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
#if LUA_VERSION_NUM >= 503
  if (lua_isinteger(L, idx)) {
    lua_Integer i = lua_tointeger(L, idx);
    return i >= 1 && (size_t)i <= narr;
  }
  return 0; /* a float key is never an array index on 5.3+ */
#endif
  d = lua_tonumber(L, idx);
  return d >= 1 && d <= (lua_Number)narr && d == (lua_Number)(size_t)d;
}

static int enc_key(enc *e, int idx) {
  switch (lua_type(e->L, idx)) {
    case LUA_TSTRING: case LUA_TNUMBER: case LUA_TBOOLEAN:
      return enc_value(e, idx);
    default:
      return enc_fail(e, e->depth, ": %s as a key (keys must be strings, "
                      "numbers or booleans)", luaL_typename(e->L, idx));
  }
}

static int enc_table(enc *e, int idx) {
  lua_State *L = e->L;
  const void *self = lua_topointer(L, idx);
  size_t i, narr;
  int d;
  for (d = 0; d < e->depth; d++)
    if (e->anc[d] == self) return enc_fail(e, e->depth + 1, ": %s", "cycle");
  if (e->depth >= CORIO_MARSHAL_DEPTH)
    return enc_fail(e, e->depth + 1, ": tables nested deeper than %s",
                    "64 levels");
  if (!lua_checkstack(L, 4))
    return enc_fail(e, e->depth + 1, ": %s", "out of stack space");
  narr = (size_t)lua_rawlen(L, idx);
  if (enc_tag(e, M_TABLE) || enc_varint(e, narr)) return -1;
  e->anc[e->depth++] = self;
  for (i = 1; i <= narr; i++) {
    int r;
    e->path[e->depth].kind = P_INT;
    e->path[e->depth].i = (lua_Integer)i;
    lua_rawgeti(L, idx, (int)i);
    r = enc_value(e, lua_gettop(L));
    lua_pop(L, 1);
    if (r) return -1;
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int k = lua_gettop(L) - 1;
    if (aux_array_key(L, k, narr)) {
      lua_pop(L, 1);
      continue;
    }
    e->path[e->depth].kind = P_KEY;
    e->path[e->depth].idx = k;
    if (enc_key(e, k) || enc_value(e, k + 1)) {
      lua_pop(L, 2);
      return -1;
    }
    lua_pop(L, 1);
  }
  e->depth--;
  return enc_tag(e, M_END);
}

static int enc_value(enc *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: return enc_tag(e, M_NIL);
    case LUA_TBOOLEAN:
      return enc_tag(e, lua_toboolean(L, idx) ? M_TRUE : M_FALSE);
    case LUA_TNUMBER: return enc_number(e, idx);
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      return enc_tag(e, M_STR) || enc_varint(e, len) || enc_put(e, s, len);
    }
    case LUA_TTABLE: return enc_table(e, idx);
    default:
      return enc_fail(e, e->depth + 1, ": %s (only nil, booleans, numbers, "
                      "strings and tables of these can be copied)",
                      luaL_typename(L, idx));
  }
}

int corio_marshal(lua_State *L, int first, int n, corio_buf *b,
                  const char *what, char *err, size_t errsz) {
  enc e;
  int i;
  e.L = L;
  e.b = b;
  e.what = what;
  e.err = err;
  e.errsz = errsz;
  e.depth = 0;
  b->n = 0;
  if (enc_varint(&e, (size_t)n)) return -1;
  for (i = 0; i < n; i++) {
    e.path[0].kind = P_ARG;
    e.path[0].i = i + 1;
    if (enc_value(&e, first + i)) return -1;
  }
  return 0;
}

/* ------------------------------------------------------------ decode */

typedef struct dec {
  lua_State *L;
  const unsigned char *p, *end;
  int depth;        /* tables open: the encoder's limit bounds the C
                       recursion (deeper bytes are malformed) */
} dec;

static void dec_bad(dec *d) {
  luaL_error(d->L, "corio: malformed marshaled data");
}

static size_t dec_varint(dec *d) {
  size_t v = 0;
  int shift = 0;
  for (;;) {
    unsigned char c;
    if (d->p >= d->end || shift > 63) dec_bad(d);
    c = *d->p++;
    v |= (size_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) return v;
    shift += 7;
  }
}

static void dec_raw(dec *d, void *out, size_t k) {
  if ((size_t)(d->end - d->p) < k) dec_bad(d);
  memcpy(out, d->p, k);
  d->p += k;
}

/* Pushes the next value; returns its tag (M_END pushes nothing). */
static int dec_value(dec *d) {
  lua_State *L = d->L;
  int tag;
  if (d->p >= d->end) dec_bad(d);
  tag = *d->p++;
  switch (tag) {
    case M_NIL: lua_pushnil(L); break;
    case M_FALSE: lua_pushboolean(L, 0); break;
    case M_TRUE: lua_pushboolean(L, 1); break;
    case M_INT: {
      int64_t v;
      dec_raw(d, &v, sizeof v);
#if LUA_VERSION_NUM >= 503
      lua_pushinteger(L, (lua_Integer)v);
#else
      lua_pushnumber(L, (lua_Number)v);
#endif
      break;
    }
    case M_FLOAT: {
      double v;
      dec_raw(d, &v, sizeof v);
      lua_pushnumber(L, (lua_Number)v);
      break;
    }
    case M_STR: {
      size_t len = dec_varint(d);
      if ((size_t)(d->end - d->p) < len) dec_bad(d);
      lua_pushlstring(L, (const char *)d->p, len);
      d->p += len;
      break;
    }
    case M_TABLE: {
      size_t i, narr = dec_varint(d);
      if (++d->depth > CORIO_MARSHAL_DEPTH) dec_bad(d);
      luaL_checkstack(L, 4, "corio: tables nested too deep");
      if (narr > (size_t)(d->end - d->p)) dec_bad(d); /* >= 1 byte each */
      lua_createtable(L, (int)narr, 0);
      for (i = 1; i <= narr; i++) {
        if (dec_value(d) == M_END) dec_bad(d);
        lua_rawseti(L, -2, (int)i);
      }
      while (dec_value(d) != M_END) {
        if (lua_isnil(L, -1)) dec_bad(d);
        if (dec_value(d) == M_END) dec_bad(d);
        lua_rawset(L, -3);
      }
      d->depth--;
      break;
    }
    case M_END: break;
    default: dec_bad(d);
  }
  return tag;
}

int corio_unmarshal(lua_State *L, const char *p, size_t n) {
  dec d;
  size_t i, count;
  d.L = L;
  d.p = (const unsigned char *)p;
  d.end = d.p + n;
  d.depth = 0;
  count = dec_varint(&d);
  if (count > n) dec_bad(&d);
  luaL_checkstack(L, (int)count + 2, "corio: too many values");
  for (i = 0; i < count; i++)
    if (dec_value(&d) == M_END) dec_bad(&d);
  return (int)count;
}
