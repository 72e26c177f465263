#include "proto.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "snapshot.h"

/* Shared constant frames, made once; their one reference is never
 * released. */
static outbuf_t *ping_frame, *pong_frame;

/* The registry holds the private cjson's encode and decode under these
 * addresses: a lookup cheaper than two by name on every frame. */
static const char encode_key, decode_key;

int proto_init(lua_State *L) {
  /* A private instance (cjson.new), so scripts that change cjson's
   * settings cannot change the protocol's. */
  luaL_requiref(L, "cjson", luaopen_cjson, 0);
  lua_getfield(L, -1, "new");
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    lua_pop(L, 2);
    return -1;
  }
  lua_getfield(L, -1, "decode_max_depth");
  lua_pushinteger(L, PROTO_MAX_DEPTH);
  lua_call(L, 1, 0);
  lua_getfield(L, -1, "encode_max_depth");
  lua_pushinteger(L, PROTO_MAX_DEPTH);
  lua_call(L, 1, 0);
  lua_getfield(L, -1, "encode_sparse_array");
  lua_pushboolean(L, 1);
  lua_call(L, 1, 0);
  /* NaN, Infinity and hexadecimal numbers are not JSON. */
  lua_getfield(L, -1, "decode_invalid_numbers");
  lua_pushboolean(L, 0);
  lua_call(L, 1, 0);
  lua_getfield(L, -1, "encode");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &encode_key);
  lua_getfield(L, -1, "decode");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &decode_key);
  lua_pop(L, 2);
  if (ping_frame == NULL)
    ping_frame = outbuf_copy("{\"type\":\"ping\"}\n", 16);
  if (pong_frame == NULL)
    pong_frame = outbuf_copy("{\"type\":\"pong\"}\n", 16);
  return ping_frame != NULL && pong_frame != NULL ? 0 : -1;
}

/* Pushes the private cjson's encode or decode (at encode_key or
 * decode_key). */
static void push_cjson(lua_State *L, const char *key) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, key);
}

