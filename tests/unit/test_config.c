/*
 * Unit tests for runtime/config.c: the defaults of API.md, every key, the
 * refusals (type, range, whole numbers, unknown keys, listen addresses,
 * schedule entries) and their messages, Lua syntax and runtime errors with
 * their line numbers, and loading from a file. Each test frees what it
 * loaded, so the suite is also a leak check under valgrind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#define NAME "herald.conf.lua"

/* Each test's config: defaulted by the setup, freed by the teardown, so a
 * failed assertion leaks nothing either. */
static int setup(void **state) {
  config_t *c = malloc(sizeof(*c));
  if (c == NULL)
    return -1;
  config_defaults(c);
  *state = c;
  return 0;
}

static int teardown(void **state) {
  config_free(*state);
  free(*state);
  return 0;
}

static void reset(config_t *c) {
  config_free(c);
  config_defaults(c);
}

/* Loads chunk into a defaulted config; 0 expected, otherwise the message
 * is shown. */
static void load_ok(config_t *c, const char *chunk) {
  char err[512] = "";
  int r;
  reset(c);
  r = config_load_string(c, chunk, NAME, err, sizeof(err));
  if (r != 0)
    print_error("chunk <<%s>>: %s\n", chunk, err);
  assert_int_equal(r, 0);
}

/* Loads chunk and expects -1 with every one of the NULL-terminated
 * substrings in the message; the message starts with the chunk name. */
static void load_refused(const char *chunk, ...) {
  config_t c;
  char err[512] = "";
  va_list ap;
  const char *want;
  int r;
  config_defaults(&c);
  r = config_load_string(&c, chunk, NAME, err, sizeof(err));
  config_free(&c);
  if (r != -1)
    print_error("chunk <<%s>> was accepted\n", chunk);
  assert_int_equal(r, -1);
  if (strncmp(err, NAME ":", strlen(NAME ":")) != 0)
    print_error("chunk <<%s>>: \"%s\" does not start with the name\n", chunk,
                err);
  assert_int_equal(strncmp(err, NAME ":", strlen(NAME ":")), 0);
  va_start(ap, chunk);
  while ((want = va_arg(ap, const char *)) != NULL) {
    if (strstr(err, want) == NULL)
      print_error("chunk <<%s>>: \"%s\" lacks \"%s\"\n", chunk, err, want);
    assert_non_null(strstr(err, want));
  }
  va_end(ap);
}

#define REFUSED(...) load_refused(__VA_ARGS__, (const char *)NULL)

/* ---- defaults and keys ------------------------------------------------ */

static void check_defaults(const config_t *c) {
  assert_string_equal(c->listen.host, "127.0.0.1");
  assert_int_equal(c->listen.port, 7400);
  assert_null(c->admin_socket);
  assert_non_null(c->scripts);
  assert_string_equal(c->scripts, "scripts");
  assert_int_equal(c->max_sessions, 10000);
  assert_int_equal(c->max_frame, 65536);
  assert_int_equal(c->max_message, 16384);
  assert_int_equal(c->max_pending, 1024);
  assert_int_equal(c->max_outbound_bytes, 1048576);
  assert_true(c->handshake_timeout == 5);
  assert_true(c->heartbeat == 30);
  assert_true(c->resume_timeout == 60);
  assert_true(c->sleep_after == 600); /* PROTOCOL.md */
  assert_true(c->method_timeout == 10);
  assert_int_equal(c->lua_memory_limit, 256L * 1024 * 1024);
  assert_null(c->jobs);
  assert_int_equal(c->njobs, 0);
}

static void test_defaults(void **state) {
  config_t *c = *state;
  config_free(c);
  memset(c, 0x5A, sizeof(*c)); /* defaults must set every field */
  config_defaults(c);
  check_defaults(c);
  config_free(c);
  assert_null(c->scripts);
  assert_null(c->admin_socket);
  /* Freeing twice is harmless. */
  config_free(c);
}

