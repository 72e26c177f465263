#include "webadmin.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "auth.h"
#include "clock.h"
#include "conn.h"
#include "herald.h"
#include "snapshot.h"
#include "log.h"
#include "message.h"
#include "process.h"
#include "proto.h"
#include "vm.h"

/* Administrators logged in at once. */
#define WEBADMIN_MAX_CLIENTS 8
/* Requests one administrator may have running at once. */
#define WEBADMIN_MAX_REQUESTS 4
/* How often changes are pushed: "within a second" of each. */
#define WEBADMIN_TICK_MS 500
/* The first list of 10,000 sessions is a few megabytes. */
#define WEBADMIN_MAX_QUEUED (64 * 1024 * 1024)
/* The longest silence of a page's connection (a status frame). */
#define WEBADMIN_KEEPALIVE_MS 10000
/* Messages the messages request may list. */
#define WEBADMIN_MAX_MESSAGES 1000
#define WEBADMIN_PASSWORD_MAX 1024

typedef enum { AC_LOGIN, AC_CHECKING, AC_READY, AC_GONE } ac_state_t;

typedef struct admin_conn admin_conn_t;

/* A request running as a process. When its administrator's connection
 * goes first, the process is detached and runs to its end unheard. */
typedef struct request {
  admin_conn_t *ac;
  int id_ref;       /* the request's id, in the registry */
  int process;
  struct request *next;
} request_t;

struct admin_conn {
  webadmin_t *wa;
  conn_t *conn;
  ac_state_t state;
  auth_login_t *check;
  int64_t deadline_ms; /* for the login */
  char ip[48];
  char user[PROTO_MAX_USER_NAME + 1];
  char actor[PROTO_MAX_USER_NAME + 8]; /* "admin:<user>" */
  uint32_t seen;     /* the sessions version it has been sent */
  int reset_sent;
  int last_rejecting;
  size_t last_count, last_processes;
  int status_sent, processes_sent;
  int64_t status_ms; /* when status was last sent */
  request_t *requests;
  int running;
  admin_conn_t *prev, *next;
};

typedef struct removed {
  char id[SESSION_ID_LEN + 1];
  uint32_t version;
} removed_t;

struct webadmin {
  server_t *srv;
  lua_State *L;
  uv_timer_t tick;
  unsigned ticks;
  admin_conn_t *clients;
  int count, ready;
  uint32_t version;
  removed_t *removed; /* sessions gone since every page last heard */
  size_t nremoved, capremoved;
};

static const conn_handler_t admin_handler;
static int still_admin(admin_conn_t *ac);

/* --- frames -------------------------------------------------------------- */

/* Encodes the table at the top of L (popped) and sends it; -1 with why in
 * err when it cannot be encoded (nothing is sent). */
