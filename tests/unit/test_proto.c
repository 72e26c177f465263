/*
 * Unit tests for runtime/proto.c: UTF-8 validation, frame decoding and its
 * refusals, every field rule of hello, and the frame encoders (each frame
 * decoded back with lua-cjson and compared field by field).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "proto.h"

/* 2026-11-26T21:00:00.123Z */
#define SENT_MS 1795726800123LL

/* ---- fixtures and helpers ------------------------------------------- */

static int setup(void **state) {
  lua_State *L = luaL_newstate();
  if (L == NULL)
    return -1;
  luaL_openlibs(L);
  if (proto_init(L) != 0) {
    lua_close(L);
    return -1;
  }
  *state = L;
  return 0;
}

static int teardown(void **state) {
  lua_close(*state);
  return 0;
}

#define VALID(lit) proto_valid_utf8(lit, sizeof(lit) - 1)

/* Decodes a NUL-terminated line; on success the frame is left on the
 * stack (checked), on failure the stack must be unchanged. */
static int decode(lua_State *L, const char *line, char *err, size_t errlen) {
  int top = lua_gettop(L), r;
  err[0] = '\0';
  r = proto_decode(L, line, strlen(line), err, errlen);
  if (r < 0) {
    assert_int_equal(r, -1);
    assert_int_equal(lua_gettop(L), top);
    assert_true(err[0] != '\0');
  } else {
    assert_int_equal(lua_gettop(L), top + 1);
    assert_true(lua_istable(L, -1));
  }
  return r;
}

/* Decodes a hello frame and checks it; the frame stays on the stack so
 * the strings in h stay valid until the teardown. */
static int hello(lua_State *L, const char *json, proto_hello_t *h, char *err,
                 size_t errlen) {
  int top, r;
  assert_int_equal(decode(L, json, err, errlen), PROTO_HELLO);
  top = lua_gettop(L);
  err[0] = '\0';
  r = proto_check_hello(L, h, err, errlen);
  assert_int_equal(lua_gettop(L), top);
  if (r < 0)
    assert_true(err[0] != '\0');
  return r;
}

/* Expects hello to be refused (code want) with a message naming field. */
static void hello_refused(lua_State *L, const char *json, int want,
                          const char *field) {
  proto_hello_t h;
  char err[256];
  int r = hello(L, json, &h, err, sizeof(err));
  if (r != want || strstr(err, field) == NULL)
    print_error("hello %s: got %d \"%s\", want %d naming %s\n", json, r, err,
                want, field);
  assert_int_equal(r, want);
  assert_non_null(strstr(err, field));
}

static void hello_ok(lua_State *L, const char *json, proto_hello_t *h) {
  char err[256];
  int r = hello(L, json, h, err, sizeof(err));
  if (r != 0)
    print_error("hello %s: %s\n", json, err);
  assert_int_equal(r, 0);
}

/* A JSON string literal of n copies of unit (ASCII or UTF-8). */
static char *repeat(const char *unit, size_t n) {
  size_t u = strlen(unit);
  char *s = malloc(u * n + 1);
  assert_non_null(s);
  for (size_t i = 0; i < n; i++)
    memcpy(s + i * u, unit, u);
  s[u * n] = '\0';
  return s;
}

/* A hello with one extra member, e.g. "\"machineName\":\"...\"". */
static char *hello_with(const char *member) {
  const char *head = "{\"type\":\"hello\",\"userName\":\"V\",";
  char *s = malloc(strlen(head) + strlen(member) + 2);
  assert_non_null(s);
  sprintf(s, "%s%s}", head, member);
  return s;
}

static char *member_of_len(const char *name, size_t n) {
  char *v = repeat("x", n);
  char *m = malloc(strlen(name) + n + 8);
  assert_non_null(m);
  sprintf(m, "\"%s\":\"%s\"", name, v);
  free(v);
  return m;
}

/* Checks an encoded frame's shape (one line, '\n' last, valid UTF-8) and
 * pushes it decoded by lua-cjson. */
static void push_frame(lua_State *L, const outbuf_t *b) {
  assert_non_null(b);
  assert_int_equal(b->refs, 1);
  assert_true(b->len >= 3);
  assert_int_equal(b->data[b->len - 1], '\n');
  assert_null(memchr(b->data, '\n', b->len - 1));
  assert_null(memchr(b->data, '\r', b->len));
  assert_true(proto_valid_utf8(b->data, b->len));
  assert_int_equal(b->data[0], '{');
  assert_int_equal(b->data[b->len - 2], '}');
  lua_getglobal(L, "require");
  lua_pushstring(L, "cjson");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "decode");
  lua_remove(L, -2);
  lua_pushlstring(L, b->data, b->len - 1);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK)
    fail_msg("frame %.*s does not decode: %s", (int)b->len, b->data,
             lua_tostring(L, -1));
  assert_true(lua_istable(L, -1));
}

/* The string field name of the table at the top; compared with len. */
static void assert_field_lstr(lua_State *L, const char *name,
                              const char *want, size_t wantlen) {
  size_t len;
  const char *got;
  assert_int_equal(lua_getfield(L, -1, name), LUA_TSTRING);
  got = lua_tolstring(L, -1, &len);
  assert_int_equal(len, wantlen);
  assert_memory_equal(got, want, wantlen);
  lua_pop(L, 1);
}

static void assert_field_str(lua_State *L, const char *name,
                             const char *want) {
  assert_field_lstr(L, name, want, strlen(want));
}

/* An integer field. lua-cjson 2.1.0 decodes every number as a float, so a
 * whole float of the same value is accepted (exact below 2^53). */
static void assert_field_int(lua_State *L, const char *name,
                             lua_Integer want) {
  lua_Integer got;
  assert_int_equal(lua_getfield(L, -1, name), LUA_TNUMBER);
  assert_true(lua_tointegerx(L, -1, NULL) == lua_tonumber(L, -1));
  got = lua_tointeger(L, -1);
  assert_int_equal(got, want);
  lua_pop(L, 1);
}

static void assert_field_bool(lua_State *L, const char *name, int want) {
  assert_int_equal(lua_getfield(L, -1, name), LUA_TBOOLEAN);
  assert_int_equal(lua_toboolean(L, -1), want);
  lua_pop(L, 1);
}