static void test_empty_chunks(void **state) {
  config_t *c = *state;
  load_ok(c, "");
  check_defaults(c);
  config_free(c);
  /* Comments, locals and nil assignments set nothing. */
  load_ok(c, "-- nothing here\nlocal max_sessions = 'not a key'\n"
              "admin_socket = nil\nlocal t = {1, 2}\n");
  check_defaults(c);
  config_free(c);
}

static void test_every_key(void **state) {
  config_t *c = *state;
  load_ok(c, "listen = '0.0.0.0:8400'\n"
              "admin_socket = 'run/herald.sock'\n"
              "scripts = 'my-scripts'\n"
              "max_sessions = 50\n"
              "max_frame = 4096\n"
              "max_message = 1000\n"
              "max_pending = 16\n"
              "max_outbound_bytes = 65536\n"
              "handshake_timeout = 2.5\n"
              "heartbeat = 0.5\n"
              "resume_timeout = 0\n"
              "sleep_after = 120\n"
              "method_timeout = 0.25\n"
              "lua_memory_limit = 64 * 1024 * 1024\n"
              "schedule = {}\n");
  assert_string_equal(c->listen.host, "0.0.0.0");
  assert_int_equal(c->listen.port, 8400);
  assert_string_equal(c->admin_socket, "run/herald.sock");
  assert_string_equal(c->scripts, "my-scripts");
  assert_int_equal(c->max_sessions, 50);
  assert_int_equal(c->max_frame, 4096);
  assert_int_equal(c->max_message, 1000);
  assert_int_equal(c->max_pending, 16);
  assert_int_equal(c->max_outbound_bytes, 65536);
  assert_true(c->handshake_timeout == 2.5);
  assert_true(c->heartbeat == 0.5);
  assert_true(c->resume_timeout == 0);
  assert_true(c->sleep_after == 120);
  assert_true(c->method_timeout == 0.25);
  assert_int_equal(c->lua_memory_limit, 64L * 1024 * 1024);
  assert_int_equal(c->njobs, 0);
  config_free(c);
}

/* The file is Lua: arithmetic, the string, math and table libraries,
 * locals and control flow all work. */
static void test_lua_expressions(void **state) {
  config_t *c = *state;
  load_ok(c, "lua_memory_limit = 256 * 1024 * 1024\n"
              "max_frame = 2^16\n"
              "local base = 'srv'\n"
              "scripts = string.format('%s/%s', base, 'scripts')\n"
              "heartbeat = math.max(10, 20)\n"
              "max_sessions = #table.concat({'a', 'b', 'c'})\n"
              "for i = 1, 3 do max_pending = i * 100 end\n"
              "if max_pending > 200 then max_message = 1 end\n");
  assert_int_equal(c->lua_memory_limit, 268435456L);
  assert_int_equal(c->max_frame, 65536); /* 2^16 is a float: whole, taken */
  assert_string_equal(c->scripts, "srv/scripts");
  assert_true(c->heartbeat == 20);
  assert_int_equal(c->max_sessions, 3);
  assert_int_equal(c->max_pending, 300);
  assert_int_equal(c->max_message, 1);
  config_free(c);
  /* A key read back after it is set sees the file's own value. */
  load_ok(c, "max_frame = 1024\nmax_message = max_frame // 2\n");
  assert_int_equal(c->max_message, 512);
  config_free(c);
}

/* Only string, math and table: nothing that reaches the system. */
static void test_sandbox(void **state) {
  config_t *c = *state;
  load_ok(c, "assert(os == nil and io == nil and debug == nil)\n"
              "assert(package == nil and require == nil)\n"
              "assert(string and math and table)\n");
  config_free(c);
  REFUSED("os.exit(3)\n", NAME ":1:", "os");
  REFUSED("local f = io.open('x')\n", NAME ":1:", "io");
}

/* ---- refusals ---------------------------------------------------------- */

