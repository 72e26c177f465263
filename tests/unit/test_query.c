/*
 * test_query.c: unit tests of modules/collection.lua, herald's collections
 * and 4D's query language.
 *
 * Each test gets a fresh Lua state holding the module as global C, a
 * collection S of session-like tables and a few Lua helpers; the checks
 * are Lua snippets that raise on the first mismatch. Run from the
 * repository root, as the module is loaded by a relative path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define MODULE_PATH "modules/collection.lua"

/*
 * The fixture. D4 has no age, admin or info.os; E5 has no info, a string
 * age and a state differing from A1's and C3's only by case; F6's name
 * holds Lua pattern characters.
 */
static const char fixture[] =
  "S = C.new{\n"
  "  {ID = 'A1', userName = 'Vanessa', systemUserName = 'Vanessa',\n"
  "   state = 'active', age = 34, score = 7.5, admin = true,\n"
  "   info = {os = {name = 'macOS', version = 14}}},\n"
  "  {ID = 'B2', userName = 'vanya', systemUserName = 'vanya',\n"
  "   state = 'sleeping', age = 27, score = 9, admin = false,\n"
  "   info = {os = {name = 'Windows', version = 11}}},\n"
  "  {ID = 'C3', userName = 'Bob', systemUserName = 'bob',\n"
  "   state = 'active', age = 41, score = -2.5, admin = false,\n"
  "   info = {os = {name = 'Linux'}}},\n"
  "  {ID = 'D4', userName = 'Ravenna', systemUserName = 'ravenna',\n"
  "   state = 'postponed', score = 0, info = {}},\n"
  "  {ID = 'E5', userName = [[O'Neil \"Jr\"]], systemUserName = 'oneil',\n"
  "   state = 'Active', age = 'n/a', score = 100, admin = true},\n"
  "  {ID = 'F6', userName = '50% off.*', systemUserName = 'promo',\n"
  "   state = 'sleeping', age = 34, score = 1e3},\n"
  "}\n"
  /* The IDs of a collection, space-separated. */
  "function ids(c)\n"
  "  local t = {}\n"
  "  for i, e in ipairs(c) do t[i] = e.ID end\n"
  "  return table.concat(t, ' ')\n"
  "end\n"
  /* S:query(q, ...) must give exactly the IDs in want, in that order. */
  "function same(q, want, ...)\n"
  "  local r = S:query(q, ...)\n"
  "  if not C.is(r) then error('query: no collection for ' .. q, 2) end\n"
  "  if ids(r) ~= want then\n"
  "    error(string.format('%q: got {%s}, want {%s}', q, ids(r), want), 2)\n"
  "  end\n"
  "end\n"
  /* f(...) must raise an error containing want. */
  "function raises(want, f, ...)\n"
  "  local ok, err = pcall(f, ...)\n"
  "  if ok then error('no error, want ' .. want, 2) end\n"
  "  if not string.find(tostring(err), want, 1, true) then\n"
  "    error(string.format('error %q, want %q', tostring(err), want), 2)\n"
  "  end\n"
  "  return err\n"
  "end\n"
  /* S:query(q, ...) must fail with `query: <want> in "<q>"`. */
  "function bad(q, want, ...)\n"
  "  local err = raises(string.format('query: %s in \"%s\"', want, q),\n"
  "    function(...) return S:query(q, ...) end, ...)\n"
  "  if err:find('collection.lua', 1, true) then\n"
  "    error('error blames the module: ' .. err, 2)\n"
  "  end\n"
  "end\n";

static int traceback(lua_State *L)
{
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

/*
 * A Lua state with the standard libraries, the module as global C and the
 * fixture; NULL (and the reason on stderr) when any of it fails.
 */
static lua_State *new_state(void)
{
  lua_State *L = luaL_newstate();
  if (L == NULL)
    return NULL;
  luaL_openlibs(L);
  if (luaL_loadfile(L, MODULE_PATH) != LUA_OK
      || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "cannot load %s: %s\n", MODULE_PATH,
            lua_tostring(L, -1));
    goto fail;
  }
  if (!lua_istable(L, -1)) {
    fprintf(stderr, "%s returned no module table\n", MODULE_PATH);
    goto fail;
  }
  lua_setglobal(L, "C");
  if (luaL_dostring(L, fixture) != LUA_OK) {
    fprintf(stderr, "cannot build the fixture: %s\n", lua_tostring(L, -1));
    goto fail;
  }
  return L;
fail:
  lua_close(L);
  return NULL;
}

static int setup(void **state)
{
  lua_State *L = new_state();
  if (L == NULL)
    return -1;
  *state = L;
  return 0;
}

static int teardown(void **state)
{
  lua_close(*state);
  return 0;
}

/*
 * Runs chunk in the test's state and passes when it returns true; fails
 * with the Lua error and traceback otherwise. The chunk is named after
 * the C line of the check, so a message points at the failing snippet.
 */