static int try_send_table(admin_conn_t *ac, char *err, size_t errlen) {
  lua_State *L = ac->wa->L;
  int r = proto_encode_value(L, -1, err, errlen);
  if (r == 0) {
    size_t len;
    const char *json = lua_tolstring(L, -1, &len);
    outbuf_t *b = outbuf_copy(json, len);
    if (b != NULL) {
      conn_send(ac->conn, b);
      outbuf_unref(b);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return r;
}

static void send_table(admin_conn_t *ac) {
  char err[256];
  if (try_send_table(ac, err, sizeof(err)) < 0)
    log_error("administration page: cannot encode a frame: %s", err);
}

static void set_string(lua_State *L, const char *key, const char *value) {
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

static void set_integer(lua_State *L, const char *key, lua_Integer value) {
  lua_pushinteger(L, value);
  lua_setfield(L, -2, key);
}

/* ac is on its way out: it no longer counts, hears or asks anything. */
static void leave(admin_conn_t *ac) {
  if (ac->state == AC_READY) {
    ac->wa->ready--;
    log_info("administration page: %s left", ac->user);
  }
  ac->state = AC_GONE;
}

/* {"type":"error","code":C,"message":M}, then close. */
static void refuse(admin_conn_t *ac, const char *code, const char *message) {
  lua_State *L = ac->wa->L;
  leave(ac);
  lua_createtable(L, 0, 3);
  set_string(L, "type", "error");
  set_string(L, "code", code);
  set_string(L, "message", message);
  send_table(ac);
  conn_end(ac->conn);
}

/* --- pushes ------------------------------------------------------------- */

/* What a row shows that changes: its state, calls and pending messages,
 * packed so that one compare tells whether to send it again. */
static uint32_t look_of(server_t *srv, const session_t *s) {
  const char *state = server_session_state(srv, s);
  uint32_t st = state[0] == 'a' ? 0 : state[0] == 's' ? 1 : 2;
  uint32_t calls = s->calls > 255 ? 255 : (uint32_t)s->calls;
  uint32_t pend = s->pend_count > 0x3FFFFF ? 0x3FFFFF : s->pend_count;
  return st | calls << 2 | pend << 10;
}

/* The session object Lua sees (4D's fields), with its running calls and
 * pending messages. */
static void push_row(webadmin_t *wa, const session_t *s) {
  lua_State *L = wa->L;
  snapshot_push_object(L, wa->srv, s);
  set_integer(L, "processes", s->calls);
  set_integer(L, "pending", s->pend_count);
}

/* The rows changed since ac last heard (all of them the first time) and
 * the sessions that left; nothing when nothing changed. Empty arrays are
 * left out (JSON would have them as {}). */
static void push_sessions(admin_conn_t *ac) {
  webadmin_t *wa = ac->wa;
  lua_State *L = wa->L;
  session_t *const *all = session_all(server_sessions(wa->srv));
  size_t n = session_count(server_sessions(wa->srv));
  int reset = !ac->reset_sent, rows = 0, gone = 0;

  lua_createtable(L, 0, 4);
  set_string(L, "type", "sessions");
  lua_pushboolean(L, reset);
  lua_setfield(L, -2, "reset");
  lua_newtable(L);
  for (size_t i = 0; i < n; i++) {
    if (all[i]->closing || (!reset && all[i]->admin_version <= ac->seen))
      continue;
    push_row(wa, all[i]);
    lua_rawseti(L, -2, ++rows);
  }
  if (rows > 0)
    lua_setfield(L, -2, "rows");
  else
    lua_pop(L, 1);
  if (!reset) {
    lua_newtable(L);
    for (size_t i = 0; i < wa->nremoved; i++) {
      if (wa->removed[i].version > ac->seen) {
        lua_pushstring(L, wa->removed[i].id);
        lua_rawseti(L, -2, ++gone);
      }
    }
    if (gone > 0)
      lua_setfield(L, -2, "removed");
    else
      lua_pop(L, 1);
  }
  ac->seen = wa->version;
  ac->reset_sent = 1;
  if (reset || rows > 0 || gone > 0)
    send_table(ac);
  else
    lua_pop(L, 1);
}

static void push_processes(admin_conn_t *ac) {
  webadmin_t *wa = ac->wa;
  lua_State *L = wa->L;
  size_t n = process_count();
  session_table_t *sessions = server_sessions(wa->srv);

  if (n == 0 && ac->last_processes == 0 && ac->processes_sent)
    return; /* still none */
  ac->last_processes = n;
  ac->processes_sent = 1;
  lua_createtable(L, 0, 2);
  set_string(L, "type", "processes");
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    const process_t *p = process_at(i);
    const session_t *s =
        p->session_id[0] != '\0' ? session_find(sessions, p->session_id)
                                 : NULL;
    char created[32];
    clock_format_iso8601(p->created_ms, created, sizeof(created));
    lua_createtable(L, 0, 8);
    set_integer(L, "number", p->number);
    set_string(L, "name", p->name);
    set_integer(L, "type", p->type);
    set_integer(L, "state", p->state);
    set_string(L, "sessionID", p->session_id);
    set_string(L, "userName", s != NULL ? s->user_name : "");
    lua_pushnumber(L, (double)p->cpu_ns / 1e9);
    lua_setfield(L, -2, "cpuTime");
    set_string(L, "creationDateTime", created);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  if (n > 0)
    lua_setfield(L, -2, "rows");
  else
    lua_pop(L, 1);
  send_table(ac);
}

static void push_status(admin_conn_t *ac) {
  lua_State *L = ac->wa->L;
  int rejecting = server_rejecting(ac->wa->srv);
  size_t count = session_count(server_sessions(ac->wa->srv));
  int64_t now = clock_mono_ms();
  /* Unchanged, it still comes every few seconds: a page that hears
   * nothing for long knows its connection is gone. */
  if (ac->status_sent && rejecting == ac->last_rejecting &&
      count == ac->last_count && now - ac->status_ms < WEBADMIN_KEEPALIVE_MS)
    return;
  ac->status_ms = now;
  ac->status_sent = 1;
  ac->last_rejecting = rejecting;
  ac->last_count = count;
  lua_createtable(L, 0, 3);
  set_string(L, "type", "status");
  lua_pushboolean(L, rejecting);
  lua_setfield(L, -2, "rejecting");
  set_integer(L, "sessions", (lua_Integer)count);
  send_table(ac);
}

/* One walk over the sessions: a row whose look changed gets a new
 * version; each page then gets what is newer than what it has. */
static void stamp_sessions(webadmin_t *wa) {
  session_t *const *all = session_all(server_sessions(wa->srv));
  size_t n = session_count(server_sessions(wa->srv));
  for (size_t i = 0; i < n; i++) {
    session_t *s = all[i];
    uint32_t look = look_of(wa->srv, s);
    if (s->admin_version == 0 || look != s->admin_look) {
      s->admin_look = look;
      s->admin_version = ++wa->version;
    }
  }
}

static void on_tick(uv_timer_t *t) {
  webadmin_t *wa = t->data;
  int64_t now = clock_mono_ms();
  admin_conn_t *ac, *next;

  wa->ticks++;
  if (wa->ready > 0)
    stamp_sessions(wa);
  for (ac = wa->clients; ac != NULL; ac = next) {
    next = ac->next;
    if (conn_is_closing(ac->conn))
      continue;
    if (ac->state == AC_LOGIN && now >= ac->deadline_ms) {
      refuse(ac, "timeout", "no login within the handshake timeout");
      continue;
    }
    if (ac->state != AC_READY || !still_admin(ac))
      continue;
    push_status(ac);
    push_sessions(ac);
    if (wa->ticks % 2 == 0)
      push_processes(ac);
  }
  /* Every page has been told of every session that left. */
  wa->nremoved = 0;
}

/* A session leaves: pages that list it are told at the next tick. */
static void on_session_end(void *data, const session_t *s) {
  webadmin_t *wa = data;
  removed_t *r;
  if (wa->ready == 0 || s->admin_version == 0)
    return; /* no page has it */
  if (wa->nremoved == wa->capremoved) {
    size_t cap = wa->capremoved ? wa->capremoved * 2 : 64;
    removed_t *p = realloc(wa->removed, cap * sizeof(*p));
    if (p == NULL) {
      /* Every page starts over from a full list instead. */
      for (admin_conn_t *ac = wa->clients; ac != NULL; ac = ac->next)
        ac->reset_sent = 0;
      return;
    }
    wa->removed = p;
    wa->capremoved = cap;
  }
  r = &wa->removed[wa->nremoved++];
  memcpy(r->id, s->id, sizeof(r->id));
  r->version = ++wa->version;
}

/* Whether ac's user is still in the users file and in group admin (a
 * user removed or moved out of the group is cut off at once); ends the
 * connection if not. */
static int still_admin(admin_conn_t *ac) {
  if (auth_user_in_group(server_auth(ac->wa->srv), ac->user, "admin"))
    return 1;
  log_info("administration page: %s is no longer an administrator; "
           "closing", ac->user);
  refuse(ac, "forbidden", "this user is no longer in group admin");
  return 0;
}

/* --- requests ----------------------------------------------------------- */

/* A reply without its id, to be sent by send_reply. */
static void reply_start(lua_State *L, int ok) {
  lua_createtable(L, 0, 3);
  set_string(L, "type", "reply");
  lua_pushboolean(L, ok);
  lua_setfield(L, -2, "ok");
}

/* Sends the reply at the top of L (popped) with rq's id in front, written
 * as it came: a whole number exactly (cjson would round it to 14 digits),
 * anything else as cjson writes it. -1 with why in err when the reply
 * cannot be encoded (nothing is sent). */
static int send_reply(admin_conn_t *ac, request_t *rq, char *err,
                      size_t errlen) {
  lua_State *L = ac->wa->L;
  char num[32];
  const char *id, *body;
  size_t id_len, body_len;
  outbuf_t *b;

  if (proto_encode_value(L, -1, err, errlen) < 0) {
    lua_pop(L, 1);
    return -1;
  }
  body = lua_tolstring(L, -1, &body_len); /* "{...}", never empty */
  lua_rawgeti(L, LUA_REGISTRYINDEX, rq->id_ref);
  if (lua_isinteger(L, -1)) {
    id_len = (size_t)snprintf(num, sizeof(num), "%lld",
                              (long long)lua_tointeger(L, -1));
    id = num;
  } else if (proto_encode_value(L, -1, err, errlen) == 0) {
    id = lua_tolstring(L, -1, &id_len);
  } else {
    id = "null";
    id_len = 4;
  }
  b = outbuf_new(7 + id_len + body_len);
  if (b != NULL) {
    memcpy(b->data, "{\"id\":", 6);
    memcpy(b->data + 6, id, id_len);
    b->data[6 + id_len] = ',';
    memcpy(b->data + 7 + id_len, body + 1, body_len - 1);
    b->len = (uint32_t)(6 + id_len + body_len);
    conn_send(ac->conn, b);
    outbuf_unref(b);
  }
  lua_pop(L, lua_isinteger(L, -1) ? 3 : 4);
  return 0;
}

/* A request's error for the page: its first line, without the chunk
 * and line a Lua error starts with ("[herald webadmin]:79: "). */
static void reply_error(admin_conn_t *ac, request_t *rq, const char *why) {
  lua_State *L = ac->wa->L;
  const char *nl = strchr(why, '\n'), *p;
  size_t len = nl != NULL ? (size_t)(nl - why) : strlen(why);
  char err[256];

  if (why[0] == '[' && (p = strstr(why, "]:")) != NULL && p < why + len) {
    p += 2;
    while (*p >= '0' && *p <= '9')
      p++;
    if (p[0] == ':' && p[1] == ' ' && p < why + len) {
      len -= (size_t)(p + 2 - why);
      why = p + 2;
    }
  }
  reply_start(L, 0);
  lua_pushlstring(L, why, len);
  lua_setfield(L, -2, "error");
  if (send_reply(ac, rq, err, sizeof(err)) < 0)
    log_error("administration page: cannot encode a reply: %s", err);
}

static void request_free(lua_State *L, request_t *rq) {
  luaL_unref(L, LUA_REGISTRYINDEX, rq->id_ref);
  free(rq);
}

static void request_unlink(admin_conn_t *ac, request_t *rq) {
  for (request_t **p = &ac->requests; *p != NULL; p = &(*p)->next) {
    if (*p == rq) {
      *p = rq->next;
      ac->running--;
      return;
    }
  }
}

static void on_request_done(process_t *p, int status, lua_State *co,
                            int nres, const char *err, void *data) {
  request_t *rq = data;
  admin_conn_t *ac = rq->ac; /* still there: its close detaches p */
  lua_State *L = ac->wa->L;
  (void)p;
  request_unlink(ac, rq);
  if (conn_is_closing(ac->conn)) {
    /* nothing to tell */
  } else if (status != LUA_OK) {
    reply_error(ac, rq, err != NULL ? err : "failed");
  } else {
    char why[256], msg[320];
    reply_start(L, 1);
    if (nres > 0) {
      lua_xmove(co, L, 1);
      lua_setfield(L, -2, "result");
    }
    if (send_reply(ac, rq, why, sizeof(why)) < 0) {
      snprintf(msg, sizeof(msg), "the result cannot be sent: %s", why);
      reply_error(ac, rq, msg);
    }
  }
  request_free(L, rq);
}

/* The messages still in memory, newest first, with their counters. */
static void reply_messages(admin_conn_t *ac, request_t *rq,
                           lua_Integer limit) {
  lua_State *L = ac->wa->L;
  message_t *recent[WEBADMIN_MAX_MESSAGES];
  size_t n = server_recent_messages(ac->wa->srv, recent,
                                    (size_t)limit);
  char err[256];
  int rows = 0;

  char why[256];
  reply_start(L, 1);
  lua_createtable(L, 0, 1);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    const outbuf_t *frame = recent[i]->frame;
    if (proto_decode(L, frame->data, frame->len - 1, err, sizeof(err)) < 0)
      continue;
    lua_pushnil(L);
    lua_setfield(L, -2, "type");
    set_integer(L, "queued", recent[i]->queued);
    set_integer(L, "delivered", recent[i]->delivered);
    set_integer(L, "acknowledged", recent[i]->acked);
    lua_rawseti(L, -2, ++rows);
  }
  lua_setfield(L, -2, "messages"); /* none: {} (see the protocol) */
  lua_setfield(L, -2, "result");
  if (send_reply(ac, rq, why, sizeof(why)) < 0)
    log_error("administration page: cannot encode a reply: %s", why);
}

/* A decoded request at the top of L (popped): runs it. */
static void start_request(admin_conn_t *ac) {
  webadmin_t *wa = ac->wa;
  lua_State *L = wa->L;
  request_t *rq = calloc(1, sizeof(*rq));
  process_opts_t opts;
  const char *op;
  int number;

  if (rq == NULL) {
    lua_pop(L, 1);
    return;
  }
  rq->ac = ac;
  lua_getfield(L, -1, "id");
  rq->id_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "op");
  op = lua_tostring(L, -1);
  if (!still_admin(ac)) {
    lua_pop(L, 2);
    request_free(L, rq);
    return;
  }
  if (ac->running >= WEBADMIN_MAX_REQUESTS) {
    lua_pop(L, 2);
    reply_error(ac, rq, "busy: wait for the requests already running");
    request_free(L, rq);
    return;
  }
  if (op != NULL && strcmp(op, "messages") == 0) {
    lua_Integer limit = 100;
    int absent;
    lua_pop(L, 1);
    absent = lua_getfield(L, -1, "limit") == LUA_TNIL;
    lua_pop(L, 1);
    if (!absent && (proto_get_integer(L, "limit", &limit) < 0 || limit < 1))
      reply_error(ac, rq, "'limit' must be a positive whole number");
    else
      reply_messages(ac, rq, limit < WEBADMIN_MAX_MESSAGES
                                 ? limit
                                 : WEBADMIN_MAX_MESSAGES);
    lua_pop(L, 1);
    request_free(L, rq);
    return;
  }
  lua_pop(L, 1);
  /* webadmin.handle(request), as a process of its own */
  vm_require(L, "webadmin");
  lua_getfield(L, -1, "handle");
  lua_remove(L, -2);
  lua_insert(L, -2);
  memset(&opts, 0, sizeof(opts));
  opts.type = PROCESS_EVAL;
  opts.name = ac->actor;
  opts.timeout = server_config(wa->srv)->method_timeout;
  opts.on_done = on_request_done;
  opts.data = rq;
  rq->next = ac->requests;
  ac->requests = rq;
  ac->running++;
  rq->process = -1;
  number = process_spawn(L, 1, &opts);
  if (number < 0) {
    request_unlink(ac, rq);
    reply_error(ac, rq, "the server cannot start a process now");
    request_free(L, rq);
  } else if (process_find(number) != NULL) {
    rq->process = number; /* still running: rq is alive */
  }
}

/* --- login -------------------------------------------------------------- */

static int in_group(const char *groups, const char *group) {
  size_t gl = strlen(group);
  for (const char *p = groups; *p != '\0';) {
    size_t n = strcspn(p, ",");
    if (n == gl && strncmp(p, group, gl) == 0)
      return 1;
    p += n + (p[n] == ',');
  }
  return 0;
}

static void on_login_done(void *data, int ok, const char *groups) {
  admin_conn_t *ac = data;
  webadmin_t *wa = ac->wa;
  lua_State *L = wa->L;
  char actor[96];

  ac->check = NULL;
  if (ac->state == AC_GONE)
    return; /* the page left meanwhile */
  if (!ok) {
    refuse(ac, "unauthorized", "wrong user name or password");
    return;
  }
  if (!in_group(groups, "admin")) {
    log_info("administration page: %s (%s) is not in group admin", ac->user,
             ac->ip);
    snprintf(actor, sizeof(actor), "remote:%s", ac->ip);
    audit_record_as(actor, "login_failed", ac->user, 0,
                    "administration page: not in group admin", "forbidden");
    refuse(ac, "forbidden", "this user is not in group admin");
    return;
  }
  /* Only those logged in count: connections that never log in cannot
   * keep administrators out (they end at handshake_timeout). */
  if (wa->ready >= WEBADMIN_MAX_CLIENTS) {
    refuse(ac, "busy", "too many administrators are logged in");
    return;
  }
  ac->state = AC_READY;
  wa->ready++;
  snprintf(ac->actor, sizeof(ac->actor), "admin:%s", ac->user);
  log_info("administration page: %s logged in from %s", ac->user, ac->ip);
  audit_record_as(ac->actor, "admin_login", ac->user, 0, ac->ip, "ok");
  lua_createtable(L, 0, 4);
  set_string(L, "type", "ready");
  set_string(L, "userName", ac->user);
  set_string(L, "server", "herald/" HERALD_VERSION);
  lua_pushboolean(L, server_rejecting(wa->srv));
  lua_setfield(L, -2, "rejecting");
  send_table(ac);
  stamp_sessions(wa);
  push_status(ac);
  push_sessions(ac);
  push_processes(ac);
}

/* The login frame at the top of L (popped). */
static void start_login(admin_conn_t *ac) {
  webadmin_t *wa = ac->wa;
  lua_State *L = wa->L;
  auth_t *auth = server_auth(wa->srv);
  const char *user, *password;
  size_t ulen, plen;

  lua_getfield(L, -1, "userName");
  lua_getfield(L, -2, "password");
  /* Strings only (lua_tolstring would take a number), without NUL. */
  user = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &ulen) : NULL;
  password =
      lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &plen) : NULL;
  if (auth == NULL || !auth_required(auth)) {
    lua_pop(L, 3);
    refuse(ac, "unavailable",
           "this server has no users: the administration page needs one "
           "in group admin (herald user add NAME --group admin)");
    return;
  }
  if (user == NULL || ulen == 0 || ulen > PROTO_MAX_USER_NAME ||
      strlen(user) != ulen || password == NULL ||
      plen > WEBADMIN_PASSWORD_MAX || strlen(password) != plen) {
    lua_pop(L, 3);
    refuse(ac, "bad_login", "login needs userName (1 to 128 bytes) and "
                            "password (at most 1024 bytes), strings "
                            "without NUL");
    return;
  }
  memcpy(ac->user, user, ulen + 1);
  ac->state = AC_CHECKING;
  ac->check = auth_check(auth, ac->ip, user, password, plen, on_login_done,
                         ac);
  lua_pop(L, 3);
  if (ac->check == NULL)
    refuse(ac, "busy", "the server cannot check a login now");
}

