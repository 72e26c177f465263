/*
 * fuzz_frame.c: libFuzzer target for the wire protocol's frame decoding
 * and hello validation (runtime/proto.c).
 *
 * Each input is one line as read from a socket, without its newline. It
 * goes through proto_decode; a frame that decodes has its "id" read as an
 * ack's or a call's would be and is re-encoded with the private cjson (as
 * a result frame does with values); a hello is checked with
 * proto_check_hello, whose strings are then read to their end, and each
 * argument of a call goes through proto_integers, as methods_call does.
 * Whatever happens, the Lua stack must be back where it was: in the
 * server an unbalanced stack grows by one slot a frame, so here it aborts.
 *
 * liblua is not instrumented, so ASan cannot see herald's C code push past
 * the end of the Lua stack (a missing lua_checkstack): Lua itself writes
 * the slots. The state's allocator therefore follows every block with a
 * canary, and after each input every live block's canary is checked; a
 * slack behind the canary absorbs the overrun so that the process lives
 * to tell.
 */
#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define CANARY 64   /* bytes checked after each block */
#define SLACK 4096  /* room behind the canary for a longer overrun */
#define MAX_ARGS 64 /* as methods.c takes */

/* The header before each block the allocator hands out: the block's size
 * and its place in the live array. 16 bytes keep the block aligned. */
typedef struct block {
  size_t size, slot;
} block_t;

static block_t **live;
static size_t nlive, cap;
static unsigned char canary[CANARY];

/* One state for the whole run, as the server keeps one for all its
 * connections, so state left behind by one frame meets the next. */
static lua_State *L;

/* Aborts with what went wrong; libFuzzer keeps the input that did it. */
static void fail(const char *what) {
  fprintf(stderr, "fuzz_frame: %s\n", what);
  abort();
}

static void check_top(int want, const char *what) {
  if (lua_gettop(L) != want) {
    fprintf(stderr, "fuzz_frame: stack at %d, want %d\n", lua_gettop(L),
            want);
    fail(what);
  }
}

static void check_block(const block_t *b) {
  if (memcmp((const char *)(b + 1) + b->size, canary, CANARY) != 0) {
    fprintf(stderr, "fuzz_frame: a write past the end of a %zu-byte lua "
            "block (as when C code pushes past the lua stack without "
            "lua_checkstack)\n", b->size);
    abort();
  }
}

/* lua_Alloc over malloc with a canary after each block, as above. */
static void *canary_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  block_t *b = ptr != NULL ? (block_t *)ptr - 1 : NULL, *nb;

  (void)ud;
  (void)osize;
  if (b != NULL)
    check_block(b);
  if (nsize == 0) {
    if (b != NULL) {
      live[b->slot] = live[--nlive];
      live[b->slot]->slot = b->slot;
      free(b);
    }
    return NULL;
  }
  if (b == NULL && nlive == cap) {
    block_t **p = realloc(live, (cap = cap ? cap * 2 : 1024) * sizeof(*p));
    if (p == NULL)
      fail("out of memory for the block list");
    live = p;
  }
  nb = realloc(b, sizeof(*nb) + nsize + CANARY + SLACK);
  if (nb == NULL)
    return NULL;
  if (b == NULL)
    nb->slot = nlive++;
  live[nb->slot] = nb;
  nb->size = nsize;
  memcpy((char *)(nb + 1) + nsize, canary, CANARY);
  return nb + 1;
}

/* As methods_call does with a call's arguments, one at a time. */
static void call_args(int base) {
  lua_Integer n;

  if (lua_getfield(L, -1, "args") == LUA_TTABLE) {
    n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n && i <= MAX_ARGS; i++) {
      lua_geti(L, -1, i);
      proto_integers(L, -1);
      check_top(base + 3, "proto_integers unbalanced the stack");
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

/* The length of a field of the hello, read to its terminator so that ASan
 * sees a field that points at freed memory or lacks its NUL. */
static size_t touch(const char *s) { return s != NULL ? strlen(s) : 0; }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  memset(canary, 0xA5, sizeof(canary));
  L = lua_newstate(canary_alloc, NULL);
  if (L == NULL || proto_init(L) < 0)
    fail("cannot set up the lua state");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[256] = "";
  int base = lua_gettop(L), type, r;
  proto_hello_t h;
  lua_Integer id;
  volatile size_t n = 0;

  type = proto_decode(L, (const char *)data, size, err, sizeof(err));
  if (type < 0) {
    check_top(base, "a refused frame left values on the stack");
    if (err[0] == '\0')
      fail("a refused frame has no reason");
    return 0;
  }
  check_top(base + 1, "a decoded frame is not one value");
  if (!lua_istable(L, -1))
    fail("a decoded frame is not a table");
  (void)proto_get_integer(L, "id", &id);
  check_top(base + 1, "proto_get_integer unbalanced the stack");
  if (proto_encode_value(L, -1, err, sizeof(err)) == 0)
    lua_pop(L, 1);
  check_top(base + 1, "proto_encode_value unbalanced the stack");
  if (type == PROTO_CALL)
    call_args(base);
  if (type == PROTO_HELLO) {
    r = proto_check_hello(L, &h, err, sizeof(err));
    check_top(base + 1, "proto_check_hello unbalanced the stack");
    if (r == 0) {
      n += touch(h.user_name) + touch(h.machine_name) + touch(h.host_type);
      n += touch(h.system_user_name) + touch(h.password);
      n += touch(h.resume_id) + touch(h.resume_token);
      if (h.user_name == NULL)
        fail("a hello without userName was accepted");
      if ((h.resume_id == NULL) != (h.resume_token == NULL))
        fail("a resume without both sessionID and token was accepted");
    } else if (r != -1 && r != -2) {
      fail("proto_check_hello returned an undocumented code");
    }
  }
  lua_settop(L, base);
  for (size_t i = 0; i < nlive; i++)
    check_block(live[i]);
  (void)n;
  return 0;
}
