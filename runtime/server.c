#include "server.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "auth.h"
#include "clock.h"
#include "conn.h"
#include "log.h"
#include "message.h"
#include "process.h"
#include "persist.h"
#include "proto.h"
#include "state.h"
#include "tls.h"
#include "watchdog.h"

/* Connections the kernel may hold waiting for accept (as Redis's and
 * nginx's default). */
#define LISTEN_BACKLOG 511
/* Descriptors beyond max_sessions: the listeners, the admin socket and its
 * clients, the state database, log and users files, connections greeting. */
#define FD_HEADROOM 256
/* The tick runs at least this many times per shortest timeout it serves
 * (handshake, heartbeat, resume), at most once a second, and no more
 * often than every TICK_MIN_MS. */
#define TICKS_PER_TIMEOUT 4
#define TICK_MAX_MS 1000
#define TICK_MIN_MS 10
/* How often acks and counters go to the state database. */
#define STATE_FLUSH_MS 1000
/* After a graceful stop with a state database, clients come back after
 * this many seconds (and some jitter). */
#define RECONNECT_AFTER_S 1

/* A connection that has not said hello yet. Kept in accept order, so the
 * oldest is the first to time out. */
typedef struct greeting {
  server_t *srv;
  conn_t *conn;
  int64_t deadline_ms;
  char ip[48]; /* TLS: taken at accept (a failed handshake may leave no
                  peer to ask); else when a log line needs it */
  struct greeting *prev, *next;
} greeting_t;

/* A hello waiting for its password check, with copies of its fields. */
typedef struct login {
  server_t *srv;
  conn_t *conn;
  auth_login_t *check;
  char *strings;
  session_fields_t fields;
  char ip[64];
  struct login *prev, *next;
} login_t;

struct server {
  uv_loop_t *loop;
  const config_t *cfg;
  vm_t *vm;
  lua_State *L;
  session_table_t *sessions;
  uv_tcp_t listener;
  uv_timer_t tick;
  greeting_t *greet_head, *greet_tail;
  size_t greeting_count;
  login_t *logins;
  auth_t *auth;   /* the users file; checks no one when it is empty */
  tls_ctx_t *tls; /* NULL: plaintext */
  state_t *state; /* NULL: no state database */
  uv_timer_t state_flush;
  int keeping; /* a graceful stop with a state database keeps sessions */
  int64_t last_msg_id;
  message_log_t messages; /* the recent ones, with their counters */
  void (*on_session_end)(void *data, const session_t *s);
  server_call_fn on_call;
  void *on_call_data;
  void *on_session_end_data;
  int port;
  int64_t last_accept_warning;
  int reject;
  int fanout;       /* inside a send's walk over the sessions */
  int fanout_ended; /* sessions that walk marked to end */
  int shutting_down;
  void (*on_shutdown)(void *data);
  void *on_shutdown_data;
  void (*on_sigint)(void *data);
  void *on_sigint_data;
};

static const conn_handler_t greeting_handler, session_handler,
    login_handler;

const config_t *server_config(const server_t *srv) { return srv->cfg; }

session_table_t *server_sessions(const server_t *srv) { return srv->sessions; }

uv_loop_t *server_loop(const server_t *srv) { return srv->loop; }

lua_State *server_lua(const server_t *srv) { return srv->L; }

void server_set_reject(server_t *srv, int flag) { srv->reject = flag; }

int server_rejecting(const server_t *srv) { return srv->reject; }

auth_t *server_auth(const server_t *srv) { return srv->auth; }

void server_on_call(server_t *srv, server_call_fn fn, void *data) {
  srv->on_call = fn;
  srv->on_call_data = data;
}

void server_on_session_end(server_t *srv,
                           void (*fn)(void *data, const session_t *s),
                           void *data) {
  srv->on_session_end = fn;
  srv->on_session_end_data = data;
}

size_t server_recent_messages(server_t *srv, message_t **out, size_t max) {
  return message_recent(&srv->messages, srv->last_msg_id, out, max);
}

tls_ctx_t *server_tls(const server_t *srv) { return srv->tls; }

int server_requires_login(const server_t *srv) {
  return auth_required(srv->auth);
}

const char *server_session_state(const server_t *srv, const session_t *s) {
  return session_state(s, clock_mono_ms(),
                       (int64_t)(srv->cfg->sleep_after * 1000));
}

static server_t *server_of(conn_t *c) {
  return conn_stream(c)->loop->data;
}

/* Sends an error frame; the connection stays open. */
static void send_error(server_t *srv, conn_t *c, const char *code,
                       const char *message) {
  outbuf_t *b = proto_error(srv->L, code, message);
  if (b != NULL) {
    conn_send(c, b);
    outbuf_unref(b);
  }
}

/* Sends an error frame and ends the connection. */
static void refuse(server_t *srv, conn_t *c, const char *code,
                   const char *message) {
  send_error(srv, c, code, message);
  conn_end(c);
}

/* Sends frame b, unless the session's connection is already ending. */
static void send_frame(session_t *s, outbuf_t *b) {
  if (s->conn != NULL && !conn_is_closing(s->conn))
    conn_send(s->conn, b);
}

/*
 * The session is over (bye, drop, a protocol error): it leaves the table at
 * once, so it no longer counts or receives, while its connection, if any,
 * sends what it has queued and closes on its own. During a send's walk over
 * the sessions the array must hold still: the session is only marked, and
 * the walk removes it when it is done.
 */
static void flush_state(server_t *srv);

/* How long ago ms (wall clock) was, for a log line: "0.02 s", "3 min 5 s",
 * "2 h 10 min". */
static void format_age(int64_t ms, char *buf, size_t len) {
  int64_t age = clock_wall_ms() - ms, sec;
  if (age < 0)
    age = 0;
  sec = age / 1000;
  if (sec < 60)
    snprintf(buf, len, "%.2f s", (double)age / 1000);
  else if (sec < 3600)
    snprintf(buf, len, "%d min %d s", (int)(sec / 60), (int)(sec % 60));
  else
    snprintf(buf, len, "%lld h %d min", (long long)(sec / 3600),
             (int)(sec % 3600 / 60));
}