/* --- the connection ----------------------------------------------------- */

static void on_admin_line(conn_t *c, char *line, size_t len) {
  admin_conn_t *ac = conn_owner(c);
  lua_State *L;
  char err[256];
  const char *type;

  if (ac == NULL || (ac->state != AC_LOGIN && ac->state != AC_READY))
    return; /* nothing is read while the password is checked, or after */
  L = ac->wa->L;
  if (proto_decode(L, line, len, err, sizeof(err)) < 0) {
    refuse(ac, "bad_json", err);
    return;
  }
  proto_integers(L, -1); /* a job's ID, a limit: whole numbers */
  lua_getfield(L, -1, "type");
  type = lua_tostring(L, -1);
  if (ac->state == AC_LOGIN) {
    int login = type != NULL && strcmp(type, "login") == 0;
    lua_pop(L, 1);
    if (login) {
      start_login(ac);
    } else {
      lua_pop(L, 1);
      refuse(ac, "login_required", "the first frame must be login");
    }
    return;
  }
  if (type != NULL && strcmp(type, "request") == 0) {
    lua_pop(L, 1);
    start_request(ac);
  } else {
    lua_pop(L, 2);
    refuse(ac, "bad_frame", "expected a request frame");
  }
}

static void on_admin_too_large(conn_t *c) {
  admin_conn_t *ac = conn_owner(c);
  if (ac != NULL)
    refuse(ac, "too_large", "frame too large");
  else
    conn_end(c);
}

