/*
 * peer: what a command-line tool needs to talk to a herald server as a
 * remote user (PROTOCOL.md): the connection (TCP, or TLS through
 * peer_tls.c) with its hello and welcome, the password, JSON frames
 * through lua-cjson, and interruptible waits.
 */
#include "peer.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua-cjson.h>

#include "netaddr.h"
#include "peer_tls.h"

/* The longest line accepted from a server: a call's result may be a
 * listing of every session (about 300 bytes each). */
#define LINE_MAX_BYTES (64 * 1024 * 1024)
#define READ_CHUNK 65536
#define CONNECT_MS 10000
/* Hello sent, welcome awaited: a server with users answers a failed
 * login late on purpose, up to 30 s after repeated failures (auth_delay,
 * doubling), and that answer must be read as a refusal, not a timeout. */
#define HANDSHAKE_MS 40000
#define WRITE_MS 10000               /* a frame the server does not read */
#define DEFAULT_HEARTBEAT 30
#define USER_MAX 128
#define NAME_MAX_BYTES 256

/* ---- time and signals --------------------------------------------------- */

static volatile sig_atomic_t got_signal;
static sigset_t wait_mask; /* the mask ppoll waits with: SIGINT/TERM open */

/* What peer_signals_catch replaced, for peer_signals_restore. */
static struct {
  sigset_t mask;
  struct sigaction intr, term;
} old_signals;

int64_t peer_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_signal(int sig) { got_signal = sig; }

void peer_signals_catch(void) {
  struct sigaction sa;
  sigset_t block;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  got_signal = 0;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, &old_signals.mask);
  wait_mask = old_signals.mask;
  sigdelset(&wait_mask, SIGINT);
  sigdelset(&wait_mask, SIGTERM);
  sigaction(SIGINT, &sa, &old_signals.intr);
  sigaction(SIGTERM, &sa, &old_signals.term);
}

void peer_signals_restore(void) {
  sigaction(SIGINT, &old_signals.intr, NULL);
  sigaction(SIGTERM, &old_signals.term, NULL);
  sigprocmask(SIG_SETMASK, &old_signals.mask, NULL);
}

void peer_signals_child(void) { sigprocmask(SIG_SETMASK, &wait_mask, NULL); }

int peer_wait_fd(int fd, short events, int64_t deadline, int interruptible) {
  for (;;) {
    struct pollfd pfd = {fd, events, 0};
    struct timespec ts;
    int64_t left = deadline - peer_now_ms();
    int n;
    if (interruptible && got_signal) return PEER_WAIT_SIGNAL;
    if (left <= 0) return 0;
    ts.tv_sec = (time_t)(left / 1000);
    ts.tv_nsec = (long)(left % 1000) * 1000000;
    n = ppoll(&pfd, fd >= 0 ? 1 : 0, &ts, &wait_mask);
    if (n > 0) return 1;
    if (n < 0 && errno != EINTR) return -1;
  }
}

/* ---- line reader -------------------------------------------------------- */

/* Bytes read from a connection; lines are taken from `start`. */
typedef struct linebuf {
  char *buf;
  size_t start, len, cap;
  size_t scan; /* no '\n' in [start, scan) */
} linebuf_t;

/*
 * Takes the next complete line: returns 1 with *line pointing into the
 * buffer (NUL-terminated, "\n" or "\r\n" removed), valid until the next
 * linebuf_fill; 0 when no complete line is buffered; -1 when the line
 * being received is longer than LINE_MAX_BYTES.
 */
static int linebuf_take(linebuf_t *lb, char **line, size_t *len) {
  size_t from = lb->scan > lb->start ? lb->scan : lb->start;
  char *nl = NULL;
  if (lb->len > from) nl = memchr(lb->buf + from, '\n', lb->len - from);
  if (nl == NULL) {
    lb->scan = lb->len;
    return lb->len - lb->start > LINE_MAX_BYTES ? -1 : 0;
  }
  *line = lb->buf + lb->start;
  *len = (size_t)(nl - *line);
  if (*len > LINE_MAX_BYTES) return -1;
  if (*len > 0 && (*line)[*len - 1] == '\r') (*len)--;
  (*line)[*len] = '\0';
  lb->start = lb->scan = (size_t)(nl - lb->buf) + 1;
  return 1;
}

/*
 * Makes room for READ_CHUNK more bytes at the end of lb, first moving the
 * unconsumed bytes to the front. Returns 0, or -1 when memory runs out.
 */
static int linebuf_room(linebuf_t *lb) {
  if (lb->start > 0) {
    memmove(lb->buf, lb->buf + lb->start, lb->len - lb->start);
    lb->len -= lb->start;
    lb->scan -= lb->start;
    lb->start = 0;
  }
  if (lb->cap - lb->len < READ_CHUNK) {
    size_t cap = lb->cap ? lb->cap : READ_CHUNK;
    char *p;
    while (cap - lb->len < READ_CHUNK) cap *= 2;
    p = realloc(lb->buf, cap);
    if (p == NULL) return -1;
    lb->buf = p;
    lb->cap = cap;
  }
  return 0;
}

/* ---- JSON through lua-cjson --------------------------------------------- */

/*
 * A private Lua state holding the cjson module at stack index 1. Frames
 * are built as Lua tables above it; callers restore the stack top they
 * found. Building a frame (pushstring, setfield) runs unprotected: in this
 * small state only a memory error can raise there, and Lua's default
 * panic then aborts, which is the right end for an out-of-memory CLI.
 */
