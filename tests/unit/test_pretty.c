/*
 * Unit tests for modules/pretty.lua, the console's pretty-printer and line
 * compiler: exact outputs for every kind of value, the depth, item and size
 * bounds, the session and process tables, and lua.c's incomplete-line rule.
 *
 * Run from the repository root: the module is loaded by its relative path,
 * as the build embeds that same file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define PRETTY_PATH "modules/pretty.lua"
#define TRUNCATED "\n... (output truncated)"

/* 2026-11-26T21:00:00.000Z in milliseconds since the epoch. */
#define NOW_MS "1795726800000"

/*
 * A fresh state with the standard libraries and the module as global
 * `pretty`. `hidden`, when not NULL, names a global removed before the
 * module runs, to check how it copes with a sandbox. Fails the test when the
 * module does not load; the caller owns the state.
 */
static lua_State *open_pretty(const char *hidden)
{
  lua_State *L = luaL_newstate();
  assert_non_null(L);
  luaL_openlibs(L);
  if (hidden != NULL) {
    lua_pushnil(L);
    lua_setglobal(L, hidden);
  }
  if (luaL_loadfile(L, PRETTY_PATH) != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK)
    fail_msg("cannot load %s: %s", PRETTY_PATH, lua_tostring(L, -1));
  assert_int_equal(lua_type(L, -1), LUA_TTABLE);
  lua_setglobal(L, "pretty");
  return L;
}

static int setup(void **state)
{
  *state = open_pretty(NULL);
  return 0;
}

static int teardown(void **state)
{
  lua_close(*state);
  return 0;
}

/*
 * Runs `chunk` and returns the string it returns. The string stays on the
 * stack, valid until the next eval or the end of the test; a Lua error or a
 * result that is not a string fails the test.
 */
static const char *eval(lua_State *L, const char *chunk)
{
  lua_settop(L, 0);
  if (luaL_loadstring(L, chunk) != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK)
    fail_msg("chunk failed: %s\n%s", lua_tostring(L, -1), chunk);
  if (lua_type(L, -1) != LUA_TSTRING)
    fail_msg("chunk returned a %s, not a string:\n%s",
             luaL_typename(L, -1), chunk);
  return lua_tostring(L, -1);
}

static void test_scalars(void **state)
{
  lua_State *L = *state;

  assert_string_equal(eval(L, "return pretty.format(nil)"), "nil");
  assert_string_equal(eval(L, "return pretty.format()"), "nil");
  assert_string_equal(eval(L, "return pretty.format(true)"), "true");
  assert_string_equal(eval(L, "return pretty.format(42)"), "42");
  assert_string_equal(eval(L, "return pretty.format(-7)"), "-7");
  assert_string_equal(eval(L, "return pretty.format(3.5)"), "3.5");
  assert_string_equal(eval(L, "return pretty.format(2.0)"), "2.0");
  assert_string_equal(eval(L, "return pretty.format(1/0)"), "inf");
  assert_string_equal(eval(L, "return pretty.format(-1/0)"), "-inf");
  assert_string_equal(eval(L, "return pretty.format(0/0)"), "nan");
  assert_string_equal(eval(L, "return pretty.format('hello')"),
                      "\"hello\"");
}

static void test_string_escapes(void **state)
{
  lua_State *L = *state;

  assert_string_equal(eval(L, "return pretty.format('a\\n\"b\"\\\\\\t')"),
                      "\"a\\n\\\"b\\\"\\\\\\t\"");
  /* A terminal escape from a remote user's name is shown, not obeyed. */
  assert_string_equal(eval(L, "return pretty.format('\\27[2J\\0')"),
                      "\"\\x1b[2J\\x00\"");
  /* Valid UTF-8 stays readable; stray bytes and C1 controls are escaped. */
  assert_string_equal(eval(L, "return pretty.format('h\\u{e9}llo')"),
                      "\"h\xc3\xa9llo\"");
  assert_string_equal(eval(L, "return pretty.format('a\\xff\\xfe')"),
                      "\"a\\xff\\xfe\"");
  assert_string_equal(eval(L, "return pretty.format('x\\u{85}y\\u{202e}')"),
                      "\"x\\u{85}y\\u{202e}\"");
}

