/*
 * allocfail: a Lua 5.4 host whose allocator fails the Nth allocation, to
 * prove that corio turns every out-of-memory into a Lua error: no crash,
 * no leak, no runtime left corrupted.
 *
 * For each N, in a fresh lua_State: allocations are counted from just
 * before `require "corio"`, and from the Nth on every one fails; the
 * program below runs (spawn, sleep, a channel, a semaphore, a scope, a
 * timeout, a pool job, a loopback TCP echo, a file written and read back
 * and a file object, in a temporary directory). It must either succeed
 * or raise an error; then, with failures off, a small corio program runs
 * in the same state and must succeed, and lua_close must return. The
 * count of a clean run is the range of N. Built with ASan+UBSan (a crash
 * or a use after free aborts, and the death callback names the N) and
 * LeakSanitizer at exit (a leak on any error path).
 *
 *   allocfail [-v] [DENSE [STRIDE]]   every N up to DENSE (default: all),
 *                                     then every STRIDE-th (default 1)
 *   allocfail -n N                    one N, saying what happened
 * (make allocfail: every N; the CI step: a dense prefix, then a stride)
 *
 * Errors are counted by kind: "not enough memory" and corio's own
 * out-of-memory messages, and others (an OOM that surfaced as an I/O
 * error value, which the program then asserts on). Only a crash, a leak,
 * a failure of the check program or of lua_close fails the run.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int luaopen_corio_core(lua_State *L);

static const char *const program =
  "local dir = ...\n"
  "local corio = require 'corio'\n"
  "local rt = corio.runtime({ workers = 1 })\n"
  "return rt:run(function()\n"
  "  local ch, sem = corio.channel(1), corio.semaphore(1)\n"
  "  local t = corio.spawn(function()\n"
  "    for i = 1, 3 do assert(ch:send(i)) end\n"
  "    ch:close()\n"
  "  end)\n"
  "  local sum = 0\n"
  "  while true do\n"
  "    local v, err = ch:recv()\n"
  "    if v == nil then assert(corio.is_error(err, 'closed'), err) break end\n"
  "    sum = sum + v\n"
  "  end\n"
  "  assert(t:join() == nil and sum == 6)\n"
  "  sem:with(corio.sleep, 0.001)\n"
  "  local ok, e = pcall(corio.timeout, 0.001, corio.sleep, 1)\n"
  "  assert(not ok and corio.is_timeout(e), e)\n"
  "  corio.scope(function(s) s:spawn(corio.sleep, 0.001) s:spawn(corio.yield) end)\n"
  "  assert(corio.blocking(function(a) return a * 2 end, 21) == 42)\n"
  "  local srv = assert(corio.tcp.listen('127.0.0.1', 0))\n"
  "  local server = corio.spawn(function()\n"
  "    local c = assert(srv:accept())\n"
  "    local line = c:read('l')\n"
  "    if line then c:write(line .. '\\n') end\n"
  "    c:close()\n"
  "  end)\n"
  "  local c, err = corio.tcp.connect('127.0.0.1', srv:port())\n"
  "  if not c then srv:close() server:cancel() error(err) end\n"
  "  assert(c:write('hello\\n'))\n"
  "  local back, rerr = c:read('l')\n"
  "  c:close()\n"
  "  srv:close()\n"
  "  server:join()\n"
  "  assert(back == 'hello', rerr)\n"
  "  local path = dir .. '/f'\n"
  "  assert(corio.fs.write(path, 'data'))\n"
  "  assert(corio.fs.read(path) == 'data')\n"
  "  local f = assert(corio.fs.open(path, 'a'))\n"
  "  f:write('more')\n"
  "  f:close()\n"
  "  assert(corio.fs.remove(path))\n"
  "  return 'ok'\n"
  "end)\n";

/* After a failure, with allocation failures off: the runtime works. */
static const char *const check =
  "local corio = require 'corio'\n"
  "return corio.run(function()\n"
  "  local ch = corio.channel(0)\n"
  "  corio.spawn(function() ch:send(7) end)\n"
  "  local v = ch:recv()\n"
  "  corio.sleep(0)\n"
  "  assert(corio.stats().alive == 1)\n"
  "  return v\n"
  "end)\n";

static long counted;   /* allocations counted since armed */
static long fail_at;   /* the one to fail, 0: none */
static int armed;
static int trace_first; /* -n: print where the first failure happens */
void __sanitizer_print_stack_trace(void);
static long current_n; /* for the death callback */