static void check_at(void **state, const char *chunk, int line)
{
  lua_State *L = *state;
  char name[64];
  int base = lua_gettop(L);

  snprintf(name, sizeof name, "=check at line %d", line);
  lua_pushcfunction(L, traceback);
  if (luaL_loadbuffer(L, chunk, strlen(chunk), name) != LUA_OK
      || lua_pcall(L, 0, 1, base + 1) != LUA_OK)
    fail_msg("%s", lua_tostring(L, -1));
  if (!lua_isboolean(L, -1) || !lua_toboolean(L, -1))
    fail_msg("%s: returned %s, want true", name, luaL_tolstring(L, -1, NULL));
  lua_settop(L, base);
}

#define CHECK(chunk) check_at(state, (chunk), __LINE__)

static void test_module_shape(void **state)
{
  CHECK("local t = {1, 2, 3}\n"
        "assert(C.new(t) == t and C.is(t), 'new works in place')\n"
        "assert(C.new(t) == t, 'new on a collection is harmless')\n"
        "assert(not C.is({}) and not C.is(nil) and not C.is('x'))\n"
        "assert(C.is(C.new()) and C.new():length() == 0)\n"
        "assert(S:length() == 6 and #S == 6)\n"
        "assert(S:first().ID == 'A1')\n"
        "assert(C.new{}:first() == nil)\n"
        "local n = 0\n"
        "for _ in ipairs(S) do n = n + 1 end\n"
        "assert(n == 6, 'ipairs sees every element')\n"
        "local r = S:query('age > 0')\n"
        "assert(C.is(r) and r ~= S and S:length() == 6)\n"
        "assert(r[1] == S[1], 'results hold the same element tables')\n"
        "assert(C.is(S:query('age > 100')) and #S:query('age > 100') == 0)\n"
        "return true");
}

static void test_equal_is_case_insensitive(void **state)
{
  CHECK("same('systemUserName = :1', 'A1', 'Vanessa')\n"
        "same([[userName = 'vanessa']], 'A1')\n"
        "same([[userName == 'VANESSA']], 'A1')\n"
        "same([[state = 'ACTIVE']], 'A1 C3 E5')\n"
        "same([[state == 'Active']], 'A1 C3 E5')\n"
        "same([[userName = 'Vaness']], '')\n"
        "same([[userName = 'Vanessa ']], '')\n"
        "same('age = 34', 'A1 F6')\n"
        "same([[age = '34']], '', 'no string-number coercion')\n"
        "same([[age = 'N/A']], 'E5')\n"
        "same('score = 1000', 'F6')\n"
        "same('admin = true', 'A1 E5')\n"
        "same('admin = false', 'B2 C3')\n"
        "return true");
}

static void test_wildcards(void **state)
{
  CHECK("same([[userName = 'Van@']], 'A1 B2')\n"
        "same([[userName = 'van@']], 'A1 B2')\n"
        "same([[userName = '@SSA']], 'A1')\n"
        "same([[userName = '@nna']], 'D4')\n"
        "same([[userName = '@ness@']], 'A1')\n"
        "same([[userName = '@AN@']], 'A1 B2')\n"
        "same([[userName = 'V@a']], 'A1 B2')\n"
        "same([[userName = 'r@N@a']], 'D4')\n"
        "same([[userName = 'v@n@s@a']], 'A1')\n"
        "same([[userName = 'Van@ssa@']], 'A1')\n"
        "same([[userName = '@']], 'A1 B2 C3 D4 E5 F6')\n"
        "same([[userName = '@@']], 'A1 B2 C3 D4 E5 F6')\n"
        "same([[age = '@']], 'E5', 'a wildcard matches strings only')\n"
        /* Prefix, middle parts and suffix may not overlap. */
        "same([[userName = 'Vanessa@a']], '')\n"
        "same([[userName = 'vany@anya']], '')\n"
        "same([[userName = '@ss@sa']], '')\n"
        "same([[userName = '@ne@sa']], 'A1')\n"
        /* Lua pattern characters are plain characters. */
        "same([[userName = '50% @']], 'F6')\n"
        "same([[userName = '@.*']], 'F6')\n"
        "same([[userName = '%@']], '')\n"
        "same([[userName = '.@']], '')\n"
        "return true");
}

static void test_strict_equal(void **state)
{
  CHECK("same([[userName === 'Vanessa']], 'A1')\n"
        "same([[userName === 'vanessa']], '')\n"
        "same([[userName === 'Van@']], '', '@ is literal')\n"
        "same([[state === 'active']], 'A1 C3')\n"
        "same('age === 34', 'A1 F6')\n"
        "same('admin === null', 'D4 F6')\n"
        "local lit = C.new{{ID = 'x', name = 'Van@'},\n"
        "                  {ID = 'y', name = 'Vanessa'}}\n"
        "assert(ids(lit:query([[name === 'Van@']])) == 'x')\n"
        "assert(ids(lit:query([[name = 'Van@']])) == 'x y')\n"
        "assert(ids(lit:query([[name !== 'Van@']])) == 'y')\n"
        "return true");
}