static void test_wrong_type(void **state) {
  static const char *const numeric[] = {
      "max_sessions",      "max_frame", "max_message",    "max_pending",
      "max_outbound_bytes", "handshake_timeout", "heartbeat",
      "resume_timeout",    "sleep_after", "method_timeout",
      "lua_memory_limit",
  };
  char chunk[128], key[64];
  (void)state;
  for (size_t i = 0; i < sizeof(numeric) / sizeof(numeric[0]); i++) {
    snprintf(key, sizeof(key), "'%s'", numeric[i]);
    snprintf(chunk, sizeof(chunk), "%s = \"x\"", numeric[i]);
    REFUSED(chunk, key, "number expected", "string");
    /* A string of digits is still a string. */
    snprintf(chunk, sizeof(chunk), "%s = \"100\"", numeric[i]);
    REFUSED(chunk, key, "number expected", "string");
    snprintf(chunk, sizeof(chunk), "%s = true", numeric[i]);
    REFUSED(chunk, key, "boolean");
    snprintf(chunk, sizeof(chunk), "%s = {}", numeric[i]);
    REFUSED(chunk, key, "table");
  }
  REFUSED("max_sessions = 'x'", "'max_sessions'", "number expected");
  REFUSED("listen = 7400", "'listen'", "string expected", "number");
  REFUSED("listen = {}", "'listen'", "string expected");
  REFUSED("scripts = 1", "'scripts'", "string expected", "number");
  REFUSED("scripts = false", "'scripts'", "string expected", "boolean");
  REFUSED("admin_socket = {}", "'admin_socket'", "string expected");
  REFUSED("admin_socket = print", "'admin_socket'", "string expected",
          "function");
  REFUSED("schedule = 'nightly'", "'schedule'", "table expected");
  REFUSED("schedule = 5", "'schedule'", "table expected");
}

static void test_out_of_range(void **state) {
  config_t *c = *state;
  REFUSED("max_frame = 10", "'max_frame'", "10", "out of range");
  REFUSED("max_frame = 255", "'max_frame'", "out of range");
  load_ok(c, "max_frame = 256");
  assert_int_equal(c->max_frame, 256);
  config_free(c);
  REFUSED("max_frame = 64 * 1024 * 1024 + 1", "'max_frame'");
  REFUSED("max_sessions = 0", "'max_sessions'", "out of range");
  REFUSED("max_sessions = -5", "'max_sessions'", "out of range");
  REFUSED("max_sessions = 1000001", "'max_sessions'", "out of range");
  load_ok(c, "max_sessions = 1000000");
  assert_int_equal(c->max_sessions, 1000000);
  config_free(c);
  REFUSED("max_message = 0", "'max_message'", "out of range");
  REFUSED("max_pending = 0", "'max_pending'", "out of range");
  REFUSED("max_outbound_bytes = 1023", "'max_outbound_bytes'",
          "out of range");
  REFUSED("handshake_timeout = 0", "'handshake_timeout'", "out of range");
  REFUSED("heartbeat = -1", "'heartbeat'", "out of range");
  REFUSED("heartbeat = 0.001", "'heartbeat'", "out of range");
  REFUSED("resume_timeout = -0.5", "'resume_timeout'", "out of range");
  REFUSED("sleep_after = 0", "'sleep_after'", "out of range");
  REFUSED("method_timeout = 0", "'method_timeout'", "out of range");
  REFUSED("lua_memory_limit = 1024", "'lua_memory_limit'", "out of range");
  /* Values that compare false with everything, and infinities. */
  REFUSED("heartbeat = 0/0", "'heartbeat'");
  REFUSED("max_sessions = 0/0", "'max_sessions'");
  REFUSED("heartbeat = math.huge", "'heartbeat'", "out of range");
  REFUSED("max_frame = math.huge", "'max_frame'");
  REFUSED("max_sessions = math.maxinteger", "'max_sessions'",
          "out of range");
  REFUSED("max_sessions = math.mininteger", "'max_sessions'",
          "out of range");
}