static void on_admin_close(conn_t *c) {
  admin_conn_t *ac = conn_owner(c);
  webadmin_t *wa;
  if (ac == NULL)
    return;
  wa = ac->wa;
  if (ac->check != NULL)
    auth_cancel(ac->check);
  leave(ac);
  /* Requests still running finish; their replies go nowhere. */
  while (ac->requests != NULL) {
    request_t *rq = ac->requests;
    process_t *p = process_find(rq->process);
    ac->requests = rq->next;
    if (p != NULL)
      process_detach(p);
    request_free(wa->L, rq);
  }
  if (ac->prev != NULL)
    ac->prev->next = ac->next;
  else
    wa->clients = ac->next;
  if (ac->next != NULL)
    ac->next->prev = ac->prev;
  if (--wa->count == 0)
    uv_timer_stop(&wa->tick);
  free(ac);
}

static void on_admin_protocol_error(conn_t *c) {
  admin_conn_t *ac = conn_owner(c);
  if (ac != NULL) {
    log_info("administration page from %s: %s", ac->ip, conn_error(c));
    leave(ac);
  }
}

/* The page closed (or its socket failed): its place is free at once. */
static void on_admin_eof(conn_t *c, int status) {
  admin_conn_t *ac = conn_owner(c);
  (void)status;
  if (ac != NULL)
    leave(ac);
}