static void test_not_equal(void **state)
{
  CHECK("same([[state != 'active']], 'B2 D4 F6')\n"
        "same([[state # 'ACTIVE']], 'B2 D4 F6')\n"
        "same([[state#'active']], 'B2 D4 F6')\n"
        "same([[userName != 'van@']], 'C3 D4 E5 F6')\n"
        "same([[userName # '@a']], 'C3 E5 F6')\n"
        "same([[state !== 'active']], 'B2 D4 E5 F6')\n"
        "same([[state !== 'Active']], 'A1 B2 C3 D4 F6')\n"
        "same('age != 34', 'B2 C3 D4 E5', 'nil differs from 34')\n"
        "same('age # null', 'A1 B2 C3 E5 F6')\n"
        "same('admin != true', 'B2 C3 D4 F6')\n"
        "return true");
}

static void test_ordering_numbers(void **state)
{
  CHECK("same('age > 34', 'C3')\n"
        "same('age >= 34', 'A1 C3 F6')\n"
        "same('age < 34', 'B2')\n"
        "same('age <= 34', 'A1 B2 F6')\n"
        "same('score < 0', 'C3')\n"
        "same('score >= -2.5', 'A1 B2 C3 D4 E5 F6')\n"
        "same('score > -2.5', 'A1 B2 D4 E5 F6')\n"
        "same('score <= 7.5', 'A1 C3 D4')\n"
        "same('score > 9', 'E5 F6')\n"
        "same('info.os.version >= 11', 'A1 B2')\n"
        "return true");
}

static void test_ordering_strings(void **state)
{
  CHECK("same([[userName > 'r']], 'A1 B2 D4')\n"
        "same([[userName >= 'vANESSA']], 'A1 B2')\n"
        "same([[userName <= 'BOB']], 'C3 F6')\n"
        "same([[userName < 'bob']], 'F6')\n"
        "same([[state < 'Active']], '')\n"
        "same([[state <= 'Active']], 'A1 C3 E5')\n"
        "same([[state > 'POSTPONED']], 'B2 F6')\n"
        "same([[state >= 'postponed']], 'B2 D4 F6')\n"
        "return true");
}

static void test_ordering_mixed_types(void **state)
{
  CHECK("same('age < 100', 'A1 B2 C3 F6', 'nil and strings are left out')\n"
        "same([[age > 'a']], 'E5', 'only string ages compare to a string')\n"
        "same('userName > 5', '')\n"
        "same('userName <= 5', '')\n"
        "same('age < null', '')\n"
        "same('age >= null', '')\n"
        "same('admin > false', '')\n"
        "same('admin <= true', '')\n"
        "same('info > 1', '')\n"
        "return true");
}

static void test_in(void **state)
{
  CHECK("same('state in :1', 'A1 B2 C3 E5 F6', {'Active', 'sleeping'})\n"
        "same('state IN :1', 'B2 D4 F6', C.new{'postponed', 'SLEEPING'})\n"
        "same([[age In [27, 41, 'n/a'] ]], 'B2 C3 E5')\n"
        "same([[userName iN ['van@', 'bob'] ]], 'A1 B2 C3')\n"
        "same([[userName in ['@SSA', '@NNA'] ]], 'A1 D4')\n"
        "same([[age in ['34'] ]], '', 'no string-number coercion')\n"
        "same('age in [null]', 'D4')\n"
        "same('admin in [true, null]', 'A1 D4 E5 F6')\n"
        "same('age in []', '')\n"
        "same('age in :1', '', {})\n"
        "same([[state in [:1, 'postponed'] ]], 'B2 D4 F6', 'sleeping')\n"
        "same('not age in [34, 27]', 'C3 D4 E5')\n"
        "same('score in [7.5,1000,-2.5]', 'A1 C3 F6')\n"
        "return true");
}

static void test_placeholders(void **state)
{
  CHECK("same('userName = :1 and age = :2', 'A1', 'VANESSA', 34)\n"
        "same('age = :2 or userName = :1', 'B2 C3', 'bob', 27)\n"
        "same('age = :1', 'D4', nil)\n"
        "same('age = :1', '', '34')\n"
        "same('userName = :1', 'E5', [[O'Neil \"Jr\"]])\n"
        "same('userName = :1', 'A1 B2', 'van@')\n"
        "same('userName === :1', '', 'van@')\n"
        "same('age >= :1 and age <= :2', 'A1 F6', 30, 40)\n"
        "same([[state = :1 or state = :2]], 'B2 D4 F6', 'sleeping',\n"
        "     'postponed', 'unused extra argument')\n"
        "return true");
}

static void test_placeholder_paths(void **state)
{
  CHECK("same(':1 = :2', 'A1', 'info.os.name', 'mac@')\n"
        "same(':1 >= 34', 'A1 C3 F6', 'age')\n"
        "same(':2 in :1', 'A1 C3', {-2.5, 7.5}, 'score')\n"
        "return true");
}

