/*
 * loadgen: the load tool of herald's benchmarks (tests/bench/).
 *
 * One process, one epoll loop, non-blocking sockets, libc only (and OpenSSL
 * for --tls): it is a measuring instrument and must cost little next to the
 * server it measures. It puts the same load on herald (PROTOCOL.md:
 * newline-delimited JSON) or on Redis (RESP), so that the two can be
 * compared side by side:
 *
 *   fanout   N greeted clients; per round a control connection triggers one
 *            message (herald: call of method broadcast; Redis: PUBLISH) and
 *            the round ends when the last of the N clients has it.
 *   calls    C connections each keep one request in flight for S seconds
 *            (herald: call of --method; Redis: EVALSHA of "return 1").
 *   list     N idle greeted clients; time a listing of them (herald: call
 *            of --method, default list_sessions; Redis: CLIENT LIST).
 *   connect  only connect and greet N clients.
 *   hold     connect and greet N clients, print a line, then keep them
 *            idle for S seconds (answering pings) while the caller reads
 *            the server's memory use.
 *
 * --tls CAFILE: every connection first does a TLS client handshake (OpenSSL
 * 3, non-blocking, the server's certificate verified against CAFILE and its
 * address or name against --host), then reads and writes through
 * SSL_read/SSL_write in the same loop. A plaintext connection has no SSL
 * object and takes exactly the code path it takes without the option.
 *
 * --phases (fanout and calls): mark the measured stretch on stdout, for a
 * caller that reads the server's CPU time around it (run.py). fanout: once
 * the warm-up rounds are done, a line ending phase=measuring, and after the
 * last measured round and its gap (its acks taken) a line ending
 * phase=measured; after each the tool keeps serving its connections, but
 * sends nothing new, until a line (or end of file) arrives on its stdin,
 * at most --timeout. calls: the same two lines when the recorded seconds
 * begin and end, without waiting (the load runs on).
 *
 * --ws (herald only): every connection (clients and control alike) first
 * does the HTTP/1.1 upgrade to WebSocket on GET /ws (docs/protocol.md,
 * "WebSocket"; --port is then herald's http_listen port), checks the 101
 * status and the Sec-WebSocket-Accept value (SHA-1 and base64 from
 * OpenSSL), then sends each frame of the protocol, without its newline, as
 * one masked text frame, and takes each text message from the server as one
 * line of the TCP protocol. The framing is libwslay's frame API
 * (wslay_frame_*, client side, masks from a xorshift generator: enough for
 * a load tool), fed from the connection's read buffer and writing into its
 * write buffer, so that it composes with --tls (wss) and with the deferred
 * fan-out acks. A server ping is answered with a pong; a close from the
 * server fails the run, as the end of a TCP connection does. A connection
 * without --ws has no WebSocket state and takes the path it takes without
 * the option.
 *
 * Output: one line of key=value pairs per figure set on stdout. A failure
 * (a round, greeting or request not done within --timeout seconds, a refused
 * connection, an error reply) prints a status=fail line, a message on
 * stderr, and exits 1; the tool never waits without a deadline.
 *
 * herald's JSON goes through lua-cjson everywhere else in the project. Here
 * json_find() locates a top-level key in the compact one-line frames the
 * server sends: it validates nothing and decodes no escapes, which is
 * acceptable for a load tool only.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <wslay/wslay.h>

#define EVMAX 1024
#define READ_MIN 4096                   /* free space offered to recv() */
#define MAX_REPLY ((size_t)512 << 20)   /* one herald line / RESP reply */
#define CHANNEL "herald-bench"
#define NS_PER_S 1000000000ull
#define NS_PER_MS 1000000ull

enum target { T_HERALD, T_REDIS };
enum mode { M_FANOUT, M_CALLS, M_LIST, M_CONNECT, M_HOLD };
enum cstate { CS_FREE, CS_CONNECTING, CS_HANDSHAKE, CS_UPGRADE, CS_GREETING,
              CS_READY, CS_CLOSING };

struct samples {
  uint64_t *v;                  /* nanoseconds */
  size_t n, cap;
  int sorted;
};

struct conn {
  int fd;
  int state;                    /* enum cstate */
  uint32_t events;              /* current epoll interest */
  int dirty;                    /* on the deferred-flush list */
  int shut_pending;             /* shutdown(SHUT_WR) once wbuf drains */
  int outstanding;              /* Redis command replies still due */
  char *rbuf;
  size_t rlen, rcap, scan;      /* scan: no '\n' in rbuf[0..scan) */
  char *wbuf;
  size_t wlen, woff, wcap;
  uint64_t t_start;             /* connect started, later request sent */
  int64_t call_id;              /* herald call awaiting its result, or 0 */
  int64_t last_round;           /* last fan-out round this client got */
  SSL *ssl;                     /* --tls, from the TCP connect on; or NULL */
  int rd_want_write;            /* TLS: SSL_read waits for writability */
  int wr_want_read;             /* TLS: SSL_write waits for readability */
  struct ws *ws;                /* --ws: its WebSocket state; or NULL */
};

struct opts {
  enum target target;
  enum mode mode;
  const char *host;
  long port;
  long clients, rounds, warmup, conns, text_size, inflight, gap_ms;
  double seconds, timeout;
  const char *method;
  const char *tls_ca;           /* --tls CAFILE, or NULL: plaintext */
  int ws;                       /* --ws: WebSocket on GET /ws */
  int phases;                   /* --phases: phase lines, go on stdin */
};

struct bench {
  struct opts o;
  struct sockaddr_storage addr;
  socklen_t addrlen;
  SSL_CTX *tls;                 /* NULL: plaintext */
  int tls_sni;                  /* --host is a name: send it (SNI) */
  const char *tls_version;      /* of the first handshake (static strings) */
  const char *tls_cipher;
  int ep;
  struct conn *c;
  int nconn;                    /* clients (or calls conns) + control */
  int ctl;                      /* index of the control connection, or -1 */
  int *dirty;
  int ndirty;
  int nready;                   /* connections greeted so far, control too */
  int nclosing;
  uint64_t timeout_ns;
  char *fbuf;                   /* scratch for outgoing requests */
  size_t fcap;
  struct samples greet;
  /* fanout */
  int64_t round;
  long got;
  int round_open;               /* acks are deferred while a round runs */
  uint64_t t0, t_first, t_last;
  char *text;
  struct samples first, last;
  /* calls */
  int calls_running, recording;
  uint64_t t_rec, completed;
  struct samples rtt;
  /* list */
  int reply_done;
  size_t reply_bytes;
  uint64_t t_reply;
  int sha_wait;
  char sha[41];
  int64_t next_id;
  int failed;
  char err[512];
};

static const char *const target_names[] = {"herald", "redis"};
static const char *const mode_names[] = {"fanout", "calls", "list",
                                         "connect", "hold"};
#define NMODES ((int)(sizeof mode_names / sizeof mode_names[0]))

static uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void *xrealloc(void *p, size_t n)
{
  void *q = realloc(p, n);
  if (q == NULL) {
    fprintf(stderr, "loadgen: out of memory (%zu bytes)\n", n);
    exit(1);
  }
  return q;
}

/* Record the first failure only: later ones are usually its consequences. */
static void fail(struct bench *b, const char *fmt, ...)
{
  va_list ap;
  if (b->failed)
    return;
  va_start(ap, fmt);
  vsnprintf(b->err, sizeof b->err, fmt, ap);
  va_end(ap);
  b->failed = 1;
}

/* A printable name of connection i for error messages (static storage). */
static const char *conn_name(const struct bench *b, int i)
{
  static char name[32];
  if (i == b->ctl)
    return "control connection";
  snprintf(name, sizeof name, "client %d", i);
  return name;
}

/* Grow *buf so that it holds at least need bytes, doubling. */
static void buf_reserve(char **buf, size_t *cap, size_t need)
{
  size_t n = *cap ? *cap : 256;
  if (need <= *cap)
    return;
  while (n < need)
    n *= 2;
  *buf = xrealloc(*buf, n);
  *cap = n;
}

static void samples_add(struct samples *s, uint64_t v)
{
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 64;
    s->v = xrealloc(s->v, s->cap * sizeof *s->v);
  }
  s->v[s->n++] = v;
  s->sorted = 0;
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile p (1..100) in microseconds; 0 when empty. Sorts
 * the samples in place. */
static double pct_us(struct samples *s, unsigned p)
{
  size_t rank;
  if (s->n == 0)
    return 0;
  if (!s->sorted) {
    qsort(s->v, s->n, sizeof *s->v, cmp_u64);
    s->sorted = 1;
  }
  rank = (p * s->n + 99) / 100;
  if (rank < 1)
    rank = 1;
  return (double)s->v[rank - 1] / 1e3;
}

/* ---- connections and the loop ---------------------------------------- */

static void conn_watch(struct bench *b, int i, uint32_t want)
{
  struct conn *c = &b->c[i];
  struct epoll_event ev;
  if (c->events == want)
    return;
  memset(&ev, 0, sizeof ev);
  ev.events = want;
  ev.data.u32 = (uint32_t)i;
  if (epoll_ctl(b->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
    fail(b, "epoll_ctl for %s failed: %s", conn_name(b, i), strerror(errno));
    return;
  }
  c->events = want;
}

static int ws_begin(struct bench *b, int i);
static void ws_end(struct conn *c);

/* Close connection i; its buffers stay allocated for the process' life. */
static void conn_close(struct bench *b, int i)
{
  struct conn *c = &b->c[i];
  if (c->state == CS_FREE)
    return;
  if (c->state == CS_CLOSING)
    b->nclosing--;
  if (c->ssl != NULL) {
    SSL_free(c->ssl);
    c->ssl = NULL;
    c->rd_want_write = c->wr_want_read = 0;
  }
  if (c->ws != NULL)
    ws_end(c);
  close(c->fd);
  c->fd = -1;
  c->state = CS_FREE;
  c->rlen = c->scan = c->wlen = c->woff = 0;
}

static void tls_flush(struct bench *b, int i);
static void tls_readable(struct bench *b, int i);

/* Write as much of wbuf as the socket takes now; watch for EPOLLOUT while
 * something is left. Errors on a closing connection just close it. */
static void conn_flush(struct bench *b, int i)
{
  struct conn *c = &b->c[i];
  if (c->ssl != NULL) {
    tls_flush(b, i);
    return;
  }
  while (c->woff < c->wlen) {
    ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff,
                     MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      if (c->state == CS_CLOSING) {
        conn_close(b, i);
        return;
      }
      fail(b, "write to %s failed: %s", conn_name(b, i), strerror(errno));
      return;
    }
    c->woff += (size_t)n;
  }
  if (c->woff == c->wlen) {
    c->woff = c->wlen = 0;
    if (c->shut_pending) {
      shutdown(c->fd, SHUT_WR);
      c->shut_pending = 0;
    }
    conn_watch(b, i, EPOLLIN);
  } else {
    conn_watch(b, i, EPOLLIN | EPOLLOUT);
  }
}

