#include "conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"
#include "ws.h"

#define READ_BUFFER_SIZE (64 * 1024)
#define END_GRACE_MS 2000

struct conn {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  const conn_handler_t *handler;
  void *owner;
  char *partial; /* the start of a line still waiting for its '\n' */
  size_t partial_len, partial_cap;
  size_t max_line;
  size_t queued_bytes, max_queued;
  /* Only while ending: not held by each of thousands of idle sessions. */
  uv_shutdown_t *shutdown_req; /* libuv is done with it by on_closed */
  uv_timer_t *end_timer;
  tls_conn_t *tls;       /* NULL: plaintext */
  ws_t *ws;              /* a WebSocket, or NULL */
  char *error;           /* why TLS or WebSocket failed, for the log */
  unsigned raw : 1;      /* bytes go to on_data (HTTP) */
  unsigned closing : 1;
  unsigned ending : 1;
  unsigned overflowed : 1;
  uint16_t soon; /* frames of it in the conn_send_soon queue */
};

typedef struct write_req {
  uv_write_t req;
  outbuf_t *buf; /* the frame (its on_written follows), or NULL */
  char *own;     /* ciphertext of a TLS connection, freed when written */
  size_t len;
  uint8_t head[WS_MAX_HEADER]; /* what is left of a WebSocket header */
} write_req_t;

/* Connections read from in this loop turn and the one before: whether
 * conn_send_soon has other requests to read before it writes. */
static unsigned turn_reads, last_turn_reads;

/* Safe to share: the loop is single-threaded and a read callback consumes
 * the data before the next allocation. */
static char read_buffer[READ_BUFFER_SIZE];
/* Plaintext out of a TLS connection, shared the same way. */
static char plain_buffer[READ_BUFFER_SIZE];

conn_t *conn_new(uv_loop_t *loop, conn_kind_t kind,
                 const conn_handler_t *handler, size_t max_line) {
  conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  if (kind == CONN_TCP)
    uv_tcp_init(loop, &c->h.tcp);
  else
    uv_pipe_init(loop, &c->h.pipe, 0);
  c->h.handle.data = c;
  c->handler = handler;
  c->max_line = max_line;
  return c;
}

uv_stream_t *conn_stream(conn_t *c) { return &c->h.stream; }

void conn_set_owner(conn_t *c, void *owner) { c->owner = owner; }

void *conn_owner(const conn_t *c) { return c->owner; }

void conn_set_handler(conn_t *c, const conn_handler_t *handler) {
  c->handler = handler;
}

size_t conn_queued_bytes(const conn_t *c) { return c->queued_bytes; }

void conn_set_max_queued(conn_t *c, size_t max) { c->max_queued = max; }

int conn_overflowed(const conn_t *c) { return c->overflowed; }

int conn_is_closing(const conn_t *c) { return c->closing || c->ending; }

static void on_end_timer_closed(uv_handle_t *h) { free(h); }

static void forget_soon(conn_t *c);

static void on_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  if (c->soon > 0)
    forget_soon(c);
  if (c->handler->on_close != NULL)
    c->handler->on_close(c);
  tls_conn_free(c->tls);
  ws_free(c->ws);
  free(c->error);
  free(c->partial);
  free(c->shutdown_req);
  free(c);
}

