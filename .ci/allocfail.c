/*
 * allocfail: a Lua 5.4 host whose allocator fails the Nth allocation, to
 * prove that corio turns every out-of-memory into a Lua error: no crash,
 * no leak, no runtime left corrupted.
 *
 * Two phases. "program": corio is loaded, then allocations are counted
 * and the Nth (and the next few) fail while the program below runs
 * (spawn, sleep, a channel, a semaphore, a scope, a timeout, a pool job,
 * a loopback TCP echo, a file written and read back and a file object,
 * in a temporary directory). "require": the same while `require "corio"`
 * loads the module. For each N, a fresh lua_State. It must either succeed
 * or raise an error; then, with failures off, a small corio program runs
 * in the same state and must succeed, and lua_close must return. The
 * count of a clean run is the range of N. Built with ASan+UBSan (a crash
 * or a use after free aborts, and the death callback names the N) and
 * LeakSanitizer at exit (a leak on any error path).
 *
 *   allocfail [-v] [STRIDE]   every N of the program; every STRIDE-th
 *                             (default 1) of the require
 *   allocfail -n N | -r N     one N of the program | the require, saying
 *                             where the first failure happened
 * (make allocfail: every N; the CI step: a stride for the require)
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

/* Phase "require": loading corio. */
static const char *const load = "require 'corio'\n";

/* Phase "program" (corio is loaded before the faults start). */
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
static int current_phase;

/* The Nth allocation and the FAIL_SPAN - 1 after it fail: memory runs
   short for a while (Lua retries a failed allocation after a full
   collection, so failing only the Nth would never be seen), then comes
   back, as it does in a real process, and the runtime's recovery (which
   retries) can finish. Lua assumes that shrinking never fails: only
   growth is counted and failed. */
#define FAIL_SPAN 64
static void *fa_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  if (armed && (ptr == NULL || nsize > osize) && ++counted >= fail_at &&
      fail_at && counted < fail_at + FAIL_SPAN) {
    if (trace_first && counted == fail_at) __sanitizer_print_stack_trace();
    return NULL;
  }
  return realloc(ptr, nsize);
}

static const char *phase_name(int phase) {
  return phase ? "program" : "require";
}

static void on_death(void) {
  if (!current_n) return; /* at exit: a leak report, not a run */
  fprintf(stderr, "allocfail: died while failing allocations from N=%ld "
          "(replay: build/allocfail/allocfail %s %ld)\n", current_n,
          current_phase ? "-n" : "-r", current_n);
}

/* A run that does not end is a failure too (a hang on an error path). */
static void on_alarm(int sig) {
  (void)sig;
  fprintf(stderr, "allocfail: %s N=%ld: no end after 30 s (a hang)\n",
          phase_name(current_phase), current_n);
  abort();
}

void __sanitizer_set_death_callback(void (*cb)(void));

enum { RES_OK, RES_OOM, RES_OTHER };

/* One run of a phase failing allocations from n on (0: none). Returns
   RES_*; exits on a broken runtime. */
static int run_one(int phase, long n, const char *dir, int verbose,
                   long *total) {
  lua_State *L = lua_newstate(fa_alloc, NULL);
  int st, kind;
  const char *msg;
  if (!L) exit(2);
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_corio_core);
  lua_setfield(L, -2, "corio.core");
  lua_pop(L, 1);
  if ((phase && luaL_dostring(L, load) != LUA_OK) ||
      luaL_loadstring(L, phase ? program : load) != LUA_OK) {
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
    fprintf(stderr, "%s N=%ld: %s%s\n", phase_name(phase), n,
            st == LUA_OK ? "ok: " : "error: ", msg);
  if (n == 0 && st != LUA_OK) {
    fprintf(stderr, "allocfail: the program fails without a fault: %s\n",
            msg);
    exit(1);
  }
  lua_settop(L, 0);
  if (luaL_loadstring(L, check) != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK || lua_tointeger(L, -1) != 7) {
    fprintf(stderr, "allocfail: %s N=%ld: the runtime is broken after "
            "the failure: %s\n", phase_name(phase), n, lua_tostring(L, -1));
    exit(1);
  }
  lua_close(L);
  alarm(0);
  current_n = 0;
  return kind;
}

/* Every N of a phase (every stride-th one). */
static void run_phase(int phase, long stride, const char *dir, int verbose) {
  long total, n, runs = 0, counts[3] = {0, 0, 0};
  current_phase = phase;
  run_one(phase, 0, dir, verbose, &total);
  /* the count varies a little from run to run (I/O and thread timing):
     go some past it */
  for (n = 1; n <= total + total / 10 + 2; n += stride) {
    counts[run_one(phase, n, dir, verbose, NULL)]++;
    runs++;
  }
  printf("allocfail: %s: %ld allocations; %ld runs (every %ld%s N): %ld "
         "succeeded, %ld raised out of memory, %ld raised another error; "
         "the runtime worked after each\n", phase_name(phase), total, runs,
         stride, stride == 1 ? "st" : "th", counts[RES_OK], counts[RES_OOM],
         counts[RES_OTHER]);
  fflush(stdout);
}

int main(int argc, char **argv) {
  long stride = 1;
  int verbose = 0, a = 1;
  char dir[] = "/tmp/corio-allocfail-XXXXXX";
  if (!mkdtemp(dir)) {
    perror("allocfail: mkdtemp");
    return 2;
  }
  __sanitizer_set_death_callback(on_death);
  signal(SIGALRM, on_alarm);
  if (a + 1 < argc && (strcmp(argv[a], "-n") == 0 ||
                       strcmp(argv[a], "-r") == 0)) { /* replay one N */
    trace_first = 1;
    current_phase = argv[a][1] == 'n';
    run_one(current_phase, atol(argv[a + 1]), dir, 1, NULL);
    rmdir(dir);
    return 0;
  }
  if (a < argc && strcmp(argv[a], "-v") == 0) verbose = 1, a++;
  if (a < argc) stride = atol(argv[a++]);
  if (stride < 1) stride = 1;
  run_phase(1, 1, dir, verbose);
  run_phase(0, stride, dir, verbose);
  rmdir(dir);
  return 0;
}