/* The number of keys of the table at the top. */
static int nkeys(lua_State *L) {
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    n++;
    lua_pop(L, 1);
  }
  return n;
}

/* Texts that need escaping, and UTF-8 of every length. */
static const char tricky[] =
    "He said \"hi\" \\ back/slash\nnew line\ttab\r\x01 "
    "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 end";

/* ---- UTF-8 ------------------------------------------------------------ */

static void test_utf8_valid(void **state) {
  (void)state;
  assert_true(proto_valid_utf8("", 0));
  assert_true(VALID("plain ASCII, with punctuation: {}[]\"\\\t"));
  assert_true(VALID("\xC3\xA9"));             /* U+00E9, 2 bytes */
  assert_true(VALID("\xE2\x82\xAC"));         /* U+20AC, 3 bytes */
  assert_true(VALID("\xF0\x9F\x98\x80"));     /* U+1F600, 4 bytes */
  assert_true(VALID("a\xC3\xA9" "b\xE2\x82\xAC" "c\xF0\x9F\x98\x80" "d"));
  /* The edges of each length. */
  assert_true(VALID("\xC2\x80"));             /* U+0080 */
  assert_true(VALID("\xDF\xBF"));             /* U+07FF */
  assert_true(VALID("\xE0\xA0\x80"));         /* U+0800 */
  assert_true(VALID("\xED\x9F\xBF"));         /* U+D7FF */
  assert_true(VALID("\xEE\x80\x80"));         /* U+E000 */
  assert_true(VALID("\xEF\xBF\xBF"));         /* U+FFFF */
  assert_true(VALID("\xF0\x90\x80\x80"));     /* U+10000 */
  assert_true(VALID("\xF4\x8F\xBF\xBF"));     /* U+10FFFF */
  assert_true(VALID("\x7F"));
  /* Only len bytes are looked at. */
  assert_true(proto_valid_utf8("ab\xFF", 2));
}

static void test_utf8_invalid(void **state) {
  (void)state;
  /* Overlong forms. */
  assert_false(VALID("\xC0\x80"));
  assert_false(VALID("\xC1\xBF"));
  assert_false(VALID("\xE0\x80\x80"));
  assert_false(VALID("\xE0\x9F\xBF"));
  assert_false(VALID("\xF0\x80\x80\x80"));
  assert_false(VALID("\xF0\x8F\xBF\xBF"));
  /* Surrogates. */
  assert_false(VALID("\xED\xA0\x80"));
  assert_false(VALID("\xED\xBF\xBF"));
  assert_false(VALID("a\xED\xB0\x80z"));
  /* Beyond U+10FFFF, and bytes that never start a sequence. */
  assert_false(VALID("\xF4\x90\x80\x80"));
  assert_false(VALID("\xF5\x80\x80\x80"));
  assert_false(VALID("\xF8\x88\x80\x80\x80"));
  assert_false(VALID("\xFE"));
  assert_false(VALID("\xFF"));
  /* Sequences cut by the end of the text. */
  assert_false(VALID("abc\xC3"));
  assert_false(VALID("abc\xE2\x82"));
  assert_false(VALID("abc\xE2"));
  assert_false(VALID("abc\xF0\x9F\x98"));
  assert_false(proto_valid_utf8("\xC3\xA9", 1));
  assert_false(proto_valid_utf8("\xF0\x9F\x98\x80", 3));
  /* Stray continuation bytes. */
  assert_false(VALID("\x80"));
  assert_false(VALID("a\xBF" "b"));
  assert_false(VALID("\xC3\xA9\xA9"));
  /* A lead byte followed by something that is not a continuation. */
  assert_false(VALID("\xC3(x"));
  assert_false(VALID("\xE2(\xA1"));
  assert_false(VALID("\xE2\x82("));
  assert_false(VALID("\xF0\x9F\x98("));
  assert_false(VALID("\xC3\xC3\xA9"));
}

/* ---- decoding --------------------------------------------------------- */

static void test_decode_types(void **state) {
  lua_State *L = *state;
  char err[256];
  static const struct {
    const char *line;
    int type;
  } cases[] = {
      {"{\"type\":\"hello\",\"userName\":\"V\"}", PROTO_HELLO},
      {"{\"type\":\"ack\",\"id\":12}", PROTO_ACK},
      {"{\"type\":\"call\",\"id\":7,\"method\":\"m\",\"args\":[\"x\",1]}",
       PROTO_CALL},
      {"{\"type\":\"ping\"}", PROTO_PING},
      {"{\"type\":\"pong\"}", PROTO_PONG},
      {"{\"type\":\"bye\"}", PROTO_BYE},
      /* Blanks around, a '\r' left from "\r\n", members in any order. */
      {"  \t{\"id\":3,\"type\":\"ack\"}\r", PROTO_ACK},
      {"{ \"type\" : \"ping\" , \"extra\" : [1, {\"a\": null}] }", PROTO_PING},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int r = decode(L, cases[i].line, err, sizeof(err));
    if (r != cases[i].type)
      print_error("%s: got %d (%s)\n", cases[i].line, r, err);
    assert_int_equal(r, cases[i].type);
    lua_getfield(L, -1, "type");
    assert_true(lua_isstring(L, -1));
    lua_pop(L, 2);
  }
  /* The frame's fields are there to read. */
  assert_int_equal(decode(L, "{\"type\":\"call\",\"id\":7,\"method\":"
                             "\"hello_world\",\"args\":[\"x\",1]}",
                          err, sizeof(err)),
                   PROTO_CALL);
  assert_field_int(L, "id", 7);
  assert_field_str(L, "method", "hello_world");
  lua_getfield(L, -1, "args");
  assert_int_equal(luaL_len(L, -1), 2);
  assert_int_equal(lua_geti(L, -1, 1), LUA_TSTRING);
  assert_string_equal(lua_tostring(L, -1), "x");
  assert_int_equal(lua_geti(L, -2, 2), LUA_TNUMBER);
  assert_int_equal(lua_tointeger(L, -1), 1);
  lua_pop(L, 4);
  assert_int_equal(lua_gettop(L), 0);
}

