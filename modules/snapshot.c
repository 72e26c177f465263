#include "snapshot.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "server.h"
#include "session.h"
#include "vm.h"

/* The registry keys of the metatable of unsettled snapshots, of the table
 * from each such snapshot to its copy (weak keys), and of the field names. */
#define LAZY_MT_KEY "herald.snapshot.mt"
#define COPIES_KEY "herald.snapshot.copies"
#define WORDS_KEY "herald.snapshot.words"
#define COPY_MT_KEY "herald.snapshot.copy_mt"

/* How deep require("snapshot").settle looks into the values the console
 * prints: past what its printer shows (4 levels unless told more). */
#define PRINT_DEPTH 64

/* Snapshots made and neither settled nor collected, in every Lua state:
 * while none is, nothing needs walking before a raw read. */
static long waiting;

/* -- a session's fields, from the session or from a copy -------------- */

/* A session object's string fields, in the order of its JSON. */
enum {
  F_USER, F_MACHINE, F_SYSUSER, F_IP, F_HOST, F_CREATED, F_ID, F_PERSISTENT,
  F_GROUPS, NFIELDS
};

typedef struct row {
  const char *s[NFIELDS];
  uint32_t len[NFIELDS];
  const char *state; /* a static string: "active", "sleeping", ... */
  int authenticated;
} row_t;

/* r: s's fields; state: what session_state says of it. */
static void row_of(const session_t *s, const char *state, row_t *r) {
  const char *v[NFIELDS] = {
      s->user_name, s->machine_name, s->system_user_name, s->ip,
      s->host_type, s->created_iso,  s->id,  s->persistent_id, s->groups};
  for (int f = 0; f < NFIELDS; f++) {
    r->s[f] = v[f];
    r->len[f] = (uint32_t)strlen(v[f]);
  }
  r->state = state;
  r->authenticated = s->authenticated;
}

/* -- session objects as Lua sees them ------------------------------------ */

/* The fields' names, then the words their values repeat: made into Lua
 * strings once, because a snapshot of ten thousand sessions would
 * otherwise look each one up a hundred thousand times. */
enum {
  K_USER = 1, K_MACHINE, K_SYSUSER, K_IP, K_HOST, K_CREATED, K_ID,
  K_PERSISTENT, K_GROUPS, K_TYPE, K_STATE, K_AUTH, K_REMOTE, K_NWORDS = K_REMOTE
};
static const char *const words[] = {
    NULL,     "userName", "machineName", "systemUserName", "IPAddress",
    "hostType", "creationDateTime", "ID", "persistentID", "groups", "type",
    "state",  "authenticated", "remote"};

/* Pushes the table of words, made on first use; returns its index. */
static int push_words(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, WORDS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, K_NWORDS, 0);
    for (int i = 1; i <= K_NWORDS; i++) {
      lua_pushstring(L, words[i]);
      lua_rawseti(L, -2, i);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, WORDS_KEY);
  }
  return lua_gettop(L);
}

/* t[words[key]] = the value on top, t below it. */
static void set_word(lua_State *L, int w, int key) {
  lua_rawgeti(L, w, key);
  lua_insert(L, -2);
  lua_rawset(L, -3);
}

/* Pushes the session object of API.md. lua_pushlstring, not
 * lua_pushstring: the latter first looks in a cache of C strings with
 * strcmp, in vain for values that are new each time. */
static void push_object(lua_State *L, const row_t *r, int w) {
  int n = 0;
  lua_createtable(L, 0, 12);
  lua_rawgeti(L, w, K_REMOTE);
  set_word(L, w, K_TYPE);
  for (int f = 0; f < F_GROUPS; f++) {
    lua_pushlstring(L, r->s[f], r->len[f]);
    set_word(L, w, K_USER + f);
  }
  lua_pushstring(L, r->state);
  set_word(L, w, K_STATE);
  /* groups: an array of the names between the commas. */
  lua_newtable(L);
  for (const char *p = r->s[F_GROUPS], *end = p + r->len[F_GROUPS];
       p < end;) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    const char *stop = comma != NULL ? comma : end;
    lua_pushlstring(L, p, (size_t)(stop - p));
    lua_rawseti(L, -2, ++n);
    p = stop + 1;
  }
  set_word(L, w, K_GROUPS);
  lua_pushboolean(L, r->authenticated);
  set_word(L, w, K_AUTH);
}

void snapshot_push_object(lua_State *L, server_t *srv, const session_t *s) {
  row_t r;
  int w = push_words(L);
  row_of(s, server_session_state(srv, s), &r);
  push_object(L, &r, w);
  lua_remove(L, w);
}

/* -- session objects as JSON ------------------------------------------- */

