# corio: build, test and CI entry points.
#
#   make            deps + build for Lua 5.4 into .rocks/5.4
#   make build-all  build for Lua 5.4, 5.3, 5.1 and LuaJIT (.rocks/<v>)
#   make test       everything CI runs (see .ci/test.sh); last line of
#                   output is "N passed, N failed"
#   make test-fast  busted on Lua 5.4 only, without specs tagged #slow
#   make demo       run examples/crawler.lua on Lua 5.4
#   make bench      run bench/run.lua on Lua 5.4
#   make soak       bench/soak.lua at full size (1M task lifecycles, 1M pool
#                   jobs, 100k TCP connections; heap, RSS and fds flat);
#                   SOAK_SCALE=0.05 for a shorter run (CI runs 0.1)
#   make asan       AddressSanitizer+UBSan build into build/asan/
#   make tsan       ThreadSanitizer build into build/tsan/ (the pool specs)
#   make allocfail  every allocation of a corio program failed in turn
#                   (.ci/allocfail.c, ASan+UBSan+LSan); ALLOCFAIL_ARGS=K
#                   tries every K-th while loading corio (CI: .ci/test.sh)
#   make fuzz       libFuzzer targets in .ci/fuzz/ for FUZZ_TIME seconds
#                   each (default 300); fuzz-build only builds them
#   make valgrind   the core specs under valgrind memcheck (Lua 5.4)
#   make chaos      random chaos programs (spec/fixtures/chaos.lua):
#                   SEEDS=N random seeds (default 100), or SEED=S to replay
#                   one; VARIANT=5.3|5.1|luajit|asan (default 5.4)
#   make clean
#
# One spec by hand:   .ci/with 5.4 busted spec/semaphore_spec.lua
# (or luajit, 5.1, 5.3, asan, tsan instead of 5.4; see .ci/with).

SHELL := /bin/bash
.DEFAULT_GOAL := build
# All builds compile into csrc/*.o in place (luarocks make does), so they
# must not run side by side.
.NOTPARALLEL:

ROCKSPEC := rockspec/corio-scm-1.rockspec
LUAROCKS ?= luarocks
# gcc: the ASan run preloads gcc's libasan (.ci/with asan).
ASAN_CC ?= gcc
LUAJIT_INCDIR ?= /usr/include/luajit-2.1

# Flags for corio.core. uv.h needs POSIX types (pthread_rwlock_t) that a
# strict -std=c99 hides, hence _DEFAULT_SOURCE.
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes
CORIO_CFLAGS := -std=c99 -D_DEFAULT_SOURCE -fvisibility=hidden $(WARN)
ROCK_CFLAGS := -O2 -fPIC $(CORIO_CFLAGS)
ASAN_CFLAGS := -fPIC -g -O1 -fno-omit-frame-pointer \
  -fsanitize=address,undefined -fno-sanitize-recover=all $(CORIO_CFLAGS)
TSAN_CFLAGS := -fPIC -g -O1 -fno-omit-frame-pointer -fsanitize=thread \
  $(CORIO_CFLAGS)

# Anything that should trigger a rebuild of the rock.
ROCK_INPUTS := $(ROCKSPEC) $(wildcard csrc/*.c csrc/*.h lua/corio/*.lua lua/corio/*/*.lua)

# --deps-mode=none: never look for a rocks server (there is none offline).
# Usage: $(call lr_make,GLOBAL-FLAGS,VARIABLES)
lr_make = $(LUAROCKS) $(1) make --deps-mode=none $(ROCKSPEC) CFLAGS="$(ROCK_CFLAGS)" $(2)

.PHONY: deps build build-all build-5.4 build-5.3 build-5.1 build-luajit \
  asan tsan demo test test-fast bench soak lint clean chaos allocfail \
  fuzz fuzz-build valgrind

deps:
	@.ci/deps.sh

build: deps build-5.4

build-all: deps build-5.4 build-5.3 build-5.1 build-luajit

build-5.4: .rocks/5.4/.built
build-5.3: .rocks/5.3/.built
build-5.1: .rocks/5.1/.built
build-luajit: .rocks/luajit/.built

# luarocks links the module as ./corio/core.so before installing it and
# leaves it there; remove it so no interpreter ever picks it up via ./?.so.
define clean_stray
	@rm -f corio/core.so && { rmdir corio 2>/dev/null || true; }
endef

.rocks/5.4/.built .rocks/5.3/.built .rocks/5.1/.built: .rocks/%/.built: $(ROCK_INPUTS)
	$(call lr_make,--lua-version=$* --tree=.rocks/$*)
	$(clean_stray)
	@touch $@

# LuaJIT: LuaRocks' Lua 5.1 mode, with LuaJIT's headers and interpreter.
.rocks/luajit/.built: $(ROCK_INPUTS)
	$(call lr_make,--lua-version=5.1 --tree=.rocks/luajit,\
	  LUA_INCDIR=$(LUAJIT_INCDIR) LUA_BINDIR=/usr/bin LUA=/usr/bin/luajit)
	$(clean_stray)
	@touch $@

# The sanitized module, built straight from the sources the rockspec lists.
asan: build/asan/corio/core.so build/asan/asan_preload.so

# The sources of corio.core, as the rockspec lists them.
ROCK_SOURCES = $$(lua5.4 -e 'local t = {} \
	    loadfile("$(ROCKSPEC)", "t", t)() \
	    print(table.concat(t.build.modules["corio.core"].sources, " "))')