typedef struct json {
  lua_State *L;
  char empty[64]; /* cjson's encoding of PEER_EMPTY_ARRAY */
  size_t empty_len;
  char secret[64]; /* cjson's encoding of SECRET_MARK */
  size_t secret_len;
} json_t;

/*
 * Where the hello's password goes: the frame holds this string, and
 * send_secret writes the password in its place in the encoded text, so
 * that the password is never a Lua string (which nothing could wipe).
 */
#define SECRET_MARK "\001herald:password\001"

/* Copies the encoding of the string on top of the stack into buf (cap
 * bytes) and pops it; the encoding of a short marker always fits. */
static size_t take_encoding(lua_State *L, char *buf, size_t cap) {
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  if (n >= cap) n = 0; /* cannot happen: a short string */
  memcpy(buf, s, n);
  lua_pop(L, 1);
  return n;
}

static int open_cjson(lua_State *L) {
  luaL_requiref(L, "cjson", luaopen_cjson, 0);
  /* 14 digits, the most 2.1.0 allows: ids and arguments stay exact */
  lua_getfield(L, -1, "encode_number_precision");
  lua_pushinteger(L, 14);
  lua_call(L, 1, 0);
  lua_getfield(L, -1, "encode");
  lua_pushstring(L, PEER_EMPTY_ARRAY);
  lua_call(L, 1, 1);
  lua_getfield(L, -2, "encode");
  lua_pushstring(L, SECRET_MARK);
  lua_call(L, 1, 1);
  return 3;
}

/*
 * Creates j's Lua state with cjson loaded (at index 1) and learns how cjson
 * spells PEER_EMPTY_ARRAY and SECRET_MARK. Returns 0, or -1 with the
 * reason in err. Release with json_close.
 */
static int json_open(json_t *j, char *err, size_t errlen) {
  j->L = luaL_newstate();
  if (j->L == NULL) {
    snprintf(err, errlen, "cannot create a lua state: out of memory");
    return -1;
  }
  lua_pushcfunction(j->L, open_cjson);
  if (lua_pcall(j->L, 0, 3, 0) != LUA_OK) {
    snprintf(err, errlen, "cannot load cjson: %s", lua_tostring(j->L, -1));
    lua_close(j->L);
    j->L = NULL;
    return -1;
  }
  j->secret_len = take_encoding(j->L, j->secret, sizeof(j->secret));
  j->empty_len = take_encoding(j->L, j->empty, sizeof(j->empty));
  return 0; /* the module stays at index 1 */
}

static void json_close(json_t *j) {
  if (j->L != NULL) lua_close(j->L);
  j->L = NULL;
}

/*
 * Decodes s (len bytes) and pushes the value. Returns 0, or -1 with
 * cjson's reason in err and nothing pushed.
 */
static int json_decode(json_t *j, const char *s, size_t len, char *err,
                       size_t errlen) {
  lua_getfield(j->L, 1, "decode");
  lua_pushlstring(j->L, s, len);
  if (lua_pcall(j->L, 1, 1, 0) != LUA_OK) {
    snprintf(err, errlen, "%s", lua_tostring(j->L, -1));
    lua_pop(j->L, 1);
    return -1;
  }
  return 0;
}

/*
 * Copies cjson output s to out, turning each encoded PEER_EMPTY_ARRAY string
 * into []. A '"' preceded by '[', ',' or ':' opens a string token (inside
 * a string cjson writes '"' as \"), so only real string values that equal
 * PEER_EMPTY_ARRAY match. Returns the bytes written (never more than n).
 */
static size_t patch_empty(const json_t *j, const char *s, size_t n,
                          char *out) {
  size_t i = 0, k = 0;
  while (i < n) {
    if (s[i] == '"' && n - i >= j->empty_len &&
        memcmp(s + i, j->empty, j->empty_len) == 0 &&
        (i == 0 || memchr("[,:", s[i - 1], 3) != NULL)) {
      out[k++] = '[';
      out[k++] = ']';
      i += j->empty_len;
    } else {
      out[k++] = s[i++];
    }
  }
  return k;
}

/*
 * Encodes the value at idx (left in place) into a new NUL-terminated
 * string *out (caller frees), "\n"-terminated when `line` is set, with
 * PEER_EMPTY_ARRAY markers as [] when `patch` is set. Returns 0 or -1 with
 * the reason in err.
 */