/* The length of the valid UTF-8 sequence at s (of at most n bytes), or 0.
 * Overlong forms, surrogates and code points past U+10FFFF are invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  uint32_t cp;
  if (c < 0xC2 || c > 0xF4)
    return 0;
  len = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  if (n < len)
    return 0;
  cp = c & (0x7F >> len);
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = cp << 6 | (s[i] & 0x3F);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0;
  return len;
}

/* Writes s as a JSON string literal to out (or, out NULL, only measures
 * it); returns its length. Escapes what JSON requires; a byte that is not
 * part of valid UTF-8 becomes U+FFFD. */
static size_t json_string(char *out, const char *str, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)str, *end = s + len;
  size_t n = 0;
/* c is not evaluated when only measuring: no side effects in it. */
#define PUT(c) (out != NULL ? (void)(out[n] = (char)(c)) : (void)0, n++)
  PUT('"');
  while (s < end) {
    const unsigned char *run = s;
    while (s < end && *s >= 0x20 && *s < 0x80 && *s != '"' && *s != '\\')
      s++;
    if (out != NULL)
      memcpy(out + n, run, (size_t)(s - run));
    n += (size_t)(s - run);
    if (s == end)
      break;
    if (*s >= 0x80) {
      size_t k = utf8_seq(s, (size_t)(end - s));
      if (k == 0) {
        if (out != NULL)
          memcpy(out + n, "\\ufffd", 6);
        n += 6;
        k = 1;
      } else {
        if (out != NULL)
          memcpy(out + n, s, k);
        n += k;
      }
      s += k;
    } else if (*s == '"' || *s == '\\') {
      PUT('\\');
      PUT(*s);
      s++;
    } else {
      PUT('\\');
      PUT('u');
      PUT('0');
      PUT('0');
      PUT(hex[*s >> 4]);
      PUT(hex[*s & 15]);
      s++;
    }
  }
  PUT('"');
#undef PUT
  return n;
}

/* Writes r as a JSON object to out (or only measures it); returns its
 * length. Empty groups are {}, as cjson writes an empty table. */
static size_t json_object(char *out, const row_t *r) {
  static const char *const keys[NFIELDS] = {
      ",\"userName\":", ",\"machineName\":", ",\"systemUserName\":",
      ",\"IPAddress\":", ",\"hostType\":", ",\"creationDateTime\":",
      ",\"ID\":", ",\"persistentID\":", ",\"groups\":"};
  size_t n = 0;
#define LIT(text)                                                           \
  do {                                                                      \
    size_t l_ = strlen(text);                                               \
    if (out != NULL)                                                        \
      memcpy(out + n, text, l_);                                            \
    n += l_;                                                                \
  } while (0)
#define STR(p, len) (n += json_string(out != NULL ? out + n : NULL, p, len))
  LIT("{\"type\":\"remote\",\"state\":");
  STR(r->state, strlen(r->state));
  for (int f = 0; f < F_GROUPS; f++) {
    LIT(keys[f]);
    STR(r->s[f], r->len[f]);
  }
  LIT(keys[F_GROUPS]);
  if (r->len[F_GROUPS] == 0) {
    LIT("{}");
  } else {
    const char *p = r->s[F_GROUPS], *end = p + r->len[F_GROUPS];
    LIT("[");
    while (p < end) {
      const char *comma = memchr(p, ',', (size_t)(end - p));
      const char *stop = comma != NULL ? comma : end;
      if (p != r->s[F_GROUPS])
        LIT(",");
      STR(p, (size_t)(stop - p));
      p = stop + 1;
    }
    LIT("]");
  }
  LIT(r->authenticated ? ",\"authenticated\":true}"
                       : ",\"authenticated\":false}");
#undef STR
#undef LIT
  return n;
}

/* -- the copy ------------------------------------------------------------ */

/* The copy a snapshot is built from: per session a record of the state
 * pointer, the authenticated flag, then each field as a 32-bit length and
 * its bytes. Records are read with memcpy: they are not aligned. */
typedef struct copy {
  uint32_t count;
  int settled; /* built, or collected: no longer counted in waiting */
  unsigned char data[];
} copy_t;

enum { HEAD = sizeof(const char *) + 1 };

static size_t record_size(const row_t *r) {
  size_t n = HEAD + NFIELDS * sizeof(uint32_t);
  for (int f = 0; f < NFIELDS; f++)
    n += r->len[f];
  return n;
}