/* Data was added to connection i's wbuf. With defer, the write waits for
 * flush_dirty() (fan-out acks: the tool should not spend a round's time
 * writing them); otherwise it is attempted at once. */
static void conn_queued(struct bench *b, int i, int defer)
{
  struct conn *c = &b->c[i];
  if (!defer) {
    conn_flush(b, i);
  } else if (!c->dirty) {
    c->dirty = 1;
    b->dirty[b->ndirty++] = i;
  }
}

/* Queue data on connection i, as it goes on the wire; see conn_queued. */
static void conn_send(struct bench *b, int i, const char *data, size_t len,
                      int defer)
{
  struct conn *c = &b->c[i];
  buf_reserve(&c->wbuf, &c->wcap, c->wlen + len);
  memcpy(c->wbuf + c->wlen, data, len);
  c->wlen += len;
  conn_queued(b, i, defer);
}

static void ws_send(struct bench *b, int i, int opcode, const char *data,
                    size_t len, int defer);

/* Queue one frame of herald's protocol (ending with its newline) or one
 * Redis command on connection i: as it is, or with --ws as one WebSocket
 * text message without the newline. */
static void frame_send(struct bench *b, int i, const char *data, size_t len,
                       int defer)
{
  if (b->c[i].ws != NULL)
    ws_send(b, i, WSLAY_TEXT_FRAME, data, len - 1, defer);
  else
    conn_send(b, i, data, len, defer);
}

static void flush_dirty(struct bench *b)
{
  int k;
  for (k = 0; k < b->ndirty; k++) {
    int i = b->dirty[k];
    b->c[i].dirty = 0;
    if (b->c[i].state != CS_FREE)
      conn_flush(b, i);
  }
  b->ndirty = 0;
}

/* ---- TLS --------------------------------------------------------------- */

static void send_greeting(struct bench *b, int i);
static void conn_open(struct bench *b, int i);

/* Why the TLS operation that returned r on connection i failed, as text
 * (static storage); empties OpenSSL's error queue, which must be empty
 * before the next SSL_* call for SSL_get_error to be reliable. */
static const char *tls_why(struct conn *c, int r)
{
  static char why[256];
  int saved = errno;
  int e = SSL_get_error(c->ssl, r);
  long v = SSL_get_verify_result(c->ssl);
  unsigned long q = ERR_peek_last_error();
  if (!SSL_is_init_finished(c->ssl) && v != X509_V_OK)
    snprintf(why, sizeof why, "certificate verify failed: %s",
             X509_verify_cert_error_string(v));
  else if (q != 0)
    ERR_error_string_n(q, why, sizeof why);
  else if (e == SSL_ERROR_SYSCALL && saved != 0)
    snprintf(why, sizeof why, "%s", strerror(saved));
  else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)
    snprintf(why, sizeof why, "the server closed the connection");
  else
    snprintf(why, sizeof why, "SSL_get_error %d", e);
  ERR_clear_error();
  return why;
}

/* Go on with connection i's TLS handshake; once it is done, greet (or
 * upgrade to WebSocket first). */
static void tls_handshake(struct bench *b, int i)
{
  struct conn *c = &b->c[i];
  int r = SSL_do_handshake(c->ssl);
  if (r == 1) {
    if (b->tls_version == NULL) {
      b->tls_version = SSL_get_version(c->ssl);
      b->tls_cipher = SSL_get_cipher_name(c->ssl);
    }
    conn_open(b, i);
    /* read ahead may already hold what follows the handshake */
    if (!b->failed && (c->state == CS_GREETING || c->state == CS_UPGRADE) &&
        SSL_has_pending(c->ssl))
      tls_readable(b, i);
    return;
  }
  switch (SSL_get_error(c->ssl, r)) {
  case SSL_ERROR_WANT_READ:
    conn_watch(b, i, EPOLLIN);
    return;
  case SSL_ERROR_WANT_WRITE:
    conn_watch(b, i, EPOLLIN | EPOLLOUT);
    return;
  default:
    fail(b, "TLS handshake of %s with %s:%ld failed: %s", conn_name(b, i),
         b->o.host, b->o.port, tls_why(c, r));
  }
}

/* Connection i's TCP connect is done: start its TLS handshake. */
static void tls_start(struct bench *b, int i)
{
  struct conn *c = &b->c[i];
  c->ssl = SSL_new(b->tls);
  if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
      (b->tls_sni && SSL_set_tlsext_host_name(c->ssl, b->o.host) != 1)) {
    ERR_clear_error();
    fail(b, "cannot set up TLS for %s (out of memory?)", conn_name(b, i));
    return;
  }
  SSL_set_connect_state(c->ssl);
  c->state = CS_HANDSHAKE;
  tls_handshake(b, i);
}

/* The first frame or command of connection i: herald's hello; for Redis,
 * SUBSCRIBE for the fan-out/list/connect clients, PING for the others. */
static void send_greeting(struct bench *b, int i)
{
  char buf[256];
  int n;
  if (b->o.target == T_HERALD) {
    if (i == b->ctl)
      n = snprintf(buf, sizeof buf, "{\"type\":\"hello\",\"userName\":"
                   "\"benchctl\",\"machineName\":\"loadgen\","
                   "\"systemUserName\":\"bench\",\"hostType\":\"linux\","
                   "\"protocol\":1}\n");
    else
      n = snprintf(buf, sizeof buf, "{\"type\":\"hello\",\"userName\":"
                   "\"bench%d\",\"machineName\":\"loadgen\","
                   "\"systemUserName\":\"bench\",\"hostType\":\"linux\","
                   "\"protocol\":1}\n", i);
  } else if (i == b->ctl || b->o.mode == M_CALLS) {
    n = snprintf(buf, sizeof buf, "*1\r\n$4\r\nPING\r\n");
  } else {
    n = snprintf(buf, sizeof buf, "*2\r\n$9\r\nSUBSCRIBE\r\n$%zu\r\n%s\r\n",
                 strlen(CHANNEL), CHANNEL);
  }
  frame_send(b, i, buf, (size_t)n, 0);
}

static void ws_upgrade(struct bench *b, int i);

/* Connection i's transport is up (TCP, or TLS too): with --ws, send the
 * upgrade request first; otherwise greet. */
static void conn_open(struct bench *b, int i)
{
  struct conn *c = &b->c[i];
  if (c->ws != NULL) {
    ws_upgrade(b, i);
    return;
  }
  c->state = CS_GREETING;
  send_greeting(b, i);
}

static void conn_greeted(struct bench *b, int i, uint64_t now)
{
  struct conn *c = &b->c[i];
  if (c->state != CS_GREETING)
    return;
  c->state = CS_READY;
  b->nready++;
  if (i != b->ctl)
    samples_add(&b->greet, now - c->t_start);
}

/* The non-blocking connect of connection i has finished, well or not. */
static void conn_connected(struct bench *b, int i)
{
  struct conn *c = &b->c[i];
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    err = errno;
  if (err != 0) {
    fail(b, "connect of %s to %s:%ld failed: %s%s", conn_name(b, i),
         b->o.host, b->o.port, strerror(err),
         err == EADDRNOTAVAIL ? " (out of local ports?)" : "");
    return;
  }
  if (b->tls != NULL) {
    tls_start(b, i);
    return;
  }
  conn_open(b, i);
}