static void test_logic_operators(void **state)
{
  CHECK("same([[state = 'active' and age > 35]], 'C3')\n"
        "same([[state = 'active' AND age > 35]], 'C3')\n"
        "same([[state = 'active' & age > 35]], 'C3')\n"
        "same([[state = 'active' && age > 35]], 'C3')\n"
        "same([[age>30&state='active']], 'A1 C3')\n"
        "same([[state = 'postponed' or age = 27]], 'B2 D4')\n"
        "same([[state = 'postponed' Or age = 27]], 'B2 D4')\n"
        "same([[state = 'postponed' | age = 27]], 'B2 D4')\n"
        "same([[state = 'postponed' || age = 27]], 'B2 D4')\n"
        "same('age=27||age=41', 'B2 C3')\n"
        "same([[not state = 'active']], 'B2 D4 F6')\n"
        "same([[NOT state = 'active']], 'B2 D4 F6')\n"
        "same([[!state = 'active']], 'B2 D4 F6')\n"
        "same([[! state = 'active']], 'B2 D4 F6')\n"
        "same([[not not state = 'active']], 'A1 C3 E5')\n"
        "same([[!!state = 'active']], 'A1 C3 E5')\n"
        "return true");
}

static void test_precedence_and_parentheses(void **state)
{
  /* Each query reads differently under a wrong precedence. */
  CHECK("same([[state = 'sleeping' or state = 'postponed' and score = 0]],\n"
        "     'B2 D4 F6')\n"
        "same([[state = 'postponed' and score = 0 or state = 'sleeping']],\n"
        "     'B2 D4 F6')\n"
        "same([[not state = 'active' and age = 34]], 'F6')\n"
        "same('age = 27 or not admin = true and score > 50', 'B2 F6')\n"
        "same([[(state = 'sleeping' or state = 'postponed') and score = 0]],\n"
        "     'D4')\n"
        "same([[not (state = 'active' or state = 'sleeping')]], 'D4')\n"
        "same([[!(age > 30)]], 'B2 D4 E5')\n"
        "same('((age = 27))', 'B2')\n"
        "same('(age = 27 or (age = 41 and admin = false)) and score > 0',\n"
        "     'B2')\n"
        "same('not (age = 34 and not (admin = true))', 'A1 B2 C3 D4 E5')\n"
        "return true");
}

static void test_paths_and_nil(void **state)
{
  CHECK("same([[info.os.name = 'windows']], 'B2')\n"
        "same('info.os.name = null', 'D4 E5 F6')\n"
        "same('info.os = null', 'D4 E5 F6')\n"
        "same('info.os.version < 12', 'B2')\n"
        "same('info.missing.deep.path = null', 'A1 B2 C3 D4 E5 F6')\n"
        /* Strings are not descended into: no string methods as values. */
        "same('userName.len = null', 'A1 B2 C3 D4 E5 F6')\n"
        "same('admin = null', 'D4 F6')\n"
        "same('nosuch = null', 'A1 B2 C3 D4 E5 F6')\n"
        "same('nosuch = 1 or nosuch != 1', 'A1 B2 C3 D4 E5 F6')\n"
        "same('_under_score1 = null and age.x = null', 'A1 B2 C3 D4 E5 F6')\n"
        "local odd = C.new{1, 'x', {a = 1}, true, {a = {b = 2}}}\n"
        "assert(#odd:query('a = 1') == 1 and odd:query('a = 1')[1].a == 1)\n"
        "assert(#odd:query('a.b = 2') == 1)\n"
        "return true");
}

static void test_literals(void **state)
{
  CHECK("same([[userName = \"O'Neil \\\"Jr\\\"\"]], 'E5')\n"
        "same([[userName = 'O\\'Neil \"jr\"']], 'E5')\n"
        "local p = C.new{{ID = 'p', path = [[C:\\dir\\x]]}}\n"
        "assert(ids(p:query([[path = 'C:\\\\dir\\\\x']])) == 'p')\n"
        "assert(ids(p:query([[path = 'C:\\dir\\x']])) == 'p',\n"
        "       'a lone backslash is kept')\n"
        "same('score = -2.5', 'C3')\n"
        "same('score = 7.50', 'A1')\n"
        "same('score = 1e3', 'F6')\n"
        "same('score = 0.0', 'D4')\n"
        "same('score > -3 and score < -2', 'C3')\n"
        "same('admin = TRUE', 'A1 E5')\n"
        "same('admin = False', 'B2 C3')\n"
        "same('age = NULL', 'D4')\n"
        "same([[userName = '']], '')\n"
        "same('   age   =   27   ', 'B2')\n"
        "same('\\tage\\n=\\r27', 'B2')\n"
        "return true");
}

static void test_map_and_filter(void **state)
{
  CHECK("local m = S:map(function(e, i) return e.ID .. i end)\n"
        "assert(C.is(m))\n"
        "assert(table.concat(m, ' ') == 'A11 B22 C33 D44 E55 F66')\n"
        "local ages = S:map(function(e) return e.age end)\n"
        "assert(#ages == 5, 'nil results are left out')\n"
        "local f = S:filter(function(e, i) return i % 2 == 0 end)\n"
        "assert(C.is(f) and ids(f) == 'B2 D4 F6')\n"
        "assert(ids(S:filter(function(e) return e.admin end)) == 'A1 E5')\n"
        "assert(S:filter(function() return false end):length() == 0)\n"
        "local callable = setmetatable({}, {__call = function(_, e)\n"
        "  return e.ID == 'C3' end})\n"
        "assert(ids(S:filter(callable)) == 'C3')\n"
        "local chain = S:query([[state = 'active']])\n"
        "  :filter(function(e) return type(e.age) == 'number' end)\n"
        "  :orderBy('age', 'desc'):map(function(e) return e.userName end)\n"
        "assert(table.concat(chain, ',') == 'Bob,Vanessa')\n"
        "assert(S:length() == 6 and ids(S) == 'A1 B2 C3 D4 E5 F6')\n"
        "return true");
}