/* Ends session s; how is "closed", or "logged out" after its bye: one log
 * line either way, with how long the session lived. */
static void end_session_as(server_t *srv, session_t *s, const char *how) {
  char age[32];
  s->closing = 1;
  if (srv->fanout) {
    srv->fanout_ended++;
    return;
  }
  /* Its calls end with it; their results would go nowhere. */
  if (s->calls > 0)
    process_kill_session(s->id, "its session ended");
  vm_account_release(s->account);
  s->account = NULL;
  if (srv->state != NULL && !srv->keeping)
    state_del_session(srv->state, s->id);
  if (s->conn != NULL) {
    conn_set_owner(s->conn, NULL);
    conn_end(s->conn);
    s->conn = NULL;
  }
  /* At a stop that keeps sessions, they are not closed for anyone. */
  format_age(s->created_ms, age, sizeof(age));
  log_msg(srv->keeping ? LOG_DEBUG : LOG_INFO, "session %s (%s) %s after %s",
          s->id, s->user_name, how, age);
  if (srv->on_session_end != NULL)
    srv->on_session_end(srv->on_session_end_data, s);
  session_remove(srv->sessions, s);
}

static void end_session(server_t *srv, session_t *s) {
  end_session_as(srv, s, "closed");
}

/* Ends session s with a drop frame that tells its client why. */
static void drop_session(server_t *srv, session_t *s, const char *reason,
                         log_level_t level) {
  outbuf_t *b;
  if (s->closing)
    return;
  log_msg(level, "session %s (%s) dropped: %s", s->id, s->user_name, reason);
  if (s->conn != NULL && (b = proto_drop(srv->L, reason)) != NULL) {
    send_frame(s, b);
    outbuf_unref(b);
  }
  end_session(srv, s);
}

int server_drop(server_t *srv, const char *id, const char *reason) {
  session_t *s = session_find(srv->sessions, id);
  if (s == NULL || s->closing)
    return 0;
  drop_session(srv, s, reason, LOG_INFO);
  return 1;
}

int server_send_to(server_t *srv, const char *id, outbuf_t *b) {
  session_t *s = session_find(srv->sessions, id);
  if (s == NULL || s->closing || s->conn == NULL)
    return 0;
  conn_send_soon(s->conn, b); /* a reply: after this turn's reading */
  return 1;
}

/* Queues message b for s: pending until acked, written now if connected. */
static int deliver(server_t *srv, session_t *s, message_t *m) {
  const config_t *cfg = srv->cfg;
  if (s->closing)
    return 0;
  if (session_pend_push(s, m->id, m->frame, (size_t)cfg->max_pending,
                        (size_t)cfg->max_outbound_bytes) < 0) {
    drop_session(srv, s, "slow consumer", LOG_WARN);
    return 0;
  }
  m->queued++;
  if (s->conn != NULL)
    conn_send(s->conn, m->frame); /* past max_outbound_bytes it closes */
  return 1;
}

long server_send_message(server_t *srv, const char *text, size_t len,
                         const char *id, int64_t *msg_id) {
  outbuf_t *b;
  message_t *m;
  long count = 0;
  int64_t now = clock_wall_ms();
  session_t *target = id != NULL ? session_find(srv->sessions, id) : NULL;

  *msg_id = ++srv->last_msg_id;
  b = proto_message(srv->L, *msg_id, text, len, now);
  if (b == NULL)
    return -1;
  /* Kept before anyone can see it: a restart must not lose it. The
   * target by its own ID (a script may write it in any case); a message
   * for no session is for no one to get back. */
  if (srv->state != NULL && (id == NULL || target != NULL) &&
      persist_message(srv->state, b, target != NULL ? target->id : NULL,
                      text, len, now) < 0)
    log_error("message %lld is not in the state database: a restart "
              "would lose it", (long long)*msg_id);
  /* In the log first: a write that completes at once counts on it. */
  m = message_put(&srv->messages, b, 0, 0, 0);
  if (id != NULL) {
    if (target != NULL)
      count = deliver(srv, target, m);
  } else {
    session_t *const *all = session_all(srv->sessions);
    size_t n = session_count(srv->sessions);
    /* Drops during the walk only mark sessions: the array holds still. */
    srv->fanout = 1;
    for (size_t i = 0; i < n; i++)
      count += deliver(srv, all[i], m);
    srv->fanout = 0;
    /* A second walk only when the first one dropped someone. */
    for (size_t i = n; srv->fanout_ended > 0 && i-- > 0;) {
      if (all[i]->closing) {
        srv->fanout_ended--;
        end_session(srv, all[i]);
      }
    }
  }
  return count;
}

int server_message_counts(server_t *srv, int64_t msg_id, long counts[3]) {
  const message_t *recent = message_find(&srv->messages, msg_id);
  state_message_t m;
  if (recent != NULL) {
    counts[0] = recent->queued;
    counts[1] = recent->delivered;
    counts[2] = recent->acked;
    return 0;
  }
  if (srv->state == NULL || msg_id <= 0 ||
      !state_get_message(srv->state, msg_id, &m))
    return -1;
  counts[0] = m.queued;
  counts[1] = m.delivered;
  counts[2] = m.acknowledged;
  return 0;
}

/* --- greeted sessions --------------------------------------------------- */

/* What a frame's handler needs, passed through lua_pcall. */
typedef struct frame_ctx {
  server_t *srv;
  conn_t *c;
  session_t *s;
  int type;
} frame_ctx_t;

/* s's client was heard from now; by_user: a frame that is not ping or
 * pong, which keeps the session from sleeping. */
static void heard(session_t *s, int by_user) {
  s->last_heard_ms = clock_mono_ms();
  s->ping_sent = 0;
  if (by_user)
    s->last_user_ms = s->last_heard_ms;
}