static void test_format_values_tabs(void **state)
{
  lua_State *L = *state;

  assert_string_equal(
    eval(L, "return pretty.format_values(1, 'abc', nil, true, { 2 })"),
    "1\t\"abc\"\tnil\ttrue\t{ 2 }");
  assert_string_equal(eval(L, "return pretty.format_values(nil, nil)"),
                      "nil\tnil");
  assert_string_equal(eval(L, "return pretty.format_values('abc')"),
                      "\"abc\"");
  assert_string_equal(eval(L, "return pretty.format_values()"), "");
}

static void test_short_tables_one_line(void **state)
{
  lua_State *L = *state;

  assert_string_equal(eval(L, "return pretty.format({})"), "{}");
  assert_string_equal(eval(L, "return pretty.format({ 1, 2, 3 })"),
                      "{ 1, 2, 3 }");
  assert_string_equal(
    eval(L, "return pretty.format({ host = '127.0.0.1', port = 7400,"
            " users = { 'ann', 'bob' } })"),
    "{ host = \"127.0.0.1\", port = 7400, users = { \"ann\", \"bob\" } }");
  /* Exactly 72 columns still fits; one more does not. */
  assert_string_equal(
    eval(L, "return pretty.format({ s = string.rep('x', 62) })"),
    "{ s = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\" }");
  assert_string_equal(
    eval(L, "return pretty.format({ s = string.rep('x', 63) })"),
    "{\n"
    "  s = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n"
    "}");
}

static void test_long_table_multi_line(void **state)
{
  lua_State *L = *state;

  assert_string_equal(
    eval(L, "return pretty.format({ motd = 'A maintenance operation is"
            " scheduled for 10pm.', port = 7400,"
            " tags = { 'maintenance', 'restart' } })"),
    "{\n"
    "  motd = \"A maintenance operation is scheduled for 10pm.\",\n"
    "  port = 7400,\n"
    "  tags = { \"maintenance\", \"restart\" }\n"
    "}");
  assert_string_equal(
    eval(L, "return pretty.format({ width = 80, opts = { width = 10 } },"
            " { width = 20 })"),
    "{\n"
    "  opts = {\n"
    "    width = 10\n"
    "  },\n"
    "  width = 80\n"
    "}");
}

static void test_array_hash_mix_sorted_keys(void **state)
{
  lua_State *L = *state;

  assert_string_equal(
    eval(L, "return pretty.format({ 10, 20, z = 1, a = 2, [5] = 'five',"
            " [-1] = 0, [1.5] = 1, [true] = 3, B = 4 })"),
    "{\n"
    "  10,\n"
    "  20,\n"
    "  [-1] = 0,\n"
    "  [1.5] = 1,\n"
    "  [5] = \"five\",\n"
    "  B = 4,\n"
    "  a = 2,\n"
    "  z = 1,\n"
    "  [true] = 3\n"
    "}");
  /* A hole ends the array part: later integers print as keys. */
  assert_string_equal(
    eval(L, "return pretty.format({ 1, 2, nil, 4 })"),
    "{ 1, 2, [4] = 4 }");
}

static void test_non_identifier_keys(void **state)
{
  lua_State *L = *state;

  assert_string_equal(
    eval(L, "return pretty.format({ ['my key'] = 1, ['end'] = 2,"
            " ['1st'] = 3, _ok = 4, ['a.b'] = 5 })"),
    "{ [\"1st\"] = 3, _ok = 4, [\"a.b\"] = 5, [\"end\"] = 2,"
    " [\"my key\"] = 1 }");
  assert_string_equal(
    eval(L, "return pretty.format({ [{ 1 }] = 'set', ['a\\n'] = 0 })"),
    "{ [\"a\\n\"] = 0, [{ 1 }] = \"set\" }");
}