static void test_not_whole(void **state) {
  config_t *c = *state;
  REFUSED("max_pending = 1.5", "'max_pending'", "whole number", "1.5");
  REFUSED("max_sessions = 10.25", "'max_sessions'", "whole number");
  REFUSED("max_frame = 4096.5", "'max_frame'", "whole number");
  REFUSED("max_message = 100.1", "'max_message'", "whole number");
  REFUSED("max_outbound_bytes = 2048.5", "'max_outbound_bytes'",
          "whole number");
  REFUSED("lua_memory_limit = 1024 * 1024 * 1.5 + 0.5",
          "'lua_memory_limit'", "whole number");
  /* Whole floats are integers; seconds may be fractional. */
  load_ok(c, "max_pending = 2.0\nresume_timeout = 1.5\n");
  assert_int_equal(c->max_pending, 2);
  assert_true(c->resume_timeout == 1.5);
  config_free(c);
}

static void test_unknown_key(void **state) {
  (void)state;
  REFUSED("max_sesions = 1", "unknown key 'max_sesions'");
  REFUSED("Listen = '127.0.0.1:1'", "unknown key 'Listen'");
  REFUSED("max_sessions = 5\nport = 7400\n", "unknown key 'port'");
  /* A global helper function is a key too. */
  REFUSED("function helper() return 1 end\n", "unknown key 'helper'");
  /* Non-string keys set through the environment. */
  REFUSED("local env = _ENV\nenv[1] = 'x'\n", "number key");
}

static void test_listen(void **state) {
  config_t *c = *state;
  load_ok(c, "listen = '0.0.0.0:80'");
  assert_string_equal(c->listen.host, "0.0.0.0");
  assert_int_equal(c->listen.port, 80);
  config_free(c);
  load_ok(c, "listen = ':9000'");
  assert_string_equal(c->listen.host, "127.0.0.1");
  assert_int_equal(c->listen.port, 9000);
  config_free(c);
  load_ok(c, "listen = '[::1]:7401'");
  assert_string_equal(c->listen.host, "::1");
  assert_int_equal(c->listen.port, 7401);
  config_free(c);
  load_ok(c, "listen = 'localhost:0'");
  assert_string_equal(c->listen.host, "localhost");
  assert_int_equal(c->listen.port, 0);
  config_free(c);
  REFUSED("listen = 'localhost'", "'listen'", "HOST:PORT");
  REFUSED("listen = ''", "'listen'");
  REFUSED("listen = 'localhost:'", "'listen'", "port");
  REFUSED("listen = 'localhost:http'", "'listen'", "port");
  REFUSED("listen = 'localhost:65536'", "'listen'", "port");
  REFUSED("listen = 'localhost:-1'", "'listen'", "port");
  REFUSED("listen = 'localhost:80x'", "'listen'", "port");
  REFUSED("listen = '[::1]7400'", "'listen'", "[ADDRESS]:PORT");
  REFUSED("listen = '[::1:7400'", "'listen'", "[ADDRESS]:PORT");
  REFUSED("listen = string.rep('h', 300) .. ':1'", "'listen'", "host name");
}

/* ---- Lua errors ------------------------------------------------------- */

static void test_syntax_error(void **state) {
  (void)state;
  REFUSED("max_sessions = 10\n\nmax_frame = = 4096\n", NAME ":3:");
  REFUSED("max_sessions = 10\nschedule = {\n  { cron = '* * * * *' \n"
          "    script = 'x.lua' },\n}\n",
          NAME ":4:", "'}' expected");
  REFUSED("heartbeat = 'unfinished\n", NAME ":1:", "unfinished string");
  REFUSED("if true then\nmax_sessions = 1\n", NAME ":", "'end' expected");
}

/* A precompiled chunk is refused, with a message that names the file like
 * every other. */
static void test_binary_chunk(void **state) {
  (void)state;
  REFUSED("\x1bLua", "binary");
}