static void conn_start(struct bench *b, int i)
{
  struct conn *c = &b->c[i];
  struct epoll_event ev;
  int one = 1;
  int fd = socket(b->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
                  SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail(b, "socket for %s failed: %s%s", conn_name(b, i), strerror(errno),
         errno == EMFILE || errno == ENFILE ? " (open-file limit)" : "");
    return;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (b->o.ws && ws_begin(b, i) < 0) {
    close(fd);
    return;
  }
  c->fd = fd;
  c->t_start = now_ns();
  c->state = CS_CONNECTING;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.u32 = (uint32_t)i;
  if (epoll_ctl(b->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
    fail(b, "epoll_ctl for %s failed: %s", conn_name(b, i), strerror(errno));
    return;
  }
  c->events = ev.events;
  if (connect(fd, (struct sockaddr *)&b->addr, b->addrlen) == 0) {
    conn_connected(b, i);
  } else if (errno != EINPROGRESS) {
    fail(b, "connect of %s to %s:%ld failed: %s%s", conn_name(b, i),
         b->o.host, b->o.port, strerror(errno),
         errno == EADDRNOTAVAIL ? " (out of local ports?)" : "");
  }
}

/* ---- herald frames ----------------------------------------------------- */

/* Locate the value of the top-level key `key` in the one-line JSON object
 * p[0..len). Not a parser: it skips string contents and tracks nesting so
 * that text inside values cannot pass for a key, trusts the server for the
 * rest, and returns a pointer to the value's first byte, or NULL. */
static const char *json_find(const char *p, size_t len, const char *key)
{
  const char *end = p + len;
  size_t klen = strlen(key);
  int depth = 0;
  while (p < end) {
    if (*p == '"') {
      const char *s = ++p, *q;
      while (p < end && *p != '"')
        p += (*p == '\\') ? 2 : 1;
      if (p >= end)
        return NULL;
      q = ++p;
      if (depth != 1)
        continue;
      while (q < end && (*q == ' ' || *q == '\t'))
        q++;
      if (q < end && *q == ':') {
        q++;
        while (q < end && (*q == ' ' || *q == '\t'))
          q++;
        if ((size_t)(p - 1 - s) == klen && memcmp(s, key, klen) == 0)
          return q;
        p = q;
      }
      continue;
    }
    if (*p == '{' || *p == '[')
      depth++;
    else if (*p == '}' || *p == ']')
      depth--;
    p++;
  }
  return NULL;
}

/* The length of the JSON value at v when it is a string (quotes included)
 * or a scalar; 0 for NULL. For error texts in messages only. */
static size_t json_span(const char *v, const char *end)
{
  const char *p = v;
  if (v == NULL)
    return 0;
  if (*p == '"') {
    for (p++; p < end && *p != '"'; p++)
      if (*p == '\\')
        p++;
    return p < end ? (size_t)(p + 1 - v) : (size_t)(end - v);
  }
  while (p < end && *p != ',' && *p != '}' && *p != ']')
    p++;
  return (size_t)(p - v);
}

/* Does the value at v (bounded by end) start with the literal lit? */
static int starts(const char *v, const char *end, const char *lit)
{
  size_t n = strlen(lit);
  return v != NULL && (size_t)(end - v) >= n && memcmp(v, lit, n) == 0;
}

/* Parse a non-negative decimal integer at v; -1 when there is none. */
static int64_t parse_id(const char *v, const char *end)
{
  int64_t x = 0;
  const char *p = v;
  if (v == NULL)
    return -1;
  while (p < end && *p >= '0' && *p <= '9' && x < INT64_MAX / 10 - 9)
    x = x * 10 + (*p++ - '0');
  return p == v ? -1 : x;
}

/* The round number of a fan-out text ("bench-r<digits>-xxx..."), or -1. */
static int64_t text_round(const char *s, const char *end)
{
  if (!starts(s, end, "bench-r"))
    return -1;
  return parse_id(s + 7, end);
}

static void fanout_got(struct bench *b, int i, int64_t round, uint64_t now)
{
  struct conn *c = &b->c[i];
  if (i == b->ctl || round != b->round || c->last_round == round)
    return;
  c->last_round = round;
  if (b->got++ == 0)
    b->t_first = now;
  if (b->got == b->o.clients)
    b->t_last = now;
}

static void send_request(struct bench *b, int i);

/* A complete reply to connection i's request (a herald result, or a Redis
 * reply to EVALSHA / CLIENT LIST / PUBLISH) of `bytes` bytes arrived. */
static void reply_done(struct bench *b, int i, size_t bytes, uint64_t now)
{
  struct conn *c = &b->c[i];
  if (b->o.mode == M_CALLS) {
    if (b->recording) {
      b->completed++;
      if (c->t_start >= b->t_rec)
        samples_add(&b->rtt, now - c->t_start);
    }
    if (b->calls_running)
      send_request(b, i);
  } else if (b->o.mode == M_LIST && i == b->ctl) {
    b->reply_done = 1;
    b->reply_bytes = bytes;
    b->t_reply = now;
  }
}

static void herald_result(struct bench *b, int i, const char *line,
                          size_t len, uint64_t now)
{
  struct conn *c = &b->c[i];
  const char *end = line + len;
  int64_t id = parse_id(json_find(line, len, "id"), end);
  const char *ok = json_find(line, len, "ok");
  if (c->call_id == 0 || id != c->call_id)
    return;                     /* superseded by a newer call */
  c->call_id = 0;
  if (!starts(ok, end, "true")) {
    const char *e = json_find(line, len, "error");
    size_t elen = json_span(e, end);
    fail(b, "%s: call of %s failed: %.*s", conn_name(b, i),
         i == b->ctl && b->o.mode == M_FANOUT ? "broadcast" : b->o.method,
         elen > 300 ? 300 : (int)elen, elen ? e : "no error text");
    return;
  }
  reply_done(b, i, len + 1, now);
}

/* One complete herald frame (without its line end) on connection i. */
static void herald_frame(struct bench *b, int i, const char *line,
                         size_t len, uint64_t now)
{
  const char *end = line + len;
  const char *t = json_find(line, len, "type");
  if (starts(t, end, "\"message\"")) {
    char ack[64];
    int64_t id = parse_id(json_find(line, len, "id"), end);
    const char *text = json_find(line, len, "text");
    int n;
    if (id < 0) {
      fail(b, "%s: message frame without an id: %.*s", conn_name(b, i),
           len > 300 ? 300 : (int)len, line);
      return;
    }
    n = snprintf(ack, sizeof ack, "{\"type\":\"ack\",\"id\":%" PRId64 "}\n",
                 id);
    frame_send(b, i, ack, (size_t)n, b->round_open);
    if (b->o.mode == M_FANOUT && starts(text, end, "\""))
      fanout_got(b, i, text_round(text + 1, end), now);
  } else if (starts(t, end, "\"result\"")) {
    herald_result(b, i, line, len, now);
  } else if (starts(t, end, "\"welcome\"")) {
    conn_greeted(b, i, now);
  } else if (starts(t, end, "\"ping\"")) {
    frame_send(b, i, "{\"type\":\"pong\"}\n", 16, 0);
  } else if (starts(t, end, "\"error\"") || starts(t, end, "\"drop\"") ||
             t == NULL) {
    fail(b, "%s: the server sent: %.*s", conn_name(b, i),
         len > 300 ? 300 : (int)len, line);
  }
}

/* Split connection i's input into lines; a partial line stays buffered. */
static void herald_input(struct bench *b, int i, uint64_t now)
{
  struct conn *c = &b->c[i];
  size_t start = 0;
  char *nl;
  while ((nl = memchr(c->rbuf + c->scan, '\n', c->rlen - c->scan)) != NULL) {
    size_t stop = (size_t)(nl - c->rbuf);
    size_t len = stop - start;
    if (len > 0 && c->rbuf[start + len - 1] == '\r')
      len--;
    herald_frame(b, i, c->rbuf + start, len, now);
    if (b->failed || c->state == CS_FREE)
      return;
    start = c->scan = stop + 1;
  }
  c->scan = c->rlen;
  if (start > 0) {
    memmove(c->rbuf, c->rbuf + start, c->rlen - start);
    c->rlen -= start;
    c->scan -= start;
  }
  if (c->rlen > MAX_REPLY)
    fail(b, "%s: a line longer than %zu bytes", conn_name(b, i), MAX_REPLY);
}

/* ---- WebSocket (--ws) -------------------------------------------------- */

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  /* RFC 6455, 1.3 */
#define WS_HEAD_MAX 8192        /* the server's answer to the upgrade */

struct ws {
  wslay_frame_context_ptr fc;   /* wslay's framing state, while connected */
  struct conn *c;
  const char *in;               /* ws_input: rbuf bytes not given to wslay */
  size_t inlen;
  uint64_t foff;                /* payload bytes of the current frame so far */
  int msg_op;                   /* opcode of the message being assembled, -1 */
  char *msg;                    /* its payload so far (fragments, parts) */
  size_t mlen, mcap;
  uint8_t ctl[125];             /* a control frame's payload so far */
  size_t ctllen;
  char key[32];                 /* Sec-WebSocket-Key sent: base64, 24 bytes */
};

static uint64_t ws_rng;         /* xorshift64 state: masks and keys */

static void ws_seed(void)
{
  if (RAND_bytes((unsigned char *)&ws_rng, sizeof ws_rng) != 1)
    ERR_clear_error();
  ws_rng ^= now_ns() ^ ((uint64_t)getpid() << 32);
  if (ws_rng == 0)
    ws_rng = 0x9e3779b97f4a7c15ull;
}

static uint64_t ws_rand(void)
{
  ws_rng ^= ws_rng << 13;
  ws_rng ^= ws_rng >> 7;
  ws_rng ^= ws_rng << 17;
  return ws_rng;
}

/* wslay's output: append to the connection's wbuf, whole. */
static ssize_t ws_send_cb(const uint8_t *data, size_t len, int flags,
                          void *user)
{
  struct conn *c = ((struct ws *)user)->c;
  (void)flags;
  buf_reserve(&c->wbuf, &c->wcap, c->wlen + len);
  memcpy(c->wbuf + c->wlen, data, len);
  c->wlen += len;
  return (ssize_t)len;
}

/* wslay's input: what ws_input offers from rbuf; -1 (wslay: want read)
 * once it is all taken. */
static ssize_t ws_recv_cb(uint8_t *buf, size_t len, int flags, void *user)
{
  struct ws *w = user;
  (void)flags;
  if (w->inlen == 0)
    return -1;
  if (len > w->inlen)
    len = w->inlen;
  memcpy(buf, w->in, len);
  w->in += len;
  w->inlen -= len;
  return (ssize_t)len;
}

static int ws_genmask_cb(uint8_t *buf, size_t len, void *user)
{
  (void)user;
  while (len > 0) {
    uint64_t r = ws_rand();
    size_t n = len < sizeof r ? len : sizeof r;
    memcpy(buf, &r, n);
    buf += n;
    len -= n;
  }
  return 0;
}

static const struct wslay_frame_callbacks ws_callbacks = {
  ws_send_cb, ws_recv_cb, ws_genmask_cb
};

/* Connection i is about to connect with --ws: fresh WebSocket state (the
 * struct stays allocated for the process' life, as the buffers do). */
static int ws_begin(struct bench *b, int i)
{
  struct conn *c = &b->c[i];
  struct ws *w = c->ws;
  if (w == NULL) {
    w = calloc(1, sizeof *w);
    if (w == NULL) {
      fail(b, "out of memory for %s's WebSocket state", conn_name(b, i));
      return -1;
    }
    c->ws = w;
    w->c = c;
  }
  w->foff = w->mlen = w->ctllen = w->inlen = 0;
  w->msg_op = -1;
  if (wslay_frame_context_init(&w->fc, &ws_callbacks, w) != 0) {
    w->fc = NULL;
    fail(b, "out of memory for %s's WebSocket framing", conn_name(b, i));
    return -1;
  }
  return 0;
}

/* Connection c is closed: drop its framing state. */
static void ws_end(struct conn *c)
{
  if (c->ws->fc != NULL) {
    wslay_frame_context_free(c->ws->fc);
    c->ws->fc = NULL;
  }
}

static void ws_free(struct ws *w)
{
  if (w == NULL)
    return;
  if (w->fc != NULL)
    wslay_frame_context_free(w->fc);
  free(w->msg);
  free(w);
}

/* Queue one masked frame (fin set) of opcode on connection i: wslay writes
 * its header and masked payload into wbuf; then as conn_send. */
static void ws_send(struct bench *b, int i, int opcode, const char *data,
                    size_t len, int defer)
{
  struct conn *c = &b->c[i];
  struct wslay_frame_iocb io;
  ssize_t r;
  memset(&io, 0, sizeof io);
  io.fin = 1;
  io.opcode = (uint8_t)opcode;
  io.mask = 1;
  io.payload_length = len;
  io.data = (const uint8_t *)data;
  io.data_length = len;
  r = wslay_frame_send(c->ws->fc, &io);
  if (r != (ssize_t)len) {
    fail(b, "%s: wslay_frame_send failed (%zd)", conn_name(b, i), r);
    return;
  }
  conn_queued(b, i, defer);
}

/* The TCP (or TLS) connection i is up: send the upgrade request. */
static void ws_upgrade(struct bench *b, int i)
{
  struct conn *c = &b->c[i];
  unsigned char raw[16];
  char req[768];
  uint64_t r1 = ws_rand(), r2 = ws_rand();
  int v6 = strchr(b->o.host, ':') != NULL, n;
  memcpy(raw, &r1, 8);
  memcpy(raw + 8, &r2, 8);
  EVP_EncodeBlock((unsigned char *)c->ws->key, raw, sizeof raw);
  n = snprintf(req, sizeof req, "GET /ws HTTP/1.1\r\n"
               "Host: %s%s%s:%ld\r\n"
               "Upgrade: websocket\r\n"
               "Connection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n",
               v6 ? "[" : "", b->o.host, v6 ? "]" : "", b->o.port,
               c->ws->key);
  if (n < 0 || (size_t)n >= sizeof req) {
    fail(b, "--host too long for the upgrade request");
    return;
  }
  c->state = CS_UPGRADE;
  conn_send(b, i, req, (size_t)n, 0);
}

/* The value of header `name` (with its colon) in the head p[0..len), its
 * blanks trimmed, into *vlen; or NULL. Names are case-insensitive. */
static const char *http_header(const char *p, size_t len, const char *name,
                               size_t *vlen)
{
  const char *end = p + len, *line = p;
  size_t nl = strlen(name);
  while (line < end) {
    const char *eol = memchr(line, '\n', (size_t)(end - line));
    const char *v, *ve;
    if (eol == NULL)
      eol = end;
    if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0) {
      v = line + nl;
      ve = eol;
      while (v < ve && (*v == ' ' || *v == '\t'))
        v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
      *vlen = (size_t)(ve - v);
      return v;
    }
    line = eol + 1;
  }
  return NULL;
}

/* Connection i waits for the answer to its upgrade: once the head is whole
 * in rbuf, check the 101 status and the Sec-WebSocket-Accept value, drop
 * the head from rbuf (frames may follow it) and greet. Returns 0 once
 * upgraded, -1 when the head is not whole yet or the run failed. */
static int ws_upgraded(struct bench *b, int i)
{
  struct conn *c = &b->c[i];
  const char *head = c->rbuf, *eoh, *v;
  size_t hlen, vlen, first;
  char cat[sizeof ((struct ws *)0)->key + sizeof WS_GUID], want[32];
  unsigned char md[SHA_DIGEST_LENGTH];
  eoh = memmem(head, c->rlen, "\r\n\r\n", 4);
  if (eoh == NULL) {
    if (c->rlen > WS_HEAD_MAX)
      fail(b, "%s: no end to the answer to the upgrade within %d bytes",
           conn_name(b, i), WS_HEAD_MAX);
    return -1;
  }
  hlen = (size_t)(eoh - head) + 4;
  first = strcspn(head, "\r");  /* eoh bounds it: the head has a '\r' */
  if (hlen < 12 || (memcmp(head, "HTTP/1.1 101", 12) != 0 &&
                    memcmp(head, "HTTP/1.0 101", 12) != 0)) {
    fail(b, "%s: the upgrade to WebSocket was refused: %.*s",
         conn_name(b, i), first > 200 ? 200 : (int)first, head);
    return -1;
  }
  snprintf(cat, sizeof cat, "%s%s", c->ws->key, WS_GUID);
  SHA1((const unsigned char *)cat, strlen(cat), md);
  EVP_EncodeBlock((unsigned char *)want, md, sizeof md);
  v = http_header(head, hlen - 2, "Sec-WebSocket-Accept:", &vlen);
  if (v == NULL || vlen != strlen(want) || memcmp(v, want, vlen) != 0) {
    fail(b, "%s: the upgrade's Sec-WebSocket-Accept is %s%.*s%s; RFC 6455 "
         "wants %s for the key %s", conn_name(b, i), v ? "'" : "missing",
         v ? (int)vlen : 0, v ? v : "", v ? "'" : "", want, c->ws->key);
    return -1;
  }
  memmove(c->rbuf, c->rbuf + hlen, c->rlen - hlen);
  c->rlen -= hlen;
  c->state = CS_GREETING;
  send_greeting(b, i);
  return b->failed ? -1 : 0;
}

/* One complete text message from the server: one line of the protocol. */
static void ws_message(struct bench *b, int i, const char *p, size_t len,
                       uint64_t now)
{
  while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
    len--;                      /* none is sent; one would be tolerated */
  herald_frame(b, i, p, len, now);
}

/* One piece of a frame, as wslay_frame_recv hands it out: a whole frame
 * when it came whole (then a one-frame text message is taken where wslay
 * holds it), else parts, gathered here. */
static void ws_chunk(struct bench *b, int i,
                     const struct wslay_frame_iocb *io, uint64_t now)
{
  struct conn *c = &b->c[i];
  struct ws *w = c->ws;
  int start = w->foff == 0, end;
  w->foff += io->data_length;
  end = w->foff == io->payload_length;
  if (end)
    w->foff = 0;
  if (start && (io->rsv != 0 || io->mask)) {
    fail(b, "%s: a WebSocket frame %s from the server", conn_name(b, i),
         io->mask ? "masked" : "with reserved bits");
    return;
  }
  if (wslay_is_ctrl_frame(io->opcode)) {
    /* wslay has checked: at most 125 bytes, not fragmented */
    memcpy(w->ctl + w->ctllen, io->data, io->data_length);
    w->ctllen += io->data_length;
    if (!end)
      return;
    if (io->opcode == WSLAY_PING) {
      ws_send(b, i, WSLAY_PONG, (const char *)w->ctl, w->ctllen, 0);
    } else if (io->opcode == WSLAY_CONNECTION_CLOSE) {
      fail(b, "%s: the server closed the WebSocket (code %d%s%.*s)",
           conn_name(b, i), w->ctllen >= 2 ? w->ctl[0] << 8 | w->ctl[1] : 0,
           w->ctllen > 2 ? ": " : "",
           w->ctllen > 2 ? (int)w->ctllen - 2 : 0, (const char *)w->ctl + 2);
    } else if (io->opcode != WSLAY_PONG) {
      fail(b, "%s: a WebSocket frame of opcode %d from the server",
           conn_name(b, i), io->opcode);
    }
    w->ctllen = 0;
    return;
  }
  if (start) {
    if (io->opcode == WSLAY_TEXT_FRAME && w->msg_op < 0) {
      if (end && io->fin) {     /* the usual case: no copy */
        ws_message(b, i, (const char *)io->data, io->data_length, now);
        return;
      }
      w->msg_op = io->opcode;
    } else if (io->opcode != WSLAY_CONTINUATION_FRAME || w->msg_op < 0) {
      fail(b, "%s: a WebSocket frame of opcode %d from the server%s",
           conn_name(b, i), io->opcode,
           w->msg_op < 0 ? "" : " inside a fragmented message");
      return;
    }
  }
  if (w->mlen + io->data_length > MAX_REPLY) {
    fail(b, "%s: a message longer than %zu bytes", conn_name(b, i),
         MAX_REPLY);
    return;
  }
  buf_reserve(&w->msg, &w->mcap, w->mlen + io->data_length);
  memcpy(w->msg + w->mlen, io->data, io->data_length);
  w->mlen += io->data_length;
  if (end && io->fin) {
    size_t n = w->mlen;
    w->mlen = 0;
    w->msg_op = -1;
    ws_message(b, i, w->msg, n, now);
  }
}

/* conn_input for a --ws connection: the answer to the upgrade first, then
 * every byte of rbuf through wslay's frame reader (which keeps a partial
 * frame's head itself); rbuf is left empty. */
static void ws_input(struct bench *b, int i, uint64_t now)
{
  struct conn *c = &b->c[i];
  struct ws *w = c->ws;
  if (c->state == CS_UPGRADE && ws_upgraded(b, i) < 0)
    return;
  w->in = c->rbuf;
  w->inlen = c->rlen;
  for (;;) {
    struct wslay_frame_iocb io;
    ssize_t r = wslay_frame_recv(w->fc, &io);
    if (r == WSLAY_ERR_WANT_READ)
      break;
    if (r < 0) {
      fail(b, "%s: a malformed WebSocket frame from the server (wslay "
           "error %zd)", conn_name(b, i), r);
      return;
    }
    ws_chunk(b, i, &io, now);
    if (b->failed || c->state == CS_FREE)
      return;
  }
  c->rlen = 0;
}

/* ---- Redis replies ----------------------------------------------------- */

struct rval {
  char type;                    /* '+', '-', ':', '$' or '*' */
  const char *str;              /* simple, error or bulk string */
  size_t len;
  int64_t num;                  /* integer; bulk or array length, -1 nil */
};

static int parse_len(const char *p, const char *end, int64_t *out)
{
  int neg = 0;
  int64_t x = 0;
  if (p < end && *p == '-') {
    neg = 1;
    p++;
  }
  if (p >= end)
    return -1;
  while (p < end) {
    if (*p < '0' || *p > '9' || x > INT64_MAX / 10 - 9)
      return -1;
    x = x * 10 + (*p++ - '0');
  }
  *out = neg ? -x : x;
  return 0;
}

/* Parse one RESP2 value at p[0..n) into v, and the first nkids elements of
 * an array into kids. Returns the bytes it spans, 0 when it is not complete
 * yet, -1 when it is malformed. A bulk string costs O(1) whatever its size,
 * so re-parsing a growing CLIENT LIST reply on each read stays cheap. */
static long resp_parse(const char *p, size_t n, struct rval *v,
                       struct rval *kids, int nkids, int depth)
{
  const char *lf = memchr(p, '\n', n);
  const char *hend;
  size_t hdr;
  int64_t k;
  if (lf == NULL)
    return 0;
  if (lf == p || lf[-1] != '\r' || depth > 8)
    return -1;
  hend = lf - 1;
  hdr = (size_t)(lf - p) + 1;
  v->type = p[0];
  v->str = p + 1;
  v->len = (size_t)(hend - (p + 1));
  v->num = 0;
  switch (p[0]) {
  case '+':
  case '-':
    return (long)hdr;
  case ':':
    return parse_len(p + 1, hend, &v->num) < 0 ? -1 : (long)hdr;
  case '$':
    if (parse_len(p + 1, hend, &v->num) < 0)
      return -1;
    if (v->num < 0)
      return (long)hdr;
    if ((size_t)v->num > MAX_REPLY)
      return -1;
    if (n < hdr + (size_t)v->num + 2)
      return 0;
    v->str = p + hdr;
    v->len = (size_t)v->num;
    if (p[hdr + v->len] != '\r' || p[hdr + v->len + 1] != '\n')
      return -1;
    return (long)(hdr + v->len + 2);
  case '*': {
    size_t off = hdr;
    if (parse_len(p + 1, hend, &v->num) < 0)
      return -1;
    for (k = 0; k < v->num; k++) {
      struct rval kid;
      long r = resp_parse(p + off, n - off, &kid, NULL, 0, depth + 1);
      if (r <= 0)
        return r;
      if (kids != NULL && k < nkids)
        kids[k] = kid;
      off += (size_t)r;
    }
    return (long)off;
  }
  default:
    return -1;
  }
}

static int rval_is(const struct rval *v, const char *s)
{
  size_t n = strlen(s);
  return v->len == n && memcmp(v->str, s, n) == 0;
}

static void redis_reply(struct bench *b, int i, const struct rval *v,
                        const struct rval *kids, uint64_t now)
{
  struct conn *c = &b->c[i];
  if (v->type == '-') {
    fail(b, "%s: redis replied: %.*s", conn_name(b, i),
         v->len > 300 ? 300 : (int)v->len, v->str);
    return;
  }
  if (v->type == '*' && v->num >= 3 && kids[0].type == '$') {
    if (rval_is(&kids[0], "message") && kids[2].type == '$')
      fanout_got(b, i, text_round(kids[2].str, kids[2].str + kids[2].len),
                 now);
    else if (rval_is(&kids[0], "subscribe"))
      conn_greeted(b, i, now);
    return;
  }
  if (c->state == CS_GREETING) {
    if (v->type == '+' && rval_is(v, "PONG"))
      conn_greeted(b, i, now);
    return;
  }
  if (c->outstanding > 0)
    c->outstanding--;
  if (b->sha_wait && v->type == '$' && v->len == 40) {
    memcpy(b->sha, v->str, 40);
    b->sha[40] = '\0';
    b->sha_wait = 0;
    return;
  }
  reply_done(b, i, v->type == '$' ? v->len : 0, now);
}

static void redis_input(struct bench *b, int i, uint64_t now)
{
  struct conn *c = &b->c[i];
  size_t off = 0;
  while (off < c->rlen) {
    struct rval v, kids[3];
    long r;
    memset(kids, 0, sizeof kids);
    r = resp_parse(c->rbuf + off, c->rlen - off, &v, kids, 3, 0);
    if (r == 0)
      break;
    if (r < 0) {
      fail(b, "%s: malformed reply from redis", conn_name(b, i));
      return;
    }
    redis_reply(b, i, &v, kids, now);
    if (b->failed || c->state == CS_FREE)
      return;
    off += (size_t)r;
  }
  if (off > 0) {
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
  }
}

/* Hand connection i's new input to the parser of its target. Returns -1
 * when the connection is gone or the run failed. */
static int conn_input(struct bench *b, int i)
{
  uint64_t now = now_ns();
  if (b->c[i].ws != NULL)
    ws_input(b, i, now);
  else if (b->o.target == T_HERALD)
    herald_input(b, i, now);
  else
    redis_input(b, i, now);
  return b->failed || b->c[i].state == CS_FREE ? -1 : 0;
}

/* conn_readable for a TLS connection. With read ahead, one read() takes
 * every record the socket has (up to OpenSSL's buffer), and SSL_read hands
 * them out one at a time: go on while SSL_has_pending() says OpenSSL holds
 * bytes that epoll cannot announce, or the offered space was filled. */
static void tls_readable(struct bench *b, int i)
{
  struct conn *c = &b->c[i];
  for (;;) {
    size_t room;
    int n;
    if (c->state == CS_CLOSING)
      c->rlen = c->scan = 0;    /* discard: only EOF matters now */
    buf_reserve(&c->rbuf, &c->rcap, c->rlen + READ_MIN);
    room = c->rcap - c->rlen;
    if (room > INT_MAX)
      room = INT_MAX;
    n = SSL_read(c->ssl, c->rbuf + c->rlen, (int)room);
    if (n <= 0) {
      int e = SSL_get_error(c->ssl, n);
      if (e == SSL_ERROR_WANT_READ)
        break;
      if (e == SSL_ERROR_WANT_WRITE) {
        c->rd_want_write = 1;
        conn_watch(b, i, EPOLLIN | EPOLLOUT);
        return;
      }
      if (c->state == CS_CLOSING) {
        ERR_clear_error();
        conn_close(b, i);
      } else if (e == SSL_ERROR_ZERO_RETURN) {
        fail(b, "%s: the server closed the connection", conn_name(b, i));
      } else {
        fail(b, "read from %s failed: %s", conn_name(b, i), tls_why(c, n));
      }
      return;
    }
    c->rlen += (size_t)n;
    if (c->state != CS_CLOSING && conn_input(b, i) < 0)
      return;
    if ((size_t)n < room && !SSL_has_pending(c->ssl))
      break;
  }
  if (c->wr_want_read)          /* a write waited for this input */
    tls_flush(b, i);
}

/* conn_flush for a TLS connection: SSL_write with partial writes, so that
 * a full socket leaves the rest in wbuf as for plaintext. A write retried
 * after WANT_WRITE offers the same bytes first (wbuf only grows at its
 * end, and may move: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER). */
static void tls_flush(struct bench *b, int i)
{
  struct conn *c = &b->c[i];
  uint32_t want;
  if (c->rd_want_write) {       /* a read waited for writability */
    c->rd_want_write = 0;
    tls_readable(b, i);
    if (b->failed || c->state == CS_FREE)
      return;
  }
  c->wr_want_read = 0;
  while (c->woff < c->wlen) {
    size_t len = c->wlen - c->woff;
    int n = SSL_write(c->ssl, c->wbuf + c->woff,
                      len > INT_MAX ? INT_MAX : (int)len);
    if (n <= 0) {
      int e = SSL_get_error(c->ssl, n);
      if (e == SSL_ERROR_WANT_WRITE)
        break;
      if (e == SSL_ERROR_WANT_READ) {
        c->wr_want_read = 1;
        break;
      }
      if (c->state == CS_CLOSING) {
        ERR_clear_error();
        conn_close(b, i);
        return;
      }
      fail(b, "write to %s failed: %s", conn_name(b, i), tls_why(c, n));
      return;
    }
    c->woff += (size_t)n;
  }
  if (c->woff == c->wlen) {
    c->woff = c->wlen = 0;
    if (c->shut_pending) {
      SSL_shutdown(c->ssl);     /* close_notify; the server's EOF follows */
      ERR_clear_error();
      shutdown(c->fd, SHUT_WR);
      c->shut_pending = 0;
    }
    want = EPOLLIN;
  } else {
    want = c->wr_want_read ? EPOLLIN : EPOLLIN | EPOLLOUT;
  }
  conn_watch(b, i, c->rd_want_write ? want | EPOLLOUT : want);
}

/* Read what connection i has; at most one recv() that does not fill the
 * offered space, so that a quiet socket costs a single system call. */
static void conn_readable(struct bench *b, int i)
{
  struct conn *c = &b->c[i];
  if (c->ssl != NULL) {
    tls_readable(b, i);
    return;
  }
  for (;;) {
    size_t room;
    ssize_t n;
    if (c->state == CS_CLOSING)
      c->rlen = c->scan = 0;    /* discard: only EOF matters now */
    buf_reserve(&c->rbuf, &c->rcap, c->rlen + READ_MIN);
    room = c->rcap - c->rlen;
    n = recv(c->fd, c->rbuf + c->rlen, room, 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      if (c->state == CS_CLOSING) {
        conn_close(b, i);
        return;
      }
      fail(b, "read from %s failed: %s", conn_name(b, i), strerror(errno));
      return;
    }
    if (n == 0) {
      if (c->state == CS_CLOSING)
        conn_close(b, i);
      else
        fail(b, "%s: the server closed the connection", conn_name(b, i));
      return;
    }
    c->rlen += (size_t)n;
    if (c->state != CS_CLOSING) {
      uint64_t now = now_ns();
      if (c->ws != NULL)
        ws_input(b, i, now);
      else if (b->o.target == T_HERALD)
        herald_input(b, i, now);
      else
        redis_input(b, i, now);
      if (b->failed || c->state == CS_FREE)
        return;
    }
    if ((size_t)n < room)
      return;
  }
}

/* Wait for events at most timeout_ms and handle them. Returns -1 once a
 * failure is recorded. */
static int loop_once(struct bench *b, int timeout_ms)
{
  struct epoll_event ev[EVMAX];
  int n = epoll_wait(b->ep, ev, EVMAX, timeout_ms), k;
  if (n < 0) {
    if (errno == EINTR)
      return 0;
    fail(b, "epoll_wait failed: %s", strerror(errno));
    return -1;
  }
  for (k = 0; k < n && !b->failed; k++) {
    int i = (int)ev[k].data.u32;
    struct conn *c = &b->c[i];
    if (c->state == CS_FREE)
      continue;
    if (c->state == CS_CONNECTING) {
      conn_connected(b, i);
      continue;
    }
    if (c->state == CS_HANDSHAKE) {
      tls_handshake(b, i);
      continue;
    }
    if (ev[k].events & EPOLLOUT)
      conn_flush(b, i);
    if (c->state != CS_FREE &&
        (ev[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
      conn_readable(b, i);
  }
  return b->failed ? -1 : 0;
}

/* Milliseconds from now until deadline for epoll_wait, capped at cap_ms so
 * that callers re-check their own conditions. */
static int wait_ms(uint64_t deadline, int cap_ms)
{
  uint64_t now = now_ns(), ms;
  if (now >= deadline)
    return 0;
  ms = (deadline - now + NS_PER_MS - 1) / NS_PER_MS;
  return ms > (uint64_t)cap_ms ? cap_ms : (int)ms;
}

/* Run the loop until done(b) holds (0), the deadline passes (1) or a
 * failure is recorded (-1). A NULL done runs until the deadline. */
static int run_until(struct bench *b, int (*done)(struct bench *),
                     uint64_t deadline)
{
  for (;;) {
    if (done != NULL && done(b))
      return 0;
    if (now_ns() >= deadline)
      return done == NULL ? 0 : 1;
    if (loop_once(b, wait_ms(deadline, 100)) < 0)
      return -1;
  }
}

/* Connect and greet connections lo..hi-1 with at most --inflight of them
 * not yet greeted at any time. Each must be greeted within --timeout of its
 * connect, or the whole run fails. */
static int connect_range(struct bench *b, int lo, int hi)
{
  int next = lo, oldest = lo, base = b->nready;
  while (b->nready - base < hi - lo) {
    uint64_t now;
    while (next < hi && (next - lo) - (b->nready - base) < b->o.inflight) {
      conn_start(b, next++);
      if (b->failed)
        return -1;
    }
    while (oldest < next && b->c[oldest].state == CS_READY)
      oldest++;
    now = now_ns();
    if (oldest < next && now - b->c[oldest].t_start >= b->timeout_ns) {
      fail(b, "%s: not %s within %g s (%d of %d greeted)",
           conn_name(b, oldest),
           b->c[oldest].state == CS_CONNECTING ? "connected" :
           b->c[oldest].state == CS_HANDSHAKE ? "through its TLS handshake" :
           b->c[oldest].state == CS_UPGRADE ? "upgraded to WebSocket" :
           "greeted",
           b->o.timeout, b->nready - base, hi - lo);
      return -1;
    }
    if (loop_once(b, oldest < next ?
                  wait_ms(b->c[oldest].t_start + b->timeout_ns, 100) : 100)
        < 0)
      return -1;
  }
  return 0;
}

/* Send connection i's next request: a call of --method (herald), EVALSHA
 * (Redis, calls mode) or CLIENT LIST (Redis, list mode). */
static void send_request(struct bench *b, int i)
{
  struct conn *c = &b->c[i];
  int n;
  c->t_start = now_ns();
  if (b->o.target == T_HERALD) {
    c->call_id = ++b->next_id;
    n = snprintf(b->fbuf, b->fcap, "{\"type\":\"call\",\"id\":%" PRId64
                 ",\"method\":\"%s\",\"args\":[]}\n", c->call_id,
                 b->o.method);
  } else if (b->o.mode == M_CALLS) {
    c->outstanding++;
    n = snprintf(b->fbuf, b->fcap, "*3\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n"
                 "$1\r\n0\r\n", b->sha);
  } else {
    c->outstanding++;
    n = snprintf(b->fbuf, b->fcap, "*2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n");
  }
  frame_send(b, i, b->fbuf, (size_t)n, 0);
}

/* ---- modes ------------------------------------------------------------- */

static int round_complete(struct bench *b)
{
  return b->got >= b->o.clients;
}

static int reply_arrived(struct bench *b)
{
  return b->reply_done;
}

static int sha_arrived(struct bench *b)
{
  return !b->sha_wait;
}

static int all_closed(struct bench *b)
{
  return b->nclosing == 0;
}

static void print_head(const struct bench *b)
{
  printf("target=%s mode=%s%s%s", target_names[b->o.target],
         mode_names[b->o.mode], b->tls != NULL ? " tls=1" : "",
         b->o.ws ? " ws=1" : "");
}

static void print_greet(struct bench *b, uint64_t connect_ns)
{
  printf(" connect_ms=%.1f connects_per_s=%.0f greet_median_us=%.1f"
         " greet_p99_us=%.1f", (double)connect_ns / 1e6,
         connect_ns ? (double)b->greet.n * 1e9 / (double)connect_ns : 0.0,
         pct_us(&b->greet, 50), pct_us(&b->greet, 99));
  if (b->tls_version != NULL)
    printf(" tls_version=%s tls_cipher=%s", b->tls_version, b->tls_cipher);
}

/* --phases: print a line ending phase=name; with wait, keep serving the
 * connections until a line or end of file arrives on stdin (the caller has
 * read what it wanted), at most --timeout. Returns -1 on failure. */
static int phase(struct bench *b, const char *name, int wait)
{
  uint64_t deadline;
  if (!b->o.phases)
    return 0;
  print_head(b);
  printf(" phase=%s\n", name);
  fflush(stdout);
  if (!wait)
    return 0;
  deadline = now_ns() + b->timeout_ns;
  for (;;) {
    struct pollfd pf;
    int r;
    pf.fd = 0;
    pf.events = POLLIN;
    pf.revents = 0;
    r = poll(&pf, 1, 0);
    if (r > 0) {
      char buf[256];
      ssize_t n = read(0, buf, sizeof buf);
      if (n <= 0 || memchr(buf, '\n', (size_t)n) != NULL)
        return 0;
      continue;
    }
    if (r < 0 && errno != EINTR) {
      fail(b, "poll on stdin failed: %s", strerror(errno));
      return -1;
    }
    if (now_ns() >= deadline) {
      fail(b, "no line on stdin within %g s after phase=%s", b->o.timeout,
           name);
      return -1;
    }
    if (run_until(b, NULL, now_ns() + NS_PER_MS) < 0)
      return -1;
  }
}

/* Connect the control connection (if any), then time connecting and
 * greeting clients 0..count-1 into *connect_ns. */
static int connect_all(struct bench *b, long count, uint64_t *connect_ns)
{
  uint64_t t;
  if (b->ctl >= 0 && connect_range(b, b->ctl, b->ctl + 1) < 0)
    return -1;
  t = now_ns();
  if (connect_range(b, 0, (int)count) < 0)
    return -1;
  *connect_ns = now_ns() - t;
  return 0;
}

static int mode_connect(struct bench *b)
{
  uint64_t connect_ns;
  if (connect_all(b, b->o.clients, &connect_ns) < 0)
    return -1;
  print_head(b);
  printf(" clients=%ld", b->o.clients);
  print_greet(b, connect_ns);
  printf(" status=ok\n");
  return 0;
}

/* Connect and greet the clients, print a line saying so (the caller's cue
 * to start watching the server), then keep every connection open and idle
 * for --seconds: pings are answered, nothing else is sent. A connection the
 * server closes meanwhile fails the run, so a held count is a true count. */
static int mode_hold(struct bench *b)
{
  uint64_t connect_ns, t;
  if (connect_all(b, b->o.clients, &connect_ns) < 0)
    return -1;
  print_head(b);
  printf(" clients=%ld", b->o.clients);
  print_greet(b, connect_ns);
  printf(" phase=held\n");
  t = now_ns();
  if (run_until(b, NULL, t + (uint64_t)(b->o.seconds * 1e9)) < 0)
    return -1;
  print_head(b);
  printf(" clients=%ld seconds=%.2f status=ok\n", b->o.clients,
         (double)(now_ns() - t) / 1e9);
  return 0;
}

/* Send round r's trigger on the control connection: a 100-byte (by
 * default) text naming the round, broadcast (herald) or published (Redis).
 * Fan-out texts contain only [a-z0-9-], so they need no JSON escaping. */
static void send_trigger(struct bench *b, int64_t r)
{
  struct conn *c = &b->c[b->ctl];
  size_t tl = (size_t)b->o.text_size;
  int n = snprintf(b->text, tl + 1, "bench-r%06" PRId64 "-", r);
  memset(b->text + n, 'x', tl - (size_t)n);
  b->text[tl] = '\0';
  if (b->o.target == T_HERALD) {
    c->call_id = ++b->next_id;
    n = snprintf(b->fbuf, b->fcap, "{\"type\":\"call\",\"id\":%" PRId64
                 ",\"method\":\"broadcast\",\"args\":[\"%s\"]}\n",
                 c->call_id, b->text);
  } else {
    c->outstanding++;
    n = snprintf(b->fbuf, b->fcap, "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n%s\r\n"
                 "$%zu\r\n%s\r\n", strlen(CHANNEL), CHANNEL, tl, b->text);
  }
  b->t0 = now_ns();
  frame_send(b, b->ctl, b->fbuf, (size_t)n, 0);
}

static int mode_fanout(struct bench *b)
{
  uint64_t connect_ns;
  int64_t r;
  if (connect_all(b, b->o.clients, &connect_ns) < 0)
    return -1;
  for (r = 1; r <= b->o.warmup + b->o.rounds; r++) {
    int rc;
    if (r == b->o.warmup + 1 && phase(b, "measuring", 1) < 0)
      return -1;
    b->round = r;
    b->got = 0;
    b->round_open = 1;
    send_trigger(b, r);
    rc = run_until(b, round_complete, b->t0 + b->timeout_ns);
    b->round_open = 0;
    if (rc == 1)
      fail(b, "round %" PRId64 " timed out after %g s: %ld of %ld clients "
           "received the message", r, b->o.timeout, b->got, b->o.clients);
    if (rc != 0)
      return -1;
    flush_dirty(b);
    if (r > b->o.warmup) {
      samples_add(&b->first, b->t_first - b->t0);
      samples_add(&b->last, b->t_last - b->t0);
      print_head(b);
      printf(" clients=%ld round=%" PRId64 " first_us=%.1f last_us=%.1f\n",
             b->o.clients, r - b->o.warmup,
             (double)(b->t_first - b->t0) / 1e3,
             (double)(b->t_last - b->t0) / 1e3);
    }
    if (run_until(b, NULL, now_ns() + (uint64_t)b->o.gap_ms * NS_PER_MS) < 0)
      return -1;
  }
  if (phase(b, "measured", 1) < 0)
    return -1;
  print_head(b);
  printf(" clients=%ld rounds=%ld warmup=%ld text_size=%ld", b->o.clients,
         b->o.rounds, b->o.warmup, b->o.text_size);
  print_greet(b, connect_ns);
  printf(" first_median_us=%.1f last_median_us=%.1f last_p99_us=%.1f"
         " last_max_us=%.1f status=ok\n", pct_us(&b->first, 50),
         pct_us(&b->last, 50), pct_us(&b->last, 99), pct_us(&b->last, 100));
  return 0;
}

/* Fail if some connection has waited --timeout for its reply. */
static int check_stuck(struct bench *b, uint64_t now)
{
  int i;
  for (i = 0; i < b->o.conns; i++) {
    struct conn *c = &b->c[i];
    int waiting = b->o.target == T_HERALD ? c->call_id != 0
                                          : c->outstanding > 0;
    if (waiting && now - c->t_start >= b->timeout_ns) {
      fail(b, "%s: no reply within %g s", conn_name(b, i), b->o.timeout);
      return -1;
    }
  }
  return 0;
}

static int mode_calls(struct bench *b)
{
  uint64_t connect_ns, t_end, stop, next_check;
  int i;
  if (connect_all(b, b->o.conns, &connect_ns) < 0)
    return -1;
  if (b->o.target == T_REDIS) {
    static const char load[] = "*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n"
                               "$8\r\nreturn 1\r\n";
    b->sha_wait = 1;
    b->c[0].outstanding++;
    conn_send(b, 0, load, sizeof load - 1, 0);
    i = run_until(b, sha_arrived, now_ns() + b->timeout_ns);
    if (i == 1)
      fail(b, "no reply to SCRIPT LOAD within %g s", b->o.timeout);
    if (i != 0)
      return -1;
  }
  b->calls_running = 1;
  for (i = 0; i < b->o.conns; i++)
    send_request(b, i);
  stop = now_ns() + (uint64_t)b->o.warmup * NS_PER_S;
  next_check = now_ns();
  for (;;) {
    uint64_t now = now_ns();
    if (!b->recording && now >= stop) {
      b->recording = 1;
      b->t_rec = now;
      stop = now + (uint64_t)(b->o.seconds * 1e9);
      phase(b, "measuring", 0);
    } else if (b->recording && now >= stop) {
      break;
    }
    if (now >= next_check) {
      if (check_stuck(b, now) < 0)
        return -1;
      next_check = now + 100 * NS_PER_MS;
    }
    if (loop_once(b, wait_ms(stop, 100)) < 0)
      return -1;
  }
  t_end = now_ns();
  b->calls_running = b->recording = 0;
  phase(b, "measured", 0);
  print_head(b);
  printf(" conns=%ld seconds=%.2f method=%s", b->o.conns,
         (double)(t_end - b->t_rec) / 1e9,
         b->o.target == T_HERALD ? b->o.method : "evalsha");
  print_greet(b, connect_ns);
  printf(" calls=%" PRIu64 " calls_per_s=%.0f rtt_median_us=%.1f"
         " rtt_p99_us=%.1f status=ok\n", b->completed,
         (double)b->completed * 1e9 / (double)(t_end - b->t_rec),
         pct_us(&b->rtt, 50), pct_us(&b->rtt, 99));
  return 0;
}

static int mode_list(struct bench *b)
{
  uint64_t connect_ns;
  struct samples lat = {NULL, 0, 0, 0};
  int64_t r;
  int rc = -1;
  if (connect_all(b, b->o.clients, &connect_ns) < 0)
    goto done;
  for (r = 1; r <= b->o.warmup + b->o.rounds; r++) {
    int w;
    b->reply_done = 0;
    send_request(b, b->ctl);
    w = run_until(b, reply_arrived, b->c[b->ctl].t_start + b->timeout_ns);
    if (w == 1)
      fail(b, "listing %" PRId64 " got no complete reply within %g s", r,
           b->o.timeout);
    if (w != 0)
      goto done;
    if (r > b->o.warmup)
      samples_add(&lat, b->t_reply - b->c[b->ctl].t_start);
  }
  print_head(b);
  printf(" clients=%ld rounds=%ld warmup=%ld method=%s reply_bytes=%zu",
         b->o.clients, b->o.rounds, b->o.warmup,
         b->o.target == T_HERALD ? b->o.method : "client_list",
         b->reply_bytes);
  print_greet(b, connect_ns);
  printf(" median_us=%.1f p99_us=%.1f status=ok\n", pct_us(&lat, 50),
         pct_us(&lat, 99));
  rc = 0;
done:
  free(lat.v);
  return rc;
}

/* End the sessions cleanly: herald would otherwise keep every dropped
 * connection as a postponed session for resume_timeout seconds, skewing the
 * next run. Send bye, half-close, and wait a little for the server's EOF. */
static void goodbye(struct bench *b)
{
  int i;
  b->failed = 0;                /* the report is out; errors are moot now */
  for (i = 0; i < b->nconn; i++) {
    struct conn *c = &b->c[i];
    if (b->o.target == T_HERALD && c->state == CS_READY) {
      c->state = CS_CLOSING;
      b->nclosing++;
      c->shut_pending = 1;
      frame_send(b, i, "{\"type\":\"bye\"}\n", 15, 0);
    } else {
      conn_close(b, i);
    }
  }
  run_until(b, all_closed, now_ns() + 3 * NS_PER_S);
  for (i = 0; i < b->nconn; i++)
    conn_close(b, i);
}

/* ---- setup ------------------------------------------------------------- */

/* Make room for `need` descriptors: raise the soft limit, and the hard one
 * when allowed (root). */
static int raise_nofile(rlim_t need, char *err, size_t errlen)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
    snprintf(err, errlen, "getrlimit(RLIMIT_NOFILE) failed: %s",
             strerror(errno));
    return -1;
  }
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
    return 0;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
    rl.rlim_max = need;
  rl.rlim_cur = need;
  if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
    struct rlimit cur;
    getrlimit(RLIMIT_NOFILE, &cur);
    snprintf(err, errlen, "cannot raise the open-file limit to %llu for "
             "these connections (hard limit %llu): %s; raise it first, "
             "e.g. 'ulimit -Hn %llu' as root",
             (unsigned long long)need, (unsigned long long)cur.rlim_max,
             strerror(errno), (unsigned long long)need);
    return -1;
  }
  return 0;
}

static int resolve(struct bench *b, char *err, size_t errlen)
{
  struct addrinfo hints, *res = NULL;
  char port[16];
  int rc;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(port, sizeof port, "%ld", b->o.port);
  rc = getaddrinfo(b->o.host, port, &hints, &res);
  if (rc != 0) {
    snprintf(err, errlen, "cannot resolve %s: %s", b->o.host,
             gai_strerror(rc));
    return -1;
  }
  memcpy(&b->addr, res->ai_addr, res->ai_addrlen);
  b->addrlen = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

/* The client context of --tls: TLS 1.2 at least, the server's certificate
 * verified against the CA file and its IP address or name against --host
 * (set once here, copied into every connection); idle connections give
 * their buffers back; partial writes, as with send(). */
static int tls_setup(struct bench *b, char *err, size_t errlen)
{
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  X509_VERIFY_PARAM *vp;
  if (ctx == NULL) {
    snprintf(err, errlen, "SSL_CTX_new failed");
    return -1;
  }
  b->tls = ctx;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
                   SSL_MODE_ENABLE_PARTIAL_WRITE |
                   SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  if (SSL_CTX_load_verify_locations(ctx, b->o.tls_ca, NULL) != 1) {
    char why[256] = "no certificate in it";
    unsigned long e = ERR_peek_last_error();
    if (e != 0)
      ERR_error_string_n(e, why, sizeof why);
    ERR_clear_error();
    snprintf(err, errlen, "--tls %s: cannot load it: %s", b->o.tls_ca, why);
    return -1;
  }
  vp = SSL_CTX_get0_param(ctx);
  if (X509_VERIFY_PARAM_set1_ip_asc(vp, b->o.host) != 1) {
    ERR_clear_error();
    b->tls_sni = 1;
    if (X509_VERIFY_PARAM_set1_host(vp, b->o.host, 0) != 1) {
      ERR_clear_error();
      snprintf(err, errlen, "--tls: cannot check the name '%s'", b->o.host);
      return -1;
    }
  }
  return 0;
}

static void usage(FILE *f)
{
  fprintf(f,
"usage: loadgen [options]\n"
"  --target herald|redis  server kind (default herald)\n"
"  --host HOST            server address (default 127.0.0.1)\n"
"  --port P               server port (default 7400 herald, 6379 redis)\n"
"  --mode fanout|calls|list|connect|hold   what to measure (default "
"fanout)\n"
"  --clients N            fanout/list/connect/hold: client connections "
"(1000)\n"
"  --rounds R             fanout/list: measured rounds (20)\n"
"  --warmup W             fanout/list: unmeasured rounds first (2);\n"
"                         calls: unmeasured seconds first (1)\n"
"  --conns C              calls: connections, one request each in flight "
"(50)\n"
"  --seconds S            calls: measured duration; hold: idle time (10)\n"
"  --text-size B          fanout: message text bytes, >= 16 (100)\n"
"  --method NAME          herald calls/list: method (noop / list_sessions)\n"
"  --inflight K           connects not yet greeted at once (256)\n"
"  --timeout SEC          bound on a round, greeting or reply (10)\n"
"  --gap-ms MS            fanout: pause between rounds (10)\n"
"  --tls CAFILE           connect with TLS, the server's certificate\n"
"                         verified against CAFILE and --host\n"
"  --ws                   herald: WebSocket (GET /ws on --port, herald's\n"
"                         http_listen), one text message per frame\n"
"  --phases               fanout/calls: print phase=measuring and\n"
"                         phase=measured around the measured part; fanout\n"
"                         then waits for a line on stdin each time\n"
"  --help                 this text\n"
"fanout: per round a control connection triggers one message (herald: call\n"
"of method broadcast(text); redis: PUBLISH " CHANNEL ") and the round ends\n"
"when all N clients have it; herald acks are written after the round.\n"
"hold: after connecting, a line ending phase=held; the clients then stay\n"
"idle for --seconds before a last line and a clean close.\n"
"Output: key=value lines on stdout; exit 1 on failure, 2 on bad usage.\n");
}

static int num_arg(const char *name, const char *s, long lo, long hi,
                   long *out)
{
  char *end;
  long v;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
    fprintf(stderr, "loadgen: --%s wants an integer in %ld..%ld, not '%s'\n",
            name, lo, hi, s);
    return -1;
  }
  *out = v;
  return 0;
}

static int real_arg(const char *name, const char *s, double lo, double hi,
                    double *out)
{
  char *end;
  double v;
  errno = 0;
  v = strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi)) {
    fprintf(stderr, "loadgen: --%s wants a number in %g..%g, not '%s'\n",
            name, lo, hi, s);
    return -1;
  }
  *out = v;
  return 0;
}