static void test_depth_limit(void **state)
{
  lua_State *L = *state;

  assert_string_equal(
    eval(L, "return pretty.format({ a = { b = { c = { d = { e = 1 } } } } })"),
    "{ a = { b = { c = { d = {...} } } } }");
  assert_string_equal(
    eval(L, "return pretty.format({ a = { b = {} }, c = { 1 }, d = {} },"
            " { depth = 1 })"),
    "{ a = {...}, c = {...}, d = {} }");
  assert_string_equal(eval(L, "return pretty.format({ 1 }, { depth = 0 })"),
                      "{...}");
}

static void test_item_limit(void **state)
{
  lua_State *L = *state;

  assert_string_equal(
    eval(L, "local t = {} for i = 1, 10 do t[i] = i * i end"
            " t.name = 'squares'"
            " return pretty.format(t, { max_items = 3 })"),
    "{\n"
    "  1,\n"
    "  4,\n"
    "  9,\n"
    "  ... (8 more)\n"
    "}");
  /* Default: 50 entries, then the count of the rest. */
  assert_string_equal(
    eval(L, "local t = {} for i = 1, 60 do t[i] = i end"
            " return pretty.format(t):sub(-30)"),
    "\n  49,\n  50,\n  ... (10 more)\n}");
  /* Of a map, the first keys in order are the ones shown. */
  assert_string_equal(
    eval(L, "local t = {} for i = 1, 500 do t[string.format('k%03d', i)] = i"
            " end return pretty.format(t, { max_items = 2 })"),
    "{\n"
    "  k001 = 1,\n"
    "  k002 = 2,\n"
    "  ... (498 more)\n"
    "}");
}

static void test_output_bound(void **state)
{
  lua_State *L = *state;

  assert_string_equal(
    eval(L, "return pretty.format({ 'aaaaaaaaaa', 'bbbbbbbbbb', 'cccccccccc',"
            " 'dddddddddd', 'eeeeeeeeee', 'ffffffffff' }, { max_bytes = 40 })"),
    "{\n"
    "  \"aaaaaaaaaa\",\n"
    "  \"bbbbbbbbbb\",\n"
    "  \"ccc" TRUNCATED);
  /* A huge string costs and prints no more than the default 8 KB. */
  assert_string_equal(
    eval(L, "local s = pretty.format(string.rep('y', 1000000))"
            " return #s .. ' ' .. s:sub(1, 4) .. s:sub(-23)"),
    "8215 \"yyy" TRUNCATED);
  /* Nested tables: the bound holds across every level. */
  assert_string_equal(
    eval(L, "local t = {} for i = 1, 50 do t[i] = {}"
            " for j = 1, 50 do t[i][j] = { string.rep('z', 40) } end end"
            " local s = pretty.format(t)"
            " return tostring(#s <= 8192 + 23) .. s:sub(-23)"),
    "true" TRUNCATED);
  /* The cut never splits a UTF-8 character. */
  assert_string_equal(
    eval(L, "local s = pretty.format(string.rep('\\u{e9}', 100),"
            " { max_bytes = 10 }) return tostring(utf8.len(s) ~= nil)"
            " .. ' ' .. #s"),
    "true 32");
}

static void test_cycles(void **state)
{
  lua_State *L = *state;

  assert_string_equal(
    eval(L, "local t = { name = 'root' } t.self = t t.child = { parent = t }"
            " return pretty.format(t)"),
    "{ child = { parent = <cycle> }, name = \"root\", self = <cycle> }");
  /* A table seen twice but not inside itself is no cycle. */
  assert_string_equal(
    eval(L, "local s = { 1 } return pretty.format({ s, s })"),
    "{ { 1 }, { 1 } }");
}