static int json_encode(json_t *j, int idx, int line, int patch, char **out,
                       size_t *outlen, char *err, size_t errlen) {
  lua_State *L = j->L;
  const char *s;
  size_t n;
  idx = lua_absindex(L, idx);
  lua_getfield(L, 1, "encode");
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    snprintf(err, errlen, "cannot encode json: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  s = lua_tolstring(L, -1, &n);
  *out = malloc(n + 2);
  if (*out == NULL) {
    snprintf(err, errlen, "cannot encode json: out of memory");
    lua_pop(L, 1);
    return -1;
  }
  if (patch) {
    n = patch_empty(j, s, n, *out);
  } else {
    memcpy(*out, s, n);
  }
  if (line) (*out)[n++] = '\n';
  (*out)[n] = '\0';
  *outlen = n;
  lua_pop(L, 1);
  return 0;
}

const char *peer_field_str(lua_State *L, int idx, const char *key) {
  const char *s = NULL;
  lua_getfield(L, idx, key);
  if (lua_type(L, -1) == LUA_TSTRING) s = lua_tostring(L, -1);
  lua_pop(L, 1);
  return s;
}

int peer_field_int(lua_State *L, int idx, const char *key, long long *out) {
  int ok = 0;
  lua_getfield(L, idx, key);
  if (lua_isinteger(L, -1)) {
    *out = (long long)lua_tointeger(L, -1);
    ok = 1;
  } else if (lua_type(L, -1) == LUA_TNUMBER) {
    lua_Number d = lua_tonumber(L, -1);
    if (d > -9e18 && d < 9e18 && (lua_Number)(long long)d == d) {
      *out = (long long)d;
      ok = 1;
    }
  }
  lua_pop(L, 1);
  return ok;
}

int peer_field_num(lua_State *L, int idx, const char *key, double *out) {
  int ok = 0;
  lua_getfield(L, idx, key);
  if (lua_type(L, -1) == LUA_TNUMBER) {
    *out = (double)lua_tonumber(L, -1);
    ok = *out == *out; /* not NaN */
  }
  lua_pop(L, 1);
  return ok;
}

int peer_field_is(lua_State *L, int idx, const char *key, const char *v) {
  const char *s = peer_field_str(L, idx, key);
  return s != NULL && strcmp(s, v) == 0;
}

const char *peer_clean(const char *s, char *out, size_t outlen) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0, k = 0;
  if (outlen == 0) return out;
  while (u[i] != '\0') {
    unsigned c = u[i], len = 1, cp = c, min = 0;
    int ok = 1;
    if (c >= 0x80) {
      if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f, min = 0x80;
      else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f, min = 0x800;
      else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07, min = 0x10000;
      else ok = 0;
      for (unsigned j = 1; ok && j < len; j++) {
        if ((u[i + j] & 0xc0) != 0x80) ok = 0;
        else cp = cp << 6 | (u[i + j] & 0x3f);
      }
      if (ok && (cp < min || cp > 0x10ffff ||
                 (cp >= 0xd800 && cp <= 0xdfff)))
        ok = 0;
    }
    if (!ok) len = 1;
    /* C0, DEL and C1 controls, and bytes that are not UTF-8 */
    if (!ok || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
      if (k + 1 >= outlen) break;
      out[k++] = '?';
    } else {
      if (k + len >= outlen) break;
      memcpy(out + k, u + i, len);
      k += len;
    }
    i += len;
  }
  out[k] = '\0';
  return out;
}

void peer_frame_new(lua_State *L, const char *type) {
  lua_createtable(L, 0, 6);
  lua_pushstring(L, type);
  lua_setfield(L, -2, "type");
}

void peer_frame_str(lua_State *L, const char *key, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, key);
}

void peer_frame_int(lua_State *L, const char *key, long long v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, key);
}

/* ---- connection --------------------------------------------------------- */

/* One server connection and the identity it says hello with. */
struct peer {
  json_t json;
  netaddr_t addr;
  char addr_str[NETADDR_HOST_MAX + 16]; /* "host:port" for messages */
  char user[USER_MAX + 1];
  char machine[NAME_MAX_BYTES + 1];
  char sysuser[NAME_MAX_BYTES + 1];
  int echo; /* print every frame read on stdout (client --json) */
  const char *line; /* the last frame's text, valid until the next read */
  size_t line_len;
  int fd;
  peer_tls_t *tls; /* NULL: plain TCP */
  peer_tls_conn_t *tc; /* the TLS connection over fd */
  short want; /* what the next read waits for (TLS may have to write) */
  linebuf_t in;
  int heard; /* a byte came on this connection */
  int64_t last_heard, last_ping;
  /* the hello's password: pw_len bytes, wiped by peer_free */
  char pw[PEER_PASSWORD_MAX + 1];
  size_t pw_len;
  int has_pw, may_ask; /* may_ask: stdin is a terminal, not asked yet */
  /* from the last welcome */
  char sid[PEER_SID_MAX];
  char *token; /* NULL: the session cannot be resumed */
  int heartbeat;
};

peer_t *peer_new(void) {
  peer_t *p = calloc(1, sizeof(*p));
  if (p != NULL) p->fd = -1;
  return p;
}

void peer_close(peer_t *p) {
  peer_tls_close(p->tc);
  p->tc = NULL;
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
  p->in.start = p->in.len = p->in.scan = 0;
}

void peer_free(peer_t *p) {
  if (p == NULL) return;
  peer_close(p);
  peer_tls_free(p->tls);
  json_close(&p->json);
  free(p->token);
  free(p->in.buf);
  explicit_bzero(p->pw, sizeof(p->pw));
  free(p);
}

int peer_json_open(peer_t *p, char *err, size_t errlen) {
  return json_open(&p->json, err, errlen);
}

int peer_json_decode(peer_t *p, const char *s, size_t len, char *err,
                     size_t errlen) {
  return json_decode(&p->json, s, len, err, errlen);
}

int peer_json_encode(peer_t *p, int idx, int line, int patch, char **out,
                     size_t *outlen, char *err, size_t errlen) {
  return json_encode(&p->json, idx, line, patch, out, outlen, err, errlen);
}

lua_State *peer_lua(const peer_t *p) { return p->json.L; }
void peer_set_echo(peer_t *p, int on) { p->echo = on; }
const char *peer_addr(const peer_t *p) { return p->addr_str; }
const char *peer_user(const peer_t *p) { return p->user; }
const char *peer_sid(const peer_t *p) { return p->sid; }
int peer_has_token(const peer_t *p) { return p->token != NULL; }
int peer_heartbeat(const peer_t *p) { return p->heartbeat; }
int64_t peer_last_heard(const peer_t *p) { return p->last_heard; }
int64_t peer_last_ping(const peer_t *p) { return p->last_ping; }