/* Fill o from argv. Returns 0, 1 after --help, -1 on bad usage (already
 * reported). */
static int parse_args(int argc, char **argv, struct opts *o)
{
  static const struct option lo[] = {
    {"target", required_argument, NULL, 't'},
    {"host", required_argument, NULL, 'H'},
    {"port", required_argument, NULL, 'p'},
    {"mode", required_argument, NULL, 'm'},
    {"clients", required_argument, NULL, 'n'},
    {"rounds", required_argument, NULL, 'r'},
    {"warmup", required_argument, NULL, 'w'},
    {"conns", required_argument, NULL, 'c'},
    {"seconds", required_argument, NULL, 's'},
    {"text-size", required_argument, NULL, 'T'},
    {"method", required_argument, NULL, 'M'},
    {"inflight", required_argument, NULL, 'i'},
    {"timeout", required_argument, NULL, 'o'},
    {"gap-ms", required_argument, NULL, 'g'},
    {"tls", required_argument, NULL, 'S'},
    {"ws", no_argument, NULL, 'W'},
    {"phases", no_argument, NULL, 'P'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}
  };
  int ch, rc = 0;
  const char *p;
  memset(o, 0, sizeof *o);
  o->host = "127.0.0.1";
  o->port = -1;
  o->clients = 1000;
  o->rounds = 20;
  o->warmup = -1;
  o->conns = 50;
  o->seconds = 10;
  o->text_size = 100;
  o->inflight = 256;
  o->timeout = 10;
  o->gap_ms = 10;
  while (rc == 0 && (ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
    switch (ch) {
    case 't':
      if (strcmp(optarg, "herald") == 0)
        o->target = T_HERALD;
      else if (strcmp(optarg, "redis") == 0)
        o->target = T_REDIS;
      else {
        fprintf(stderr, "loadgen: unknown target '%s'\n", optarg);
        rc = -1;
      }
      break;
    case 'm':
      for (ch = 0; ch < NMODES && strcmp(optarg, mode_names[ch]) != 0; ch++)
        ;
      if (ch == NMODES) {
        fprintf(stderr, "loadgen: unknown mode '%s'\n", optarg);
        rc = -1;
      }
      o->mode = (enum mode)ch;
      break;
    case 'H': o->host = optarg; break;
    case 'p': rc = num_arg("port", optarg, 1, 65535, &o->port); break;
    case 'n': rc = num_arg("clients", optarg, 1, 1000000, &o->clients); break;
    case 'r': rc = num_arg("rounds", optarg, 1, 10000000, &o->rounds); break;
    case 'w': rc = num_arg("warmup", optarg, 0, 1000000, &o->warmup); break;
    case 'c': rc = num_arg("conns", optarg, 1, 1000000, &o->conns); break;
    case 's': rc = real_arg("seconds", optarg, 0.01, 1e6, &o->seconds); break;
    case 'T':
      rc = num_arg("text-size", optarg, 16, 1 << 20, &o->text_size);
      break;
    case 'M': o->method = optarg; break;
    case 'i': rc = num_arg("inflight", optarg, 1, 1000000, &o->inflight); break;
    case 'o': rc = real_arg("timeout", optarg, 0.001, 3600, &o->timeout); break;
    case 'g': rc = num_arg("gap-ms", optarg, 0, 60000, &o->gap_ms); break;
    case 'S': o->tls_ca = optarg; break;
    case 'W': o->ws = 1; break;
    case 'P': o->phases = 1; break;
    case 'h':
      usage(stdout);
      return 1;
    default:
      usage(stderr);
      return -1;
    }
  }
  if (rc != 0)
    return -1;
  if (optind < argc) {
    fprintf(stderr, "loadgen: unexpected argument '%s'\n", argv[optind]);
    return -1;
  }
  if (o->ws && o->target != T_HERALD) {
    fprintf(stderr, "loadgen: --ws is for --target herald only\n");
    return -1;
  }
  if (o->port < 0)
    o->port = o->target == T_HERALD ? 7400 : 6379;
  if (o->warmup < 0)
    o->warmup = o->mode == M_CALLS ? 1 : 2;
  if (o->method == NULL)
    o->method = o->mode == M_LIST ? "list_sessions" : "noop";
  /* The name goes into a JSON string verbatim: keep it to plain names. */
  for (p = o->method; *p; p++) {
    if (!(*p == '_' || *p == '.' || *p == '-' || (*p >= '0' && *p <= '9') ||
          (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))) {
      fprintf(stderr, "loadgen: --method '%s': only letters, digits, "
              "'_', '.' and '-' are accepted\n", o->method);
      return -1;
    }
  }
  if (*o->method == '\0' || strlen(o->method) > 128) {
    fprintf(stderr, "loadgen: --method wants a name of 1..128 bytes\n");
    return -1;
  }
  return 0;
}

int main(int argc, char **argv)
{
  struct bench b;
  char err[512];
  long n;
  int i, rc;
  memset(&b, 0, sizeof b);
  rc = parse_args(argc, argv, &b.o);
  if (rc != 0)
    return rc > 0 ? 0 : 2;
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  n = b.o.mode == M_CALLS ? b.o.conns : b.o.clients;
  b.ctl = b.o.mode == M_FANOUT || b.o.mode == M_LIST ? (int)n : -1;
  b.nconn = (int)n + (b.ctl >= 0);
  b.timeout_ns = (uint64_t)(b.o.timeout * 1e9);
  if (raise_nofile((rlim_t)b.nconn + 64, err, sizeof err) < 0 ||
      resolve(&b, err, sizeof err) < 0 ||
      (b.o.tls_ca != NULL && tls_setup(&b, err, sizeof err) < 0)) {
    fprintf(stderr, "loadgen: %s\n", err);
    return 1;
  }
  b.ep = epoll_create1(EPOLL_CLOEXEC);
  if (b.ep < 0) {
    fprintf(stderr, "loadgen: epoll_create1 failed: %s\n", strerror(errno));
    return 1;
  }
  b.c = calloc((size_t)b.nconn, sizeof *b.c);
  b.dirty = calloc((size_t)b.nconn, sizeof *b.dirty);
  b.fcap = 256 + (size_t)b.o.text_size + strlen(b.o.method);
  b.fbuf = malloc(b.fcap);
  b.text = malloc((size_t)b.o.text_size + 1);
  if (b.c == NULL || b.dirty == NULL || b.fbuf == NULL || b.text == NULL) {
    fprintf(stderr, "loadgen: out of memory for %d connections\n", b.nconn);
    return 1;
  }
  for (i = 0; i < b.nconn; i++) {
    b.c[i].fd = -1;
    b.c[i].last_round = -1;
  }
  if (b.o.ws)
    ws_seed();
  switch (b.o.mode) {
  case M_FANOUT: rc = mode_fanout(&b); break;
  case M_CALLS: rc = mode_calls(&b); break;
  case M_LIST: rc = mode_list(&b); break;
  case M_HOLD: rc = mode_hold(&b); break;
  default: rc = mode_connect(&b); break;
  }
  if (rc < 0) {
    fprintf(stderr, "loadgen: %s\n", b.err);
    for (i = 0; b.err[i]; i++)
      if (b.err[i] == '"')
        b.err[i] = '\'';
    print_head(&b);
    printf(" status=fail error=\"%s\"\n", b.err);
  }
  goodbye(&b);
  close(b.ep);
  for (i = 0; i < b.nconn; i++) {
    free(b.c[i].rbuf);
    free(b.c[i].wbuf);
    ws_free(b.c[i].ws);
  }
  free(b.c);
  SSL_CTX_free(b.tls);
  free(b.dirty);
  free(b.fbuf);
  free(b.text);
  free(b.greet.v);
  free(b.first.v);
  free(b.last.v);
  free(b.rtt.v);
  return rc < 0 ? 1 : 0;
}