static void test_runtime_error(void **state) {
  (void)state;
  REFUSED("max_sessions = 10\n\nerror('boom')\n", NAME ":3: boom");
  REFUSED("local x\nmax_frame = x + 1\n", NAME ":2:", "arithmetic");
  REFUSED("max_frame = nosuch.field\n", NAME ":1:", "nosuch");
  REFUSED("\n\nassert(false, 'custom check failed')\n", NAME ":3:",
          "custom check failed");
}

/* error() with a value that is not a string: the message still says which
 * file failed. */
static void test_runtime_error_not_string(void **state) {
  (void)state;
  REFUSED("error({code = 1})\n", "");
  REFUSED("error()\n", "");
}

/* ---- schedule --------------------------------------------------------- */

static void test_schedule(void **state) {
  config_t *c = *state;
  load_ok(c,
          "schedule = {\n"
          "  { cron = '0 22 * * *',\n"
          "    script = 'maintenance/nightly_notice.lua' },\n"
          "  { every = 300, script = 'maintenance/sweep.lua' },\n"
          "  { every = 0.01, script = 's.lua', name = 'fast',\n"
          "    args = {'a', 1, true, 2.5, {x = 'y'}}, timeout = 1.5 },\n"
          "}\n");
  assert_int_equal(c->njobs, 3);
  assert_non_null(c->jobs);
  assert_string_equal(c->jobs[0].cron, "0 22 * * *");
  assert_string_equal(c->jobs[0].script, "maintenance/nightly_notice.lua");
  assert_string_equal(c->jobs[0].name, "maintenance/nightly_notice.lua");
  assert_null(c->jobs[0].args_json);
  assert_true(c->jobs[0].timeout == 0);
  assert_null(c->jobs[1].cron);
  assert_true(c->jobs[1].every == 300);
  assert_string_equal(c->jobs[1].script, "maintenance/sweep.lua");
  assert_string_equal(c->jobs[1].name, "maintenance/sweep.lua");
  assert_null(c->jobs[1].args_json);
  assert_null(c->jobs[2].cron);
  assert_true(c->jobs[2].every == 0.01);
  assert_string_equal(c->jobs[2].name, "fast");
  assert_string_equal(c->jobs[2].script, "s.lua");
  assert_string_equal(c->jobs[2].args_json,
                      "[\"a\",1,true,2.5,{\"x\":\"y\"}]");
  assert_true(c->jobs[2].timeout == 1.5);
  config_free(c);
  assert_null(c->jobs);
  assert_int_equal(c->njobs, 0);

  /* An empty schedule, and args needing escapes. */
  load_ok(c, "schedule = {}\n");
  assert_int_equal(c->njobs, 0);
  config_free(c);
  load_ok(c, "schedule = {{every = 1, script = 'x.lua',\n"
              "  args = {'say \"hi\"\\n', 'caf\\u{E9}'}}}\n");
  assert_int_equal(c->njobs, 1);
  assert_string_equal(c->jobs[0].args_json,
                      "[\"say \\\"hi\\\"\\n\",\"caf\xC3\xA9\"]");
  config_free(c);
}

/* args is documented as "a JSON array of the job's arguments": an empty
 * list is the empty array, and a table with names is no array. */
static void test_schedule_args_empty(void **state) {
  config_t *c = *state;
  load_ok(c, "schedule = {{every = 1, script = 'x.lua', args = {}}}\n");
  assert_int_equal(c->njobs, 1);
  assert_non_null(c->jobs[0].args_json);
  assert_string_equal(c->jobs[0].args_json, "[]");
  config_free(c);
}

static void test_schedule_args_not_array(void **state) {
  (void)state;
  REFUSED("schedule = {{every = 1, script = 'x.lua', args = {a = 1}}}\n",
          "schedule entry 1", "'args'");
}

