/*
 * Preloaded after libasan into the interpreter of the ASan run
 * (`make test`, see .ci/with asan). Not part of corio.
 *
 * - dlclose() does nothing: lua_close unloads C modules before
 *   LeakSanitizer runs at exit, which would leave leak reports with
 *   "<unknown module>" frames. Keeping the code mapped keeps the names.
 * - Processes that a spec spawns inherit LD_PRELOAD, so an uninstrumented
 *   child (sh, cat, python3, ...) would get ASan too, and LeakSanitizer
 *   would report that program's own leaks as a failure. ASan has already
 *   read its options when this runs, so we append detect_leaks=0 to
 *   ASAN_OPTIONS: children keep ASan (a child interpreter can still load
 *   the sanitized corio.core, and memory errors there still abort), but
 *   only the top interpreter checks for leaks.
 * - stdout is line buffered: an ASan abort, or LeakSanitizer ending the
 *   process from exit(), would otherwise drop what busted had printed
 *   but not flushed (its summary line among it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dlclose(void *handle);

int dlclose(void *handle) {
  (void)handle;
  return 0;
}

__attribute__((constructor)) static void preload_init(void) {
  static const char off[] = ":detect_leaks=0";
  const char *old;
  char *opts;
  size_t n, k = sizeof(off) - 1;
  free(malloc(1)); /* an intercepted call: ASan is initialised by now */
  setvbuf(stdout, NULL, _IOLBF, 0);
  old = getenv("ASAN_OPTIONS");
  if (old == NULL)
    old = "";
  n = strlen(old);
  if (n >= k && strcmp(old + n - k, off) == 0)
    return; /* a child: already off */
  opts = malloc(n + k + 1);
  if (opts == NULL)
    return;
  memcpy(opts, old, n);
  memcpy(opts + n, off, k + 1);
  setenv("ASAN_OPTIONS", opts, 1);
  free(opts);
}