/* Releases message id from s's pending ones (its ack). */
static void take_ack(server_t *srv, session_t *s, int64_t id) {
  if (session_pend_ack(s, id) == 0) {
    message_t *m = message_find(&srv->messages, id);
    if (m != NULL)
      m->acked++;
    s->acks_unsaved = 1;
  } else {
    log_debug("session %s: ack of message %lld, which it does not have",
              s->id, (long long)id);
  }
}

/*
 * Handles one decoded frame of a greeted session: [ctx, frame] on the
 * stack. Runs under lua_pcall (on_session_line), so that no Lua API error
 * in handling a client's frame can take the server down.
 */
static int handle_frame(lua_State *L) {
  frame_ctx_t *x = lua_touserdata(L, 1);
  server_t *srv = x->srv;
  conn_t *c = x->c;
  session_t *s = x->s;
  lua_Integer id;
  char err[256];

  lua_remove(L, 1); /* the frame is at the top, as the helpers expect */
  switch (x->type) {
  case PROTO_ACK:
    if (proto_get_integer(L, "id", &id) < 0) {
      send_error(srv, c, "bad_frame", "ack: 'id' must be an integer");
      break;
    }
    take_ack(srv, s, id);
    break;
  case PROTO_CALL:
    if (srv->on_call != NULL) {
      srv->on_call(srv->on_call_data, s, L);
    } else {
      lua_Integer call_id = 0;
      outbuf_t *b;
      proto_get_integer(L, "id", &call_id);
      b = proto_result_error(L, call_id, "unknown_method",
                             "this server has no methods");
      if (b != NULL) {
        conn_send(c, b);
        outbuf_unref(b);
      }
    }
    break;
  case PROTO_PING:
    conn_send(c, proto_pong());
    break;
  case PROTO_PONG:
    break;
  case PROTO_BYE:
    end_session_as(srv, s, "logged out");
    break;
  case PROTO_HELLO:
    send_error(srv, c, "bad_frame", "already greeted: hello is only the "
                                    "first frame");
    break;
  default:
    lua_getfield(L, -1, "type");
    snprintf(err, sizeof(err), "unknown frame type '%.64s'",
             lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "");
    send_error(srv, c, "bad_frame", err);
    break;
  }
  return 0;
}

static void on_session_line(conn_t *c, char *line, size_t len) {
  server_t *srv = server_of(c);
  session_t *s = conn_owner(c);
  lua_State *L = srv->L;
  int top = lua_gettop(L);
  frame_ctx_t x;
  vm_account_t *account;
  char err[256];
  int64_t ack_id;

  if (s == NULL)
    return; /* taken over by a resume: this connection is on its way out */
  /* After each broadcast every session acknowledges: no Lua for that. */
  if (proto_match_ack(line, len, &ack_id)) {
    heard(s, 1);
    take_ack(srv, s, ack_id);
    return;
  }
  /* What its frames decode into (a call's arguments) is the session's. */
  account = vm_charge_to(L, s->account);
  x.type = proto_decode(L, line, len, err, sizeof(err));
  if (x.type < 0) {
    vm_charge_to(L, account);
    log_warn("session %s (%s): %s; closing", s->id, s->user_name, err);
    refuse(srv, c, "bad_json", err);
    end_session(srv, s);
    return;
  }
  heard(s, x.type != PROTO_PING && x.type != PROTO_PONG);
  x.srv = srv;
  x.c = c;
  x.s = s;
  lua_pushcfunction(L, handle_frame);
  lua_insert(L, -2);
  lua_pushlightuserdata(L, &x);
  lua_insert(L, -2);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    log_error("session %s (%s): cannot handle a frame: %s", s->id,
              s->user_name, lua_tostring(L, -1));
    send_error(srv, c, "bad_frame", "the server could not handle this "
                                    "frame");
  }
  lua_settop(L, top);
  vm_charge_to(L, account);
}

static void on_session_too_large(conn_t *c) {
  server_t *srv = server_of(c);
  session_t *s = conn_owner(c);
  char msg[96];
  snprintf(msg, sizeof(msg), "frame longer than %ld bytes",
           srv->cfg->max_frame);
  refuse(srv, c, "too_large", msg);
  if (s != NULL) {
    log_warn("session %s (%s): %s; closing", s->id, s->user_name, msg);
    end_session(srv, s);
  }
}

static void on_session_eof(conn_t *c, int status) {
  session_t *s = conn_owner(c);
  if (s != NULL)
    log_info("session %s (%s): connection lost (%s)", s->id, s->user_name,
             status == UV_EOF ? "closed by the client" : uv_strerror(status));
}

/* The connection is gone: remove its session, or keep it postponed for a
 * resume. */
static void on_session_close(conn_t *c) {
  server_t *srv = server_of(c);
  session_t *s = conn_owner(c);
  if (s == NULL || s->conn != c)
    return; /* its session ended already, or was taken over */
  s->conn = NULL;
  if (conn_overflowed(c)) {
    log_warn("session %s (%s) dropped: slow consumer (more than %ld bytes "
             "waiting to be sent)", s->id, s->user_name,
             srv->cfg->max_outbound_bytes);
    end_session(srv, s);
    return;
  }
  if (srv->shutting_down || srv->cfg->resume_timeout <= 0) {
    end_session(srv, s);
    return;
  }
  s->postponed_ms = clock_mono_ms();
  if (srv->state != NULL)
    state_set_postponed(srv->state, s->id, clock_wall_ms());
  log_info("session %s (%s) postponed for %g s", s->id, s->user_name,
           srv->cfg->resume_timeout);
}

/* Delivered means written to the socket, once per session: the re-send of
 * a pending message after a resume is not counted again. */