void peer_drop_token(peer_t *p) {
  free(p->token);
  p->token = NULL;
}

/*
 * Opens a TCP connection to p->addr (every resolved address in turn, each
 * bounded by CONNECT_MS) into p->fd, non-blocking. Returns 0, -1 with the
 * reason in err, or PEER_WAIT_SIGNAL.
 */
static int net_connect(peer_t *p, char *err, size_t errlen) {
  struct addrinfo hints, *res = NULL, *ai;
  char port[16];
  int fd = -1, saved = ECONNREFUSED, gai, rc = -1, one = 1;

  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(port, sizeof(port), "%d", p->addr.port);
  gai = getaddrinfo(p->addr.host, port, &hints, &res);
  if (gai != 0) {
    snprintf(err, errlen, "%s",
             gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
    return -1;
  }
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    int64_t deadline = peer_now_ms() + CONNECT_MS;
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0) {
      saved = errno;
      continue;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    if (errno == EINPROGRESS) {
      int w = peer_wait_fd(fd, POLLOUT, deadline, 1), soerr = 0;
      socklen_t sl = sizeof(soerr);
      if (w == PEER_WAIT_SIGNAL) {
        close(fd);
        rc = PEER_WAIT_SIGNAL;
        goto done;
      }
      if (w == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
          soerr == 0)
        break;
      saved = w == 0 ? ETIMEDOUT : w < 0 ? errno : soerr;
    } else {
      saved = errno;
    }
    close(fd);
    fd = -1;
  }
  if (fd < 0) {
    snprintf(err, errlen, "%s", strerror(saved));
    goto done;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  p->fd = fd;
  p->want = POLLIN;
  p->heard = 0;
  p->in.start = p->in.len = p->in.scan = 0;
  p->last_heard = p->last_ping = peer_now_ms();
  rc = 0;

done:
  freeaddrinfo(res);
  return rc;
}

/*
 * Reads what the connection has into buf (n bytes at most): the count, 0
 * at the end of the stream, PEER_TLS_AGAIN when p->want must be waited
 * for first, -1 with the reason in err.
 */
static ssize_t conn_read(peer_t *p, char *buf, size_t n, char *err,
                         size_t errlen) {
  ssize_t r;
  if (p->tc != NULL)
    return peer_tls_read(p->tc, buf, n, &p->want, err, errlen);
  r = recv(p->fd, buf, n, 0);
  if (r >= 0) return r;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    p->want = POLLIN;
    return PEER_TLS_AGAIN;
  }
  snprintf(err, errlen, "%s", strerror(errno));
  return -1;
}

/* Writes some of buf: as conn_read, the count or PEER_TLS_AGAIN (wait for
 * *want) or -1. */
static ssize_t conn_write(peer_t *p, const char *buf, size_t n, short *want,
                          char *err, size_t errlen) {
  ssize_t r;
  if (p->tc != NULL) return peer_tls_write(p->tc, buf, n, want, err, errlen);
  r = send(p->fd, buf, n, MSG_NOSIGNAL);
  if (r >= 0) return r;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    *want = POLLOUT;
    return PEER_TLS_AGAIN;
  }
  snprintf(err, errlen, "%s", strerror(errno));
  return -1;
}

/* Writes all of buf, waiting at most WRITE_MS for the server to read. */
static int send_all(peer_t *p, const char *buf, size_t len, char *err,
                    size_t errlen) {
  int64_t deadline = peer_now_ms() + WRITE_MS;
  while (len > 0) {
    short want = POLLOUT;
    ssize_t n = conn_write(p, buf, len, &want, err, errlen);
    if (n > 0) {
      buf += n;
      len -= (size_t)n;
    } else if (n == PEER_TLS_AGAIN) {
      int w = peer_wait_fd(p->fd, want, deadline, 0);
      if (w == 0) {
        snprintf(err, errlen, "the server read nothing for %d s",
                 WRITE_MS / 1000);
        return -1;
      }
      if (w < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        return -1;
      }
    } else {
      if (n == 0) snprintf(err, errlen, "the server closed the connection");
      return -1;
    }
  }
  return 0;
}

int peer_send_frame(peer_t *p, char *err, size_t errlen) {
  char *buf;
  size_t len;
  int rc = -1;
  if (json_encode(&p->json, -1, 1, 1, &buf, &len, err, errlen) == 0) {
    rc = send_all(p, buf, len, err, errlen);
    free(buf);
  }
  lua_pop(p->json.L, 1);
  return rc;
}

int peer_send_simple(peer_t *p, const char *type, char *err,
                     size_t errlen) {
  peer_frame_new(p->json.L, type);
  return peer_send_frame(p, err, errlen);
}

int peer_send_ping(peer_t *p, char *err, size_t errlen) {
  p->last_ping = peer_now_ms();
  return peer_send_simple(p, "ping", err, errlen);
}

void peer_echo_line(const peer_t *p) {
  fwrite(p->line, 1, p->line_len, stdout);
  fputc('\n', stdout);
  fflush(stdout);
}