int proto_valid_utf8(const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str, *end = s + len;
  while (s < end) {
    unsigned c = *s;
    size_t n;
    unsigned cp;
    if (c < 0x80) {
      s++;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return 0;
    }
    if ((size_t)(end - s) <= n)
      return 0;
    for (size_t i = 1; i <= n; i++) {
      if ((s[i] & 0xC0) != 0x80)
        return 0;
      cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
      return 0;
    s += n + 1;
  }
  return 1;
}

static const struct {
  const char *name;
  proto_type_t type;
} type_names[] = {
    {"hello", PROTO_HELLO}, {"ack", PROTO_ACK}, {"call", PROTO_CALL},
    {"ping", PROTO_PING},   {"pong", PROTO_PONG}, {"bye", PROTO_BYE},
};

/* The digits of a JSON positive integer at *p (no leading zero, at most
 * 15 digits: exact as the double cjson reads), advancing *p; -1 when
 * there are none such. */
static int64_t digits(const char **p, const char *end) {
  const char *s = *p;
  int64_t v = 0;
  if (s == end || *s < '1' || *s > '9')
    return -1;
  while (s < end && *s >= '0' && *s <= '9' && s - *p < 15)
    v = v * 10 + (*s++ - '0');
  if (s < end && *s >= '0' && *s <= '9')
    return -1;
  *p = s;
  return v;
}

/* Whether [*p, end) starts with lit; if so advances *p past it. */
static int skip(const char **p, const char *end, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
    return 0;
  *p += n;
  return 1;
}

int proto_match_ack(const char *line, size_t len, int64_t *id) {
  const char *p = line, *end = line + len;
  int64_t v;
  if (skip(&p, end, "{\"type\":\"ack\",\"id\":")) {
    v = digits(&p, end);
    if (v < 0 || !skip(&p, end, "}"))
      return 0;
  } else if (skip(&p, end, "{\"id\":")) {
    v = digits(&p, end);
    if (v < 0 || !skip(&p, end, ",\"type\":\"ack\"}"))
      return 0;
  } else {
    return 0;
  }
  if (p != end)
    return 0;
  *id = v;
  return 1;
}

int proto_decode(lua_State *L, const char *line, size_t len, char *err,
                 size_t errlen) {
  size_t i = 0;
  const char *type;

  if (!proto_valid_utf8(line, len)) {
    snprintf(err, errlen, "frame is not valid UTF-8");
    return -1;
  }
  /* cjson would stop at a NUL and take what came before for the frame. */
  if (memchr(line, '\0', len) != NULL) {
    snprintf(err, errlen, "frame is not valid JSON: it contains a NUL byte");
    return -1;
  }
  /* cjson accepts any JSON value; an object is the one that starts with
   * '{' once the leading blanks are skipped. */
  while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
    i++;
  push_cjson(L, &decode_key);
  lua_pushlstring(L, line, len);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    snprintf(err, errlen, "frame is not valid JSON: %s",
             lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  if (i == len || line[i] != '{') {
    snprintf(err, errlen, "frame is not a JSON object");
    lua_pop(L, 1);
    return -1;
  }
  lua_getfield(L, -1, "type");
  type = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
  lua_pop(L, 1);
  for (size_t k = 0; k < sizeof(type_names) / sizeof(type_names[0]); k++)
    if (strcmp(type, type_names[k].name) == 0)
      return type_names[k].type;
  return PROTO_UNKNOWN;
}

/*
 * Reads the string field name of the table at -1 into *out (NULL when
 * absent). Returns -1 with a message when present but not a string, or
 * longer than max bytes, or shorter than min.
 */
static int hello_string(lua_State *L, const char *name, size_t min,
                        size_t max, const char **out, char *err,
                        size_t errlen) {
  size_t len = 0;
  int t = lua_getfield(L, -1, name);
  /* The frame table keeps the string alive after the pop. */
  *out = t == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
  lua_pop(L, 1);
  if (t == LUA_TNIL && min == 0)
    return 0;
  if (t == LUA_TNIL) {
    snprintf(err, errlen, "hello: '%s' is required", name);
    return -1;
  }
  if (t != LUA_TSTRING) {
    snprintf(err, errlen, "hello: '%s' must be a string, not %s", name,
             t == LUA_TLIGHTUSERDATA ? "null" : lua_typename(L, t));
    return -1;
  }
  if (len < min || len > max) {
    snprintf(err, errlen, "hello: '%s' must be %zu to %zu bytes long, not %zu",
             name, min, max, len);
    return -1;
  }
  /* "\u0000" decodes to a NUL, which would cut the name short in C. */
  if (memchr(*out, '\0', len) != NULL) {
    snprintf(err, errlen, "hello: '%s' must not contain a NUL character",
             name);
    return -1;
  }
  return 0;
}

int proto_check_hello(lua_State *L, proto_hello_t *h, char *err,
                      size_t errlen) {
  static const char *const host_types[] = {"linux", "mac", "windows",
                                           "browser"};
  int t;

  memset(h, 0, sizeof(*h));
  h->protocol = PROTO_VERSION;
  if (hello_string(L, "userName", 1, PROTO_MAX_USER_NAME, &h->user_name, err,
                   errlen) < 0 ||
      hello_string(L, "machineName", 0, PROTO_MAX_NAME, &h->machine_name, err,
                   errlen) < 0 ||
      hello_string(L, "systemUserName", 0, PROTO_MAX_NAME,
                   &h->system_user_name, err, errlen) < 0 ||
      hello_string(L, "hostType", 0, 16, &h->host_type, err, errlen) < 0 ||
      hello_string(L, "password", 0, 1024, &h->password, err, errlen) < 0)
    return -1;
  if (h->host_type != NULL) {
    size_t i;
    for (i = 0; i < 4; i++)
      if (strcmp(h->host_type, host_types[i]) == 0)
        break;
    if (i == 4) {
      snprintf(err, errlen,
               "hello: 'hostType' must be linux, mac, windows or browser");
      return -1;
    }
  }
  lua_getfield(L, -1, "protocol");
  t = lua_isnil(L, -1);
  lua_pop(L, 1);
  if (!t && proto_get_integer(L, "protocol", &h->protocol) < 0) {
    snprintf(err, errlen, "hello: 'protocol' must be an integer");
    return -1;
  }
  if (h->protocol != PROTO_VERSION) {
    snprintf(err, errlen, "protocol %lld is not supported (this server "
             "speaks version %d)", (long long)h->protocol, PROTO_VERSION);
    return -2;
  }
  t = lua_getfield(L, -1, "resume");
  if (t != LUA_TNIL) {
    int r = -1;
    if (t != LUA_TTABLE) {
      snprintf(err, errlen, "hello: 'resume' must be an object");
    } else if (hello_string(L, "sessionID", 1, 64, &h->resume_id, err,
                            errlen) == 0 &&
               hello_string(L, "token", 1, 64, &h->resume_token, err,
                            errlen) == 0) {
      r = 0;
    }
    /* The strings stay referenced by the resume table, which the frame
     * table keeps alive. */
    lua_pop(L, 1);
    if (r < 0) {
      if (t == LUA_TTABLE)
        snprintf(err, errlen, "hello: 'resume' needs string 'sessionID' "
                 "and 'token'");
      return -1;
    }
  } else {
    lua_pop(L, 1);
  }
  return 0;
}

int proto_get_integer(lua_State *L, const char *name, lua_Integer *out) {
  int ok;
  lua_getfield(L, -1, name);
  ok = lua_isinteger(L, -1);
  if (!ok && lua_type(L, -1) == LUA_TNUMBER) {
    /* lua-cjson 2.1 decodes every number as a float: take whole floats
     * that fit (lua_numbertointeger checks the range before casting). */
    lua_Number n = lua_tonumber(L, -1);
    ok = n == floor(n) && lua_numbertointeger(n, out);
  } else if (ok) {
    *out = lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  return ok ? 0 : -1;
}

/* A float that is a whole number a double holds exactly. */
static int whole(lua_State *L, int idx, lua_Integer *out) {
  lua_Number n;
  if (lua_type(L, idx) != LUA_TNUMBER || lua_isinteger(L, idx))
    return 0;
  n = lua_tonumber(L, idx);
  if (n != floor(n) || fabs(n) > 9007199254740992.0)
    return 0;
  *out = (lua_Integer)n;
  return 1;
}

static void integers(lua_State *L, int idx, int depth) {
  lua_Integer i;
  if (whole(L, idx, &i)) {
    lua_pushinteger(L, i);
    lua_replace(L, idx);
    return;
  }
  if (!lua_istable(L, idx) || depth > PROTO_MAX_DEPTH)
    return;
  /* Each level holds a key and a value on the stack. */
  luaL_checkstack(L, 3, "nested arguments");
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (whole(L, -1, &i)) {
      lua_pushvalue(L, -2);
      lua_pushinteger(L, i);
      lua_rawset(L, idx); /* changing a key's value keeps next() valid */
    } else if (lua_istable(L, -1)) {
      integers(L, lua_gettop(L), depth + 1);
    }
    lua_pop(L, 1);
  }
}

void proto_integers(lua_State *L, int idx) {
  integers(L, lua_absindex(L, idx), 0);
}

/* encode(value) -> JSON text, for lua_pcall: what proto_encode_value
 * does, errors (cjson's, or memory) raised. Unsettled snapshots are
 * written from their copy; within other tables they are built first,
 * since cjson reads tables raw. */
static int encode(lua_State *L) {
  if (snapshot_unsettled(L, 1)) {
    luaL_Buffer b;
    size_t len = snapshot_json_size(L, 1);
    snapshot_json_write(L, 1, luaL_buffinitsize(L, &b, len));
    luaL_pushresultsize(&b, len);
    return 1;
  }
  snapshot_settle_within(L, 1, PROTO_MAX_DEPTH);
  push_cjson(L, &encode_key);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

int proto_encode_value(lua_State *L, int idx, char *err, size_t errlen) {
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, encode);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* Pushes s, with each byte that is not part of valid UTF-8 replaced by
 * '?': cjson does not check what it encodes, and a frame must be UTF-8. */
static void push_utf8(lua_State *L, const char *s, size_t len) {
  luaL_Buffer b;
  size_t i = 0;
  if (proto_valid_utf8(s, len)) {
    lua_pushlstring(L, s, len);
    return;
  }
  luaL_buffinit(L, &b);
  while (i < len) {
    size_t n = 1;
    while (n <= 4 && i + n <= len && !proto_valid_utf8(s + i, n))
      n++;
    if (n <= 4 && i + n <= len) {
      luaL_addlstring(&b, s + i, n);
      i += n;
    } else {
      luaL_addchar(&b, '?');
      i++;
    }
  }
  luaL_pushresult(&b);
}

static const char *quote(lua_State *L, const char *s, size_t len,
                         size_t *outlen) {
  char err[128];
  push_utf8(L, s, len);
  if (proto_encode_value(L, -1, err, sizeof(err)) < 0) {
    lua_pop(L, 1);
    return NULL;
  }
  lua_remove(L, -2);
  return lua_tolstring(L, -1, outlen);
}

/* Builds "<head><quoted s><tail>\n" into a new outbuf. */
static outbuf_t *frame3(lua_State *L, const char *head, const char *s,
                        const char *tail) {
  size_t qlen, hlen = strlen(head), tlen = strlen(tail);
  const char *q = quote(L, s, strlen(s), &qlen);
  outbuf_t *b;
  if (q == NULL)
    return NULL;
  b = outbuf_new(hlen + qlen + tlen + 1);
  if (b != NULL) {
    memcpy(b->data, head, hlen);
    memcpy(b->data + hlen, q, qlen);
    memcpy(b->data + hlen + qlen, tail, tlen);
    b->data[hlen + qlen + tlen] = '\n';
  }
  lua_pop(L, 1);
  return b;
}

outbuf_t *proto_message(lua_State *L, int64_t id, const char *text,
                        size_t len, int64_t sent_wall_ms) {
  char head[64], tail[64], when[32];
  size_t qlen, hlen, tlen;
  const char *q = quote(L, text, len, &qlen);
  outbuf_t *b;

  if (q == NULL)
    return NULL;
  clock_format_iso8601(sent_wall_ms, when, sizeof(when));
  hlen = (size_t)snprintf(head, sizeof(head),
                          "{\"type\":\"message\",\"id\":%lld,\"text\":",
                          (long long)id);
  tlen = (size_t)snprintf(tail, sizeof(tail), ",\"sentAt\":\"%s\"}\n", when);
  b = outbuf_new(hlen + qlen + tlen);
  if (b != NULL) {
    memcpy(b->data, head, hlen);
    memcpy(b->data + hlen, q, qlen);
    memcpy(b->data + hlen + qlen, tail, tlen);
    b->msg_id = id;
  }
  lua_pop(L, 1);
  return b;
}

outbuf_t *proto_welcome(lua_State *L, const char *session_id,
                        const char *token, double heartbeat,
                        const char *groups) {
  char line[256], *all;
  size_t n, glen = groups != NULL ? strlen(groups) : 0, at;
  outbuf_t *b;
  (void)L;
  /* IDs and tokens are hex digits, group names letters, digits, '_' and
   * '-': nothing to escape. */
  n = (size_t)snprintf(line, sizeof(line),
                       "{\"type\":\"welcome\",\"sessionID\":\"%s\","
                       "\"resumeToken\":\"%s\",\"heartbeat\":%g,"
                       "\"server\":\"herald/%s\"",
                       session_id, token, heartbeat, HERALD_VERSION);
  if (groups == NULL) {
    memcpy(line + n, "}\n", 2);
    return outbuf_copy(line, n + 2);
  }
  /* ,"groups":["a","b"]} : each comma becomes "," */
  all = malloc(n + 16 + glen * 3 + 4);
  if (all == NULL)
    return NULL;
  memcpy(all, line, n);
  at = n;
  memcpy(all + at, ",\"groups\":[", 11);
  at += 11;
  for (size_t i = 0; i < glen; i++) {
    if (i == 0)
      all[at++] = '"';
    if (groups[i] == ',') {
      memcpy(all + at, "\",\"", 3);
      at += 3;
    } else {
      all[at++] = groups[i];
    }
  }
  if (glen > 0)
    all[at++] = '"';
  memcpy(all + at, "]}\n", 3);
  at += 3;
  b = outbuf_copy(all, at);
  free(all);
  return b;
}

outbuf_t *proto_error(lua_State *L, const char *code, const char *message) {
  char head[96];
  snprintf(head, sizeof(head),
           "{\"type\":\"error\",\"code\":\"%s\",\"message\":", code);
  return frame3(L, head, message, "}");
}

outbuf_t *proto_reconnect(lua_State *L, double after, const char *reason) {
  char head[64];
  snprintf(head, sizeof(head), "{\"type\":\"reconnect\",\"after\":%g,"
           "\"reason\":", after);
  return frame3(L, head, reason, "}");
}

outbuf_t *proto_drop(lua_State *L, const char *reason) {
  return frame3(L, "{\"type\":\"drop\",\"reason\":", reason, "}");
}

outbuf_t *proto_result_error(lua_State *L, lua_Integer id, const char *code,
                             const char *message) {
  char head[128];
  /* code is one of the protocol's own words: no escaping needed. */
  snprintf(head, sizeof(head),
           "{\"type\":\"result\",\"id\":%lld,\"ok\":false,\"code\":\"%s\","
           "\"error\":",
           (long long)id, code);
  return frame3(L, head, message, "}");
}

/* Writes {"type":"result","id":ID,"ok":true,"value": into out (at least
 * 64 bytes) without printf, which costs more than the rest of a small
 * result. Returns the length. */
static size_t result_head(char *out, lua_Integer id) {
  static const char prefix[] = "{\"type\":\"result\",\"id\":";
  static const char suffix[] = ",\"ok\":true,\"value\":";
  char digits[24];
  size_t n = 0, len = sizeof(prefix) - 1;
  uint64_t v = id < 0 ? 0 - (uint64_t)id : (uint64_t)id;

  memcpy(out, prefix, len);
  if (id < 0)
    out[len++] = '-';
  do {
    digits[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0)
    out[len++] = digits[--n];
  memcpy(out + len, suffix, sizeof(suffix) - 1);
  return len + sizeof(suffix) - 1;
}

outbuf_t *proto_result_value(lua_State *L, lua_Integer id, int idx,
                             char *err, size_t errlen) {
  char head[96];
  size_t hlen, vlen;
  const char *v;
  outbuf_t *b;

  /* A listing returned as it came is written from its copy, once. */
  if (snapshot_unsettled(L, idx)) {
    vlen = snapshot_json_size(L, idx);
    hlen = result_head(head, id);
    b = outbuf_new(hlen + vlen + 2);
    if (b == NULL) {
      snprintf(err, errlen, "out of memory");
      return NULL;
    }
    memcpy(b->data, head, hlen);
    snapshot_json_write(L, idx, b->data + hlen);
    memcpy(b->data + hlen + vlen, "}\n", 2);
    return b;
  }
  /* Most methods return nothing: no encoder needed for that. */
  if (lua_isnoneornil(L, idx))
    lua_pushliteral(L, "null");
  else if (proto_encode_value(L, idx, err, errlen) < 0)
    return NULL;
  v = lua_tolstring(L, -1, &vlen);
  if (!proto_valid_utf8(v, vlen)) {
    snprintf(err, errlen, "it holds a string that is not valid UTF-8");
    lua_pop(L, 1);
    return NULL;
  }
  hlen = result_head(head, id);
  b = outbuf_new(hlen + vlen + 2);
  if (b != NULL) {
    memcpy(b->data, head, hlen);
    memcpy(b->data + hlen, v, vlen);
    memcpy(b->data + hlen + vlen, "}\n", 2);
  } else {
    snprintf(err, errlen, "out of memory");
  }
  lua_pop(L, 1);
  return b;
}

outbuf_t *proto_ping(void) { return ping_frame; }
outbuf_t *proto_pong(void) { return pong_frame; }