static void on_session_written(conn_t *c, outbuf_t *b) {
  session_t *s = conn_owner(c);
  session_pending_t *e = s != NULL ? session_pend_find(s, b->msg_id) : NULL;
  message_t *m;
  if (e != NULL && !e->written) {
    e->written = 1;
    m = message_find(&server_of(c)->messages, b->msg_id);
    if (m != NULL)
      m->delivered++;
  }
}

/* A WebSocket client broke the framing: as bad_json on TCP, the session
 * ends (it is not kept for a resume). */
static void on_session_protocol_error(conn_t *c) {
  session_t *s = conn_owner(c);
  if (s == NULL)
    return;
  log_warn("session %s (%s): %s; closing", s->id, s->user_name,
           conn_error(c));
  end_session(server_of(c), s);
}

static const conn_handler_t session_handler = {
    .on_line = on_session_line,
    .on_too_large = on_session_too_large,
    .on_eof = on_session_eof,
    .on_written = on_session_written,
    .on_close = on_session_close,
    .on_protocol_error = on_session_protocol_error,
};

/* --- the handshake ------------------------------------------------------ */

static void greeting_unlink(server_t *srv, greeting_t *g) {
  if (g->prev != NULL)
    g->prev->next = g->next;
  else
    srv->greet_head = g->next;
  if (g->next != NULL)
    g->next->prev = g->prev;
  else
    srv->greet_tail = g->prev;
  srv->greeting_count--;
}

/* Attaches connection c to session s and re-sends what s still has
 * pending, in id order, before anything new. */
static void attach(server_t *srv, session_t *s, conn_t *c) {
  outbuf_t *w = proto_welcome(srv->L, s->id, s->token, srv->cfg->heartbeat,
                              s->authenticated ? s->groups : NULL);
  conn_set_handler(c, &session_handler);
  conn_set_owner(c, s);
  s->conn = c;
  if (s->postponed_ms != 0 && srv->state != NULL)
    state_set_postponed(srv->state, s->id, 0);
  s->postponed_ms = 0;
  heard(s, 1);
  if (w != NULL) {
    conn_send(c, w);
    outbuf_unref(w);
  }
  for (uint32_t i = 0; i < s->pend_count && !conn_is_closing(c); i++)
    conn_send(c, session_pend_at(s, i)->buf);
}

/* hello with resume: take the session back, from a postponed state or from
 * another connection that still holds it. */
static void resume(server_t *srv, conn_t *c, const proto_hello_t *h) {
  session_t *s = session_find(srv->sessions, h->resume_id);
  if (s == NULL || s->closing ||
      !session_token_matches(s, h->resume_token)) {
    log_info("resume of session %.32s refused: %s", h->resume_id,
             s == NULL || s->closing ? "no such session" : "wrong token");
    refuse(srv, c, "unauthorized", "no session to resume with that ID and "
                                   "token");
    return;
  }
  if (s->conn != NULL) {
    conn_t *old = s->conn;
    outbuf_t *b = proto_drop(srv->L, "session resumed from another "
                                     "connection");
    if (b != NULL) {
      conn_send(old, b);
      outbuf_unref(b);
    }
    conn_set_owner(old, NULL);
    conn_end(old);
    log_info("session %s (%s) taken over by a new connection", s->id,
             s->user_name);
  } else {
    log_info("session %s (%s) resumed", s->id, s->user_name);
  }
  attach(srv, s, c);
}

/* At max_sessions, a postponed session must not lock a newcomer out: ends
 * the one postponed longest. Returns 0 when every session is live. */
static int make_room(server_t *srv) {
  session_t *const *all = session_all(srv->sessions);
  session_t *oldest = NULL;
  for (size_t i = 0, n = session_count(srv->sessions); i < n; i++)
    if (all[i]->conn == NULL && !all[i]->closing &&
        (oldest == NULL || all[i]->postponed_ms < oldest->postponed_ms))
      oldest = all[i];
  if (oldest == NULL)
    return 0;
  log_info("session %s (%s) ended to make room for a new one: it was "
           "postponed longest (%.1f s)", oldest->id, oldest->user_name,
           (double)(clock_mono_ms() - oldest->postponed_ms) / 1000);
  end_session(srv, oldest);
  return 1;
}

/* Opens a session for a greeted (and, with users, logged in) connection. */
static void open_session(server_t *srv, conn_t *c, session_fields_t *f) {
  session_t *s;
  char ip[64];
  if (srv->reject) {
    refuse(srv, c, "rejected", "the server rejects new remote connections");
    return;
  }
  if (session_count(srv->sessions) >= (size_t)srv->cfg->max_sessions &&
      !make_room(srv)) {
    log_warn("handshake refused: %ld sessions already", srv->cfg->max_sessions);
    refuse(srv, c, "busy", "the server has reached its session limit");
    return;
  }
  conn_peer_ip(c, ip, sizeof(ip));
  f->ip = ip;
  s = session_create(srv->sessions, f);
  if (s == NULL) {
    log_error("cannot create a session: out of memory or randomness");
    refuse(srv, c, "busy", "the server cannot open a session now");
    return;
  }
  s->first_msg_id = srv->last_msg_id + 1;
  /* In the state database before its client hears of it. */
  if (srv->state != NULL && persist_session(srv->state, s) < 0)
    log_error("session %s is not in the state database: a restart would "
              "lose it", s->id);
  log_info("session %s opened: %s@%s (%s)%s", s->id, s->user_name,
           s->machine_name, s->ip, s->authenticated ? ", logged in" : "");
  attach(srv, s, c);
}

static void login_free(server_t *srv, login_t *l) {
  if (l->prev != NULL)
    l->prev->next = l->next;
  else
    srv->logins = l->next;
  if (l->next != NULL)
    l->next->prev = l->prev;
  free(l->strings);
  free(l);
}

static void on_login_done(void *data, int ok, const char *groups) {
  login_t *l = data;
  server_t *srv = l->srv;
  conn_t *c = l->conn;
  conn_set_owner(c, NULL);
  if (!ok) {
    refuse(srv, c, "unauthorized", "wrong user name or password");
  } else {
    l->fields.groups = groups;
    l->fields.authenticated = 1;
    open_session(srv, c, &l->fields);
  }
  login_free(srv, l);
}