static void test_order_by(void **state)
{
  CHECK("local A = S:query([[age # 'n/a']])\n"
        "assert(ids(A:orderBy('age')) == 'D4 B2 A1 F6 C3')\n"
        "assert(ids(A:orderBy('age', 'asc')) == 'D4 B2 A1 F6 C3')\n"
        "assert(ids(A:orderBy('age', 'desc')) == 'C3 A1 F6 B2 D4')\n"
        "assert(ids(A:orderBy('age', 'DESC')) == 'C3 A1 F6 B2 D4')\n"
        "assert(ids(S:orderBy('score')) == 'C3 D4 A1 B2 E5 F6')\n"
        "assert(ids(S:orderBy('score', 'desc')) == 'F6 E5 B2 A1 D4 C3')\n"
        "assert(ids(S:orderBy('userName')) == 'F6 C3 E5 D4 A1 B2',\n"
        "       'strings order case-insensitively')\n"
        "assert(ids(S:orderBy('userName', 'desc')) == 'B2 A1 D4 E5 C3 F6')\n"
        "assert(ids(S:orderBy('info.os.version')) == 'C3 D4 E5 F6 B2 A1',\n"
        "       'nil first ascending')\n"
        "assert(ids(S:orderBy('info.os.version', 'desc'))\n"
        "       == 'A1 B2 C3 D4 E5 F6', 'nil last descending')\n"
        "assert(ids(S:orderBy('admin')) == 'D4 F6 B2 C3 A1 E5')\n"
        "assert(ids(S) == 'A1 B2 C3 D4 E5 F6', 'S itself is not sorted')\n"
        "assert(C.is(S:orderBy('score')))\n"
        "assert(C.new{}:orderBy('x'):length() == 0)\n"
        "return true");
}

/* 4D's forms: "path [asc|desc], ..." and an array of criteria objects. */
static void test_order_by_4d_forms(void **state)
{
  CHECK("assert(ids(S:orderBy('userName desc')) == 'B2 A1 D4 E5 C3 F6')\n"
        "assert(ids(S:orderBy('userName DESC')) == 'B2 A1 D4 E5 C3 F6')\n"
        "assert(ids(S:orderBy('userName Asc')) == 'F6 C3 E5 D4 A1 B2')\n"
        "assert(ids(S:orderBy('state, userName desc'))\n"
        "       == 'A1 E5 C3 D4 B2 F6')\n"
        "assert(ids(S:orderBy('state desc,score')) == 'B2 F6 D4 C3 A1 E5')\n"
        "assert(ids(S:orderBy('  state   asc ,score  desc '))\n"
        "       == 'E5 A1 C3 D4 F6 B2')\n"
        "assert(ids(S:orderBy('info.os.version desc, score desc'))\n"
        "       == 'A1 B2 F6 E5 D4 C3', 'ties, nil ones too, by the next')\n"
        "assert(ids(S:orderBy{{propertyPath = 'state', descending = true},\n"
        "  {propertyPath = 'score'}}) == 'B2 F6 D4 C3 A1 E5')\n"
        "assert(ids(S:orderBy{{propertyPath = 'userName',\n"
        "  descending = false}}) == 'F6 C3 E5 D4 A1 B2')\n"
        "assert(ids(S:orderBy{{propertyPath = 'info.os.version'}})\n"
        "       == 'C3 D4 E5 F6 B2 A1')\n"
        "return true");
}

static void test_order_by_stable_and_nil_first(void **state)
{
  CHECK("local t = {}\n"
        "for i = 1, 257 do t[i] = {i = i, k = (i * 7) % 5} end\n"
        "local function sorted(c, desc)\n"
        "  for i = 2, #c do\n"
        "    local a, b = c[i - 1], c[i]\n"
        "    if a.k == b.k then\n"
        "      if a.i > b.i then return false end\n"
        "    elseif (a.k < b.k) == desc then return false end\n"
        "  end\n"
        "  return #c == 257\n"
        "end\n"
        "local c = C.new(t)\n"
        "assert(sorted(c:orderBy('k'), false), 'asc is stable')\n"
        "assert(sorted(c:orderBy('k', 'desc'), true), 'desc is stable')\n"
        "assert(sorted(c:orderBy('k desc, i'), true), 'string form')\n"
        "local m = C.new{{ID = 'n2', k = 2}, {ID = 'nil'}, {ID = 'n1', k = 1},\n"
        "  {ID = 'nan', k = 0/0}, {ID = 'n1b', k = 1}}\n"
        "assert(ids(m:orderBy('k')) == 'nil nan n1 n1b n2')\n"
        "assert(ids(m:orderBy('k', 'desc')) == 'n2 n1 n1b nil nan')\n"
        "local b = C.new{{ID = 'T', k = true}, {ID = 'x'}, {ID = 'F', k = false}}\n"
        "assert(ids(b:orderBy('k')) == 'x F T')\n"
        "assert(ids(b:orderBy('k desc')) == 'T F x')\n"
        "return true");
}

