# herald: `make` builds build/herald, `make run` starts the server,
# `make test` runs every test. Those two (and `make deps`, and the other
# targets that run something) install the missing Debian packages first
# (as root) or name them with the exact apt-get line; plain `make` only
# builds. `make V=1` shows the full commands; CFLAGS, CPPFLAGS and LDFLAGS
# are honoured; warnings are errors in CI (CI=true) or with WERROR=1.

VERSION := 0.1.0
# Parallel by default, one job per CPU; a -j on the command line wins.
ifeq ($(filter -j%,$(MAKEFLAGS)),)
MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 2)
endif
CC ?= cc
BUILD := build
# libsodium hashes the users file's passwords (argon2id); OpenSSL makes
# `herald cert`'s certificates and serves TLS.
# libsystemd: sd_notify under systemd (Type=notify, WatchdogSec).
PKGS := lua5.4 libuv libedit libsodium openssl sqlite3 libsystemd
# lua-cjson is linked statically: its .a from lua-cjson-dev.
CJSON_LIB := -Wl,-Bstatic -llua5.4-cjson -Wl,-Bdynamic

WARN := -Wall -Wextra -Wshadow $(if $(filter true,$(CI))$(WERROR),-Werror)
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -DHERALD_VERSION='"$(VERSION)"' \
  -iquote runtime -iquote modules -iquote $(BUILD)/gen $(WARN) $(CPPFLAGS) \
  $(CFLAGS) $(shell pkg-config --cflags $(PKGS) lua5.4-cjson)

# Quiet lines ("  CC runtime/server.c"); V=1 for the commands themselves.
say = $(if $(filter 1,$(V)),,@echo "  $(1) $(2)";)
# wslay (WebSocket framing) and http-parser come without pkg-config files.
LIBS = $(CJSON_LIB) $(shell pkg-config --libs $(PKGS)) -lwslay \
  -lhttp_parser -lm
TEST_LIBS = $(LIBS) $(shell pkg-config --libs cmocka)