/* Lines that come before the answer to a login are not read. */
static void on_login_line(conn_t *c, char *line, size_t len) {
  (void)c;
  (void)line;
  (void)len;
}

static void on_login_close(conn_t *c) {
  login_t *l = conn_owner(c);
  if (l != NULL) {
    auth_cancel(l->check);
    login_free(l->srv, l);
  }
}

static void on_login_too_large(conn_t *c) { conn_close(c); }

static const conn_handler_t login_handler = {
    .on_line = on_login_line,
    .on_too_large = on_login_too_large,
    .on_close = on_login_close,
};

/* A hello on a server with users: its password is checked off the loop,
 * and the session opens (or the refusal comes) in on_login_done. */
static void start_login(server_t *srv, conn_t *c, const proto_hello_t *h) {
  const char *src[4] = {h->user_name, h->machine_name, h->system_user_name,
                        h->host_type};
  const char **dst[4];
  size_t len[4], total = 0;
  login_t *l = calloc(1, sizeof(*l));
  char *p;

  if (l == NULL) {
    refuse(srv, c, "busy", "the server cannot open a session now");
    return;
  }
  dst[0] = &l->fields.user_name;
  dst[1] = &l->fields.machine_name;
  dst[2] = &l->fields.system_user_name;
  dst[3] = &l->fields.host_type;
  for (int i = 0; i < 4; i++)
    total += (len[i] = src[i] != NULL ? strlen(src[i]) : 0) + 1;
  p = l->strings = malloc(total);
  if (p == NULL) {
    free(l);
    refuse(srv, c, "busy", "the server cannot open a session now");
    return;
  }
  for (int i = 0; i < 4; i++) {
    memcpy(p, src[i] != NULL ? src[i] : "", len[i] + 1);
    *dst[i] = p;
    p += len[i] + 1;
  }
  l->srv = srv;
  l->conn = c;
  conn_peer_ip(c, l->ip, sizeof(l->ip));
  l->next = srv->logins;
  if (l->next != NULL)
    l->next->prev = l;
  srv->logins = l;
  conn_set_handler(c, &login_handler);
  conn_set_owner(c, l);
  l->check = auth_check(srv->auth, l->ip, h->user_name, h->password,
                        h->password != NULL ? strlen(h->password) : 0,
                        on_login_done, l);
  if (l->check == NULL) {
    conn_set_owner(c, NULL);
    login_free(srv, l);
    refuse(srv, c, "busy", "the server cannot open a session now");
  }
}

static void on_hello(server_t *srv, conn_t *c) {
  lua_State *L = srv->L;
  proto_hello_t h;
  session_fields_t f;
  char err[256];
  int r = proto_check_hello(L, &h, err, sizeof(err));

  if (r < 0) {
    log_info("handshake refused: %s", err);
    refuse(srv, c, r == -2 ? "version" : "bad_hello", err);
    return;
  }
  if (h.resume_id != NULL) {
    resume(srv, c, &h); /* a token needs no password */
    return;
  }
  if (srv->reject) {
    refuse(srv, c, "rejected", "the server rejects new remote connections");
    return;
  }
  if (auth_required(srv->auth)) {
    start_login(srv, c, &h);
    return;
  }
  if (h.password != NULL) {
    refuse(srv, c, "unauthorized", "this server does not use passwords");
    return;
  }
  memset(&f, 0, sizeof(f));
  f.user_name = h.user_name;
  f.machine_name = h.machine_name;
  f.system_user_name = h.system_user_name;
  f.host_type = h.host_type;
  open_session(srv, c, &f);
}

static void on_greeting_line(conn_t *c, char *line, size_t len) {
  server_t *srv = server_of(c);
  greeting_t *g = conn_owner(c);
  lua_State *L = srv->L;
  int top = lua_gettop(L), type;
  char err[256];

  type = proto_decode(L, line, len, err, sizeof(err));
  greeting_unlink(srv, g);
  conn_set_owner(c, NULL);
  free(g);
  if (type < 0) {
    log_info("handshake refused: %s", err);
    refuse(srv, c, "bad_json", err);
  } else if (type != PROTO_HELLO) {
    refuse(srv, c, "hello_required", "the first frame must be hello");
  } else {
    on_hello(srv, c);
  }
  lua_settop(L, top);
}

static void on_greeting_too_large(conn_t *c) {
  server_t *srv = server_of(c);
  char msg[96];
  snprintf(msg, sizeof(msg), "frame longer than %ld bytes",
           srv->cfg->max_frame);
  refuse(srv, c, "too_large", msg);
}

static void on_greeting_close(conn_t *c) {
  greeting_t *g = conn_owner(c);
  if (g != NULL) {
    greeting_unlink(g->srv, g);
    free(g);
  }
}

/* Only TLS and WebSocket tell the owner of an end before hello: say why
 * in the log. */
static void on_greeting_eof(conn_t *c, int status) {
  greeting_t *g = conn_owner(c);
  if (status != UV_EPROTO || conn_error(c) == NULL || g == NULL)
    return;
  if (g->ip[0] == '\0')
    conn_peer_ip(c, g->ip, sizeof(g->ip));
  log_info("connection from %s closed: %s", g->ip, conn_error(c));
}

static const conn_handler_t greeting_handler = {
    .on_line = on_greeting_line,
    .on_too_large = on_greeting_too_large,
    .on_eof = on_greeting_eof,
    .on_close = on_greeting_close,
};

/* Starts the handshake of connection c: hello must come before the
 * deadline (on_tick). */
