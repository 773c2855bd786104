/*
 * libFuzzer target: the pool's value decoder (csrc/marshal.c) on
 * arbitrary bytes. corio_unmarshal may raise a Lua error ("malformed
 * marshaled data", memory), never crash, read out of bounds or leak. When
 * it succeeds, the values it made are encoded again: the encoder either
 * refuses them with a message (the decoder accepts table keys and NaN
 * keys it would never produce) or gives bytes that decode to as many
 * values.
 *
 *   make fuzz                      (longer runs of every target)
 *   build/fuzz/marshal_fuzz .ci/fuzz/corpus/marshal
 */
#include "corio.h"
#include <assert.h>
#include <stdint.h>
#include <string.h>

typedef struct input {
  const uint8_t *p;
  size_t n;
} input;

static int fz_decode(lua_State *L) {
  input *in = (input *)lua_touserdata(L, 1);
  corio_buf b = {NULL, 0, 0};
  char err[512];
  int n, base;
  lua_settop(L, 0);
  n = corio_unmarshal(L, (const char *)in->p, in->n);
  assert(lua_gettop(L) == n);
  if (corio_marshal(L, 1, n, &b, "results", err, sizeof err) == 0) {
    base = lua_gettop(L);
    /* (a memory error here would leak b: the fuzzer never runs short) */
    assert(corio_unmarshal(L, b.p, b.n) == n);
    assert(lua_gettop(L) == base + n);
  } else {
    assert(memchr(err, 0, sizeof err) && err[0]);
  }
  corio_buf_free(&b);
  return 0;
}

/* Regression (found by this target): tables nested a million deep
   overflowed the C stack of the recursive decoder; now anything deeper
   than the encoder's CORIO_MARSHAL_DEPTH is malformed data. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  static uint8_t deep[1 + 2 * 1000000];
  lua_State *L = luaL_newstate();
  input in;
  size_t i;
  (void)argc;
  (void)argv;
  deep[0] = 1;
  for (i = 1; i < sizeof deep; i += 2) deep[i] = 6, deep[i + 1] = 0;
  in.p = deep;
  in.n = sizeof deep;
  lua_pushcfunction(L, fz_decode);
  lua_pushlightuserdata(L, &in);
  assert(lua_pcall(L, 1, 0, 0) != LUA_OK);
  assert(strstr(lua_tostring(L, -1), "malformed"));
  lua_close(L);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = luaL_newstate();
  input in;
  in.p = data;
  in.n = size;
  lua_pushcfunction(L, fz_decode);
  lua_pushlightuserdata(L, &in);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    assert(lua_type(L, -1) == LUA_TSTRING);
  }
  lua_close(L);
  return 0;
}