static void test_decode_unknown(void **state) {
  lua_State *L = *state;
  char err[256];
  static const char *const lines[] = {
      "{\"type\":\"message\",\"id\":1}", /* server-to-client only */
      "{\"type\":\"PING\"}",             /* types are case-sensitive */
      "{\"type\":\"\"}",
      "{}",
      "{\"id\":12}",
      "{\"type\":1}",
      "{\"type\":true}",
      "{\"type\":null}",
      "{\"type\":[\"ping\"]}",
      "{\"type\":{\"ping\":1}}",
  };
  for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
    int r = decode(L, lines[i], err, sizeof(err));
    if (r != PROTO_UNKNOWN)
      print_error("%s: got %d\n", lines[i], r);
    assert_int_equal(r, PROTO_UNKNOWN);
    lua_pop(L, 1);
  }
  assert_int_equal(lua_gettop(L), 0);
}

/* Refusals: -1, nothing pushed, and a reason containing want. */
static void decode_refused(lua_State *L, const char *line, size_t len,
                           const char *want) {
  char err[256] = "";
  int top = lua_gettop(L);
  int r = proto_decode(L, line, len, err, sizeof(err));
  if (r != -1 || strstr(err, want) == NULL)
    print_error("%.*s: got %d \"%s\", want -1 with \"%s\"\n", (int)len, line,
                r, err, want);
  assert_int_equal(r, -1);
  assert_int_equal(lua_gettop(L), top);
  assert_non_null(strstr(err, want));
}

#define REFUSED(L, lit, want) decode_refused(L, lit, sizeof(lit) - 1, want)

static void test_decode_errors(void **state) {
  lua_State *L = *state;
  REFUSED(L, "", "not valid JSON");
  REFUSED(L, "   ", "not valid JSON");
  REFUSED(L, "hello", "not valid JSON");
  REFUSED(L, "{type:\"ping\"}", "not valid JSON");
  REFUSED(L, "{\"type\":\"ping\"", "not valid JSON");
  REFUSED(L, "{\"type\":\"ping\",}", "not valid JSON");
  REFUSED(L, "{\"type\":\"ping\"} x", "not valid JSON");
  REFUSED(L, "{\"type\":\"ping\"}{\"type\":\"ping\"}", "not valid JSON");
  REFUSED(L, "{'type':'ping'}", "not valid JSON");
  /* Valid JSON, but not an object. */
  REFUSED(L, "[{\"type\":\"ping\"}]", "not a JSON object");
  REFUSED(L, "[]", "not a JSON object");
  REFUSED(L, "\"ping\"", "not a JSON object");
  REFUSED(L, "42", "not a JSON object");
  REFUSED(L, "-1.5e3", "not a JSON object");
  REFUSED(L, "null", "not a JSON object");
  REFUSED(L, "true", "not a JSON object");
  REFUSED(L, " [1]", "not a JSON object");
  /* Not UTF-8, inside a string or outside. */
  REFUSED(L, "{\"type\":\"ping\",\"x\":\"\xC3\"}", "UTF-8");
  REFUSED(L, "{\"type\":\"ping\",\"x\":\"\xED\xA0\x80\"}", "UTF-8");
  REFUSED(L, "{\"type\":\"ping\",\"x\":\"\xC0\x80\"}", "UTF-8");
  REFUSED(L, "\xFF{\"type\":\"ping\"}", "UTF-8");
  assert_int_equal(lua_gettop(L), 0);
}

/* Nesting: the object itself is level 1; PROTO_MAX_DEPTH levels pass, one
 * more is refused. */
static void test_decode_depth(void **state) {
  lua_State *L = *state;
  char line[1024], err[256];
  int n;

  n = snprintf(line, sizeof(line), "{\"type\":\"ping\",\"a\":");
  for (int i = 1; i < PROTO_MAX_DEPTH; i++)
    line[n++] = '[';
  for (int i = 1; i < PROTO_MAX_DEPTH; i++)
    line[n++] = ']';
  line[n++] = '}';
  line[n] = '\0';
  assert_int_equal(decode(L, line, err, sizeof(err)), PROTO_PING);
  lua_pop(L, 1);

  n = snprintf(line, sizeof(line), "{\"type\":\"ping\",\"a\":");
  for (int i = 0; i < PROTO_MAX_DEPTH; i++)
    line[n++] = '[';
  for (int i = 0; i < PROTO_MAX_DEPTH; i++)
    line[n++] = ']';
  line[n++] = '}';
  line[n] = '\0';
  decode_refused(L, line, (size_t)n, "not valid JSON");
  decode_refused(L, line, (size_t)n, "nested");

  /* Far deeper, with objects. */
  n = 0;
  for (int i = 0; i < 100; i++)
    n += snprintf(line + n, sizeof(line) - (size_t)n, "{\"a\":");
  assert_true(n < (int)sizeof(line) - 1);
  decode_refused(L, line, (size_t)n, "not valid JSON");
  assert_int_equal(lua_gettop(L), 0);
}

/* A raw NUL byte is never valid JSON text (JSON escapes it as \u0000), so
 * a frame holding one must be refused, whatever follows it. */
static void test_decode_nul_byte(void **state) {
  lua_State *L = *state;
  static const char with_tail[] = "{\"type\":\"ping\"}\0 garbage";
  static const char trailing[] = "{\"type\":\"ping\"}\0";
  static const char inside[] = "{\"type\":\"ping\",\"x\":\"a\0b\"}";
  REFUSED(L, inside, "not valid JSON");
  REFUSED(L, with_tail, "not valid JSON");
  REFUSED(L, trailing, "not valid JSON");
}

/* ---- hello ------------------------------------------------------------ */

static void test_hello_minimal(void **state) {
  lua_State *L = *state;
  proto_hello_t h;
  hello_ok(L, "{\"type\":\"hello\",\"userName\":\"Vanessa\"}", &h);
  assert_string_equal(h.user_name, "Vanessa");
  assert_null(h.machine_name);
  assert_null(h.system_user_name);
  assert_null(h.host_type);
  assert_null(h.password);
  assert_null(h.resume_id);
  assert_null(h.resume_token);
  assert_int_equal(h.protocol, PROTO_VERSION);
}

