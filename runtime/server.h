/*
 * server: `herald serve`. The TCP listener, the handshake, the frames of a
 * greeted session, heartbeats, postponed sessions and resume, sends, and
 * the graceful shutdown on SIGINT/SIGTERM. Everything runs on the loop
 * thread, so nothing here needs a lock.
 */
#ifndef HERALD_SERVER_H
#define HERALD_SERVER_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "outbuf.h"
#include "session.h"
#include "state.h"
#include "vm.h"

typedef struct server server_t;
struct message;

/* Takes neither cfg nor vm: both must outlive the server. */
server_t *server_new(uv_loop_t *loop, const config_t *cfg, vm_t *vm);
void server_free(server_t *srv);
/*
 * Takes st as the server's memory across restarts (serve owns it): brings
 * back its sessions, postponed, with their pending messages, and message
 * ids above the last one used. Before server_start. 0, or -1 with err.
 */
int server_use_state(server_t *srv, state_t *st, char *err, size_t errlen);
/* Binds and listens (server_announce says so). Returns 0, or -1
 * with the reason in err. */
int server_start(server_t *srv, char *err, size_t errlen);
/* Says where the server listens: once everything it needs is in place
 * (serve checks the admin socket after the port). */
void server_announce(const server_t *srv);
/* Drops every session with reason "server shutting down", stops accepting,
 * ends every process; the loop then runs out. Idempotent. */
void server_shutdown(server_t *srv);
/* fn is called when the shutdown begins, to stop what the server does not
 * own (the admin socket, the console). */
void server_on_shutdown(server_t *srv, void (*fn)(void *data), void *data);

/* fn, when set, takes SIGINT instead of the shutdown (the console's Ctrl-C
 * interrupts a line; SIGTERM still stops the server). */
void server_on_sigint(server_t *srv, void (*fn)(void *data), void *data);

const config_t *server_config(const server_t *srv);
session_table_t *server_sessions(const server_t *srv);
uv_loop_t *server_loop(const server_t *srv);
lua_State *server_lua(const server_t *srv);

/*
 * Queues message text for one session (id) or, with id NULL, for every
 * session. The frame is encoded once and shared. Returns the number of
 * sessions it was queued for (0 for an unknown ID) and sets *msg_id; -1
 * when memory runs out.
 */
long server_send_message(server_t *srv, const char *text, size_t len,
                         const char *id, int64_t *msg_id);

/* The counters of message msg_id (queued, delivered, acknowledged), from
 * memory or, for an older one, the state database: 0, or -1 once it has
 * been forgotten. */
int server_message_counts(server_t *srv, int64_t msg_id, long counts[3]);

/* Sends frame b to session id if it is connected; returns 1 if sent or
 * queued, 0 if the session is gone or postponed. */
int server_send_to(server_t *srv, const char *id, outbuf_t *b);

/* Ends session id: the client gets drop with reason. Returns 1 if it
 * existed, 0 if not. */
int server_drop(server_t *srv, const char *id, const char *reason);
void server_set_reject(server_t *srv, int flag);
int server_rejecting(const server_t *srv);
/* Takes a connection that has become a WebSocket on /ws: its hello is
 * awaited as on the TCP listener. */
void server_adopt(server_t *srv, struct conn *c);
/* An accept failed (descriptors ran out): logged once a second at most. */
void server_accept_failed(server_t *srv, int status);
/* What runs a session's call frame (at the top of L's stack, left there):
 * methods.c's, registered by serve.c so that the server does not depend
 * on the methods. Without one, every call gets unknown_method. */
typedef void (*server_call_fn)(void *data, session_t *s, lua_State *L);
void server_on_call(server_t *srv, server_call_fn fn, void *data);
/* The users file's checks. */
struct auth *server_auth(const server_t *srv);
/* fn(data, s) just before session s leaves the table (one observer). */
void server_on_session_end(server_t *srv,
                           void (*fn)(void *data, const session_t *s),
                           void *data);
/* The newest messages still in memory, newest first, at most max of
 * them; returns how many. */
size_t server_recent_messages(server_t *srv, struct message **out,
                              size_t max);
/* The TLS context of the listeners, or NULL. */
struct tls_ctx *server_tls(const server_t *srv);
/* Whether hellos need a password (the users file holds users). */
int server_requires_login(const server_t *srv);
/* The session state as reported to Lua: active, sleeping or postponed. */
const char *server_session_state(const server_t *srv, const session_t *s);

#endif