void conn_close(conn_t *c) {
  if (c->closing)
    return;
  c->closing = 1;
  if (c->end_timer != NULL) {
    uv_close((uv_handle_t *)c->end_timer, on_end_timer_closed);
    c->end_timer = NULL;
  }
  uv_close(&c->h.handle, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(read_buffer, sizeof(read_buffer));
}

/* Appends to the partial line; returns -1 when it would hold more than
 * limit bytes. */
static int keep_partial(conn_t *c, const char *data, size_t len,
                        size_t limit) {
  size_t need = c->partial_len + len;
  if (need > limit)
    return -1;
  if (len == 0)
    return 0; /* an empty WebSocket message: data may be NULL */
  if (need > c->partial_cap) {
    size_t cap = c->partial_cap ? c->partial_cap : 256;
    char *p;
    while (cap < need)
      cap *= 2;
    if (cap > c->max_line + 1)
      cap = c->max_line + 1;
    p = realloc(c->partial, cap);
    if (p == NULL)
      return -1;
    c->partial = p;
    c->partial_cap = cap;
  }
  memcpy(c->partial + c->partial_len, data, len);
  c->partial_len = need;
  return 0;
}

static void drop_partial(conn_t *c) {
  free(c->partial);
  c->partial = NULL;
  c->partial_len = c->partial_cap = 0;
}

static void deliver_line(conn_t *c, char *line, size_t len) {
  if (len > 0 && line[len - 1] == '\r')
    len--;
  line[len] = '\0';
  c->handler->on_line(c, line, len);
}

static void too_large(conn_t *c) {
  drop_partial(c);
  uv_read_stop(&c->h.stream);
  c->handler->on_too_large(c);
}

/*
 * Splits data into lines. A line that started in an earlier read is
 * completed in the remainder buffer; whole lines are handed over in place,
 * inside the shared read buffer. Stops as soon as the handler ends the
 * connection.
 */
static void split_lines(conn_t *c, char *data, size_t len) {
  while (len > 0 && !conn_is_closing(c)) {
    char *nl = memchr(data, '\n', len);
    size_t take;

    if (nl == NULL) {
      if (keep_partial(c, data, len, c->max_line) < 0)
        too_large(c);
      return;
    }
    take = (size_t)(nl - data);
    if (c->partial_len > 0) {
      /* One byte more for the NUL that replaces '\n'. */
      if (keep_partial(c, data, take + 1, c->max_line + 1) < 0) {
        too_large(c);
        return;
      }
      deliver_line(c, c->partial, c->partial_len - 1);
      c->partial_len = 0;
      if (c->partial_cap > 4096)
        drop_partial(c);
    } else if (take > c->max_line) {
      too_large(c);
      return;
    } else {
      deliver_line(c, data, take);
    }
    data += take + 1;
    len -= take + 1;
  }
  /* An idle connection keeps no buffer. */
  if (c->partial_len == 0 && c->partial != NULL && !conn_is_closing(c))
    drop_partial(c);
}

static void write_failed(conn_t *c, int status);
static int tls_flush(conn_t *c, outbuf_t *b);
static void ws_bytes(conn_t *c, char *data, size_t len);

static void set_error(conn_t *c, const char *why) {
  free(c->error);
  c->error = strdup(why);
}

/* Plaintext read from the peer, to the connection's framing. */
static void dispatch(conn_t *c, char *data, size_t len) {
  if (c->ws != NULL)
    ws_bytes(c, data, len);
  else if (c->raw)
    c->handler->on_data(c, data, len);
  else
    split_lines(c, data, len);
}

void conn_feed(conn_t *c, char *data, size_t len) {
  if (len > 0 && !conn_is_closing(c))
    dispatch(c, data, len);
}

/* Ciphertext from the socket: the plaintext it holds goes to the lines,
 * and what TLS answers (handshake, tickets) goes out. */
static void tls_input(conn_t *c, char *data, size_t len) {
  char why[256];
  ssize_t n;
  if (tls_conn_feed(c->tls, data, len) < 0) {
    conn_close(c);
    return;
  }
  while (!conn_is_closing(c) &&
         (n = tls_conn_read(c->tls, plain_buffer, sizeof(plain_buffer), why,
                            sizeof(why))) != 0) {
    if (n < 0) {
      set_error(c, why);
      if (c->handler->on_eof != NULL)
        c->handler->on_eof(c, UV_EPROTO);
      conn_close(c);
      return;
    }
    dispatch(c, plain_buffer, (size_t)n);
  }
  if (!c->closing)
    tls_flush(c, NULL);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;
  (void)buf;
  if (nread == 0 || c->closing)
    return;
  if (nread < 0) {
    if (!c->ending && c->handler->on_eof != NULL)
      c->handler->on_eof(c, (int)nread);
    conn_close(c);
    return;
  }
  if (c->ending)
    return; /* draining until the peer closes */
  turn_reads++;
  if (c->tls != NULL)
    tls_input(c, read_buffer, (size_t)nread);
  else
    dispatch(c, read_buffer, (size_t)nread);
}

int conn_start(conn_t *c) {
  return uv_read_start(&c->h.stream, on_alloc, on_read);
}

/* A write failed: the peer is gone. Tell the owner why, then close. */
static void write_failed(conn_t *c, int status) {
  if (!c->closing && !c->ending && c->handler->on_eof != NULL)
    c->handler->on_eof(c, status);
  conn_close(c);
}

static void on_write(uv_write_t *req, int status) {
  write_req_t *w = (write_req_t *)req;
  conn_t *c = req->handle->data;
  c->queued_bytes -= w->len;
  if (status == 0 && w->buf != NULL && w->buf->msg_id != 0 &&
      c->handler->on_written != NULL)
    c->handler->on_written(c, w->buf);
  outbuf_unref(w->buf);
  free(w->own);
  free(w);
  if (status < 0 && status != UV_ECANCELED)
    write_failed(c, status);
}

/* Past the limit, the peer does not read: whatever we send (messages,
 * results, pongs, errors), it may not make us hold more. Closing is
 * asynchronous, so the caller's session is still there when this returns;
 * on_close tells its owner. */
static int check_queued(conn_t *c) {
  if (c->max_queued != 0 && c->queued_bytes > c->max_queued) {
    c->overflowed = 1;
    conn_close(c);
    return UV_ENOBUFS;
  }
  return 0;
}

/* Writes the ciphertext TLS has ready, after what is queued. b, when not
 * NULL, is the frame it carries: its on_written follows the write. Returns
 * what conn_send does. */
static int tls_flush(conn_t *c, outbuf_t *b) {
  size_t len = tls_conn_pending(c->tls);
  write_req_t *w;
  uv_buf_t buf;
  int n = 0, r;

  if (len == 0)
    return 1;
  w = calloc(1, sizeof(*w));
  if (w == NULL || (w->own = malloc(len)) == NULL) {
    free(w);
    conn_close(c);
    return UV_ENOMEM;
  }
  len = tls_conn_take(c->tls, w->own, len);
  buf = uv_buf_init(w->own, (unsigned)len);
  if (c->queued_bytes == 0) {
    n = uv_try_write(&c->h.stream, &buf, 1);
    if (n == (int)len) {
      free(w->own);
      free(w);
      if (b != NULL && b->msg_id != 0 && c->handler->on_written != NULL)
        c->handler->on_written(c, b);
      return 1;
    }
    if (n < 0 && n != UV_EAGAIN) {
      free(w->own);
      free(w);
      write_failed(c, n);
      return n;
    }
    if (n < 0)
      n = 0;
  }
  w->buf = b != NULL ? outbuf_ref(b) : NULL;
  w->len = len - (size_t)n;
  buf = uv_buf_init(w->own + n, (unsigned)w->len);
  r = uv_write(&w->req, &c->h.stream, &buf, 1, on_write);
  if (r < 0) {
    outbuf_unref(w->buf);
    free(w->own);
    free(w);
    write_failed(c, r);
    return r;
  }
  c->queued_bytes += w->len;
  return check_queued(c);
}

/*
 * Writes head (a WebSocket header, or nothing) then the first len bytes of
 * b, after what is queued. Nothing is copied unless the kernel leaves some
 * of it: then b is referenced and the rest of head kept in the request.
 */
static int send_bytes(conn_t *c, outbuf_t *b, const uint8_t *head,
                      size_t head_len, size_t len) {
  uv_buf_t bufs[2];
  unsigned nbufs = 0;
  size_t total = head_len + len, done = 0, body_from;
  write_req_t *w;
  int n, r;

  if (c->closing)
    return UV_ECANCELED;
  if (c->tls != NULL) {
    if ((head_len > 0 &&
         tls_conn_write(c->tls, (const char *)head, head_len) < 0) ||
        tls_conn_write(c->tls, b->data, len) < 0) {
      write_failed(c, UV_EPROTO);
      return UV_EPROTO;
    }
    return tls_flush(c, b);
  }
  if (head_len > 0)
    bufs[nbufs++] = uv_buf_init((char *)head, (unsigned)head_len);
  bufs[nbufs++] = uv_buf_init(b->data, (unsigned)len);
  /* Only when nothing waits: bytes must leave in order. */
  if (c->queued_bytes == 0) {
    n = uv_try_write(&c->h.stream, bufs, nbufs);
    if (n == (int)total) {
      if (b->msg_id != 0 && c->handler->on_written != NULL)
        c->handler->on_written(c, b);
      return 1;
    }
    if (n < 0 && n != UV_EAGAIN) {
      write_failed(c, n);
      return n;
    }
    if (n > 0)
      done = (size_t)n;
  }
  w = malloc(sizeof(*w));
  if (w == NULL) {
    conn_close(c);
    return UV_ENOMEM;
  }
  w->own = NULL;
  w->buf = outbuf_ref(b);
  w->len = total - done;
  nbufs = 0;
  if (done < head_len) {
    memcpy(w->head, head + done, head_len - done);
    bufs[nbufs++] = uv_buf_init((char *)w->head, (unsigned)(head_len - done));
    body_from = 0;
  } else {
    body_from = done - head_len;
  }
  bufs[nbufs++] = uv_buf_init(b->data + body_from, (unsigned)(len - body_from));
  r = uv_write(&w->req, &c->h.stream, bufs, nbufs, on_write);
  if (r < 0) {
    outbuf_unref(b);
    free(w);
    write_failed(c, r);
    return r;
  }
  c->queued_bytes += w->len;
  return check_queued(c);
}

static int queue_soon(conn_t *c, outbuf_t *b);
static int send_now(conn_t *c, outbuf_t *b);

int conn_send(conn_t *c, outbuf_t *b) {
  return c->soon > 0 ? queue_soon(c, b) : send_now(c, b);
}

static int send_now(conn_t *c, outbuf_t *b) {
  uint8_t head[WS_MAX_HEADER];
  size_t len = b->len;

  if (c->ws == NULL)
    return send_bytes(c, b, NULL, 0, len);
  /* One text frame per protocol frame; after a close, nothing. */
  if (ws_close_sent(c->ws))
    return UV_ECANCELED;
  if (len > 0 && b->data[len - 1] == '\n')
    len--;
  return send_bytes(c, b, head, ws_header(head, len), len);
}

/* --- replies at the end of the loop turn ------------------------------ */

/* The frames conn_send_soon holds, in the order they were sent; an entry
 * whose connection closed meanwhile has c NULL. */
static struct soon {
  conn_t *c;
  outbuf_t *b;
} *soon_queue;
static size_t soon_len, soon_cap;
static uv_check_t soon_check;
static int soon_active;

static int queue_soon(conn_t *c, outbuf_t *b) {
  if (c->closing)
    return UV_ECANCELED;
  if (soon_len == soon_cap || c->soon == UINT16_MAX) {
    size_t cap = soon_cap != 0 ? soon_cap * 2 : 256;
    struct soon *grown = c->soon == UINT16_MAX
                             ? NULL
                             : realloc(soon_queue, cap * sizeof(*soon_queue));
    if (grown == NULL) {
      /* No room to wait: now, unless that would pass frames waiting. */
      if (c->soon == 0)
        return send_now(c, b);
      conn_close(c);
      return UV_ENOMEM;
    }
    soon_queue = grown;
    soon_cap = cap;
  }
  soon_queue[soon_len].c = c;
  soon_queue[soon_len].b = outbuf_ref(b);
  soon_len++;
  c->soon++;
  return 0;
}

int conn_send_soon(conn_t *c, outbuf_t *b) {
  /* A lone client (nothing else read this turn or the last) is answered
   * at once: waiting would only add the server's bookkeeping after the
   * call to its round trip. */
  if (soon_active && (turn_reads > 1 || last_turn_reads > 1))
    return queue_soon(c, b);
  return conn_send(c, b);
}

static void flush_soon(uv_check_t *h) {
  (void)h;
  last_turn_reads = turn_reads;
  turn_reads = 0;
  /* A write that fails closes its connection, which may queue no more
   * for it: every entry is taken in turn, new ones included. */
  for (size_t i = 0; i < soon_len; i++) {
    conn_t *c = soon_queue[i].c;
    if (c != NULL) {
      c->soon--;
      send_now(c, soon_queue[i].b);
    }
    outbuf_unref(soon_queue[i].b);
  }
  soon_len = 0;
}

/* Takes c's entries out of the queue: written now, in order (send), or
 * dropped (its connection is gone). */
static void take_soon(conn_t *c, int send) {
  for (size_t i = 0; i < soon_len && c->soon > 0; i++) {
    if (soon_queue[i].c == c) {
      soon_queue[i].c = NULL;
      c->soon--;
      if (send)
        send_now(c, soon_queue[i].b);
    }
  }
}

static void forget_soon(conn_t *c) { take_soon(c, 0); }

int conn_soon_start(uv_loop_t *loop) {
  int r;
  if (soon_active)
    return 0;
  r = uv_check_init(loop, &soon_check);
  if (r == 0)
    r = uv_check_start(&soon_check, flush_soon);
  if (r != 0)
    return r;
  uv_unref((uv_handle_t *)&soon_check); /* it never keeps the loop up */
  soon_active = 1;
  return 0;
}

void conn_soon_stop(void) {
  if (!soon_active)
    return;
  flush_soon(&soon_check);
  soon_active = 0;
  uv_close((uv_handle_t *)&soon_check, NULL);
}

int conn_send_raw(conn_t *c, outbuf_t *b) {
  return send_bytes(c, b, NULL, 0, b->len);
}

/* --- WebSocket ------------------------------------------------------------ */

static void ws_message(void *data, const char *msg, size_t len) {
  conn_t *c = data;
  if (conn_is_closing(c))
    return;
  /* on_line wants a NUL-terminated line it may write to. */
  c->partial_len = 0;
  if (keep_partial(c, msg, len, c->max_line) < 0 ||
      keep_partial(c, "", 1, c->max_line + 1) < 0) {
    too_large(c);
    return;
  }
  c->handler->on_line(c, c->partial, len);
  if (!c->closing && c->partial_cap > 4096)
    drop_partial(c);
}

static void ws_output(void *data, const uint8_t *bytes, size_t len) {
  conn_t *c = data;
  outbuf_t *b = outbuf_copy((const char *)bytes, len);
  if (b == NULL) {
    conn_close(c);
    return;
  }
  send_bytes(c, b, NULL, 0, len);
  outbuf_unref(b);
}

/* What wslay's close code means, for the owner's log. */
static const char *ws_failure(unsigned code) {
  switch (code) {
  case WS_CLOSE_BAD_DATA: return "WebSocket: text that is not UTF-8";
  case WS_CLOSE_TOO_BIG: return "WebSocket: message too big";
  default: return "WebSocket: protocol error (binary message, unmasked or "
                  "malformed frame)";
  }
}

static void ws_bytes(conn_t *c, char *data, size_t len) {
  ws_status_t st = ws_input(c->ws, (const uint8_t *)data, len);
  unsigned code;

  if (st == WS_OPEN || c->closing)
    return;
  if (st == WS_PEER_CLOSED) {
    if (!c->ending && c->handler->on_eof != NULL)
      c->handler->on_eof(c, UV_EOF);
    conn_end(c);
    return;
  }
  code = ws_close_code(c->ws);
  set_error(c, ws_failure(code));
  if (c->ending) {
    return;
  } else if (code == WS_CLOSE_TOO_BIG) {
    uv_read_stop(&c->h.stream);
    c->handler->on_too_large(c);
  } else if (c->handler->on_protocol_error != NULL) {
    c->handler->on_protocol_error(c);
  } else if (c->handler->on_eof != NULL) {
    c->handler->on_eof(c, UV_EPROTO);
  }
  conn_end(c);
}

int conn_use_websocket(conn_t *c) {
  static const ws_callbacks_t callbacks = {ws_message, ws_output};
  c->raw = 0;
  c->ws = ws_new(c->max_line, &callbacks, c);
  return c->ws != NULL ? 0 : -1;
}

void conn_set_raw(conn_t *c) { c->raw = 1; }

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn_t *c = req->handle->data;
  /* After a clean shutdown keep reading until the peer's EOF, so that
   * closing does not turn unread input into a reset that loses our last
   * frame; the end timer bounds the wait. */
  if (status < 0)
    conn_close(c);
}