static void test_schedule_errors(void **state) {
  (void)state;
  REFUSED("schedule = {{every = 5, script = 'a.lua', when = 'now'}}",
          "schedule entry 1", "unknown field 'when'");
  REFUSED("schedule = {{every = 5, script = 'a.lua'},\n"
          "  {every = 5, script = 'b.lua', Script = 'c'}}",
          "schedule entry 2", "unknown field 'Script'");
  REFUSED("schedule = {{every = 5, script = 'a.lua', 'extra'}}",
          "schedule entry 1", "number key");
  REFUSED("schedule = {{cron = '* * * * *', every = 5, script = 'a.lua'}}",
          "schedule entry 1", "a.lua", "'cron'", "'every'");
  REFUSED("schedule = {{script = 'a.lua'}}", "schedule entry 1",
          "'cron'", "'every'");
  REFUSED("schedule = {{every = 0.009, script = 'a.lua'}}",
          "schedule entry 1", "'every'", "0.01");
  REFUSED("schedule = {{every = 0, script = 'a.lua'}}", "'every'");
  REFUSED("schedule = {{every = -5, script = 'a.lua'}}", "'every'");
  REFUSED("schedule = {{every = '5', script = 'a.lua'}}", "'every'");
  REFUSED("schedule = {{cron = 5, script = 'a.lua'}}", "'cron'",
          "string");
  REFUSED("schedule = {{every = 5}}", "schedule entry 1", "'script'");
  REFUSED("schedule = {{every = 5, script = 7}}", "'script'", "string");
  REFUSED("schedule = {{every = 5, script = 'a.lua', timeout = 0}}",
          "'timeout'", "positive");
  REFUSED("schedule = {{every = 5, script = 'a.lua', timeout = -1}}",
          "'timeout'");
  REFUSED("schedule = {{every = 5, script = 'a.lua', timeout = 'x'}}",
          "'timeout'");
  REFUSED("schedule = {{every = 5, script = 'a.lua', args = 'x'}}",
          "'args'");
  REFUSED("schedule = {{every = 5, script = 'a.lua', args = {print}}}",
          "'args'");
  REFUSED("schedule = {'a.lua'}", "schedule entry 1", "table expected");
  REFUSED("schedule = {{every = 5, script = 'a.lua'}, 42}",
          "schedule entry 2", "table expected");
  /* The entry is named in messages after its name is known. */
  REFUSED("schedule = {{every = 5, script = 'a.lua', name = 'sweep',\n"
          "  timeout = 0}}",
          "(sweep)");
}

/* Tables with metamethods that raise errors: a refusal, not a crash.
 * Each chunk runs in a child process, since an unprotected Lua error
 * aborts. Returns 1 when the child refused the chunk with a message. */
static int refused_in_child(const char *chunk) {
  pid_t pid;
  int status;
  fflush(NULL);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    config_t c;
    char err[512];
    int r;
    config_defaults(&c);
    r = config_load_string(&c, chunk, NAME, err, sizeof(err));
    config_free(&c);
    _exit(r == -1 && strncmp(err, NAME, strlen(NAME)) == 0 ? 0 : 3);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return 1;
  print_error("chunk <<%s>>: child %s %d\n", chunk,
              WIFEXITED(status) ? "exited with" : "killed by signal",
              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  return 0;
}

static void test_schedule_metamethods(void **state) {
  static const char *const chunks[] = {
      "schedule = setmetatable({}, {__len = function() "
      "error('no length') end})\n",
      "schedule = setmetatable({}, {__len = function() return 'x' end})\n",
      "schedule = setmetatable({}, {__len = function() return 1 end, "
      "__index = function() error('no') end})\n",
      "schedule = {setmetatable({}, {__index = function() "
      "error('no field') end})}\n",
  };
  int ok = 1;
  (void)state;
  for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++)
    ok &= refused_in_child(chunks[i]);
  assert_true(ok);
}

/* ---- files ------------------------------------------------------------- */

/* Writes text to a new temporary file, whose path goes to path. */
static void temp_file(char *path, size_t size, const char *text) {
  const char *dir = getenv("TMPDIR");
  int fd;
  size_t len = strlen(text);
  if (dir == NULL || dir[0] == '\0')
    dir = "/tmp";
  assert_true((size_t)snprintf(path, size, "%s/herald-test-config-XXXXXX",
                               dir) < size);
  fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, len), (ssize_t)len);
  assert_int_equal(close(fd), 0);
}

