# herald: `make` builds build/herald, `make run` starts the server,
# `make test` runs every test. Missing Debian packages are installed first
# (as root) or named with the exact apt-get line.

VERSION := 0.1.0
CC ?= cc
BUILD := build
PKGS := lua5.4 libuv libedit
# lua-cjson is linked statically (ARCHITECTURE.md): its .a from lua-cjson-dev.
CJSON_LIB := -Wl,-Bstatic -llua5.4-cjson -Wl,-Bdynamic

WARN := -Wall -Wextra -Wshadow -Werror
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -DHERALD_VERSION='"$(VERSION)"' \
  -iquote runtime -iquote modules -iquote $(BUILD)/gen $(WARN) $(CFLAGS) \
  $(shell pkg-config --cflags $(PKGS) lua5.4-cjson)
LIBS = $(CJSON_LIB) $(shell pkg-config --libs $(PKGS)) -lm
TEST_LIBS = $(LIBS) $(shell pkg-config --libs cmocka)

RUNTIME := $(filter-out runtime/main.c,$(wildcard runtime/*.c))
NATIVES := $(wildcard modules/*.c)
LUA_MODULES := $(wildcard modules/*.lua)
OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(RUNTIME) $(NATIVES)) \
  $(BUILD)/obj/gen/lua_modules.o
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,\
  $(wildcard tests/unit/test_*.c))

DEPS_OK := $(BUILD)/.deps-build
TEST_DEPS_OK := $(BUILD)/.deps-test

.PHONY: all run test unit e2e demo bench clean install
all: $(BUILD)/herald

$(DEPS_OK): tools/deps.sh
	@sh tools/deps.sh build
	@mkdir -p $(BUILD) && touch $@

$(TEST_DEPS_OK): tools/deps.sh
	@sh tools/deps.sh test
	@mkdir -p $(BUILD) && touch $@

$(BUILD)/obj/%.o: %.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/embed: tools/embed.c | $(DEPS_OK)
	@mkdir -p $(BUILD)
	$(CC) -std=c11 -O2 $(WARN) $< -o $@

$(BUILD)/gen/lua_modules.c: $(BUILD)/embed $(LUA_MODULES)
	@mkdir -p $(dir $@)
	$(BUILD)/embed $@ $(foreach m,$(LUA_MODULES),$(basename $(notdir $(m)))=$(m))

$(BUILD)/obj/gen/lua_modules.o: $(BUILD)/gen/lua_modules.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/herald: $(BUILD)/obj/runtime/main.o $(OBJS)
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(OBJS) | $(TEST_DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags cmocka) $< $(OBJS) \
	  -o $@ $(TEST_LIBS)

run: $(BUILD)/herald
	$(BUILD)/herald serve $(ARGS)

test: $(BUILD)/herald $(UNIT_TESTS) | $(TEST_DEPS_OK)
	python3 tests/run.py $(TESTS)

demo: $(BUILD)/herald
	sh tools/demo.sh $(BUILD)/herald

clean:
	rm -rf $(BUILD)

PREFIX ?= /usr/local
install: $(BUILD)/herald
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/herald $(DESTDIR)$(PREFIX)/bin/herald

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