static const conn_handler_t admin_handler = {
    .on_line = on_admin_line,
    .on_too_large = on_admin_too_large,
    .on_eof = on_admin_eof,
    .on_close = on_admin_close,
    .on_protocol_error = on_admin_protocol_error,
};

void webadmin_adopt(webadmin_t *wa, conn_t *c) {
  admin_conn_t *ac;
  conn_set_handler(c, &admin_handler);
  ac = calloc(1, sizeof(*ac));
  if (ac == NULL) {
    conn_close(c);
    return;
  }
  ac->wa = wa;
  ac->conn = c;
  conn_peer_ip(c, ac->ip, sizeof(ac->ip));
  ac->deadline_ms =
      clock_mono_ms() +
      (int64_t)(server_config(wa->srv)->handshake_timeout * 1000);
  conn_set_max_queued(c, WEBADMIN_MAX_QUEUED);
  conn_set_owner(c, ac);
  ac->next = wa->clients;
  if (ac->next != NULL)
    ac->next->prev = ac;
  wa->clients = ac;
  if (wa->count++ == 0)
    uv_timer_start(&wa->tick, on_tick, WEBADMIN_TICK_MS, WEBADMIN_TICK_MS);
}

webadmin_t *webadmin_new(server_t *srv) {
  webadmin_t *wa = calloc(1, sizeof(*wa));
  if (wa == NULL)
    return NULL;
  wa->srv = srv;
  wa->L = server_lua(srv);
  uv_timer_init(server_loop(srv), &wa->tick);
  wa->tick.data = wa;
  server_on_session_end(srv, on_session_end, wa);
  return wa;
}

void webadmin_stop(webadmin_t *wa) {
  if (wa == NULL)
    return;
  for (admin_conn_t *ac = wa->clients; ac != NULL; ac = ac->next)
    conn_close(ac->conn);
  uv_timer_stop(&wa->tick);
  uv_close((uv_handle_t *)&wa->tick, NULL);
  server_on_session_end(wa->srv, NULL, NULL);
}

void webadmin_free(webadmin_t *wa) {
  if (wa == NULL)
    return;
  free(wa->removed);
  free(wa);
}