static void greet(server_t *srv, conn_t *c) {
  greeting_t *g = calloc(1, sizeof(*g));
  if (g == NULL) {
    conn_close(c);
    return;
  }
  conn_set_handler(c, &greeting_handler);
  /* Every byte queued for the client counts, whatever the frame. */
  conn_set_max_queued(c, (size_t)srv->cfg->max_outbound_bytes);
  g->srv = srv;
  g->conn = c;
  /* A failed TLS handshake may leave no peer to ask later; a plain
   * connection is asked when a log line needs it (on_greeting_eof). */
  if (srv->tls != NULL)
    conn_peer_ip(c, g->ip, sizeof(g->ip));
  g->deadline_ms =
      clock_mono_ms() + (int64_t)(srv->cfg->handshake_timeout * 1000);
  g->prev = srv->greet_tail;
  if (srv->greet_tail != NULL)
    srv->greet_tail->next = g;
  else
    srv->greet_head = g;
  srv->greet_tail = g;
  srv->greeting_count++;
  conn_set_owner(c, g);
}

void server_adopt(server_t *srv, conn_t *c) {
  if (srv->shutting_down) {
    conn_close(c);
    return;
  }
  greet(srv, c);
}

static void on_connection(uv_stream_t *listener, int status) {
  server_t *srv = listener->data;
  conn_t *c;

  if (status < 0) {
    server_accept_failed(srv, status);
    return;
  }
  c = conn_new(srv->loop, CONN_TCP, &greeting_handler,
               (size_t)srv->cfg->max_frame);
  if (c == NULL)
    return;
  if (uv_accept(listener, conn_stream(c)) != 0 ||
      (srv->tls != NULL && conn_use_tls(c, srv->tls) < 0)) {
    conn_close(c);
    return;
  }
  greet(srv, c);
  uv_tcp_nodelay((uv_tcp_t *)conn_stream(c), 1);
  if (!conn_is_closing(c) && conn_start(c) < 0)
    conn_close(c);
}

void server_accept_failed(server_t *srv, int status) {
  /* libuv has already accepted and closed the waiting connection (its
   * EMFILE trick), so the loop does not spin; say so once a second at
   * most, not once per connection. */
  int64_t now = clock_mono_ms();
  if (now - srv->last_accept_warning >= 1000) {
    srv->last_accept_warning = now;
    log_warn("accept failed: %s (connections are being refused)",
             uv_strerror(status));
  }
}

/* --- time --------------------------------------------------------------- */

/* Handshake deadlines, heartbeats, and the end of postponed sessions. */
static void on_tick(uv_timer_t *t) {
  server_t *srv = t->data;
  const config_t *cfg = srv->cfg;
  int64_t now = clock_mono_ms();
  int64_t hb = (int64_t)(cfg->heartbeat * 1000);
  int64_t keep = (int64_t)(cfg->resume_timeout * 1000);
  session_t *const *all;

  while (srv->greet_head != NULL && srv->greet_head->deadline_ms <= now) {
    greeting_t *g = srv->greet_head;
    conn_t *c = g->conn;
    greeting_unlink(srv, g);
    conn_set_owner(c, NULL);
    free(g);
    log_info("handshake timed out after %g s", cfg->handshake_timeout);
    refuse(srv, c, "timeout", "no hello within the handshake timeout");
  }
  all = session_all(srv->sessions);
  /* Backwards, so that removing (which moves the last session into the
   * hole) never skips one. */
  for (size_t i = session_count(srv->sessions); i-- > 0;) {
    session_t *s = all[i];
    if (s->conn == NULL) {
      if (now - s->postponed_ms >= keep) {
        log_info("session %s (%s) expired: not resumed within %g s",
                 s->id, s->user_name, cfg->resume_timeout);
        end_session(srv, s);
      }
      continue;
    }
    if (conn_is_closing(s->conn))
      continue;
    if (now - s->last_heard_ms >= 3 * hb) {
      log_info("session %s (%s): no answer to ping for %g s; connection "
               "lost", s->id, s->user_name, 2 * cfg->heartbeat);
      conn_close(s->conn);
    } else if (now - s->last_heard_ms >= hb && !s->ping_sent) {
      s->ping_sent = 1;
      conn_send(s->conn, proto_ping());
    }
  }
}

/* --- life cycle --------------------------------------------------------- */

void server_on_sigint(server_t *srv, void (*fn)(void *data), void *data) {
  srv->on_sigint = fn;
  srv->on_sigint_data = data;
  watchdog_sigint_interrupts(fn != NULL);
}

static void on_signal(int signum, void *data) {
  server_t *srv = data;
  if (signum == SIGINT && srv->on_sigint != NULL) {
    srv->on_sigint(srv->on_sigint_data);
    return;
  }
  log_info("received %s: shutting down", signum == SIGINT ? "SIGINT"
                                                          : "SIGTERM");
  server_shutdown(srv);
}

server_t *server_new(uv_loop_t *loop, const config_t *cfg, vm_t *vm) {
  server_t *srv = calloc(1, sizeof(*srv));
  if (srv == NULL)
    return NULL;
  srv->loop = loop;
  srv->cfg = cfg;
  srv->vm = vm;
  srv->L = vm_state(vm);
  srv->sessions = session_table_new();
  if (srv->sessions == NULL) {
    free(srv);
    return NULL;
  }
  if (conn_soon_start(loop) != 0) {
    session_table_free(srv->sessions);
    free(srv);
    return NULL;
  }
  loop->data = srv;
  return srv;
}

void server_on_shutdown(server_t *srv, void (*fn)(void *data), void *data) {
  srv->on_shutdown = fn;
  srv->on_shutdown_data = data;
}

/* Every session holds a socket: make sure max_sessions of them fit in the
 * open-file limit, with room for the listener, the admin side and files. */
static void raise_fd_limit(long max_sessions) {
  struct rlimit rl;
  rlim_t need = (rlim_t)max_sessions + FD_HEADROOM;

  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
    return;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
    struct rlimit want = {need, need};
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
      log_info("open-file limit raised to %lu", (unsigned long)need);
      return;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    log_warn("open-file limit is %lu, below the %lu that max_sessions = %ld "
             "needs; raise it (ulimit -n) or lower max_sessions",
             (unsigned long)rl.rlim_max, (unsigned long)need, max_sessions);
    return;
  }
  rl.rlim_cur = need;
  if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
    log_debug("open-file limit raised to %lu", (unsigned long)need);
}

