/*
 * conn: one stream connection (TCP for remote users, a Unix socket for the
 * admin side) with line framing and a bounded write path. A connection
 * of the browser side starts raw (HTTP) and may turn into a WebSocket,
 * whose text messages then take the place of lines.
 *
 * Reads land in one buffer shared by every connection; only a partial line
 * is copied into a per-connection remainder, so an idle connection holds no
 * read buffer. Writes go straight to the socket (uv_try_write); only what
 * the kernel did not take is queued, holding a reference to the outbuf.
 */
#ifndef HERALD_CONN_H
#define HERALD_CONN_H

#include <stddef.h>
#include <uv.h>

#include "outbuf.h"
#include "tls.h"

typedef struct conn conn_t;

typedef struct conn_handler {
  /* One complete line, '\n' (and a '\r' before it) removed, NUL-terminated
   * in place. The handler may end or close the connection. */
  void (*on_line)(conn_t *c, char *line, size_t len);
  /* A line grew past the connection's limit; the connection stops reading.
   * The handler usually sends an error and ends the connection. */
  void (*on_too_large)(conn_t *c);
  /* The peer closed or the socket failed (status is a libuv error code);
   * the connection closes right after. */
  void (*on_eof)(conn_t *c, int status);
  /* A message frame (msg_id set) has been written whole to the socket.
   * May be NULL. */
  void (*on_written)(conn_t *c, outbuf_t *b);
  /* Last call for this connection, from libuv's close callback: release
   * what the owner keeps for it. The conn is freed after it returns. */
  void (*on_close)(conn_t *c);
  /* Raw connections (conn_set_raw): the bytes read, in place. */
  void (*on_data)(conn_t *c, char *data, size_t len);
  /* A WebSocket client broke the protocol (conn_error says how): a close
   * went out and the connection ends. NULL: on_eof with UV_EPROTO. A
   * message longer than the limit goes to on_too_large instead. */
  void (*on_protocol_error)(conn_t *c);
} conn_handler_t;

typedef enum conn_kind { CONN_TCP, CONN_PIPE } conn_kind_t;

/* A new connection, ready for uv_accept on conn_stream(c). */
conn_t *conn_new(uv_loop_t *loop, conn_kind_t kind,
                 const conn_handler_t *handler, size_t max_line);
uv_stream_t *conn_stream(conn_t *c);
/* Starts reading; returns 0 or a libuv error code. */
int conn_start(conn_t *c);

/* From now on, bytes read go to on_data as they come (HTTP). */
void conn_set_raw(conn_t *c);
/* From now on, c is a WebSocket (server side, after the upgrade): text
 * messages go to on_line (NUL-terminated copies), every conn_send becomes
 * one text frame, and conn_end sends a close first. 0, or -1 when memory
 * runs out. */
int conn_use_websocket(conn_t *c);
/* Hands bytes already read (the rest of an upgrade request's buffer) to
 * the connection's framing, as if they had just been read. */
void conn_feed(conn_t *c, char *data, size_t len);
/* Writes b as it is, whatever the framing (HTTP answers). */
int conn_send_raw(conn_t *c, outbuf_t *b);

void conn_set_owner(conn_t *c, void *owner);
/* Changes what handles the connection's events from now on. */
void conn_set_handler(conn_t *c, const conn_handler_t *handler);
void *conn_owner(const conn_t *c);

/*
 * Writes b, sharing it: nothing is copied, and a reference is taken only if
 * part of it has to wait in the queue. Returns 1 when the kernel took all of
 * it at once, 0 when some is queued (or waits behind conn_send_soon's), a
 * libuv error code when the connection failed (it is then being closed).
 * on_written follows for message frames.
 */
int conn_send(conn_t *c, outbuf_t *b);
/*
 * Writes b when the loop turn's input has been read (from a check handle,
 * conn_soon_start), as Redis writes its replies before it polls again: a
 * server that answers as it reads wakes each client while other requests
 * still wait to be read, and handles fewer per turn. Only while others are
 * reading too (more than one connection read this turn or the last): a
 * lone client is answered at once. A reply is the one use. The order of
 * c's frames holds: while c has frames waiting, conn_send queues behind
 * them. Returns 0 (queued), or what conn_send returns.
 */
int conn_send_soon(conn_t *c, outbuf_t *b);
/* Starts the check handle that flushes conn_send_soon's frames on loop;
 * returns 0 or a libuv error. conn_soon_stop flushes them and closes it. */
int conn_soon_start(uv_loop_t *loop);
void conn_soon_stop(void);
/* Bytes handed to the socket but not yet written. */
size_t conn_queued_bytes(const conn_t *c);
/* Past max bytes queued (0: no limit), conn_send closes the connection
 * (asynchronously: on_close follows) and conn_overflowed says why. */
void conn_set_max_queued(conn_t *c, size_t max);
int conn_overflowed(const conn_t *c);

/* Sends what is queued, then closes: the graceful end after an error or a
 * drop frame. Lines that arrive meanwhile are discarded. The connection is
 * closed after at most 2 seconds, whether the peer reads or not. */
void conn_end(conn_t *c);
/* Closes now; idempotent. */
void conn_close(conn_t *c);
int conn_is_closing(const conn_t *c);

/* Speaks TLS (server side) on c from now on, before conn_start. 0, or -1
 * when memory runs out. */
int conn_use_tls(conn_t *c, tls_ctx_t *ctx);
/* Why TLS or WebSocket failed on c (its on_eof came with UV_EPROTO, or its
 * on_protocol_error), or NULL. */
const char *conn_error(const conn_t *c);

/* The peer's address as text ("127.0.0.1"), "" for a Unix socket. */
void conn_peer_ip(const conn_t *c, char *out, size_t len);

#endif