RUNTIME := $(filter-out runtime/main.c,$(wildcard runtime/*.c))
NATIVES := $(wildcard modules/*.c)
LUA_MODULES := $(wildcard modules/*.lua)
WEB_FILES := $(wildcard web/*.html web/*.js web/*.css)
OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(RUNTIME) $(NATIVES)) \
  $(BUILD)/obj/gen/lua_modules.o $(BUILD)/obj/gen/web_assets.o
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,\
  $(wildcard tests/unit/test_*.c))

DEPS_OK := $(BUILD)/.deps-build
TEST_DEPS_OK := $(BUILD)/.deps-test
# The targets that install what they need before building; plain `make`
# only checks that pkg-config finds the libraries.
INSTALLING := $(filter run test deps asan bench demo soak valgrind fuzz,\
  $(MAKECMDGOALS))
DEPS_ORDER := $(if $(INSTALLING),$(DEPS_OK))
ifeq ($(filter-out all,$(or $(MAKECMDGOALS),all)),)
ifneq ($(shell pkg-config --exists $(PKGS) lua5.4-cjson && echo ok),ok)
$(error pkg-config does not find $(PKGS) lua5.4-cjson: run 'make deps' \
  (Debian: installs them) or install their development files)
endif
endif

.PHONY: all deps run test unit e2e demo bench clean install
all: $(BUILD)/herald

deps: $(DEPS_OK) $(TEST_DEPS_OK)

$(DEPS_OK): tools/deps.sh
	@sh tools/deps.sh build
	@mkdir -p $(BUILD) && touch $@

# After the build's packages: two apt-get may not run at once.
$(TEST_DEPS_OK): tools/deps.sh | $(DEPS_OK)
	@sh tools/deps.sh test
	@mkdir -p $(BUILD) && touch $@

$(BUILD)/obj/%.o: %.c | $(DEPS_ORDER)
	@mkdir -p $(dir $@)
	$(call say,CC,$<)$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/embed: tools/embed.c | $(DEPS_ORDER)
	@mkdir -p $(BUILD)
	$(call say,CC,$<)$(CC) -std=c11 -O2 $(WARN) $< -o $@

$(BUILD)/gen/lua_modules.c: $(BUILD)/embed $(LUA_MODULES)
	@mkdir -p $(dir $@)
	$(call say,EMBED,$(LUA_MODULES))$(BUILD)/embed $@ \
	  $(foreach m,$(LUA_MODULES),$(basename $(notdir $(m)))=$(m))

$(BUILD)/gen/web_assets.c: $(BUILD)/embed $(WEB_FILES)
	@mkdir -p $(dir $@)
	$(call say,EMBED,$(WEB_FILES))$(BUILD)/embed --web $@ \
	  $(foreach f,$(WEB_FILES),$(notdir $(f))=$(f))

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/herald: $(BUILD)/obj/runtime/main.o $(OBJS)
	$(call say,LINK,$@)$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ -o $@ $(LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(OBJS) | $(TEST_DEPS_OK)
	@mkdir -p $(dir $@)
	$(call say,CC,$<)$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags \
	  cmocka) $(LDFLAGS) $< $(OBJS) -o $@ $(TEST_LIBS)

run: $(BUILD)/herald
	$(BUILD)/herald serve $(ARGS)

test: $(BUILD)/herald $(UNIT_TESTS) | $(TEST_DEPS_OK)
	python3 tests/run.py $(TESTS)

# make asan: herald and the unit tests built with AddressSanitizer and
# UndefinedBehaviorSanitizer into build/asan, and every test run against
# them (tests/run.py and the e2e harness read the build folder from
# HERALD_BUILD); a sanitizer report or a leak fails the test that caused it.
ASAN_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
  -fno-sanitize-recover=all
asan:
	HERALD_BUILD=$(BUILD)/asan ASAN_OPTIONS=detect_leaks=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(MAKE) BUILD=$(BUILD)/asan CFLAGS='$(ASAN_CFLAGS)' test

# make valgrind: the end-to-end tests with the server under valgrind
# (HERALD_WRAPPER) and every wait of the harness stretched (HERALD_SLOW); a
# server whose valgrind report shows an error or a definite leak fails the
# test. TESTS picks some e2e tests, as for make test.
VALGRIND := valgrind --leak-check=full --errors-for-leak-kinds=definite \
  --error-exitcode=99
valgrind: $(BUILD)/herald
	@sh tools/deps.sh valgrind
	HERALD_WRAPPER='$(VALGRIND)' HERALD_SLOW=5 \
	  python3 tests/run.py --e2e $(TESTS)

# make fuzz: the libFuzzer targets of tests/fuzz, built with clang-14 and
# the sanitizers over the runtime compiled alike (build/fuzz), each run
# for FUZZ_SECONDS on a copy of its seed corpus; a crash fails.
FUZZ_CC ?= $(firstword $(shell command -v clang clang-14 2>/dev/null) \
  clang-14)
FUZZ_SECONDS ?= 60
FUZZ := $(BUILD)/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-omit-frame-pointer \
  -fno-sanitize-recover=all
FUZZ_OBJS := $(patsubst $(BUILD)/obj/%,$(FUZZ)/obj/%,$(OBJS))
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(FUZZ)/%,\
  $(wildcard tests/fuzz/fuzz_*.c))

$(FUZZ)/.deps: tools/deps.sh | $(DEPS_OK)
	@sh tools/deps.sh fuzz
	@mkdir -p $(FUZZ) && touch $@

$(FUZZ)/obj/%.o: %.c | $(DEPS_OK) $(FUZZ)/.deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(ALL_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link \
	  -MMD -MP -c $< -o $@

$(FUZZ)/obj/gen/%.o: $(BUILD)/gen/%.c | $(FUZZ)/.deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(ALL_CFLAGS) $(FUZZ_SAN) -c $< -o $@

$(FUZZ_TARGETS): $(FUZZ)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_OBJS)
	$(FUZZ_CC) $(ALL_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer $< $(FUZZ_OBJS) \
	  -o $@ $(LIBS)

fuzz: $(FUZZ_TARGETS)
	sh tests/fuzz/run.sh $(FUZZ) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

.PHONY: asan valgrind fuzz

demo: $(BUILD)/herald
	sh tools/demo.sh $(BUILD)/herald

# 2,000 sessions coming, going, cut and resumed under broadcasts every
# 100 ms for SOAK_SECONDS (default 300); fails on any loss or leak.
SOAK_SECONDS ?= 300
.PHONY: soak
soak: $(BUILD)/herald
	SOAK_SECONDS=$(SOAK_SECONDS) python3 tests/soak/soak.py

# herald next to Redis and to the machine's floor under the same load:
# build/bench/report.md, fanout.png and the sweep's plots. BENCH_QUICK=1
# runs the small version (CI's smoke test).
# loadgen links OpenSSL for --tls (the TLS rows of the report) and wslay
# for --ws (the WebSocket rows).
$(BUILD)/bench/loadgen: tests/bench/loadgen.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) \
	  $(shell pkg-config --cflags openssl) $< -o $@ \
	  $(shell pkg-config --libs openssl) -lwslay

# floor: the machine's floor for fan-out and calls (a minimal epoll server
# that speaks just enough of herald's protocol for loadgen); libc only.
$(BUILD)/bench/floor: tests/bench/floor.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $< -o $@

bench: $(BUILD)/herald $(BUILD)/bench/loadgen $(BUILD)/bench/floor
	@sh tools/deps.sh bench
	python3 tests/bench/run.py

clean:
	rm -rf $(BUILD)

PREFIX ?= /usr/local
install: $(BUILD)/herald
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 $(BUILD)/herald $(DESTDIR)$(PREFIX)/bin/herald
	install -m 0644 man/herald.1 $(DESTDIR)$(PREFIX)/share/man/man1/herald.1
	install -D -m 0644 lua/herald.lua \
	  $(DESTDIR)$(PREFIX)/share/herald/lua/herald.lua

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
-include $(shell find $(FUZZ)/obj -name '*.d' 2>/dev/null)