int peer_read_frame(peer_t *p, int64_t deadline, char *err, size_t errlen) {
  /* TLS may hold bytes it took from the socket already, which poll would
   * not see: then read before waiting. */
  int ready = p->tc != NULL && peer_tls_pending(p->tc);
  for (;;) {
    char *line, why[200];
    size_t len, i = 0;
    ssize_t n;
    int r = linebuf_take(&p->in, &line, &len), w;
    if (r < 0) {
      snprintf(err, errlen, "the server sent a line longer than %d bytes",
               LINE_MAX_BYTES);
      return PEER_RD_ERROR;
    }
    if (r > 0) {
      while (i < len && isspace((unsigned char)line[i])) i++;
      if (i == len) continue;
      if (line[i] != '{') {
        snprintf(err, errlen, "the server sent a frame that is not an object");
        return PEER_RD_ERROR;
      }
      if (json_decode(&p->json, line, len, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "the server sent invalid json: %s", why);
        return PEER_RD_ERROR;
      }
      p->line = line;
      p->line_len = len;
      /* A message is echoed by the client's on_message, once: it may
       * come again after a resume. */
      if (p->echo) {
        const char *type = peer_field_str(p->json.L, -1, "type");
        if (type == NULL || strcmp(type, "message") != 0)
          peer_echo_line(p);
      }
      return PEER_RD_FRAME;
    }
    if (!ready) {
      w = peer_wait_fd(p->fd, p->want, deadline, 1);
      if (w == 0) return PEER_RD_TIMEOUT;
      if (w == PEER_WAIT_SIGNAL) return PEER_RD_SIGNAL;
      if (w < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        return PEER_RD_ERROR;
      }
    }
    if (linebuf_room(&p->in) < 0) {
      snprintf(err, errlen, "out of memory for the server's line");
      return PEER_RD_ERROR;
    }
    n = conn_read(p, p->in.buf + p->in.len, p->in.cap - p->in.len, err,
                  errlen);
    if (n == PEER_TLS_AGAIN) {
      ready = 0; /* at most a part of a TLS record: wait for the rest */
      continue;
    }
    if (n == 0) {
      snprintf(err, errlen, "the server closed the connection");
      return PEER_RD_CLOSED;
    }
    if (n < 0) return PEER_RD_ERROR;
    p->in.len += (size_t)n;
    p->heard = 1;
    p->want = POLLIN;
    p->last_heard = peer_now_ms();
    ready = p->tc != NULL && peer_tls_pending(p->tc);
  }
}

/* Records the welcome frame at the top of the stack in p. */
static int take_welcome(peer_t *p, char *err, size_t errlen) {
  lua_State *L = p->json.L;
  const char *sid = peer_field_str(L, -1, "sessionID");
  const char *token = peer_field_str(L, -1, "resumeToken");
  long long hb;
  if (sid == NULL || strlen(sid) >= sizeof(p->sid)) {
    snprintf(err, errlen, "the server's welcome has no valid sessionID");
    return PEER_HS_FAILED;
  }
  snprintf(p->sid, sizeof(p->sid), "%s", sid);
  free(p->token);
  p->token = token != NULL ? strdup(token) : NULL;
  p->heartbeat = DEFAULT_HEARTBEAT;
  if (peer_field_int(L, -1, "heartbeat", &hb) && hb > 0 && hb < 86400)
    p->heartbeat = (int)hb;
  return PEER_HS_OK;
}

/*
 * Writes the password into out as a JSON string, quotes included; out has
 * room for 6 bytes a byte and 2. The password is UTF-8 (checked when it
 * was taken): only '"', '\\' and control characters need escaping.
 */
static size_t json_quote(const char *s, size_t n, char *out) {
  static const char hex[] = "0123456789abcdef";
  size_t k = 0;
  out[k++] = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      out[k++] = '\\';
      out[k++] = (char)c;
    } else if (c < 0x20 || c == 0x7f) {
      memcpy(out + k, "\\u00", 4);
      out[k + 4] = hex[c >> 4];
      out[k + 5] = hex[c & 15];
      k += 6;
    } else {
      out[k++] = (char)c;
    }
  }
  out[k++] = '"';
  return k;
}

/*
 * Sends the frame on top of the stack (popped) as peer_send_frame does,
 * with p's password in place of the value SECRET_MARK. Every copy of the
 * password made here is wiped before it is freed.
 */
static int send_secret(peer_t *p, char *err, size_t errlen) {
  json_t *j = &p->json;
  char *buf, *out = NULL, *at = NULL;
  size_t len, k = 0, cap;
  int rc = -1;
  if (json_encode(j, -1, 1, 1, &buf, &len, err, errlen) < 0) goto done;
  /* the marker as a value: after ':', where cjson's text is no string */
  for (size_t i = 1; i + j->secret_len <= len; i++)
    if (buf[i - 1] == ':' && buf[i] == '"' &&
        memcmp(buf + i, j->secret, j->secret_len) == 0) {
      at = buf + i;
      break;
    }
  cap = len + 6 * p->pw_len + 2;
  if (at == NULL || (out = malloc(cap)) == NULL) {
    snprintf(err, errlen, "cannot encode the hello: %s",
             at == NULL ? "no place for the password" : "out of memory");
    free(buf);
    goto done;
  }
  memcpy(out, buf, (size_t)(at - buf));
  k = (size_t)(at - buf);
  k += json_quote(p->pw, p->pw_len, out + k);
  memcpy(out + k, at + j->secret_len, len - (size_t)(at - buf) -
         j->secret_len);
  k += len - (size_t)(at - buf) - j->secret_len;
  free(buf);
  rc = send_all(p, out, k, err, errlen);
  explicit_bzero(out, cap);
  free(out);
done:
  lua_pop(j->L, 1);
  return rc;
}