# Usage: $(call san_build,NAME,CFLAGS): a sanitized module at $@.
define san_build
	@mkdir -p $(@D)
	@srcs=$(ROCK_SOURCES) && \
	  [ -n "$$srcs" ] || { echo "$(1): no sources in $(ROCKSPEC)" >&2; exit 1; }; \
	  set -x; $(ASAN_CC) $(2) -shared -o $@ -Icsrc -I/usr/include/lua5.4 \
	    $$srcs -luv -lpthread
endef

build/asan/corio/core.so: $(ROCK_INPUTS)
	$(call san_build,asan,$(ASAN_CFLAGS))

build/asan/asan_preload.so: .ci/asan_preload.c
	@mkdir -p $(@D)
	$(ASAN_CC) -shared -fPIC -O1 -Wall -Wextra -o $@ $<

# The ThreadSanitizer module (the pool's threads), built the same way.
tsan: build/tsan/corio/core.so build/tsan/tsan_preload.so

build/tsan/corio/core.so: $(ROCK_INPUTS)
	$(call san_build,tsan,$(TSAN_CFLAGS))

build/tsan/tsan_preload.so: .ci/tsan_preload.c
	@mkdir -p $(@D)
	$(ASAN_CC) -shared -fPIC -O1 -Wall -Wextra -o $@ $<

# --- reliability: allocation failure, fuzzing, valgrind (issue 13)

# allocfail: a host with corio linked in, sanitized like `make asan`.
build/allocfail/allocfail: .ci/allocfail.c $(ROCK_INPUTS)
	@mkdir -p $(@D)
	$(ASAN_CC) $(filter-out -fPIC,$(ASAN_CFLAGS)) -o $@ -Icsrc \
	  -I/usr/include/lua5.4 .ci/allocfail.c $$(echo $(ROCK_SOURCES)) \
	  -llua5.4 -luv -lpthread -lm

ALLOCFAIL_ARGS ?=
allocfail: build/allocfail/allocfail build/allocfail/lsan.supp
	LUA_PATH="lua/?.lua;lua/?/init.lua" \
	  LSAN_OPTIONS="suppressions=build/allocfail/lsan.supp:print_suppressions=0" \
	  build/allocfail/allocfail $(ALLOCFAIL_ARGS)

build/allocfail/lsan.supp: .ci/lsan.supp .ci/allocfail.supp
	@mkdir -p $(@D)
	cat $^ > $@

# libFuzzer targets (clang). stream_fuzz includes csrc/stream.c to reach
# its static framing functions, and links the rest of corio.
FUZZ_CC ?= clang
FUZZ_CFLAGS := -g -O1 -std=c99 -D_DEFAULT_SOURCE \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Icsrc -I/usr/include/lua5.4
FUZZ_TARGETS := marshal stream
FUZZ_TIME ?= 300

build/fuzz/marshal_fuzz: .ci/fuzz/marshal_fuzz.c csrc/marshal.c csrc/corio.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< csrc/marshal.c -llua5.4 -luv

build/fuzz/stream_fuzz: .ci/fuzz/stream_fuzz.c $(ROCK_INPUTS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< \
	  $$(echo $(ROCK_SOURCES) | tr ' ' '\n' | grep -v '^csrc/stream.c$$') \
	  -llua5.4 -luv -lpthread -lm

fuzz-build: $(FUZZ_TARGETS:%=build/fuzz/%_fuzz)

# New inputs go to build/fuzz/work-<target>; a crash is written to
# build/fuzz/ (add it to .ci/fuzz/corpus/<target>/ with the fix).
# (the progress lines for each new input are left out of the output)
fuzz: fuzz-build
	@set -o pipefail; for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/work-$$t; \
	  echo "fuzz: $$t for $(FUZZ_TIME) s"; \
	  build/fuzz/$${t}_fuzz -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
	    -artifact_prefix=build/fuzz/$$t- build/fuzz/work-$$t \
	    .ci/fuzz/corpus/$$t 2>&1 | \
	    grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)' || exit 1; \
	done

# The core specs under valgrind (the normal -O2 build); see
# .ci/valgrind.sh for the list and the suppressions.
valgrind: build-5.4
	.ci/valgrind.sh

SEEDS ?= 100
VARIANT ?= 5.4
chaos_build = $(if $(filter asan,$(VARIANT)),build-5.4 asan,$(if \
  $(filter luajit51,$(VARIANT)),build-5.1,build-$(VARIANT)))

chaos: deps
	@$(MAKE) --no-print-directory $(chaos_build)
	CORIO_VARIANT=$(VARIANT) .ci/with $(VARIANT) lua spec/fixtures/chaos.lua \
	  $(if $(SEED),$(SEED),--random $(SEEDS))

demo: build
	.ci/with 5.4 lua examples/crawler.lua

test: deps
	.ci/test.sh

test-fast: build
	.ci/with 5.4 busted

bench: build
	.ci/with 5.4 lua bench/run.lua

SOAK_SCALE ?= 1
soak: build
	.ci/with 5.4 lua bench/soak.lua $(SOAK_SCALE)

lint: deps
	luacheck --no-color $(wildcard lua spec bench examples)

clean:
	rm -rf .rocks build
	rm -f csrc/*.o
	$(clean_stray)