/*
 * Protected mode: a server that anyone beyond this machine could reach
 * must know its users and speak TLS, unless its configuration says
 * insecure = true. Returns 0, or -1 with the way out in err.
 */
/* A listener beyond loopback without users and TLS lets anyone claim any
 * name: refused, unless insecure = true (then a warning). */
static int check_address(const config_t *cfg, const netaddr_t *a,
                         const char *key, const char *missing, char *err,
                         size_t errlen) {
  if (!cfg->insecure) {
    snprintf(err, errlen, "refusing to listen on %s:%d (%s) without %s: "
             "anyone who reaches it could claim any name. Add users (herald "
             "user add NAME) and tls = { cert = ..., key = ... } (herald "
             "cert HOST) to the configuration, or set insecure = true",
             a->host, a->port, key, missing);
    return -1;
  }
  log_warn("listening on %s:%d (%s) without %s (insecure = true): anyone "
           "who reaches it can claim any name", a->host, a->port, key,
           missing);
  return 0;
}

static int check_exposure(server_t *srv, char *err, size_t errlen) {
  const config_t *cfg = srv->cfg;
  int users = auth_required(srv->auth), tls = srv->tls != NULL;
  const char *missing = !users && !tls ? "users and TLS"
                        : !users      ? "users"
                                      : "TLS";
  if (users && tls)
    return 0;
  if (!config_listen_is_loopback(cfg) &&
      check_address(cfg, &cfg->listen, "listen", missing, err, errlen) < 0)
    return -1;
  if (!config_http_is_loopback(cfg) &&
      check_address(cfg, &cfg->http_listen, "http_listen", missing, err,
                    errlen) < 0)
    return -1;
  return 0;
}

/* What the listener needs before it listens: TLS, the users, and whether
 * that is enough for where it listens. */
static int prepare_identity(server_t *srv, char *err, size_t errlen) {
  const config_t *cfg = srv->cfg;
  if (cfg->tls_cert != NULL) {
    srv->tls = tls_ctx_new_server(cfg->tls_cert, cfg->tls_key, err, errlen);
    if (srv->tls == NULL)
      return -1;
  }
  srv->auth = auth_new(srv->loop, cfg->users_file, cfg->auth_delay,
                       !config_listen_is_loopback(cfg) && !cfg->insecure,
                       err, errlen);
  if (srv->auth == NULL)
    return -1;
  if (check_exposure(srv, err, errlen) < 0) {
    auth_stop(srv->auth);
    uv_run(srv->loop, UV_RUN_NOWAIT); /* lets the file's watch close */
    return -1;
  }
  if (auth_required(srv->auth))
    log_info("users file %s: %zu users; every hello needs a password",
             cfg->users_file, auth_user_count(srv->auth));
  return 0;
}

/* The tick (ms) that serves a timeout of seconds as well, if it is
 * shorter than tick_ms. */
static int64_t tick_for(double seconds, int64_t tick_ms) {
  double ms = seconds * 1000 / TICKS_PER_TIMEOUT;
  return ms < (double)tick_ms ? (int64_t)ms : tick_ms;
}

int server_start(server_t *srv, char *err, size_t errlen) {
  struct sockaddr_storage addr;
  int namelen = sizeof(addr), r;
  const netaddr_t *a = &srv->cfg->listen;
  int64_t tick_ms;

  /* localhost is the one name a listener takes: it is loopback. */
  const char *host = strcmp(a->host, "localhost") == 0 ? "127.0.0.1"
                                                        : a->host;

  if (uv_ip4_addr(host, a->port, (struct sockaddr_in *)&addr) != 0 &&
      uv_ip6_addr(host, a->port, (struct sockaddr_in6 *)&addr) != 0) {
    snprintf(err, errlen, "listen address '%s' is not an IP address (or "
             "localhost)", a->host);
    return -1;
  }
  if (prepare_identity(srv, err, errlen) < 0)
    return -1;
  raise_fd_limit(srv->cfg->max_sessions);
  uv_tcp_init(srv->loop, &srv->listener);
  srv->listener.data = srv;
  r = uv_tcp_bind(&srv->listener, (struct sockaddr *)&addr, 0);
  if (r == 0)
    r = uv_listen((uv_stream_t *)&srv->listener, LISTEN_BACKLOG,
                  on_connection);
  if (r != 0) {
    snprintf(err, errlen, "cannot listen on %s:%d: %s", a->host, a->port,
             uv_strerror(r));
    auth_stop(srv->auth);
    uv_close((uv_handle_t *)&srv->listener, NULL);
    uv_run(srv->loop, UV_RUN_NOWAIT); /* lets both close */
    return -1;
  }
  uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&addr, &namelen);
  srv->port = ntohs(addr.ss_family == AF_INET6
                        ? ((struct sockaddr_in6 *)&addr)->sin6_port
                        : ((struct sockaddr_in *)&addr)->sin_port);
  /* Fine enough for the shortest of the timeouts it serves. */
  tick_ms = tick_for(srv->cfg->handshake_timeout, TICK_MAX_MS);
  tick_ms = tick_for(srv->cfg->heartbeat, tick_ms);
  if (srv->cfg->resume_timeout > 0)
    tick_ms = tick_for(srv->cfg->resume_timeout, tick_ms);
  if (tick_ms < TICK_MIN_MS)
    tick_ms = TICK_MIN_MS;
  uv_timer_init(srv->loop, &srv->tick);
  srv->tick.data = srv;
  uv_timer_start(&srv->tick, on_tick, (uint64_t)tick_ms, (uint64_t)tick_ms);
  r = watchdog_start(srv->loop, on_signal, srv);
  if (r != 0) {
    snprintf(err, errlen, "cannot watch the loop: %s", uv_strerror(r));
    return -1;
  }
  watchdog_sigint_interrupts(srv->on_sigint != NULL);
  return 0;
}