static void test_collections(void **state)
{
  lua_State *L = *state;

  assert_string_equal(
    eval(L, "local c = setmetatable({"
            " { ID = '0123456789ABCDEF0123456789ABCDEF',"
            "   userName = 'vanessa' },"
            " { ID = 'FEDCBA9876543210FEDCBA9876543210', userName = 'bob' } },"
            " { __name = 'collection' })"
            " return pretty.format(c)"),
    "collection(2) {\n"
    "  { ID = \"0123456789ABCDEF0123456789ABCDEF\", userName = \"vanessa\" },\n"
    "  { ID = \"FEDCBA9876543210FEDCBA9876543210\", userName = \"bob\" }\n"
    "}");
  assert_string_equal(
    eval(L, "local mt = { __name = 'collection',"
            " __tostring = function() return 'hidden' end }"
            " return pretty.format({ s = setmetatable({}, mt),"
            " n = setmetatable({ 1, 2, 3 }, mt) })"),
    "{ n = collection(3) { 1, 2, 3 }, s = collection(0) {} }");
}

static void test_tostring_userdata_threads(void **state)
{
  lua_State *L = *state;

  assert_string_equal(
    eval(L, "local p = setmetatable({ x = 1 },"
            " { __tostring = function(t) return 'point(' .. t.x .. ')' end })"
            " return pretty.format({ p })"),
    "{ point(1) }");
  assert_string_equal(
    eval(L, "local bad = setmetatable({},"
            " { __tostring = function() error('boom', 0) end })"
            " return pretty.format(bad)"),
    "<__tostring error: boom>");
  /* Other metatables do not hide a table's contents. */
  assert_string_equal(
    eval(L, "return pretty.format(setmetatable({ a = 1 }, { __index = {} }))"),
    "{ a = 1 }");
  assert_string_equal(
    eval(L, "return pretty.format({ io.stdout, coroutine.create(print) })"),
    "{ userdata: FILE*, thread }");
}

static void test_functions(void **state)
{
  lua_State *L = *state;
  lua_State *sandboxed;

  assert_string_equal(eval(L, "return pretty.format(print)"),
                      "function: builtin");
  assert_string_equal(
    eval(L, "return pretty.format({ f = load('\\n\\nreturn function() end',"
            " '=probe')() })"),
    "{ f = function: probe:3 }");
  assert_string_equal(
    eval(L, "return pretty.format(load('return 1', '=chunk'))"),
    "function: chunk");
  /* Without the debug library (a sandbox) a function is just a function. */
  sandboxed = open_pretty("debug");
  assert_string_equal(eval(sandboxed, "return pretty.format({ print })"),
                      "{ function }");
  lua_close(sandboxed);
}

static void test_message_status(void **state)
{
  lua_State *L = *state;

  assert_string_equal(
    eval(L, "return pretty.message_status({ queued = 3, delivered = 2,"
            " acknowledged = 1, pending = { '0123456789ABCDEF0123456789ABCDEF',"
            " 'FEDCBA9876543210FEDCBA9876543210' } })"),
    "{\n"
    "  queued = 3,\n"
    "  delivered = 2,\n"
    "  acknowledged = 1,\n"
    "  pending = {\n"
    "    \"0123456789ABCDEF0123456789ABCDEF\",\n"
    "    \"FEDCBA9876543210FEDCBA9876543210\"\n"
    "  }\n"
    "}");
  assert_string_equal(
    eval(L, "return pretty.message_status({ queued = 1, delivered = 1,"
            " acknowledged = 1, pending = {} })"),
    "{ queued = 1, delivered = 1, acknowledged = 1, pending = {} }");
  assert_string_equal(eval(L, "return pretty.message_status(nil)"), "nil");
  /* The generic format reads it too, keys in alphabetical order. */
  assert_string_equal(
    eval(L, "return pretty.format({ queued = 1, delivered = 0,"
            " acknowledged = 0, pending = {} })"),
    "{ acknowledged = 0, delivered = 0, pending = {}, queued = 1 }");
}