/*
 * After a plaintext hello, whether what the server sent back is TLS: a
 * TLS record starts with its type (21 alert, 22 handshake) and the major
 * version 3, which no JSON text does.
 */
static int answered_tls(const peer_t *p) {
  const unsigned char *b = (const unsigned char *)p->in.buf;
  return p->tls == NULL && p->in.len >= 2 && (b[0] == 21 || b[0] == 22) &&
         b[1] == 3;
}

int peer_handshake(peer_t *p, int resume, char *code, size_t codelen,
                   char *err, size_t errlen) {
  lua_State *L = p->json.L;
  int top = lua_gettop(L), rc, secret = !resume && p->has_pw;
  int64_t deadline;
  char why[256];

  code[0] = '\0';
  rc = net_connect(p, err, errlen);
  if (rc == PEER_WAIT_SIGNAL) return PEER_HS_SIGNAL;
  if (rc < 0) return PEER_HS_FAILED;
  if (p->tls != NULL) {
    rc = peer_tls_connect(p->tls, p->fd, p->addr.host,
                          peer_now_ms() + CONNECT_MS, &p->tc, why,
                          sizeof(why));
    if (rc != PEER_TLS_OK) {
      if (rc == PEER_TLS_REFUSED)
        snprintf(err, errlen, "TLS with %s failed: %s", p->addr_str, why);
      else
        snprintf(err, errlen, "TLS handshake: %s", why);
      peer_close(p);
      return rc == PEER_TLS_SIGNAL  ? PEER_HS_SIGNAL
             : rc == PEER_TLS_REFUSED ? PEER_HS_TLS
                                      : PEER_HS_FAILED;
    }
  }

  peer_frame_new(L, "hello");
  peer_frame_str(L, "userName", p->user);
  peer_frame_str(L, "machineName", p->machine);
  peer_frame_str(L, "systemUserName", p->sysuser);
#ifdef __APPLE__
  peer_frame_str(L, "hostType", "mac");
#else
  peer_frame_str(L, "hostType", "linux");
#endif
  peer_frame_int(L, "protocol", 1);
  if (resume) {
    lua_createtable(L, 0, 2);
    peer_frame_str(L, "sessionID", p->sid);
    peer_frame_str(L, "token", p->token);
    lua_setfield(L, -2, "resume");
  }
  if (secret) peer_frame_str(L, "password", SECRET_MARK);
  if ((secret ? send_secret(p, err, errlen)
              : peer_send_frame(p, err, errlen)) < 0) {
    rc = PEER_HS_FAILED;
    goto done;
  }
  deadline = peer_now_ms() + HANDSHAKE_MS;
  for (;;) {
    const char *c, *m;
    rc = peer_read_frame(p, deadline, err, errlen);
    if (rc == PEER_RD_TIMEOUT) {
      snprintf(err, errlen, "no welcome from the server within %d s",
               HANDSHAKE_MS / 1000);
      rc = PEER_HS_FAILED;
      break;
    }
    if (rc == PEER_RD_SIGNAL) {
      rc = PEER_HS_SIGNAL;
      break;
    }
    if (rc != PEER_RD_FRAME) {
      rc = PEER_HS_FAILED;
      if (answered_tls(p)) {
        snprintf(err, errlen, "%s answered in TLS: connect with --tls",
                 p->addr_str);
        rc = PEER_HS_TLS;
      } else if (p->tls == NULL && !p->heard) {
        /* A herald server answers every hello, if only with an error; a
         * TLS one closes on a plaintext hello without a word. Not certain
         * enough to stop a client that reconnects. */
        snprintf(err, errlen, "the server closed the connection without a "
                 "word (a TLS server does that: try --tls)");
      }
      break;
    }
    if (peer_field_is(L, -1, "type", "welcome")) {
      rc = take_welcome(p, err, errlen);
      break;
    }
    if (peer_field_is(L, -1, "type", "reconnect")) {
      /* a server stopping for a restart, before it answered: as good as
       * a refused connection, worth the usual retries */
      snprintf(err, errlen, "the server is restarting");
      rc = PEER_HS_FAILED;
      break;
    }
    if (peer_field_is(L, -1, "type", "error")) {
      c = peer_field_str(L, -1, "code");
      m = peer_field_str(L, -1, "message");
      snprintf(code, codelen, "%s", c ? c : "unknown");
      snprintf(err, errlen, "%s: %s", c ? c : "unknown",
               m ? m : "no reason given");
      rc = PEER_HS_REFUSED;
      break;
    }
    if (peer_field_is(L, -1, "type", "ping") &&
        peer_send_simple(p, "pong", err, errlen) < 0) {
      rc = PEER_HS_FAILED;
      break;
    }
    lua_settop(L, top);
  }

done:
  lua_settop(L, top);
  if (rc != PEER_HS_OK) peer_close(p);
  return rc;
}

/* ---- passwords ---------------------------------------------------------- */

/* Whether s (n bytes) is UTF-8 with no NUL: the server refuses a frame
 * that is not UTF-8, and would answer bad_json instead of unauthorized. */