static void test_load_file(void **state) {
  config_t *c = *state;
  char err[512] = "";
  char path[512];
  temp_file(path, sizeof(path),
            "-- herald.conf.lua\nlisten = '127.0.0.1:7500'\n"
            "max_sessions = 20\nschedule = {\n"
            "  { cron = '*/5 * * * *', script = 'm/a.lua' },\n}\n");
  reset(c);
  assert_int_equal(config_load_file(c, path, err, sizeof(err)), 0);
  assert_int_equal(c->listen.port, 7500);
  assert_int_equal(c->max_sessions, 20);
  assert_int_equal(c->njobs, 1);
  assert_string_equal(c->jobs[0].cron, "*/5 * * * *");
  /* Untouched keys keep their defaults. */
  assert_int_equal(c->max_frame, 65536);
  assert_string_equal(c->scripts, "scripts");
  config_free(c);
  assert_int_equal(unlink(path), 0);

  /* Errors carry the path, and the line for Lua's own. */
  temp_file(path, sizeof(path), "max_sessions = 1\nmax_sesions = 2\n");
  reset(c);
  assert_int_equal(config_load_file(c, path, err, sizeof(err)), -1);
  assert_int_equal(strncmp(err, path, strlen(path)), 0);
  assert_non_null(strstr(err, "unknown key 'max_sesions'"));
  config_free(c);
  unlink(path);

  temp_file(path, sizeof(path), "max_sessions = 1\n\nmax_frame = )\n");
  reset(c);
  assert_int_equal(config_load_file(c, path, err, sizeof(err)), -1);
  assert_int_equal(strncmp(err, path, strlen(path)), 0);
  assert_int_equal(strncmp(err + strlen(path), ":3:", 3), 0);
  config_free(c);
  unlink(path);

  /* An empty file is a valid configuration. */
  temp_file(path, sizeof(path), "");
  reset(c);
  assert_int_equal(config_load_file(c, path, err, sizeof(err)), 0);
  check_defaults(c);
  config_free(c);
  unlink(path);
}

static void test_load_file_missing(void **state) {
  config_t *c = *state;
  char err[512] = "";
  const char *path = "build/no-such-dir/herald.conf.lua";
  reset(c);
  assert_int_equal(config_load_file(c, path, err, sizeof(err)), -1);
  assert_int_equal(strncmp(err, path, strlen(path)), 0);
  assert_non_null(strstr(err, "cannot open"));
  assert_non_null(strstr(err, "No such file"));
  check_defaults(c);
  config_free(c);
  /* A directory is no configuration file either. */
  reset(c);
  err[0] = '\0';
  assert_int_equal(config_load_file(c, "tests", err, sizeof(err)), -1);
  assert_int_equal(strncmp(err, "tests:", 6), 0);
  config_free(c);
}

/* A configuration read from a pipe (`--config <(...)`, /dev/stdin): it has
 * no size to seek to, and must still be read whole, or at least refused,
 * without writing past a buffer. Runs in a child: a heap overflow may
 * abort. */