static void test_sessions_table(void **state)
{
  lua_State *L = *state;

  assert_string_equal(
    eval(L, "local c = setmetatable({"
            " { ID = '0123456789ABCDEF0123456789ABCDEF', userName = 'vanessa',"
            "   machineName = 'VANESSA-PC', IPAddress = '192.168.1.20',"
            "   state = 'active',"
            "   creationDateTime = '2026-11-26T20:59:18.000Z' },"
            " { ID = 'FEDCBA9876543210FEDCBA9876543210',"
            "   userName = 'a-very-long-user-name-that-goes-on',"
            "   machineName = 'mac', IPAddress = '10.0.0.7',"
            "   state = 'sleeping',"
            "   creationDateTime = '2026-11-26T20:54:48.000Z' },"
            " { ID = '00000000000000000000000000000001',"
            "   userName = 'j\\u{e9}r\\u{f4}me', machineName = 'LAPTOP\\n2',"
            "   IPAddress = '::1', state = 'postponed',"
            "   creationDateTime = '2026-11-26T17:56:00.000Z' },"
            " }, { __name = 'collection' })"
            " return pretty.sessions_table(c, " NOW_MS ")"),
    "ID                                userName                          "
    "machineName  IPAddress     state      age\n"
    "0123456789ABCDEF0123456789ABCDEF  vanessa                           "
    "VANESSA-PC   192.168.1.20  active     42s\n"
    "FEDCBA9876543210FEDCBA9876543210  a-very-long-user-name-that-goes"
    "\xe2\x80\xa6" "  "
    "mac          10.0.0.7      sleeping   5m12s\n"
    "00000000000000000000000000000001  j\xc3\xa9r\xc3\xb4me"
    "                            "
    "LAPTOP\\n2    ::1           postponed  3h04m\n"
    "3 sessions");
  assert_string_equal(
    eval(L, "return pretty.sessions_table({}, " NOW_MS ")"),
    "ID  userName  machineName  IPAddress  state  age\n"
    "0 sessions");
}

static void test_session_ages(void **state)
{
  lua_State *L = *state;

  /* One session per row; only the age column is kept. */
  assert_string_equal(
    eval(L, "local dates = { '2026-11-26T21:00:00.000Z',"
            " '2026-11-26T20:59:59.999Z', '2026-11-26T20:00:00.000Z',"
            " '2026-11-24T18:00:00.000Z', '2026-11-26T22:00:00.000+02:00',"
            " '2026-11-27T00:00:00.000Z', 'yesterday' }"
            " local c = {} for i, d in ipairs(dates) do"
            " c[i] = { ID = 'x', creationDateTime = d } end"
            " local ages = {}"
            " local text = pretty.sessions_table(c, " NOW_MS ")"
            " for line in text:gmatch('[^\\n]+')"
            " do ages[#ages + 1] = line:match('(%S+)$') end"
            " return table.concat(ages, ' ')"),
    "age 0s 0s 1h00m 2d03h 1h00m 0s ? sessions");
  assert_string_equal(
    eval(L, "return pretty.sessions_table({ { ID = 'x',"
            " creationDateTime = '2026-11-26T20:55:00Z' } }, " NOW_MS ")"),
    "ID  userName  machineName  IPAddress  state  age\n"
    "x                                            5m00s\n"
    "1 session");
}

static void test_processes_table(void **state)
{
  lua_State *L = *state;

  assert_string_equal(
    eval(L, "return pretty.processes_table(setmetatable({"
            " { number = 1, name = 'console', type = 3, state = 0,"
            "   sessionID = '', cpuTime = 0.0123 },"
            " { number = 12, name = 'method sendAll', type = 1, state = 1,"
            "   sessionID = '0123456789ABCDEF0123456789ABCDEF',"
            "   cpuTime = 1.5 },"
            " { number = -3, name = 'scheduler', type = -1, state = 3,"
            "   cpuTime = 12 },"
            " }, { __name = 'collection' }))"),
    "number  name            type            state                     "
    "sessionID  cpuTime\n"
    "     1  console         console/script  executing                 "
    "             0.012\n"
    "    12  method sendAll  method          delayed                   "
    "01234567     1.500\n"
    "    -3  scheduler       -1              waiting for input/output  "
    "            12.000\n"
    "3 processes");
  /* Each type and state by its name; a code without one as stored. */
  assert_string_equal(
    eval(L, "local out = {}"
            " for i, code in ipairs({ { 5, 5 }, { 1, 0 }, { 3, 3 },"
            " { 9, 7 }, { 2.5, 'x' } }) do"
            " local t = pretty.processes_table({ { type = code[1],"
            " state = code[2] } })"
            " out[i] = t:match('\\n%s*(%S.-)\\n') end"
            " return table.concat(out, '|')"),
    "job   paused|method  executing|console/script  waiting for input/output"
    "|9     7|2.5   x");
}