static void test_hello_full(void **state) {
  lua_State *L = *state;
  proto_hello_t h;
  hello_ok(L,
           "{\"type\":\"hello\",\"userName\":\"Vanessa \xC3\xA9\","
           "\"machineName\":\"vanessa-laptop\",\"systemUserName\":\"vb\","
           "\"hostType\":\"windows\",\"protocol\":1,\"password\":\"s3cr\\\"t\","
           "\"resume\":{\"sessionID\":\"3C81A8D7AFE64C2E9CCFFCDC35DC52F5\","
           "\"token\":\"00FF\"},\"futureField\":[1,2]}",
           &h);
  assert_string_equal(h.user_name, "Vanessa \xC3\xA9");
  assert_string_equal(h.machine_name, "vanessa-laptop");
  assert_string_equal(h.system_user_name, "vb");
  assert_string_equal(h.host_type, "windows");
  assert_string_equal(h.password, "s3cr\"t");
  assert_string_equal(h.resume_id, "3C81A8D7AFE64C2E9CCFFCDC35DC52F5");
  assert_string_equal(h.resume_token, "00FF");
  assert_int_equal(h.protocol, 1);
  /* Empty optional names are allowed. */
  hello_ok(L,
           "{\"type\":\"hello\",\"userName\":\"V\",\"machineName\":\"\","
           "\"systemUserName\":\"\"}",
           &h);
  assert_string_equal(h.machine_name, "");
  assert_string_equal(h.system_user_name, "");
}

static void test_hello_user_name(void **state) {
  lua_State *L = *state;
  proto_hello_t h;
  char line[1024], err[256];
  char *name;

  hello_refused(L, "{\"type\":\"hello\"}", -1, "'userName'");
  hello_refused(L, "{\"type\":\"hello\",\"username\":\"V\"}", -1,
                "'userName'");
  hello_refused(L, "{\"type\":\"hello\",\"userName\":\"\"}", -1,
                "'userName'");
  /* 128 bytes: the longest. */
  name = repeat("n", 128);
  snprintf(line, sizeof(line), "{\"type\":\"hello\",\"userName\":\"%s\"}",
           name);
  hello_ok(L, line, &h);
  assert_int_equal(strlen(h.user_name), 128);
  free(name);
  /* 129 bytes. */
  name = repeat("n", 129);
  snprintf(line, sizeof(line), "{\"type\":\"hello\",\"userName\":\"%s\"}",
           name);
  assert_int_equal(hello(L, line, &h, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "'userName'"));
  assert_non_null(strstr(err, "129"));
  free(name);
  /* Bytes are counted, not characters: 64 x U+00E9 is 128 bytes, 65 is
   * 130. */
  name = repeat("\xC3\xA9", 64);
  snprintf(line, sizeof(line), "{\"type\":\"hello\",\"userName\":\"%s\"}",
           name);
  hello_ok(L, line, &h);
  free(name);
  name = repeat("\xC3\xA9", 65);
  snprintf(line, sizeof(line), "{\"type\":\"hello\",\"userName\":\"%s\"}",
           name);
  hello_refused(L, line, -1, "'userName'");
  free(name);
  /* An escape counts as the byte it stands for: "\u0041" x 128. */
  name = repeat("\\u0041", 128);
  snprintf(line, sizeof(line), "{\"type\":\"hello\",\"userName\":\"%s\"}",
           name);
  hello_ok(L, line, &h);
  assert_int_equal(strlen(h.user_name), 128);
  assert_int_equal(h.user_name[0], 'A');
  free(name);
}

static void test_hello_name_lengths(void **state) {
  lua_State *L = *state;
  static const char *const names[] = {"machineName", "systemUserName"};
  proto_hello_t h;
  for (int k = 0; k < 2; k++) {
    char *m = member_of_len(names[k], PROTO_MAX_NAME);
    char *line = hello_with(m);
    hello_ok(L, line, &h);
    assert_int_equal(strlen(k == 0 ? h.machine_name : h.system_user_name),
                     PROTO_MAX_NAME);
    free(m);
    free(line);
    m = member_of_len(names[k], PROTO_MAX_NAME + 1);
    line = hello_with(m);
    hello_refused(L, line, -1, names[k]);
    free(m);
    free(line);
  }
}