static unsigned char *record_write(unsigned char *p, const row_t *r) {
  memcpy(p, &r->state, sizeof(r->state));
  p[sizeof(r->state)] = (unsigned char)(r->authenticated != 0);
  p += HEAD;
  for (int f = 0; f < NFIELDS; f++) {
    memcpy(p, &r->len[f], sizeof(uint32_t));
    p += sizeof(uint32_t);
    memcpy(p, r->s[f], r->len[f]);
    p += r->len[f];
  }
  return p;
}

static const unsigned char *record_read(const unsigned char *p, row_t *r) {
  memcpy(&r->state, p, sizeof(r->state));
  r->authenticated = p[sizeof(r->state)];
  p += HEAD;
  for (int f = 0; f < NFIELDS; f++) {
    memcpy(&r->len[f], p, sizeof(uint32_t));
    p += sizeof(uint32_t);
    r->s[f] = (const char *)p;
    p += r->len[f];
  }
  return p;
}

static int copy_gc(lua_State *L) {
  copy_t *c = lua_touserdata(L, 1);
  if (c != NULL && !c->settled) {
    c->settled = 1;
    waiting--;
  }
  return 0;
}

/* -- the collection in waiting ------------------------------------------ */

int snapshot_unsettled(lua_State *L, int idx) {
  int yes;
  if (waiting == 0 || lua_type(L, idx) != LUA_TTABLE ||
      !lua_getmetatable(L, idx))
    return 0;
  lua_getfield(L, LUA_REGISTRYINDEX, LAZY_MT_KEY);
  yes = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return yes;
}

/* The copy of the unsettled snapshot at idx. */
static copy_t *copy_of(lua_State *L, int idx) {
  copy_t *c;
  idx = lua_absindex(L, idx);
  lua_getfield(L, LUA_REGISTRYINDEX, COPIES_KEY);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  c = lua_touserdata(L, -1);
  lua_pop(L, 2);
  return c;
}

int snapshot_settle(lua_State *L, int idx) {
  const unsigned char *p;
  copy_t *c;
  int w;
  if (!snapshot_unsettled(L, idx))
    return 0;
  idx = lua_absindex(L, idx);
  c = copy_of(L, idx);
  luaL_checkstack(L, 8, "snapshot");
  w = push_words(L);
  p = c->data;
  for (uint32_t i = 1; i <= c->count; i++) {
    row_t r;
    p = record_read(p, &r);
    push_object(L, &r, w);
    lua_rawseti(L, idx, i);
  }
  lua_pop(L, 1);
  /* From here an ordinary collection. lua_setmetatable ignores
   * __metatable; collection.new then sets the collections' own. */
  c->settled = 1;
  waiting--;
  lua_getfield(L, LUA_REGISTRYINDEX, COPIES_KEY);
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_setmetatable(L, idx);
  vm_require(L, "collection");
  lua_getfield(L, -1, "new");
  lua_pushvalue(L, idx);
  lua_call(L, 1, 0);
  lua_pop(L, 1);
  return 1;
}

/* Walks the table at idx; seen holds the tables already walked. */
static void settle_walk(lua_State *L, int idx, int seen, int depth) {
  if (snapshot_settle(L, idx) || depth <= 0)
    return; /* a settled snapshot holds only fresh session objects */
  lua_pushvalue(L, idx);
  if (lua_rawget(L, seen) != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, seen);
  luaL_checkstack(L, 4, "snapshot");
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -1) == LUA_TTABLE)
      settle_walk(L, lua_gettop(L), seen, depth - 1);
    lua_pop(L, 1);
  }
}

void snapshot_settle_within(lua_State *L, int idx, int depth) {
  if (waiting == 0 || lua_type(L, idx) != LUA_TTABLE)
    return;
  idx = lua_absindex(L, idx);
  lua_newtable(L);
  settle_walk(L, idx, lua_gettop(L), depth);
  lua_pop(L, 1);
}

size_t snapshot_json_size(lua_State *L, int idx) {
  copy_t *c = copy_of(L, idx);
  const unsigned char *p = c->data;
  size_t n = 2 + (c->count > 0 ? c->count - 1 : 0);
  if (c->count == 0)
    return 2; /* {}, as cjson writes an empty table */
  for (uint32_t i = 0; i < c->count; i++) {
    row_t r;
    p = record_read(p, &r);
    n += json_object(NULL, &r);
  }
  return n;
}

void snapshot_json_write(lua_State *L, int idx, char *out) {
  copy_t *c = copy_of(L, idx);
  const unsigned char *p = c->data;
  if (c->count == 0) {
    memcpy(out, "{}", 2);
    return;
  }
  *out++ = '[';
  for (uint32_t i = 0; i < c->count; i++) {
    row_t r;
    if (i > 0)
      *out++ = ',';
    p = record_read(p, &r);
    out += json_object(out, &r);
  }
  *out = ']';
}