static void on_end_timer(uv_timer_t *t) { conn_close(t->data); }

void conn_end(conn_t *c) {
  int r;
  if (c->closing || c->ending)
    return;
  c->ending = 1;
  /* Its waiting replies go before the end (a call and a bye in one
   * packet: the result, then the shutdown). */
  if (c->soon > 0)
    take_soon(c, 1);
  drop_partial(c);
  if (c->ws != NULL)
    ws_close(c->ws, WS_CLOSE_NORMAL);
  if (c->closing)
    return;
  if (c->tls != NULL) {
    tls_conn_shutdown(c->tls);
    if (tls_flush(c, NULL) < 0)
      return;
  }
  /* Keep reading (to see the peer's EOF); it may be reading already. */
  r = uv_read_start(&c->h.stream, on_alloc, on_read);
  c->shutdown_req = malloc(sizeof(*c->shutdown_req));
  if ((r < 0 && r != UV_EALREADY) || c->shutdown_req == NULL ||
      uv_shutdown(c->shutdown_req, &c->h.stream, on_shutdown) < 0) {
    conn_close(c);
    return;
  }
  c->end_timer = malloc(sizeof(*c->end_timer));
  if (c->end_timer == NULL) {
    conn_close(c);
    return;
  }
  uv_timer_init(c->h.handle.loop, c->end_timer);
  c->end_timer->data = c;
  uv_timer_start(c->end_timer, on_end_timer, END_GRACE_MS, 0);
}

int conn_use_tls(conn_t *c, tls_ctx_t *ctx) {
  c->tls = tls_conn_new(ctx);
  return c->tls != NULL ? 0 : -1;
}

const char *conn_error(const conn_t *c) { return c->error; }

void conn_peer_ip(const conn_t *c, char *out, size_t len) {
  struct sockaddr_storage ss;
  int n = sizeof(ss);

  out[0] = '\0';
  if (c->h.handle.type != UV_TCP ||
      uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &n) != 0)
    return;
  if (ss.ss_family == AF_INET)
    uv_ip4_name((struct sockaddr_in *)&ss, out, len);
  else if (ss.ss_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)&ss, out, len);
}