static void test_load_file_pipe(void **state) {
  static const char text[] = "max_sessions = 7\nscripts = 'piped'\n";
  int fds[2], status;
  pid_t pid;
  (void)state;
  assert_int_equal(pipe(fds), 0);
  assert_int_equal(write(fds[1], text, sizeof(text) - 1),
                   (ssize_t)sizeof(text) - 1);
  assert_int_equal(close(fds[1]), 0);
  fflush(NULL);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    config_t c;
    char path[64], err[512] = "";
    int r, ok;
    snprintf(path, sizeof(path), "/dev/fd/%d", fds[0]);
    config_defaults(&c);
    r = config_load_file(&c, path, err, sizeof(err));
    if (r != 0)
      fprintf(stderr, "%s (path %s)\n", err, path);
    ok = r == 0 && c.max_sessions == 7 && strcmp(c.scripts, "piped") == 0;
    config_free(&c);
    _exit(ok ? 0 : 3);
  }
  close(fds[0]);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    print_error("config from a pipe: child %s %d\n",
                WIFEXITED(status) ? "exited with" : "killed by signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

/* Loading over a loaded configuration replaces the strings and the
 * schedule without leaking the old ones (valgrind checks the leak). */
static void test_reload_and_partial(void **state) {
  config_t *c = *state;
  char err[512];
  load_ok(c, "scripts = 'a'\nadmin_socket = 'x.sock'\n"
              "schedule = {{every = 1, script = 'a.lua', args = {1}}}\n");
  assert_int_equal(config_load_string(c,
                                      "scripts = 'b'\nadmin_socket = 'y'\n"
                                      "schedule = {{every = 2, script = "
                                      "'b.lua'}, {cron = '* * * * *', "
                                      "script = 'c->lua'}}\n",
                                      NAME, err, sizeof(err)),
                   0);
  assert_string_equal(c->scripts, "b");
  assert_string_equal(c->admin_socket, "y");
  assert_int_equal(c->njobs, 2);
  assert_string_equal(c->jobs[1].script, "c->lua");
  /* A refused schedule half read is still freed by config_free. */
  assert_int_equal(config_load_string(c,
                                      "schedule = {{every = 1, script = "
                                      "'ok.lua', args = {1, 2}}, {every = 1,"
                                      " script = 'bad.lua', name = 'n', "
                                      "args = {print}}}\n",
                                      NAME, err, sizeof(err)),
                   -1);
  assert_non_null(strstr(err, "schedule entry 2"));
  config_free(c);
  assert_null(c->jobs);
  assert_null(c->scripts);
}

static void test_default_admin_socket(void **state) {
  char out[256], want[256];
  const char *saved = getenv("XDG_RUNTIME_DIR");
  char keep[512];
  int had = saved != NULL;
  snprintf(keep, sizeof(keep), "%s", had ? saved : "");
  (void)state;
  assert_int_equal(setenv("XDG_RUNTIME_DIR", "/xdg-test-dir", 1), 0);
  config_default_admin_socket(out, sizeof(out));
  assert_string_equal(out, "/xdg-test-dir/herald.sock");
  snprintf(want, sizeof(want), "/tmp/herald-%u/herald.sock",
           (unsigned)getuid());
  assert_int_equal(unsetenv("XDG_RUNTIME_DIR"), 0);
  config_default_admin_socket(out, sizeof(out));
  assert_string_equal(out, want);
  /* A relative or empty XDG_RUNTIME_DIR is ignored. */
  assert_int_equal(setenv("XDG_RUNTIME_DIR", "relative/dir", 1), 0);
  config_default_admin_socket(out, sizeof(out));
  assert_string_equal(out, want);
  assert_int_equal(setenv("XDG_RUNTIME_DIR", "", 1), 0);
  config_default_admin_socket(out, sizeof(out));
  assert_string_equal(out, want);
  if (had)
    setenv("XDG_RUNTIME_DIR", keep, 1);
  else
    unsetenv("XDG_RUNTIME_DIR");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_defaults),
      T(test_empty_chunks),
      T(test_every_key),
      T(test_lua_expressions),
      T(test_sandbox),
      T(test_wrong_type),
      T(test_out_of_range),
      T(test_not_whole),
      T(test_unknown_key),
      T(test_listen),
      T(test_syntax_error),
      T(test_binary_chunk),
      T(test_runtime_error),
      T(test_runtime_error_not_string),
      T(test_schedule),
      T(test_schedule_args_empty),
      T(test_schedule_args_not_array),
      T(test_schedule_errors),
      T(test_schedule_metamethods),
      T(test_load_file),
      T(test_load_file_missing),
      T(test_load_file_pipe),
      T(test_reload_and_partial),
      T(test_default_admin_socket),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