/* From the Nth on, every allocation fails until the host disarms (Lua
   retries a failed one after a full collection, so failing only the Nth
   would never be seen). Lua assumes that shrinking never fails: only
   growth is counted and failed. */
static void *fa_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  if (armed && (ptr == NULL || nsize > osize) && ++counted >= fail_at &&
      fail_at) {
    if (trace_first && counted == fail_at) __sanitizer_print_stack_trace();
    return NULL;
  }
  return realloc(ptr, nsize);
}

static void on_death(void) {
  fprintf(stderr, "allocfail: died while failing allocations from N=%ld\n",
          current_n);
}

/* A run that does not end is a failure too (a hang on an error path). */
static void on_alarm(int sig) {
  (void)sig;
  fprintf(stderr, "allocfail: N=%ld: no end after 30 s (a hang)\n",
          current_n);
  abort();
}

void __sanitizer_set_death_callback(void (*cb)(void));

enum { RES_OK, RES_OOM, RES_OTHER };

/* One run failing allocation n (0: none). Returns RES_*; exits on a broken
   runtime. */
static int run_one(long n, const char *dir, int verbose, long *total) {
  lua_State *L = lua_newstate(fa_alloc, NULL);
  int st, kind;
  const char *msg;
  if (!L) exit(2);
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_corio_core);
  lua_setfield(L, -2, "corio.core");
  lua_pop(L, 1);
  if (luaL_loadstring(L, program) != LUA_OK) {
    fprintf(stderr, "allocfail: %s\n", lua_tostring(L, -1));
    exit(2);
  }
  lua_pushstring(L, dir);
  current_n = n;
  alarm(30);
  counted = 0;
  fail_at = n;
  armed = 1;
  st = lua_pcall(L, 1, 1, 0);
  armed = 0;
  if (total) *total = counted;
  msg = luaL_tolstring(L, -1, NULL);
  if (st == LUA_OK) kind = RES_OK;
  else if (strstr(msg, "memory")) kind = RES_OOM;
  else kind = RES_OTHER;
  if (verbose || (kind == RES_OTHER && n))
    fprintf(stderr, "N=%ld: %s%s\n", n, st == LUA_OK ? "ok: " : "error: ",
            msg);
  if (n == 0 && st != LUA_OK) {
    fprintf(stderr, "allocfail: the program fails without a fault: %s\n",
            msg);
    exit(1);
  }
  lua_settop(L, 0);
  if (luaL_loadstring(L, check) != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK || lua_tointeger(L, -1) != 7) {
    fprintf(stderr, "allocfail: N=%ld: the runtime is broken after the "
            "failure: %s\n", n, lua_tostring(L, -1));
    exit(1);
  }
  lua_close(L);
  alarm(0);
  return kind;
}

int main(int argc, char **argv) {
  long total, dense = -1, stride = 1, n, runs = 0, counts[3] = {0, 0, 0};
  int verbose = 0, a = 1;
  char dir[] = "/tmp/corio-allocfail-XXXXXX";
  if (a + 1 < argc && strcmp(argv[a], "-n") == 0) { /* replay one N */
    if (!mkdtemp(dir)) return 2;
    __sanitizer_set_death_callback(on_death);
    trace_first = 1;
    run_one(atol(argv[a + 1]), dir, 1, NULL);
    rmdir(dir);
    return 0;
  }
  if (a < argc && strcmp(argv[a], "-v") == 0) verbose = 1, a++;
  if (a < argc) dense = atol(argv[a++]);
  if (a < argc) stride = atol(argv[a++]);
  if (stride < 1) stride = 1;
  if (!mkdtemp(dir)) {
    perror("allocfail: mkdtemp");
    return 2;
  }
  __sanitizer_set_death_callback(on_death);
  signal(SIGALRM, on_alarm);
  run_one(0, dir, verbose, &total);
  printf("allocfail: the program makes %ld allocations\n", total);
  fflush(stdout);
  /* the count varies a little from run to run (I/O and thread timing):
     go some past it */
  for (n = 1; n <= total + total / 10; n += (dense >= 0 && n >= dense) ? stride : 1) {
    counts[run_one(n, dir, verbose, NULL)]++;
    runs++;
  }
  rmdir(dir);
  printf("allocfail: %ld runs (N = 1..%ld%s): %ld succeeded, %ld raised "
         "out of memory, %ld raised another error; no crash, runtime "
         "usable after each\n", runs, total + total / 10,
         dense >= 0 ? ", sampled" : "", counts[RES_OK], counts[RES_OOM],
         counts[RES_OTHER]);
  return 0;
}