static void test_is_incomplete(void **state)
{
  lua_State *L = *state;

  assert_string_equal(
    eval(L, "local out = {}"
            " for _, src in ipairs({ '1 + 41', 'x = 5', 'for i = 1, 3 do',"
            " 'if x then', 'print(\"a\"', 'x = = 1', 'return', '\"abc\"',"
            " 'local s = [[', 'end' }) do"
            " out[#out + 1] = tostring(pretty.is_incomplete(src)) end"
            " return table.concat(out, ' ')"),
    "false false true true true false false false true false");
  /* An unfinished expression waits too: a trailing binary operator, an
   * open bracket, parenthesis or string, a function without its body. */
  assert_string_equal(
    eval(L, "local out = {}"
            " for _, src in ipairs({ '1 +', 'x ..', 'a and', 'f(1,',"
            " '{ 1,', 't[', '(1', '\"abc', 'function(', 'function(a)',"
            " 'x.', 'not' }) do"
            " out[#out + 1] = tostring(pretty.is_incomplete(src)) end"
            " return table.concat(out, ' ')"),
    "true true true true true true true true true true true true");
  /* Not what can never be completed. */
  assert_string_equal(
    eval(L, "local out = {}"
            " for _, src in ipairs({ '1 + )', 'x y', '1 +\\n)', ')',"
            " 'f(1,,' }) do"
            " out[#out + 1] = tostring(pretty.is_incomplete(src)) end"
            " return table.concat(out, ' ')"),
    "false false false false false");
}