/* The metamethods of a collection in waiting: each settles, then does
 * what was asked of the ordinary collection. */
static int lazy_index(lua_State *L) {
  snapshot_settle(L, 1);
  lua_settop(L, 2);
  lua_gettable(L, 1);
  return 1;
}

static int lazy_newindex(lua_State *L) {
  snapshot_settle(L, 1);
  lua_settop(L, 3);
  lua_settable(L, 1);
  return 0;
}

static int lazy_len(lua_State *L) {
  snapshot_settle(L, 1);
  lua_len(L, 1);
  return 1;
}

static int raw_next(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  if (lua_next(L, 1))
    return 2;
  lua_pushnil(L);
  return 1;
}

static int lazy_pairs(lua_State *L) {
  snapshot_settle(L, 1);
  lua_pushcfunction(L, raw_next);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

static void push_lazy_mt(lua_State *L) {
  static const luaL_Reg metamethods[] = {
      {"__index", lazy_index}, {"__newindex", lazy_newindex},
      {"__len", lazy_len},     {"__pairs", lazy_pairs},
      {NULL, NULL}};
  if (lua_getfield(L, LUA_REGISTRYINDEX, LAZY_MT_KEY) == LUA_TTABLE)
    return;
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_setfuncs(L, metamethods, 0);
  /* As a collection's: protected, and printed as one. */
  lua_pushliteral(L, "collection");
  lua_setfield(L, -2, "__name");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, LAZY_MT_KEY);
  /* Each snapshot's copy, kept while its table lives. */
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, COPIES_KEY);
  /* The copies' own metatable: their finalizer keeps waiting true. */
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, copy_gc);
  lua_setfield(L, -2, "__gc");
  lua_setfield(L, LUA_REGISTRYINDEX, COPY_MT_KEY);
}

/* The records are written here first, then copied into the userdata
 * whose size they tell: one pass over the sessions, and the block is
 * kept for the next snapshot. */
static unsigned char *scratch;
static size_t scratch_cap;

static int reserve(size_t need) {
  unsigned char *p;
  size_t cap = scratch_cap != 0 ? scratch_cap : 64 * 1024;
  if (need <= scratch_cap)
    return 0;
  while (cap < need)
    cap *= 2;
  if ((p = realloc(scratch, cap)) == NULL)
    return -1;
  scratch = p;
  scratch_cap = cap;
  return 0;
}

void snapshot_push_sessions(lua_State *L, server_t *srv) {
  session_t *const *all = session_all(server_sessions(srv));
  size_t n = session_count(server_sessions(srv)), size = 0;
  int64_t now = clock_mono_ms();
  int64_t sleep_ms = (int64_t)(server_config(srv)->sleep_after * 1000);
  uint32_t count = 0;
  copy_t *c;

  for (size_t i = 0; i < n; i++) {
    row_t r;
    size_t need;
    if (all[i]->closing)
      continue;
    row_of(all[i], session_state(all[i], now, sleep_ms), &r);
    need = record_size(&r);
    if (reserve(size + need) < 0)
      luaL_error(L, "get_process_activity: out of memory");
    record_write(scratch + size, &r);
    size += need;
    count++;
  }
  luaL_checkstack(L, 6, "snapshot");
  lua_newtable(L); /* the collection */
  push_lazy_mt(L);
  lua_getfield(L, LUA_REGISTRYINDEX, COPIES_KEY);
  lua_pushvalue(L, -3);
  c = lua_newuserdatauv(L, sizeof(*c) + size, 0);
  c->count = count;
  c->settled = 1; /* until its finalizer is set: then it owes a count */
  if (size > 0)
    memcpy(c->data, scratch, size);
  lua_getfield(L, LUA_REGISTRYINDEX, COPY_MT_KEY);
  lua_setmetatable(L, -2);
  c->settled = 0;
  waiting++;
  lua_rawset(L, -3); /* copies[collection] = copy */
  lua_pop(L, 1);
  lua_setmetatable(L, -2);
}

/* require("snapshot").settle(...): settles each argument and what it
 * holds; returns them. */
static int l_settle(lua_State *L) {
  int n = lua_gettop(L);
  for (int i = 1; i <= n; i++)
    snapshot_settle_within(L, i, PRINT_DEPTH);
  return n;
}

void snapshot_open(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_settle);
  lua_setfield(L, -2, "settle");
  lua_setfield(L, -2, "snapshot");
  lua_pop(L, 1);
  /* collection.is knows a collection in waiting by this metatable. */
  vm_require(L, "collection");
  push_lazy_mt(L);
  lua_setfield(L, -2, "waiting_mt");
  lua_pop(L, 1);
}
