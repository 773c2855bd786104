/*
 * Preloaded after libtsan into the interpreter of the ThreadSanitizer run
 * (`make test`, see .ci/with tsan). Not part of corio.
 *
 * Programs that a spec starts (sh for io.popen and os.execute, timeout,
 * env) inherit LD_PRELOAD, and an uninstrumented sh with libtsan preloaded
 * crashes at start. So the preload list moves from LD_PRELOAD to
 * CORIO_CHILD_PRELOAD: children run without TSan, and
 * spec/fixtures/proc.lua hands it back to the child interpreters it starts
 * (which load the instrumented corio.core and need the TSan runtime).
 */
#include <stdlib.h>

__attribute__((constructor)) static void preload_init(void) {
  const char *p = getenv("LD_PRELOAD");
  if (p == NULL)
    return;
  setenv("CORIO_CHILD_PRELOAD", p, 1);
  unsetenv("LD_PRELOAD");
}