/* What cannot be sorted raises, naming the path, and blames the caller. */
static void test_order_by_refusals(void **state)
{
  CHECK("raises([[orderBy: no element has \"nosuch\"]],\n"
        "  function() return S:orderBy('nosuch') end)\n"
        "raises([[orderBy: no element has \"nosuch.x\"]],\n"
        "  function() return S:orderBy('score, nosuch.x desc') end)\n"
        "raises([[orderBy: cannot sort by \"age\": element 1 holds a number, ]]\n"
        "  .. [[element 5 a string, which do not compare]],\n"
        "  function() return S:orderBy('age') end)\n"
        "raises([[orderBy: cannot sort by \"k\": element 2 holds a table ]]\n"
        "  .. [[(only numbers, strings and booleans sort)]],\n"
        "  function() return C.new{{k = 1}, {k = {}}}:orderBy('k') end)\n"
        "raises([[orderBy: cannot sort by \"k\": element 1 holds a boolean, ]]\n"
        "  .. [[element 2 a number]],\n"
        "  function() return C.new{{k = true}, {k = 1}}:orderBy('k') end)\n"
        "raises([[bad argument #1 to 'orderBy' (\"asc\" or \"desc\" expected ]]\n"
        "  .. [[after \"state\", got \"up\")]],\n"
        "  function() return S:orderBy('state up') end)\n"
        "raises([[bad argument #1 to 'orderBy' (\"asc\" or \"desc\" expected ]]\n"
        "  .. [[after \"score\", got \"descending\")]],\n"
        "  function() return S:orderBy('state, score descending') end)\n"
        "raises([[bad argument #1 to 'orderBy' (unexpected \"x\" after ]]\n"
        "  .. [[\"state desc\")]],\n"
        "  function() return S:orderBy('state desc x') end)\n"
        "raises([[bad argument #1 to 'orderBy' (empty attribute path in ]]\n"
        "  .. [[\"state,\")]], function() return S:orderBy('state,') end)\n"
        "raises([[bad argument #1 to 'orderBy' (empty attribute path in ]]\n"
        "  .. [[\"\")]], function() return S:orderBy('') end)\n"
        "raises([[bad argument #1 to 'orderBy' (malformed attribute path ]]\n"
        "  .. [[\"a..b\")]], function() return S:orderBy('state, a..b') end)\n"
        "raises([[bad argument #1 to 'orderBy' (one attribute path expected ]]\n"
        "  .. [[with a direction argument, got \"state, score\")]],\n"
        "  function() return S:orderBy('state, score', 'desc') end)\n"
        "raises([[bad argument #1 to 'orderBy' (criterion 2: propertyPath: ]]\n"
        "  .. [[string expected, got nil)]], function()\n"
        "  return S:orderBy{{propertyPath = 'state'}, {path = 'x'}} end)\n"
        "raises([[bad argument #1 to 'orderBy' (criterion 1: descending: ]]\n"
        "  .. [[boolean expected, got string)]], function()\n"
        "  return S:orderBy{{propertyPath = 'state', descending = 'yes'}} end)\n"
        "raises([[bad argument #1 to 'orderBy' (criterion 1: table ]]\n"
        "  .. [[expected, got string)]],\n"
        "  function() return S:orderBy{'state'} end)\n"
        "raises([[bad argument #1 to 'orderBy' (empty array of criteria)]],\n"
        "  function() return S:orderBy{} end)\n"
        "raises([[bad argument #2 to 'orderBy' (no direction expected]],\n"
        "  function() return S:orderBy({{propertyPath = 'state'}}, 'desc')\n"
        "  end)\n"
        "local ok, err = pcall(function()\n"
        "  local r = S:orderBy('nosuch')\n"
        "  return r\n"
        "end)\n"
        "assert(err:find('^check at line %d+:%d+: orderBy: no element'), err)\n"
        "ok, err = pcall(function()\n"
        "  local r = S:orderBy('state up')\n"
        "  return r\n"
        "end)\n"
        "assert(err:find('^check at line %d+:%d+: bad argument #1'), err)\n"
        "return true");
}