void server_announce(const server_t *srv) {
  log_info("herald %s listening on %s:%d%s", HERALD_VERSION,
           srv->cfg->listen.host, srv->port, srv->tls != NULL ? " (TLS)"
                                                             : "");
}

/* Tells a client its session is kept across the restart. */
static void send_reconnect(server_t *srv, session_t *s) {
  outbuf_t *b = proto_reconnect(srv->L, RECONNECT_AFTER_S,
                                "server restarting");
  if (b != NULL) {
    send_frame(s, b);
    outbuf_unref(b);
  }
}

void server_shutdown(server_t *srv) {
  session_t *const *all;
  if (srv->shutting_down)
    return;
  srv->shutting_down = 1;
  conn_soon_stop(); /* the replies of this turn before the goodbyes */
  if (srv->on_shutdown != NULL)
    srv->on_shutdown(srv->on_shutdown_data);
  /* With a state database every session stays, as it stands now, and its
   * client comes back after the restart; without one, it ends. */
  if (srv->state != NULL) {
    srv->keeping = 1;
    flush_state(srv);
    uv_close((uv_handle_t *)&srv->state_flush, NULL);
    log_info("%zu sessions kept in %s for the restart",
             session_count(srv->sessions), state_path(srv->state));
  }
  all = session_all(srv->sessions);
  for (size_t i = session_count(srv->sessions); i-- > 0;) {
    if (all[i]->conn != NULL && srv->keeping)
      send_reconnect(srv, all[i]);
    if (all[i]->conn == NULL || srv->keeping)
      end_session(srv, all[i]);
    else
      drop_session(srv, all[i], "server shutting down", LOG_DEBUG);
  }
  while (srv->logins != NULL) {
    login_t *l = srv->logins;
    conn_close(l->conn); /* its on_close cancels the check and frees it */
    conn_set_owner(l->conn, NULL);
    auth_cancel(l->check);
    login_free(srv, l);
  }
  auth_stop(srv->auth);
  while (srv->greet_head != NULL) {
    greeting_t *g = srv->greet_head;
    conn_t *c = g->conn;
    greeting_unlink(srv, g);
    conn_set_owner(c, NULL);
    free(g);
    conn_close(c);
  }
  process_shutdown();
  uv_close((uv_handle_t *)&srv->listener, NULL);
  uv_close((uv_handle_t *)&srv->tick, NULL);
  watchdog_close();
}

/* --- the state database ------------------------------------------------ */

/* Writes what the state database has not seen yet: the acks of each
 * session (all of them when keeping), the counters of recent messages;
 * and forgets the messages no one owes an ack for, beyond the newest
 * message_history. */
static void flush_state(server_t *srv) {
  session_t *const *all = session_all(srv->sessions);
  size_t n = session_count(srv->sessions);
  int64_t forget = srv->last_msg_id - srv->cfg->message_history + 1;
  for (size_t i = 0; i < n; i++) {
    session_t *s = all[i];
    if (s->acks_unsaved || srv->keeping) {
      persist_pending(srv->state, s, srv->last_msg_id);
      s->acks_unsaved = 0;
    }
    /* Told to reconnect at a stop: its resume_timeout runs from now. */
    if (srv->keeping && s->conn != NULL)
      state_set_postponed(srv->state, s->id, clock_wall_ms());
    if (s->pend_count > 0 && session_pend_at(s, 0)->id < forget)
      forget = session_pend_at(s, 0)->id;
  }
  for (size_t i = 0; i < MESSAGE_HISTORY; i++) {
    message_t *m = &srv->messages.slots[i];
    if (m->id != 0 && message_unsaved(m)) {
      message_saved(m);
      state_set_counts(srv->state, m->id, m->queued, m->delivered,
                       m->acked);
    }
  }
  state_flush(srv->state, forget);
}

static void on_state_flush(uv_timer_t *t) { flush_state(t->data); }

/* Keeps a frame restored from the state database in the log, with its
 * counters, so that message_status knows it. Takes the reference. */
static void keep_restored(void *data, outbuf_t *b, const state_message_t *m) {
  server_t *srv = data;
  message_put(&srv->messages, b, (uint32_t)m->queued,
              (uint32_t)m->delivered, (uint32_t)m->acknowledged);
}

int server_use_state(server_t *srv, state_t *st, char *err, size_t errlen) {
  long n;
  size_t pending = 0;
  session_t *const *all;
  srv->state = st;
  srv->last_msg_id = state_last_msg_id(st);
  n = persist_restore(st, srv->sessions, srv->L,
                      (size_t)srv->cfg->max_pending,
                      (size_t)srv->cfg->max_outbound_bytes, keep_restored,
                      srv, err, errlen);
  if (n < 0)
    return -1;
  all = session_all(srv->sessions);
  for (size_t i = 0; i < session_count(srv->sessions); i++)
    pending += all[i]->pend_count;
  if (n > 0)
    log_info("%ld sessions restored from %s, postponed for %g s (%zu "
             "messages pending); message ids go on from %lld", n,
             state_path(st), srv->cfg->resume_timeout, pending,
             (long long)srv->last_msg_id + 1);
  uv_timer_init(srv->loop, &srv->state_flush);
  srv->state_flush.data = srv;
  uv_timer_start(&srv->state_flush, on_state_flush, STATE_FLUSH_MS,
                 STATE_FLUSH_MS);
  uv_unref((uv_handle_t *)&srv->state_flush);
  return 0;
}

void server_free(server_t *srv) {
  if (srv == NULL)
    return;
  watchdog_stop();
  auth_free(srv->auth);
  tls_ctx_free(srv->tls);
  message_clear(&srv->messages);
  session_table_free(srv->sessions);
  free(srv);
}
