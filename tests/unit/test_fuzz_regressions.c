/*
 * test_fuzz_regressions.c: the bugs that fuzzing (tests/fuzz, make fuzz)
 * and the sanitizer build (make asan) found, each as the smallest input
 * that showed it. Some are undefined behaviour that a plain build runs
 * through unharmed: those fail under make asan, where UBSan aborts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <lua.h>

#include "jsonline.h"
#include "proto.h"

/*
 * A lua_Alloc that follows every block with a canary, checked when the
 * block is resized or freed, and a slack behind it that absorbs a longer
 * overrun. liblua is not instrumented, so neither ASan nor a plain build
 * sees herald push past the end of the Lua stack (a missing
 * lua_checkstack); this does.
 */
#define CANARY 64
#define SLACK 4096

static int overruns;

static void *canary_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  static const unsigned char zero[CANARY];
  unsigned char *b = ptr != NULL ? (unsigned char *)ptr - 16 : NULL, *nb;
  size_t old;

  (void)ud;
  (void)osize;
  if (b != NULL) {
    memcpy(&old, b, sizeof(old));
    if (memcmp(b + 16 + old, zero, CANARY) != 0)
      overruns++;
  }
  if (nsize == 0) {
    free(b);
    return NULL;
  }
  nb = realloc(b, 16 + nsize + CANARY + SLACK);
  if (nb == NULL)
    return NULL;
  memcpy(nb, &nsize, sizeof(nsize));
  memset(nb + 16 + nsize, 0, CANARY);
  return nb + 16;
}

/* A listening Unix socket in a fresh folder under /tmp. */
typedef struct listener {
  char dir[64];
  char path[96];
  int fd;
} listener_t;

static void listen_unix(listener_t *l) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};

  snprintf(l->dir, sizeof(l->dir), "/tmp/herald-regress-XXXXXX");
  assert_non_null(mkdtemp(l->dir));
  snprintf(l->path, sizeof(l->path), "%s/s.sock", l->dir);
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", l->path);
  l->fd = socket(AF_UNIX, SOCK_STREAM, 0);
  assert_true(l->fd >= 0);
  assert_int_equal(bind(l->fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
  assert_int_equal(listen(l->fd, 1), 0);
}

static void unlisten(listener_t *l) {
  close(l->fd);
  unlink(l->path);
  rmdir(l->dir);
}

/*
 * make asan, `herald console` on a fresh connection (every test of
 * test_console.HeraldConsoleTest): jsonline_buffered before anything was
 * received called memchr(NULL, '\n', 0), undefined behaviour that UBSan
 * reports as "null pointer passed as argument 1, which is declared to
 * never be null" (runtime/jsonline.c, jsonline_buffered).
 */
static void test_jsonline_buffered_before_any_read(void **state) {
  listener_t l;
  jsonline_t *j;
  int peer;
  static const char two[] = "{\"a\":1}\n{\"b\":2}\n";

  (void)state;
  listen_unix(&l);
  j = jsonline_connect_unix(l.path);
  assert_non_null(j);
  assert_int_equal(jsonline_buffered(j), 0);
  /* And once lines came in: one is left buffered after the first recv. */
  peer = accept(l.fd, NULL, NULL);
  assert_true(peer >= 0);
  assert_int_equal(write(peer, two, sizeof(two) - 1),
                   (ssize_t)sizeof(two) - 1);
  assert_int_equal(jsonline_recv(j), 1);
  assert_int_equal(jsonline_buffered(j), 1);
  assert_int_equal(jsonline_recv(j), 1);
  assert_int_equal(jsonline_buffered(j), 0);
  close(peer);
  assert_int_equal(jsonline_recv(j), 0);
  jsonline_close(j);
  unlisten(&l);
}

/*
 * make valgrind (test_methods.ResultFrames), then fuzz_frame: a call whose
 * argument nests 18 arrays or more ([[[...[1]...]]]) crashed the server
 * (SIGSEGV). proto_integers recurses into tables, two stack slots a level,
 * and never calls lua_checkstack, so it writes past the end of the Lua
 * stack (720 bytes on a new state) into the heap.
 */
static void test_integers_of_a_deep_argument(void **state) {
  char frame[256], err[256];
  lua_State *L;
  int n = 0;

  (void)state;
  overruns = 0;
  L = lua_newstate(canary_alloc, NULL);
  assert_non_null(L);
  assert_int_equal(proto_init(L), 0);
  n += snprintf(frame + n, sizeof(frame) - (size_t)n,
                "{\"type\":\"call\",\"id\":1,\"method\":\"m\",\"args\":[");
  for (int i = 0; i < 30; i++)
    frame[n++] = '[';
  frame[n++] = '7';
  for (int i = 0; i < 31; i++)
    frame[n++] = ']';
  n += snprintf(frame + n, sizeof(frame) - (size_t)n, "}");
  assert_int_equal(proto_decode(L, frame, (size_t)n, err, sizeof(err)),
                   PROTO_CALL);
  assert_int_equal(lua_getfield(L, -1, "args"), LUA_TTABLE);
  assert_int_equal(lua_geti(L, -1, 1), LUA_TTABLE);
  proto_integers(L, -1);
  /* The 7 at the bottom became an integer, and the stack is as it was. */
  assert_int_equal(lua_gettop(L), 3);
  for (int i = 0; i < 30; i++) {
    assert_int_equal(lua_geti(L, -1, 1), i < 29 ? LUA_TTABLE : LUA_TNUMBER);
    lua_remove(L, -2);
  }
  assert_true(lua_isinteger(L, -1));
  assert_int_equal(lua_tointeger(L, -1), 7);
  lua_close(L);
  assert_int_equal(overruns, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_jsonline_buffered_before_any_read),
      cmocka_unit_test(test_integers_of_a_deep_argument),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