static void test_hello_types(void **state) {
  lua_State *L = *state;
  static const struct {
    const char *line, *field, *type;
  } cases[] = {
      {"{\"type\":\"hello\",\"userName\":null}", "'userName'", "null"},
      {"{\"type\":\"hello\",\"userName\":5}", "'userName'", "number"},
      {"{\"type\":\"hello\",\"userName\":true}", "'userName'", "boolean"},
      {"{\"type\":\"hello\",\"userName\":[\"V\"]}", "'userName'", ""},
      {"{\"type\":\"hello\",\"userName\":{\"a\":\"V\"}}", "'userName'", ""},
      {"{\"type\":\"hello\",\"userName\":\"V\",\"machineName\":null}",
       "'machineName'", "null"},
      {"{\"type\":\"hello\",\"userName\":\"V\",\"machineName\":7}",
       "'machineName'", "number"},
      {"{\"type\":\"hello\",\"userName\":\"V\",\"systemUserName\":null}",
       "'systemUserName'", "null"},
      {"{\"type\":\"hello\",\"userName\":\"V\",\"systemUserName\":false}",
       "'systemUserName'", "boolean"},
      {"{\"type\":\"hello\",\"userName\":\"V\",\"hostType\":null}",
       "'hostType'", "null"},
      {"{\"type\":\"hello\",\"userName\":\"V\",\"hostType\":1}",
       "'hostType'", "number"},
      {"{\"type\":\"hello\",\"userName\":\"V\",\"password\":null}",
       "'password'", "null"},
      {"{\"type\":\"hello\",\"userName\":\"V\",\"password\":1234}",
       "'password'", "number"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    proto_hello_t h;
    char err[256];
    int r = hello(L, cases[i].line, &h, err, sizeof(err));
    if (r != -1 || strstr(err, cases[i].field) == NULL ||
        strstr(err, cases[i].type) == NULL || strstr(err, "string") == NULL)
      print_error("%s: got %d \"%s\"\n", cases[i].line, r, err);
    assert_int_equal(r, -1);
    assert_non_null(strstr(err, cases[i].field));
    assert_non_null(strstr(err, "string"));
    assert_non_null(strstr(err, cases[i].type));
  }
}

static void test_hello_host_type(void **state) {
  lua_State *L = *state;
  static const char *const good[] = {"linux", "mac", "windows", "browser"};
  static const char *const bad[] = {"Linux", "", "android", "win",
                                    "macintosh", "linuxlinuxlinuxlinux"};
  char line[256];
  proto_hello_t h;
  for (size_t i = 0; i < 4; i++) {
    snprintf(line, sizeof(line),
             "{\"type\":\"hello\",\"userName\":\"V\",\"hostType\":\"%s\"}",
             good[i]);
    hello_ok(L, line, &h);
    assert_string_equal(h.host_type, good[i]);
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(line, sizeof(line),
             "{\"type\":\"hello\",\"userName\":\"V\",\"hostType\":\"%s\"}",
             bad[i]);
    hello_refused(L, line, -1, "'hostType'");
  }
}

static void test_hello_protocol(void **state) {
  lua_State *L = *state;
  proto_hello_t h;
  char err[256];

  hello_ok(L, "{\"type\":\"hello\",\"userName\":\"V\",\"protocol\":1}", &h);
  assert_int_equal(h.protocol, 1);
  hello_ok(L, "{\"type\":\"hello\",\"userName\":\"V\",\"protocol\":1.0}", &h);
  assert_int_equal(h.protocol, 1);
  hello_ok(L, "{\"type\":\"hello\",\"userName\":\"V\",\"protocol\":1e0}", &h);
  assert_int_equal(h.protocol, 1);
  /* Other versions: -2, the caller answers "version". */
  assert_int_equal(hello(L, "{\"type\":\"hello\",\"userName\":\"V\","
                            "\"protocol\":2}",
                         &h, err, sizeof(err)),
                   -2);
  assert_non_null(strstr(err, "protocol 2"));
  hello_refused(L, "{\"type\":\"hello\",\"userName\":\"V\",\"protocol\":0}",
                -2, "protocol");
  hello_refused(L, "{\"type\":\"hello\",\"userName\":\"V\",\"protocol\":-1}",
                -2, "protocol");
  hello_refused(L, "{\"type\":\"hello\",\"userName\":\"V\",\"protocol\":2.0}",
                -2, "protocol");
  /* Not an integer: a malformed hello, -1. */
  hello_refused(L, "{\"type\":\"hello\",\"userName\":\"V\",\"protocol\":\"1\"}",
                -1, "'protocol'");
  hello_refused(L, "{\"type\":\"hello\",\"userName\":\"V\",\"protocol\":1.5}",
                -1, "'protocol'");
  hello_refused(L, "{\"type\":\"hello\",\"userName\":\"V\",\"protocol\":null}",
                -1, "'protocol'");
  hello_refused(L, "{\"type\":\"hello\",\"userName\":\"V\",\"protocol\":true}",
                -1, "'protocol'");
  hello_refused(L, "{\"type\":\"hello\",\"userName\":\"V\",\"protocol\":[1]}",
                -1, "'protocol'");
  /* Floats far outside the integers: refused, not converted. */
  hello_refused(L,
                "{\"type\":\"hello\",\"userName\":\"V\",\"protocol\":1e300}",
                -1, "'protocol'");
  hello_refused(L,
                "{\"type\":\"hello\",\"userName\":\"V\",\"protocol\":-1e300}",
                -1, "'protocol'");
}

static void test_hello_resume(void **state) {
  lua_State *L = *state;
  proto_hello_t h;
  char *line;

  hello_ok(L, "{\"type\":\"hello\",\"userName\":\"V\",\"resume\":"
              "{\"sessionID\":\"abc\",\"token\":\"def\"}}",
           &h);
  assert_string_equal(h.resume_id, "abc");
  assert_string_equal(h.resume_token, "def");
  static const char *const bad[] = {
      "{\"type\":\"hello\",\"userName\":\"V\",\"resume\":\"ABC\"}",
      "{\"type\":\"hello\",\"userName\":\"V\",\"resume\":1}",
      "{\"type\":\"hello\",\"userName\":\"V\",\"resume\":null}",
      "{\"type\":\"hello\",\"userName\":\"V\",\"resume\":true}",
      "{\"type\":\"hello\",\"userName\":\"V\",\"resume\":{}}",
      "{\"type\":\"hello\",\"userName\":\"V\",\"resume\":[]}",
      "{\"type\":\"hello\",\"userName\":\"V\",\"resume\":[\"a\",\"b\"]}",
      "{\"type\":\"hello\",\"userName\":\"V\",\"resume\":"
      "{\"sessionID\":\"abc\"}}",
      "{\"type\":\"hello\",\"userName\":\"V\",\"resume\":{\"token\":\"d\"}}",
      "{\"type\":\"hello\",\"userName\":\"V\",\"resume\":"
      "{\"sessionID\":\"\",\"token\":\"def\"}}",
      "{\"type\":\"hello\",\"userName\":\"V\",\"resume\":"
      "{\"sessionID\":\"abc\",\"token\":\"\"}}",
      "{\"type\":\"hello\",\"userName\":\"V\",\"resume\":"
      "{\"sessionID\":1,\"token\":\"def\"}}",
      "{\"type\":\"hello\",\"userName\":\"V\",\"resume\":"
      "{\"sessionID\":\"abc\",\"token\":null}}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    hello_refused(L, bad[i], -1, "'resume'");
  /* An ID longer than any ID could be. */
  {
    char *m = member_of_len("sessionID", 65);
    char member[200];
    snprintf(member, sizeof(member), "\"resume\":{%s,\"token\":\"t\"}", m);
    line = hello_with(member);
    hello_refused(L, line, -1, "'resume'");
    free(line);
    free(m);
  }
}

static void test_hello_password(void **state) {
  lua_State *L = *state;
  proto_hello_t h;
  char *m, *line;

  hello_ok(L, "{\"type\":\"hello\",\"userName\":\"V\",\"password\":\"pw\"}",
           &h);
  assert_string_equal(h.password, "pw");
  hello_ok(L, "{\"type\":\"hello\",\"userName\":\"V\",\"password\":\"\"}",
           &h);
  assert_string_equal(h.password, "");
  m = member_of_len("password", 1024);
  line = hello_with(m);
  hello_ok(L, line, &h);
  assert_int_equal(strlen(h.password), 1024);
  free(m);
  free(line);
  m = member_of_len("password", 1025);
  line = hello_with(m);
  hello_refused(L, line, -1, "'password'");
  free(m);
  free(line);
}

/* ---- integers --------------------------------------------------------- */

static void test_get_integer(void **state) {
  lua_State *L = *state;
  char err[256];
  lua_Integer v = 0;
  assert_int_equal(decode(L, "{\"type\":\"ack\",\"a\":12,\"b\":12.0,"
                             "\"c\":12.5,\"d\":\"12\",\"e\":null,"
                             "\"f\":-9007199254740991}",
                          err, sizeof(err)),
                   PROTO_ACK);
  assert_int_equal(proto_get_integer(L, "a", &v), 0);
  assert_int_equal(v, 12);
  v = 0;
  assert_int_equal(proto_get_integer(L, "b", &v), 0);
  assert_int_equal(v, 12);
  assert_int_equal(proto_get_integer(L, "c", &v), -1);
  assert_int_equal(proto_get_integer(L, "d", &v), -1);
  assert_int_equal(proto_get_integer(L, "e", &v), -1);
  assert_int_equal(proto_get_integer(L, "missing", &v), -1);
  assert_int_equal(proto_get_integer(L, "f", &v), 0);
  assert_true(v == -9007199254740991LL);
  assert_int_equal(lua_gettop(L), 1);
}

/* ---- encoders --------------------------------------------------------- */

static void test_message(void **state) {
  lua_State *L = *state;
  outbuf_t *b;

  b = proto_message(L, 12, tricky, sizeof(tricky) - 1, SENT_MS);
  assert_int_equal(lua_gettop(L), 0);
  assert_non_null(b);
  assert_int_equal(b->msg_id, 12);
  assert_int_equal(b->refs, 1);
  push_frame(L, b);
  assert_int_equal(nkeys(L), 4);
  assert_field_str(L, "type", "message");
  assert_field_int(L, "id", 12);
  assert_field_lstr(L, "text", tricky, sizeof(tricky) - 1);
  assert_field_str(L, "sentAt", "2026-11-26T21:00:00.123Z");
  lua_pop(L, 1);
  outbuf_unref(b);

  /* Empty text; a large id (written exactly, though a double reading it
   * back rounds it); a text with a NUL inside (len counts). */
  b = proto_message(L, INT64_C(9007199254740993), "", 0, SENT_MS - 123);
  push_frame(L, b);
  assert_non_null(memmem(b->data, b->len, "\"id\":9007199254740993,", 22));
  assert_int_equal(b->msg_id, INT64_C(9007199254740993));
  assert_field_str(L, "text", "");
  assert_field_str(L, "sentAt", "2026-11-26T21:00:00.000Z");
  lua_pop(L, 1);
  outbuf_unref(b);
  b = proto_message(L, 3, "a\0b", 3, SENT_MS);
  push_frame(L, b);
  assert_field_lstr(L, "text", "a\0b", 3);
  lua_pop(L, 1);
  outbuf_unref(b);

  /* A long text is carried whole. */
  {
    char *big = repeat("\xE2\x82\xAC\"", 4096);
    b = proto_message(L, 4, big, strlen(big), SENT_MS);
    push_frame(L, b);
    assert_field_str(L, "text", big);
    lua_pop(L, 1);
    outbuf_unref(b);
    free(big);
  }
  assert_int_equal(lua_gettop(L), 0);
}

static void test_welcome(void **state) {
  lua_State *L = *state;
  outbuf_t *b = proto_welcome(L, "3C81A8D7AFE64C2E9CCFFCDC35DC52F5",
                              "00112233445566778899AABBCCDDEEFF", 30, NULL);
  const char *server;
  assert_int_equal(lua_gettop(L), 0);
  push_frame(L, b);
  assert_int_equal(b->msg_id, 0);
  assert_int_equal(nkeys(L), 5);
  assert_field_str(L, "type", "welcome");
  assert_field_str(L, "sessionID", "3C81A8D7AFE64C2E9CCFFCDC35DC52F5");
  assert_field_str(L, "resumeToken", "00112233445566778899AABBCCDDEEFF");
  assert_field_int(L, "heartbeat", 30);
  lua_getfield(L, -1, "server");
  server = lua_tostring(L, -1);
  assert_non_null(server);
  assert_string_equal(server, "herald/" HERALD_VERSION);
  lua_pop(L, 2);
  outbuf_unref(b);
  /* A fractional heartbeat stays a number. */
  b = proto_welcome(L, "3C81A8D7AFE64C2E9CCFFCDC35DC52F5", "AB", 0.25, NULL);
  push_frame(L, b);
  lua_getfield(L, -1, "heartbeat");
  assert_true(lua_isnumber(L, -1));
  assert_true(lua_tonumber(L, -1) == 0.25);
  lua_pop(L, 2);
  outbuf_unref(b);
  /* With users: the groups, as an array (empty for none). */
  b = proto_welcome(L, "3C81A8D7AFE64C2E9CCFFCDC35DC52F5", "AB", 30,
                    "admin,ops-2");
  push_frame(L, b);
  assert_int_equal(nkeys(L), 6);
  lua_getfield(L, -1, "groups");
  assert_int_equal(lua_rawlen(L, -1), 2);
  lua_rawgeti(L, -1, 1);
  assert_string_equal(lua_tostring(L, -1), "admin");
  lua_rawgeti(L, -2, 2);
  assert_string_equal(lua_tostring(L, -1), "ops-2");
  lua_pop(L, 4);
  outbuf_unref(b);
  b = proto_welcome(L, "3C81A8D7AFE64C2E9CCFFCDC35DC52F5", "AB", 30, "");
  push_frame(L, b);
  lua_getfield(L, -1, "groups");
  assert_true(lua_istable(L, -1));
  assert_int_equal(lua_rawlen(L, -1), 0);
  lua_pop(L, 2);
  outbuf_unref(b);
}

static void test_error_and_drop(void **state) {
  lua_State *L = *state;
  outbuf_t *b = proto_error(L, "bad_hello", tricky);
  assert_int_equal(lua_gettop(L), 0);
  push_frame(L, b);
  assert_int_equal(nkeys(L), 3);
  assert_field_str(L, "type", "error");
  assert_field_str(L, "code", "bad_hello");
  assert_field_str(L, "message", tricky);
  lua_pop(L, 1);
  outbuf_unref(b);

  b = proto_error(L, "too_large", "");
  push_frame(L, b);
  assert_field_str(L, "code", "too_large");
  assert_field_str(L, "message", "");
  lua_pop(L, 1);
  outbuf_unref(b);

  b = proto_drop(L, "slow consumer");
  assert_int_equal(lua_gettop(L), 0);
  push_frame(L, b);
  assert_int_equal(nkeys(L), 2);
  assert_field_str(L, "type", "drop");
  assert_field_str(L, "reason", "slow consumer");
  lua_pop(L, 1);
  outbuf_unref(b);

  b = proto_drop(L, tricky);
  push_frame(L, b);
  assert_field_str(L, "reason", tricky);
  lua_pop(L, 1);
  outbuf_unref(b);
  assert_int_equal(lua_gettop(L), 0);
}

static void test_result_error(void **state) {
  lua_State *L = *state;
  outbuf_t *b = proto_result_error(L, 7, "failed", tricky);
  assert_int_equal(lua_gettop(L), 0);
  push_frame(L, b);
  assert_int_equal(nkeys(L), 5);
  assert_field_str(L, "type", "result");
  assert_field_int(L, "id", 7);
  assert_field_bool(L, "ok", 0);
  assert_field_str(L, "code", "failed");
  assert_field_str(L, "error", tricky);
  lua_pop(L, 1);
  outbuf_unref(b);
  b = proto_result_error(L, -3, "unknown_method", "method not found");
  push_frame(L, b);
  assert_field_int(L, "id", -3);
  assert_field_str(L, "code", "unknown_method");
  assert_field_str(L, "error", "method not found");
  lua_pop(L, 1);
  outbuf_unref(b);
}

/* Encodes the value the Lua expression src yields as result 7 and pushes
 * the decoded frame. */
static void push_result(lua_State *L, const char *src) {
  char err[256] = "", code[512];
  outbuf_t *b;
  int top;
  snprintf(code, sizeof(code), "return %s", src);
  assert_int_equal(luaL_dostring(L, code), LUA_OK);
  top = lua_gettop(L);
  b = proto_result_value(L, 7, -1, err, sizeof(err));
  if (b == NULL)
    fail_msg("result %s: %s", src, err);
  assert_int_equal(lua_gettop(L), top); /* the value stays */
  lua_pop(L, 1);
  push_frame(L, b);
  outbuf_unref(b);
  assert_int_equal(nkeys(L), 4);
  assert_field_str(L, "type", "result");
  assert_field_int(L, "id", 7);
  assert_field_bool(L, "ok", 1);
}

static void test_result_value(void **state) {
  lua_State *L = *state;

  push_result(L, "42");
  assert_field_int(L, "value", 42);
  lua_pop(L, 1);

  push_result(L, "'he said \"hi\"\\\\\\n\\u{E9}\\u{1F600}'");
  assert_field_str(L, "value", "he said \"hi\"\\\n\xC3\xA9\xF0\x9F\x98\x80");
  lua_pop(L, 1);

  push_result(L, "true");
  assert_field_bool(L, "value", 1);
  lua_pop(L, 1);

  /* nil travels as JSON null (a key present, not absent). */
  push_result(L, "nil");
  lua_getfield(L, -1, "value");
  assert_int_equal(lua_type(L, -1), LUA_TLIGHTUSERDATA);
  lua_pop(L, 2);

  push_result(L, "{name = 'x', list = {1, 2, 3}, nested = {a = {b = 2.5}}}");
  lua_getfield(L, -1, "value");
  assert_field_str(L, "name", "x");
  lua_getfield(L, -1, "list");
  assert_int_equal(luaL_len(L, -1), 3);
  assert_int_equal(lua_geti(L, -1, 3), LUA_TNUMBER);
  assert_int_equal(lua_tointeger(L, -1), 3);
  lua_pop(L, 2);
  lua_getfield(L, -1, "nested");
  lua_getfield(L, -1, "a");
  lua_getfield(L, -1, "b");
  assert_true(lua_tonumber(L, -1) == 2.5);
  lua_pop(L, 5);

  /* A positive stack index works as well as a negative one. */
  {
    char err[256];
    outbuf_t *b;
    lua_pushstring(L, "first");
    lua_pushstring(L, "second");
    b = proto_result_value(L, 9, 1, err, sizeof(err));
    assert_int_equal(lua_gettop(L), 2);
    lua_settop(L, 0);
    push_frame(L, b);
    outbuf_unref(b);
    assert_field_int(L, "id", 9);
    assert_field_str(L, "value", "first");
    lua_pop(L, 1);
  }
  assert_int_equal(lua_gettop(L), 0);
}

/* Values JSON cannot carry: NULL and a message, the stack unchanged. */
static void result_refused(lua_State *L, const char *src, const char *want) {
  char err[256] = "", code[512];
  outbuf_t *b;
  snprintf(code, sizeof(code), "return %s", src);
  assert_int_equal(luaL_dostring(L, code), LUA_OK);
  b = proto_result_value(L, 7, -1, err, sizeof(err));
  if (b != NULL || strstr(err, want) == NULL)
    print_error("result %s: got %p \"%s\"\n", src, (void *)b, err);
  assert_null(b);
  assert_non_null(strstr(err, want));
  assert_int_equal(lua_gettop(L), 1);
  lua_pop(L, 1);
}

static void test_result_value_refused(void **state) {
  lua_State *L = *state;
  result_refused(L, "function() end", "function");
  result_refused(L, "{ok = true, f = print}", "function");
  result_refused(L, "coroutine.create(function() end)", "thread");
  result_refused(L, "io.stdout", "userdata");
  /* Too deep for the encoder. */
  result_refused(L,
                 "(function() local t = {} for i = 1, 100 do t = {t} end "
                 "return t end)()",
                 "nesting");
  /* A table that refers to itself. */
  result_refused(L, "(function() local t = {} t.t = t return t end)()",
                 "nesting");
}

/* Every frame is UTF-8 (PROTOCOL.md) and clients refuse one that is not:
 * a result whose string is not UTF-8 must not produce such a frame. */
static void test_result_value_not_utf8(void **state) {
  lua_State *L = *state;
  char err[256] = "";
  outbuf_t *b;
  lua_pushlstring(L, "caf\xE9", 4); /* Latin-1 */
  b = proto_result_value(L, 7, -1, err, sizeof(err));
  if (b != NULL) {
    int ok = proto_valid_utf8(b->data, b->len);
    if (!ok)
      print_error("proto_result_value made a frame that is not UTF-8\n");
    outbuf_unref(b);
    assert_true(ok);
  } else {
    assert_true(err[0] != '\0');
  }
  lua_pop(L, 1);
}

static void test_ping_pong(void **state) {
  lua_State *L = *state;
  outbuf_t *ping = proto_ping(), *pong = proto_pong();
  assert_non_null(ping);
  assert_non_null(pong);
  assert_ptr_equal(proto_ping(), ping);
  assert_ptr_equal(proto_pong(), pong);
  assert_ptr_not_equal(ping, pong);
  assert_int_equal(ping->len, 16);
  assert_memory_equal(ping->data, "{\"type\":\"ping\"}\n", 16);
  assert_memory_equal(pong->data, "{\"type\":\"pong\"}\n", 16);
  push_frame(L, ping);
  assert_field_str(L, "type", "ping");
  lua_pop(L, 1);
  push_frame(L, pong);
  assert_field_str(L, "type", "pong");
  lua_pop(L, 1);
  /* A second init (another Lua state) keeps the same shared frames. */
  {
    lua_State *L2 = luaL_newstate();
    luaL_openlibs(L2);
    assert_int_equal(proto_init(L2), 0);
    assert_ptr_equal(proto_ping(), ping);
    lua_close(L2);
  }
}

/* Scripts changing the global cjson's settings do not change the
 * protocol's private instance. */
static void test_private_cjson(void **state) {
  lua_State *L = *state;
  char err[256];
  outbuf_t *b;
  assert_int_equal(luaL_dostring(L, "local c = require('cjson') "
                                    "c.decode_max_depth(1000) "
                                    "c.encode_max_depth(1000) "
                                    "c.encode_number_precision(3)"),
                   LUA_OK);
  {
    char line[256];
    int n = snprintf(line, sizeof(line), "{\"a\":");
    for (int i = 0; i < 40; i++)
      line[n++] = '[';
    for (int i = 0; i < 40; i++)
      line[n++] = ']';
    line[n++] = '}';
    decode_refused(L, line, (size_t)n, "nested");
  }
  lua_pushnumber(L, 3.14159);
  b = proto_result_value(L, 1, -1, err, sizeof(err));
  lua_pop(L, 1);
  assert_non_null(b);
  assert_non_null(memmem(b->data, b->len, "3.14159", 7));
  outbuf_unref(b);
}

static void test_encode_value(void **state) {
  lua_State *L = *state;
  char err[256];
  lua_pushstring(L, "a\"b");
  assert_int_equal(proto_encode_value(L, -1, err, sizeof(err)), 0);
  assert_int_equal(lua_gettop(L), 2);
  assert_string_equal(lua_tostring(L, -1), "\"a\\\"b\"");
  lua_settop(L, 0);
  lua_pushcfunction(L, luaopen_base);
  err[0] = '\0';
  assert_int_equal(proto_encode_value(L, -1, err, sizeof(err)), -1);
  assert_int_equal(lua_gettop(L), 1);
  assert_non_null(strstr(err, "function"));
  lua_settop(L, 0);
}

/* The ack fast path takes exactly what cjson would decode into an ack
 * with that integer id, and leaves every other spelling to cjson. */
static void test_match_ack(void **state) {
  lua_State *L = *state;
  static const struct {
    const char *line;
    int64_t id; /* 0: not taken by the fast path */
  } cases[] = {
      {"{\"type\":\"ack\",\"id\":1}", 1},
      {"{\"type\":\"ack\",\"id\":999999999999999}", 999999999999999LL},
      {"{\"id\":42,\"type\":\"ack\"}", 42},
      {"{\"type\":\"ack\",\"id\":0}", 0},        /* ids start at 1 */
      {"{\"type\":\"ack\",\"id\":07}", 0},       /* not JSON */
      {"{\"type\":\"ack\",\"id\":-3}", 0},
      {"{\"type\":\"ack\",\"id\":1.5}", 0},
      {"{\"type\":\"ack\",\"id\":1000000000000000}", 0}, /* 16 */
      {"{\"type\":\"ack\",\"id\":}", 0},
      {"{\"type\":\"ack\",\"id\":5} ", 0},        /* cjson's to judge */
      {"{\"type\":\"ack\",\"id\":5}x", 0},
      {"{\"type\":\"ack\",\"id\":5", 0},
      {"{\"type\": \"ack\",\"id\":5}", 0},
      {"{\"type\":\"ack\",\"id\":\"5\"}", 0},
      {"{\"type\":\"call\",\"id\":5}", 0},
      {"{\"id\":5,\"type\":\"ack\",\"x\":1}", 0},
      {"", 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *line = cases[i].line;
    int64_t id = -1;
    char err[128];
    int taken = proto_match_ack(line, strlen(line), &id);
    assert_int_equal(taken, cases[i].id != 0);
    if (!taken)
      continue;
    assert_int_equal(id, cases[i].id);
    /* cjson reads the same frame the same way. */
    assert_int_equal(proto_decode(L, line, strlen(line), err, sizeof(err)),
                     PROTO_ACK);
    lua_Integer decoded = 0;
    assert_int_equal(proto_get_integer(L, "id", &decoded), 0);
    assert_int_equal(decoded, id);
    lua_settop(L, 0);
  }
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_utf8_valid),
      T(test_utf8_invalid),
      T(test_decode_types),
      T(test_decode_unknown),
      T(test_decode_errors),
      T(test_decode_depth),
      T(test_decode_nul_byte),
      T(test_match_ack),
      T(test_hello_minimal),
      T(test_hello_full),
      T(test_hello_user_name),
      T(test_hello_name_lengths),
      T(test_hello_types),
      T(test_hello_host_type),
      T(test_hello_protocol),
      T(test_hello_resume),
      T(test_hello_password),
      T(test_get_integer),
      T(test_message),
      T(test_welcome),
      T(test_error_and_drop),
      T(test_result_error),
      T(test_result_value),
      T(test_result_value_refused),
      T(test_result_value_not_utf8),
      T(test_ping_pong),
      T(test_private_cjson),
      T(test_encode_value),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