static void test_compile_line(void **state)
{
  lua_State *L = *state;

  /* An expression is compiled with `return`, so its value prints. */
  assert_string_equal(
    eval(L, "return pretty.format_values(pretty.compile_line('1 + 41')())"),
    "42");
  assert_string_equal(
    eval(L, "return pretty.format_values(pretty.compile_line('\"abc\"')())"),
    "\"abc\"");
  /* A statement runs in the given environment and returns nothing. */
  assert_string_equal(
    eval(L, "local env = {} local f = pretty.compile_line('x = 5', '=c', env)"
            " return pretty.format_values(f()) .. '|' .. env.x .. '|'"
            " .. tostring(rawget(_G, 'x'))"),
    "|5|nil");
  /* Without an environment, the globals. */
  assert_string_equal(
    eval(L, "y = 7 return pretty.format(pretty.compile_line('y')())"), "7");
  assert_string_equal(
    eval(L, "return select('#', pretty.compile_line('return')())"
            " .. ''"),
    "0");
  assert_string_equal(
    eval(L, "local out = {}"
            " for _, src in ipairs({ 'for i = 1, 3 do', 'if x then',"
            " 'print(\"a\"', 'x = = 1' }) do"
            " local f, err, inc = pretty.compile_line(src)"
            " out[#out + 1] = tostring(f) .. '|' .. err .. '|' .. tostring(inc)"
            " end return table.concat(out, '\\n')"),
    "nil|console:1: 'end' expected near <eof>|true\n"
    "nil|console:1: 'end' expected near <eof>|true\n"
    "nil|console:1: ')' expected near <eof>|true\n"
    "nil|console:1: unexpected symbol near '='|false");
  /* An expression that lacks its end waits for it, and then prints. */
  assert_string_equal(
    eval(L, "local out = {}"
            " for _, src in ipairs({ '1 +', 'f(1,', 'function(' }) do"
            " local f, err, inc = pretty.compile_line(src)"
            " out[#out + 1] = tostring(f) .. '|' .. err .. '|' .. tostring(inc)"
            " end return table.concat(out, '\\n')"),
    "nil|console:1: unexpected symbol near <eof>|true\n"
    "nil|console:1: unexpected symbol near <eof>|true\n"
    "nil|console:1: <name> or '...' expected near <eof>|true");
  assert_string_equal(
    eval(L, "return pretty.format_values(pretty.compile_line('1 +\\n41')())"),
    "42");
  /* The error of the form that got further: the expression's on a later
   * line, the statement's on the same line (lua.c's). */
  assert_string_equal(
    eval(L, "local out = {}"
            " for _, src in ipairs({ '1 +\\n)', '1 + )' }) do"
            " local f, err, inc = pretty.compile_line(src)"
            " out[#out + 1] = tostring(f) .. '|' .. err .. '|' .. tostring(inc)"
            " end return table.concat(out, '\\n')"),
    "nil|console:2: unexpected symbol near ')'|false\n"
    "nil|console:1: unexpected symbol near '1'|false");
  /* Once the rest arrives, the joined lines compile (lua.c's multiline). */
  assert_string_equal(
    eval(L, "local f = pretty.compile_line('local n = 0\\nfor i = 1, 3 do\\n"
            "n = n + i\\nend\\nreturn n', '=c') return tostring(f())"),
    "6");
  /* Binary chunks are refused. */
  assert_string_equal(
    eval(L, "local f, err, inc = pretty.compile_line(string.dump("
            "function() end))"
            " return tostring(f) .. '|' .. tostring(inc)"),
    "nil|false");
}

static void test_bad_arguments(void **state)
{
  lua_State *L = *state;

  assert_string_equal(
    eval(L, "return select(2, pcall(pretty.sessions_table))"),
    "bad argument #1 to 'sessions_table' (table expected, got nil)");
  assert_string_equal(
    eval(L, "return select(2, pcall(pretty.processes_table, 'x'))"),
    "bad argument #1 to 'processes_table' (table expected, got string)");
  assert_string_equal(
    eval(L, "return select(2, pcall(pretty.compile_line, 5))"),
    "bad argument #1 to 'compile_line' (string expected, got number)");
  assert_string_equal(
    eval(L, "return select(2, pcall(pretty.format, 1, { depth = -1 }))"),
    "bad option 'depth' to 'format' (non-negative integer expected,"
    " got -1)");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_scalars, setup, teardown),
    cmocka_unit_test_setup_teardown(test_string_escapes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_format_values_tabs, setup, teardown),
    cmocka_unit_test_setup_teardown(test_short_tables_one_line, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_long_table_multi_line, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_array_hash_mix_sorted_keys, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_non_identifier_keys, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_depth_limit, setup, teardown),
    cmocka_unit_test_setup_teardown(test_item_limit, setup, teardown),
    cmocka_unit_test_setup_teardown(test_output_bound, setup, teardown),
    cmocka_unit_test_setup_teardown(test_cycles, setup, teardown),
    cmocka_unit_test_setup_teardown(test_collections, setup, teardown),
    cmocka_unit_test_setup_teardown(test_tostring_userdata_threads, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_functions, setup, teardown),
    cmocka_unit_test_setup_teardown(test_message_status, setup, teardown),
    cmocka_unit_test_setup_teardown(test_sessions_table, setup, teardown),
    cmocka_unit_test_setup_teardown(test_session_ages, setup, teardown),
    cmocka_unit_test_setup_teardown(test_processes_table, setup, teardown),
    cmocka_unit_test_setup_teardown(test_is_incomplete, setup, teardown),
    cmocka_unit_test_setup_teardown(test_compile_line, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