static int utf8_ok(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    unsigned c = u[i], len, cp, min;
    if (c == 0) return 0;
    if (c < 0x80) {
      i++;
      continue;
    }
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (n - i < len) return 0;
    for (unsigned k = 1; k < len; k++) {
      if ((u[i + k] & 0xc0) != 0x80) return 0;
      cp = cp << 6 | (u[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += len;
  }
  return 1;
}

enum { LINE_EOF = 0, LINE_OK = 1, LINE_TOO_LONG = 2 };

/*
 * Reads one line from fd into p->pw, a byte at a time so that nothing
 * after it is consumed; "\n" and "\r\n" are removed. With `interruptible`
 * (signals caught), waits in peer_wait_fd so that Ctrl-C ends the wait.
 * Returns LINE_OK, LINE_EOF (nothing before the end of input),
 * LINE_TOO_LONG (more than PEER_PASSWORD_MAX bytes; the rest of the line
 * is read and dropped), PEER_WAIT_SIGNAL, or -1 with errno.
 */
static int read_pw_line(peer_t *p, int fd, int interruptible) {
  size_t n = 0;
  int got = 0, too_long = 0;
  for (;;) {
    char c;
    ssize_t r;
    if (interruptible) {
      int w = peer_wait_fd(fd, POLLIN, peer_now_ms() + 3600 * 1000, 1);
      if (w == PEER_WAIT_SIGNAL) return PEER_WAIT_SIGNAL;
      if (w <= 0) {
        if (w < 0) return -1;
        continue;
      }
    }
    r = read(fd, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) {
      if (!got) return LINE_EOF;
      break;
    }
    got = 1;
    if (c == '\n') break;
    if (n < PEER_PASSWORD_MAX) p->pw[n++] = c;
    else too_long = 1;
  }
  if (n > 0 && p->pw[n - 1] == '\r' && !too_long) n--;
  p->pw[n] = '\0';
  p->pw_len = n;
  return too_long ? LINE_TOO_LONG : LINE_OK;
}

/* Checks the password taken into p->pw; on a fault, wipes it and says why
 * in err ("the password ..."). Returns 0 or -1. */
static int check_pw(peer_t *p, const char *from, char *err, size_t errlen) {
  const char *why = NULL;
  if (p->pw_len == 0) why = "is empty";
  else if (!utf8_ok(p->pw, p->pw_len)) why = "is not UTF-8 text";
  if (why == NULL) {
    p->has_pw = 1;
    return 0;
  }
  snprintf(err, errlen, "the password %s %s", from, why);
  explicit_bzero(p->pw, sizeof(p->pw));
  p->pw_len = 0;
  return -1;
}

/*
 * Reads the password from the terminal on stdin, without echo (the
 * newline still shows: ECHONL). Returns 0, PEER_HS_SIGNAL, or PEER_HS_AUTH
 * with the reason in err.
 */
static int ask_pw(peer_t *p, char *err, size_t errlen) {
  struct termios saved, quiet;
  int tty = tcgetattr(STDIN_FILENO, &saved) == 0, r;
  /* Echo off, and what was typed before dropped, before the prompt shows:
   * flushed after it, a password typed as soon as the prompt appears
   * would be lost, and the wait for it would never end. */
  if (tty) {
    quiet = saved;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  fprintf(stderr, "Password for %s: ", p->user);
  fflush(stderr);
  r = read_pw_line(p, STDIN_FILENO, 1);
  if (tty) tcsetattr(STDIN_FILENO, TCSANOW, &saved);
  if (r != LINE_OK) fputc('\n', stderr); /* no newline was typed */
  if (r == PEER_WAIT_SIGNAL) return PEER_HS_SIGNAL;
  if (r == LINE_OK && check_pw(p, "typed", err, errlen) == 0) return 0;
  if (r == LINE_TOO_LONG)
    snprintf(err, errlen, "the password typed is longer than %d bytes",
             PEER_PASSWORD_MAX);
  else if (r != LINE_OK)
    snprintf(err, errlen, "no password typed");
  explicit_bzero(p->pw, sizeof(p->pw));
  p->pw_len = 0;
  return PEER_HS_AUTH;
}

int peer_setup_password(peer_t *p, const char *cmd, int from_stdin) {
  char err[256];
  const char *env = getenv("HERALD_PASSWORD");
  int r;
  if (env != NULL && env[0] != '\0') {
    size_t n = strlen(env);
    if (n > PEER_PASSWORD_MAX) {
      fprintf(stderr, "herald: %s: HERALD_PASSWORD is longer than %d bytes\n",
              cmd, PEER_PASSWORD_MAX);
      return -1;
    }
    memcpy(p->pw, env, n);
    p->pw_len = n;
    /* The value is wiped where it lies (/proc/PID/environ shows it no
     * more) and the variable removed, so no child inherits it. */
    explicit_bzero((char *)env, n);
    unsetenv("HERALD_PASSWORD");
    if (check_pw(p, "in HERALD_PASSWORD", err, sizeof(err)) < 0) {
      fprintf(stderr, "herald: %s: %s\n", cmd, err);
      return -1;
    }
    return 0;
  }
  if (isatty(STDIN_FILENO)) {
    /* a person, even with --password-stdin: asked with a prompt and
     * without echo, and only if the server wants a password */
    p->may_ask = 1;
    return 0;
  }
  if (!from_stdin) return 0;
  r = read_pw_line(p, STDIN_FILENO, 0);
  if (r == LINE_OK && check_pw(p, "on stdin", err, sizeof(err)) == 0)
    return 0;
  if (r == LINE_TOO_LONG)
    snprintf(err, sizeof(err), "the password on stdin is longer than %d "
             "bytes", PEER_PASSWORD_MAX);
  else if (r == LINE_EOF)
    snprintf(err, sizeof(err), "--password-stdin: no password on stdin");
  else if (r < 0)
    snprintf(err, sizeof(err), "--password-stdin: %s", strerror(errno));
  explicit_bzero(p->pw, sizeof(p->pw));
  p->pw_len = 0;
  fprintf(stderr, "herald: %s: %s\n", cmd, err);
  return -1;
}

int peer_login(peer_t *p, char *code, size_t codelen, char *err,
               size_t errlen) {
  int rc = peer_handshake(p, 0, code, codelen, err, errlen);
  if (rc != PEER_HS_REFUSED || strcmp(code, "unauthorized") != 0) return rc;
  /* Whether a server wants a password shows only here; ask once, never
   * in a loop. */
  if (!p->has_pw && p->may_ask) {
    p->may_ask = 0;
    rc = ask_pw(p, err, errlen);
    if (rc != 0) return rc;
    rc = peer_handshake(p, 0, code, codelen, err, errlen);
    if (rc != PEER_HS_REFUSED || strcmp(code, "unauthorized") != 0)
      return rc;
  }
  snprintf(err, errlen, "wrong user name or password%s",
           p->has_pw ? "" : " (none was given: set HERALD_PASSWORD or use "
           "--password-stdin)");
  return PEER_HS_AUTH;
}

int peer_setup_tls(peer_t *p, const char *cmd, const char *ca) {
  char err[512];
  peer_tls_free(p->tls);
  p->tls = peer_tls_new(ca, err, sizeof(err));
  if (p->tls == NULL) {
    fprintf(stderr, "herald: %s: --ca: %s\n", cmd, err);
    return -1;
  }
  return 0;
}

/* ---- command line ------------------------------------------------------- */

void peer_option_error(const char *cmd, const char *arg) {
  fprintf(stderr, "herald: %s: unknown or incomplete option '%s'\n", cmd,
          arg);
}

int peer_take_option(peer_opts_t *o, int ch, const char *arg) {
  switch (ch) {
  case 's': o->server = arg; return 1;
  case 'u': o->user = arg; return 1;
  case 'c': o->ca = arg; return 1;
  case 't': o->tls = 1; return 1;
  case 'p': o->pw_stdin = 1; return 1;
  default: return 0;
  }
}

int peer_setup_opts(peer_t *p, const char *cmd, const peer_opts_t *o,
                    const char *machine, const char *sysuser) {
  if (peer_setup(p, cmd, o->server, o->user, machine, sysuser) < 0)
    return -2;
  if (((o->tls || o->ca != NULL) && peer_setup_tls(p, cmd, o->ca) < 0) ||
      peer_setup_password(p, cmd, o->pw_stdin) < 0)
    return -1;
  return 0;
}

int peer_parse_seconds(const char *cmd, const char *name, const char *s,
                       int positive, double *out) {
  char *end;
  double d = strtod(s, &end);
  if (end == s || *end != '\0' || !(d >= 0) || d > 1e9 ||
      (positive && d == 0)) {
    fprintf(stderr, "herald: %s: %s wants a number of seconds%s, not '%s'\n",
            cmd, name, positive ? " above 0" : "", s);
    return -1;
  }
  *out = d;
  return 0;
}

int peer_setup(peer_t *p, const char *cmd, const char *server,
               const char *user, const char *machine, const char *sysuser) {
  const char *from = "--server";
  char err[256], login[USER_MAX + 1] = "";
  struct passwd *pw = getpwuid(getuid());

  if (server == NULL) {
    server = getenv("HERALD_SERVER");
    from = "HERALD_SERVER";
    if (server == NULL || server[0] == '\0') server = PEER_DEFAULT_SERVER;
  }
  if (netaddr_parse(server, &p->addr, err, sizeof(err)) < 0) {
    fprintf(stderr, "herald: %s: %s: %s\n", cmd, from, err);
    return -1;
  }
  if (p->addr.port == 0) {
    fprintf(stderr, "herald: %s: %s: port 0 is not a server's port\n", cmd,
            from);
    return -1;
  }
  snprintf(p->addr_str, sizeof(p->addr_str),
           strchr(p->addr.host, ':') ? "[%s]:%d" : "%s:%d", p->addr.host,
           p->addr.port);

  if (pw != NULL && pw->pw_name != NULL && pw->pw_name[0] != '\0')
    snprintf(login, sizeof(login), "%s", pw->pw_name);
  else if (getenv("USER") != NULL && getenv("USER")[0] != '\0')
    snprintf(login, sizeof(login), "%s", getenv("USER"));
  else
    snprintf(login, sizeof(login), "user%ld", (long)getuid());
  if (user == NULL) user = login;
  if (sysuser == NULL) sysuser = login;
  if (user[0] == '\0' || strlen(user) > USER_MAX) {
    fprintf(stderr, "herald: %s: --user must be 1 to %d bytes\n", cmd,
            USER_MAX);
    return -1;
  }
  if (strlen(sysuser) > NAME_MAX_BYTES ||
      (machine != NULL && strlen(machine) > NAME_MAX_BYTES)) {
    fprintf(stderr, "herald: %s: --machine and --system-user take at most "
            "%d bytes\n", cmd, NAME_MAX_BYTES);
    return -1;
  }
  snprintf(p->user, sizeof(p->user), "%s", user);
  snprintf(p->sysuser, sizeof(p->sysuser), "%s", sysuser);
  if (machine != NULL) {
    snprintf(p->machine, sizeof(p->machine), "%s", machine);
  } else if (gethostname(p->machine, sizeof(p->machine)) != 0) {
    p->machine[0] = '\0';
  }
  p->machine[sizeof(p->machine) - 1] = '\0';
  return 0;
}