static void test_malformed_queries(void **state)
{
  CHECK("bad('systemUserName :1', 'expected a comparator at position 16',\n"
        "    'Vanessa')\n"
        "bad('', 'empty query at position 1')\n"
        "bad('   ', 'empty query at position 1')\n"
        "bad([[userName = 'Van]], 'unterminated string at position 12')\n"
        "bad([[a = \"x\\\"]], 'unterminated string at position 5')\n"
        "bad('(age = 1', [[unclosed '(' at position 1]])\n"
        "bad('age = 1 or ((age = 2)', [[unclosed '(' at position 12]])\n"
        "bad('age = 1)', [[unbalanced ')' at position 8]])\n"
        "bad('(age = 1))', [[unbalanced ')' at position 10]])\n"
        "bad('()', 'expected an attribute path at position 2')\n"
        "bad('age = 1 state',\n"
        "    [[expected 'and', 'or' or the end of the query at position 9]])\n"
        "bad('age = 1 = 2',\n"
        "    [[expected 'and', 'or' or the end of the query at position 9]])\n"
        "bad('(age = 1 state = 2)',\n"
        "    [[expected 'and', 'or' or ')' at position 10]])\n"
        "bad('age = :3',\n"
        "    'no value for placeholder :3 (2 given) at position 7', 1, 2)\n"
        "bad(':0 = 1', 'no value for placeholder :0 (1 given) at position 1',\n"
        "    'age')\n"
        "bad('age = :1',\n"
        "    'no value for placeholder :1 (0 given) at position 7')\n"
        "bad('age = : 1', 'expected a placeholder number at position 8', 1)\n"
        "bad('= 1', 'expected an attribute path at position 1')\n"
        "bad('27 = age', 'expected an attribute path at position 1')\n"
        "bad('age = ', 'expected a value at position 7')\n"
        "bad('age = userName', 'expected a value at position 7')\n"
        "bad('age > :1 and age < :1 + 1', [[unexpected character '+' at ]]\n"
        "  .. [[position 23]], 5)\n"
        "bad('age in 5', 'expected a list or a placeholder after IN '\n"
        "  .. 'at position 8')\n"
        "bad('age in :1', 'expected a list in placeholder :1, got number '\n"
        "  .. 'at position 8', 5)\n"
        "bad('age in [1 2]', [[expected ',' or ']' at position 11]])\n"
        "bad('age in [1,', 'expected a value at position 11')\n"
        "bad('age in [1', [[unclosed '[' at position 8]])\n"
        "bad('age ~ 1', [[unexpected character '~' at position 5]])\n"
        "bad('age = 1 and', 'expected an attribute path at position 12')\n"
        "bad('age = 1 or not', 'expected an attribute path at position 15')\n"
        "bad('a..b = 1', [[expected an attribute name after '.' ]]\n"
        "  .. [[at position 3]])\n"
        "bad('a. = 1', [[expected an attribute name after '.' ]]\n"
        "  .. [[at position 3]])\n"
        "bad('age = 1.2.3', 'malformed number at position 7')\n"
        "bad('age = 12abc', 'malformed number at position 7')\n"
        "bad('age = -', 'malformed number at position 7')\n"
        "bad(':1 = 2', 'expected an attribute path in placeholder :1 '\n"
        "  .. 'at position 1', 5)\n"
        "bad(':1 = 2', 'expected an attribute path in placeholder :1 '\n"
        "  .. 'at position 1', 'a..b')\n"
        /* The leftmost problem wins, lexical or not. */
        "bad('age :1 ~', 'expected a comparator at position 5', 1)\n"
        "bad('age = 1 ~ (', [[unexpected character '~' at position 9]])\n"
        "bad('age = 1 and \"x', 'unterminated string at position 13')\n"
        "return true");
}

static void test_errors_blame_the_caller(void **state)
{
  CHECK("local ok, err = pcall(function()\n"
        "  local r = S:query('age')\n"
        "  return r\n"
        "end)\n"
        "assert(not ok)\n"
        "assert(err:find('^check at line %d+:2: query: expected a '\n"
        "  .. 'comparator at position 4 in \"age\"$'), err)\n"
        "ok, err = pcall(function()\n"
        "  local r = S:query(nil)\n"
        "  return r\n"
        "end)\n"
        "assert(err:find('^check at line %d+:9: bad argument #1'), err)\n"
        "return true");
}

static void test_argument_errors(void **state)
{
  CHECK("raises([[bad argument #1 to 'query' (string expected, got nil)]],\n"
        "  function() return S:query() end)\n"
        "raises([[bad argument #1 to 'query' (string expected, got number)]],\n"
        "  function() return S:query(5) end)\n"
        "raises([[calling 'query' on bad self (collection expected, ]]\n"
        "  .. [[got string)]], function() return S.query('age = 1') end)\n"
        "raises([[calling 'length' on bad self]],\n"
        "  function() return S.length({}) end)\n"
        "raises([[calling 'first' on bad self]],\n"
        "  function() return S.first() end)\n"
        "raises([[bad argument #1 to 'map' (function expected, got nil)]],\n"
        "  function() return S:map() end)\n"
        "raises([[bad argument #1 to 'filter' (function expected, ]]\n"
        "  .. [[got string)]], function() return S:filter('x') end)\n"
        "raises([[bad argument #1 to 'orderBy' (string or array of criteria ]]\n"
        "  .. [[expected, got nil)]],\n"
        "  function() return S:orderBy() end)\n"
        "raises([[bad argument #1 to 'orderBy' (malformed attribute path ]]\n"
        "  .. [[\"a..b\")]], function() return S:orderBy('a..b') end)\n"
        "raises([[bad argument #2 to 'orderBy' (\"asc\" or \"desc\" ]]\n"
        "  .. [[expected, got \"up\")]],\n"
        "  function() return S:orderBy('age', 'up') end)\n"
        "raises([[bad argument #2 to 'orderBy' (\"asc\" or \"desc\" ]]\n"
        "  .. [[expected, got number)]],\n"
        "  function() return S:orderBy('age', 1) end)\n"
        "raises([[bad argument #1 to 'new' (table expected, got number)]],\n"
        "  function() return C.new(5) end)\n"
        "raises([[bad argument #1 to 'new' (table already has a ]]\n"
        "  .. [[metatable)]], function() return C.new(setmetatable({}, {}))\n"
        "  end)\n"
        "return true");
}

/*
 * The query compiles once per call: an IN list behind a counting proxy is
 * read once, not once per element.
 */
static void test_query_compiles_once(void **state)
{
  CHECK("local reads = 0\n"
        "local values = {'active', 'postponed', 'x'}\n"
        "local proxy = setmetatable({}, {\n"
        "  __index = function(_, i) reads = reads + 1 return values[i] end,\n"
        "  __len = function() return #values end})\n"
        "same('state in :1', 'A1 C3 D4 E5', proxy)\n"
        "assert(reads == 3, 'list read ' .. reads .. ' times')\n"
        "local big = {}\n"
        "for i = 1, 20000 do big[i] = {n = i, name = 'user' .. i} end\n"
        "local r = C.new(big):query([[n > 10 and name = '@99@' or n = 1]])\n"
        "assert(r:length() == 561 and r:first().n == 1, r:length())\n"
        "return true");
}

/*
 * The scheduler yields a process from a count hook; that works only when
 * no C function stands between the hook and the coroutine (table.sort's
 * comparator would). Runs query and orderBy under a hook that yields every
 * 50 instructions and checks that they yielded and still got it right.
 */
static void yield_hook(lua_State *L, lua_Debug *ar)
{
  (void)ar;
  lua_yield(L, 0);
}

static void test_yieldable_under_count_hook(void **state)
{
  static const char chunk[] =
    "local t = {}\n"
    "for i = 1, 500 do t[i] = {k = (i * 37) % 101, i = i} end\n"
    "local c = C.new(t):query('k >= 0 and not k = 5'):orderBy('k', 'desc')\n"
    "for i = 2, #c do\n"
    "  local a, b = c[i - 1], c[i]\n"
    "  if a.k < b.k or (a.k == b.k and a.i > b.i) then return false end\n"
    "end\n"
    "return #c == 495 and S:query('age > 30'):map(function(e)\n"
    "  return e.ID end)[3] == 'F6'\n";
  lua_State *L = *state;
  lua_State *co = lua_newthread(L);
  int nres = 0, yields = 0, rc;

  assert_int_equal(luaL_loadbuffer(co, chunk, sizeof chunk - 1, "=hooked"),
                   LUA_OK);
  lua_sethook(co, yield_hook, LUA_MASKCOUNT, 50);
  while ((rc = lua_resume(co, L, 0, &nres)) == LUA_YIELD) {
    lua_pop(co, nres);
    yields++;
  }
  if (rc != LUA_OK)
    fail_msg("hooked run failed: %s", lua_tostring(co, -1));
  assert_int_equal(nres, 1);
  assert_true(lua_toboolean(co, -1));
  assert_true(yields > 100);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_module_shape, setup, teardown),
    cmocka_unit_test_setup_teardown(test_equal_is_case_insensitive, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_wildcards, setup, teardown),
    cmocka_unit_test_setup_teardown(test_strict_equal, setup, teardown),
    cmocka_unit_test_setup_teardown(test_not_equal, setup, teardown),
    cmocka_unit_test_setup_teardown(test_ordering_numbers, setup, teardown),
    cmocka_unit_test_setup_teardown(test_ordering_strings, setup, teardown),
    cmocka_unit_test_setup_teardown(test_ordering_mixed_types, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_in, setup, teardown),
    cmocka_unit_test_setup_teardown(test_placeholders, setup, teardown),
    cmocka_unit_test_setup_teardown(test_placeholder_paths, setup, teardown),
    cmocka_unit_test_setup_teardown(test_logic_operators, setup, teardown),
    cmocka_unit_test_setup_teardown(test_precedence_and_parentheses, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_paths_and_nil, setup, teardown),
    cmocka_unit_test_setup_teardown(test_literals, setup, teardown),
    cmocka_unit_test_setup_teardown(test_map_and_filter, setup, teardown),
    cmocka_unit_test_setup_teardown(test_order_by, setup, teardown),
    cmocka_unit_test_setup_teardown(test_order_by_4d_forms, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_order_by_stable_and_nil_first, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_order_by_refusals, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_malformed_queries, setup, teardown),
    cmocka_unit_test_setup_teardown(test_errors_blame_the_caller, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_argument_errors, setup, teardown),
    cmocka_unit_test_setup_teardown(test_query_compiles_once, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_yieldable_under_count_hook, setup,
                                    teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
