#include "client.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lua-cjson.h>

#include "alert.h"
#include "netaddr.h"

#define DEFAULT_SERVER "127.0.0.1:7400"
#define LINE_MAX_BYTES (1024 * 1024) /* longest line accepted from a server */
#define READ_CHUNK 65536
#define CONNECT_MS 10000
#define HANDSHAKE_MS 10000           /* hello sent, welcome awaited */
#define WRITE_MS 10000               /* a frame the server does not read */
#define DEFAULT_HEARTBEAT 30
#define LOST_HEARTBEATS 3            /* silence that means a lost server */
#define BACKOFF_START_MS 500
#define BACKOFF_CAP_MS 10000
/*
 * Message ids remembered for de-duplication. A resume re-sends at most the
 * session's pending messages (max_pending, 1024 by default), so 4096 ids
 * cover every duplicate the protocol can produce.
 */
#define SEEN_MAX 4096
#define MAX_KIDS 16                  /* notify-send processes in flight */
#define USER_MAX 128
#define NAME_MAX_BYTES 256
/*
 * lua-cjson 2.1.0 (Debian's) has no empty-array value: an empty Lua table
 * encodes as {}. Where a frame needs [], the table holds this string
 * instead and json_encode rewrites its encoding to [] (see patch_empty).
 */
#define EMPTY_ARRAY "\001herald:empty_array\001"

enum { WAIT_SIGNAL = -2 };
enum { RD_FRAME = 1, RD_TIMEOUT = 0, RD_CLOSED = -1, RD_ERROR = -2,
       RD_SIGNAL = -3 };
enum { HS_OK = 0, HS_FAILED = -1, HS_REFUSED = -2, HS_SIGNAL = -3 };

/* ---- time and signals --------------------------------------------------- */

static volatile sig_atomic_t got_signal;
static sigset_t wait_mask; /* the mask ppoll waits with: SIGINT/TERM open */

typedef struct sigstate {
  sigset_t mask;
  struct sigaction intr, term;
} sigstate_t;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_signal(int sig) { got_signal = sig; }

/*
 * SIGINT and SIGTERM stay blocked except inside ppoll, so a signal can
 * only arrive while the client waits, and every wait sees it at once
 * (no race between testing the flag and sleeping).
 */
static void signals_catch(sigstate_t *old) {
  struct sigaction sa;
  sigset_t block;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  got_signal = 0;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, &old->mask);
  wait_mask = old->mask;
  sigdelset(&wait_mask, SIGINT);
  sigdelset(&wait_mask, SIGTERM);
  sigaction(SIGINT, &sa, &old->intr);
  sigaction(SIGTERM, &sa, &old->term);
}

static void signals_restore(const sigstate_t *old) {
  sigaction(SIGINT, &old->intr, NULL);
  sigaction(SIGTERM, &old->term, NULL);
  sigprocmask(SIG_SETMASK, &old->mask, NULL);
}

/*
 * Waits until fd is ready for `events` (fd < 0: just sleeps) or until the
 * monotonic time `deadline` (ms). Returns 1 when ready (errors and hang-ups
 * count as ready: the next read or write reports them), 0 at the deadline,
 * WAIT_SIGNAL when SIGINT/SIGTERM came and `interruptible` is set, -1 with
 * errno on failure.
 */
static int wait_fd(int fd, short events, int64_t deadline, int interruptible) {
  for (;;) {
    struct pollfd pfd = {fd, events, 0};
    struct timespec ts;
    int64_t left = deadline - now_ms();
    int n;
    if (interruptible && got_signal) return WAIT_SIGNAL;
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
 * Appends what the socket has to lb, first moving the unconsumed bytes to
 * the front. Returns the bytes read, 0 at end of stream, -1 with errno
 * (EAGAIN: nothing to read yet).
 */
static ssize_t linebuf_fill(linebuf_t *lb, int fd) {
  ssize_t n;
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
    if (p == NULL) {
      errno = ENOMEM;
      return -1;
    }
    lb->buf = p;
    lb->cap = cap;
  }
  n = recv(fd, lb->buf + lb->len, lb->cap - lb->len, 0);
  if (n > 0) lb->len += (size_t)n;
  return n;
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
  char empty[64]; /* cjson's encoding of EMPTY_ARRAY */
  size_t empty_len;
} json_t;

static int open_cjson(lua_State *L) {
  luaL_requiref(L, "cjson", luaopen_cjson, 0);
  /* 14 digits, the most 2.1.0 allows: ids and arguments stay exact */
  lua_getfield(L, -1, "encode_number_precision");
  lua_pushinteger(L, 14);
  lua_call(L, 1, 0);
  lua_getfield(L, -1, "encode");
  lua_pushstring(L, EMPTY_ARRAY);
  lua_call(L, 1, 1);
  return 2;
}

/*
 * Creates j's Lua state with cjson loaded (at index 1) and learns how cjson
 * spells EMPTY_ARRAY. Returns 0, or -1 with the reason in err. Release
 * with json_close.
 */
static int json_open(json_t *j, char *err, size_t errlen) {
  size_t n;
  const char *s;
  j->L = luaL_newstate();
  if (j->L == NULL) {
    snprintf(err, errlen, "cannot create a lua state: out of memory");
    return -1;
  }
  lua_pushcfunction(j->L, open_cjson);
  if (lua_pcall(j->L, 0, 2, 0) != LUA_OK) {
    snprintf(err, errlen, "cannot load cjson: %s", lua_tostring(j->L, -1));
    lua_close(j->L);
    j->L = NULL;
    return -1;
  }
  s = lua_tolstring(j->L, -1, &n);
  if (n >= sizeof(j->empty)) n = 0; /* cannot happen: a short string */
  memcpy(j->empty, s, n);
  j->empty_len = n;
  lua_pop(j->L, 1); /* leaves the module at index 1 */
  return 0;
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
 * Copies cjson output s to out, turning each encoded EMPTY_ARRAY string
 * into []. A '"' preceded by '[', ',' or ':' opens a string token (inside
 * a string cjson writes '"' as \"), so only real string values that equal
 * EMPTY_ARRAY match. Returns the bytes written (never more than n).
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
 * EMPTY_ARRAY markers as [] when `patch` is set. Returns 0 or -1 with
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

/* Field `key` of the table at idx as a string, or NULL. The string lives
 * as long as the table. */
static const char *field_str(lua_State *L, int idx, const char *key) {
  const char *s = NULL;
  lua_getfield(L, idx, key);
  if (lua_type(L, -1) == LUA_TSTRING) s = lua_tostring(L, -1);
  lua_pop(L, 1);
  return s;
}

/* Field `key` of the table at idx as an integer (cjson 2.1.0 decodes
 * every number as a float). Returns 1 and sets *out, or 0. */
static int field_int(lua_State *L, int idx, const char *key, long long *out) {
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

static int field_is(lua_State *L, int idx, const char *key, const char *v) {
  const char *s = field_str(L, idx, key);
  return s != NULL && strcmp(s, v) == 0;
}

/* Pushes a new frame table {type = type}. */
static void frame_new(lua_State *L, const char *type) {
  lua_createtable(L, 0, 6);
  lua_pushstring(L, type);
  lua_setfield(L, -2, "type");
}

static void frame_str(lua_State *L, const char *key, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, key);
}

static void frame_int(lua_State *L, const char *key, long long v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, key);
}

/* ---- connection --------------------------------------------------------- */

/* One server connection and the identity it says hello with. */
typedef struct peer {
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
  linebuf_t in;
  int64_t last_heard, last_ping;
  /* from the last welcome */
  char sid[80];
  char *token; /* NULL: the session cannot be resumed */
  int heartbeat;
} peer_t;

static void peer_close(peer_t *p) {
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
  p->in.start = p->in.len = p->in.scan = 0;
}

/*
 * Opens a TCP connection to p->addr (every resolved address in turn, each
 * bounded by CONNECT_MS) into p->fd, non-blocking. Returns 0, -1 with the
 * reason in err, or WAIT_SIGNAL.
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
    int64_t deadline = now_ms() + CONNECT_MS;
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0) {
      saved = errno;
      continue;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    if (errno == EINPROGRESS) {
      int w = wait_fd(fd, POLLOUT, deadline, 1), soerr = 0;
      socklen_t sl = sizeof(soerr);
      if (w == WAIT_SIGNAL) {
        close(fd);
        rc = WAIT_SIGNAL;
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
  p->in.start = p->in.len = p->in.scan = 0;
  p->last_heard = p->last_ping = now_ms();
  rc = 0;

done:
  freeaddrinfo(res);
  return rc;
}

/* Writes all of buf, waiting at most WRITE_MS for the server to read. */
static int send_all(int fd, const char *buf, size_t len, char *err,
                    size_t errlen) {
  int64_t deadline = now_ms() + WRITE_MS;
  while (len > 0) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n > 0) {
      buf += n;
      len -= (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int w = wait_fd(fd, POLLOUT, deadline, 0);
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
      snprintf(err, errlen, "%s", strerror(errno));
      return -1;
    }
  }
  return 0;
}

/* Encodes the frame table on top of the stack, pops it and sends it. */
static int send_frame(peer_t *p, char *err, size_t errlen) {
  char *buf;
  size_t len;
  int rc = -1;
  if (json_encode(&p->json, -1, 1, 1, &buf, &len, err, errlen) == 0) {
    rc = send_all(p->fd, buf, len, err, errlen);
    free(buf);
  }
  lua_pop(p->json.L, 1);
  return rc;
}

/* Sends a frame that has only a type ("pong", "bye", "ping"). */
static int send_simple(peer_t *p, const char *type, char *err,
                       size_t errlen) {
  frame_new(p->json.L, type);
  return send_frame(p, err, errlen);
}

/* Prints the last frame's text on stdout (client --json). */
static void echo_line(const peer_t *p) {
  fwrite(p->line, 1, p->line_len, stdout);
  fputc('\n', stdout);
  fflush(stdout);
}

/*
 * Reads the next frame, waiting until the monotonic `deadline`. RD_FRAME:
 * the decoded object is pushed (caller pops it). RD_TIMEOUT, RD_SIGNAL,
 * RD_CLOSED and RD_ERROR push nothing; the last two say why in err. With
 * p->echo set, each frame's line is also printed on stdout.
 */
static int read_frame(peer_t *p, int64_t deadline, char *err, size_t errlen) {
  for (;;) {
    char *line, why[200];
    size_t len, i = 0;
    ssize_t n;
    int r = linebuf_take(&p->in, &line, &len), w;
    if (r < 0) {
      snprintf(err, errlen, "the server sent a line longer than %d bytes",
               LINE_MAX_BYTES);
      return RD_ERROR;
    }
    if (r > 0) {
      while (i < len && isspace((unsigned char)line[i])) i++;
      if (i == len) continue;
      if (line[i] != '{') {
        snprintf(err, errlen, "the server sent a frame that is not an object");
        return RD_ERROR;
      }
      if (json_decode(&p->json, line, len, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "the server sent invalid json: %s", why);
        return RD_ERROR;
      }
      p->line = line;
      p->line_len = len;
      /* A message is echoed by on_message, once: it may come again after
       * a resume. */
      if (p->echo) {
        const char *type = field_str(p->json.L, -1, "type");
        if (type == NULL || strcmp(type, "message") != 0)
          echo_line(p);
      }
      return RD_FRAME;
    }
    w = wait_fd(p->fd, POLLIN, deadline, 1);
    if (w == 0) return RD_TIMEOUT;
    if (w == WAIT_SIGNAL) return RD_SIGNAL;
    n = w < 0 ? -1 : linebuf_fill(&p->in, p->fd);
    if (n == 0) {
      snprintf(err, errlen, "the server closed the connection");
      return RD_CLOSED;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      snprintf(err, errlen, "%s", strerror(errno));
      return RD_ERROR;
    }
    p->last_heard = now_ms();
  }
}

/* Records the welcome frame at the top of the stack in p. */
static int take_welcome(peer_t *p, char *err, size_t errlen) {
  lua_State *L = p->json.L;
  const char *sid = field_str(L, -1, "sessionID");
  const char *token = field_str(L, -1, "resumeToken");
  long long hb;
  if (sid == NULL || strlen(sid) >= sizeof(p->sid)) {
    snprintf(err, errlen, "the server's welcome has no valid sessionID");
    return HS_FAILED;
  }
  snprintf(p->sid, sizeof(p->sid), "%s", sid);
  free(p->token);
  p->token = token != NULL ? strdup(token) : NULL;
  p->heartbeat = DEFAULT_HEARTBEAT;
  if (field_int(L, -1, "heartbeat", &hb) && hb > 0 && hb < 86400)
    p->heartbeat = (int)hb;
  return HS_OK;
}

/*
 * Connects and says hello, resuming p->sid with p->token when `resume` is
 * set, and waits up to HANDSHAKE_MS for the answer. HS_OK: connected, p
 * holds the welcome's session. HS_REFUSED: the server answered `error`;
 * code holds its code and err "code: message". HS_FAILED: err says why
 * the connection failed. HS_SIGNAL: interrupted. The connection is closed
 * on every result but HS_OK.
 */
static int handshake(peer_t *p, int resume, char *code, size_t codelen,
                     char *err, size_t errlen) {
  lua_State *L = p->json.L;
  int top = lua_gettop(L), rc;
  int64_t deadline;

  code[0] = '\0';
  rc = net_connect(p, err, errlen);
  if (rc == WAIT_SIGNAL) return HS_SIGNAL;
  if (rc < 0) return HS_FAILED;

  frame_new(L, "hello");
  frame_str(L, "userName", p->user);
  frame_str(L, "machineName", p->machine);
  frame_str(L, "systemUserName", p->sysuser);
#ifdef __APPLE__
  frame_str(L, "hostType", "mac");
#else
  frame_str(L, "hostType", "linux");
#endif
  frame_int(L, "protocol", 1);
  if (resume) {
    lua_createtable(L, 0, 2);
    frame_str(L, "sessionID", p->sid);
    frame_str(L, "token", p->token);
    lua_setfield(L, -2, "resume");
  }
  if (send_frame(p, err, errlen) < 0) {
    rc = HS_FAILED;
    goto done;
  }
  deadline = now_ms() + HANDSHAKE_MS;
  for (;;) {
    const char *c, *m;
    rc = read_frame(p, deadline, err, errlen);
    if (rc == RD_TIMEOUT) {
      snprintf(err, errlen, "no welcome from the server within %d s",
               HANDSHAKE_MS / 1000);
      rc = HS_FAILED;
      break;
    }
    if (rc == RD_SIGNAL) {
      rc = HS_SIGNAL;
      break;
    }
    if (rc != RD_FRAME) {
      rc = HS_FAILED;
      break;
    }
    if (field_is(L, -1, "type", "welcome")) {
      rc = take_welcome(p, err, errlen);
      break;
    }
    if (field_is(L, -1, "type", "error")) {
      c = field_str(L, -1, "code");
      m = field_str(L, -1, "message");
      snprintf(code, codelen, "%s", c ? c : "unknown");
      snprintf(err, errlen, "%s: %s", c ? c : "unknown",
               m ? m : "no reason given");
      rc = HS_REFUSED;
      break;
    }
    if (field_is(L, -1, "type", "ping") &&
        send_simple(p, "pong", err, errlen) < 0) {
      rc = HS_FAILED;
      break;
    }
    lua_settop(L, top);
  }

done:
  lua_settop(L, top);
  if (rc != HS_OK) peer_close(p);
  return rc;
}

/* ---- command line ------------------------------------------------------- */

/*
 * When argv[*i] is the option `name` ("--server"), stores its value
 * ("--server=V", or "--server V" taking the next argument) in *val and
 * returns 1; returns 0 for any other argument, and -1 after printing the
 * error when the value is missing.
 */
static int opt_value(const char *cmd, int argc, char **argv, int *i,
                     const char *name, const char **val) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0) return 0;
  if (a[n] == '=') {
    *val = a + n + 1;
    return 1;
  }
  if (a[n] != '\0') return 0;
  if (*i + 1 >= argc) {
    fprintf(stderr, "herald: %s: option '%s' needs a value\n", cmd, name);
    return -1;
  }
  *i += 1;
  *val = argv[*i];
  return 1;
}

static int usage_error(const char *cmd) {
  fprintf(stderr, "herald: %s: try 'herald %s --help'\n", cmd, cmd);
  return 2;
}

/* Parses a number of seconds >= 0 (> 0 when `positive`). */
static int parse_seconds(const char *cmd, const char *name, const char *s,
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

/*
 * Fills the peer's address (from --server, else HERALD_SERVER, else the
 * default) and identity (defaults: login name, host name). Prints the
 * error and returns -1 for an invalid value.
 */
static int peer_setup(peer_t *p, const char *cmd, const char *server,
                      const char *user, const char *machine,
                      const char *sysuser) {
  const char *from = "--server";
  char err[256], login[USER_MAX + 1] = "";
  struct passwd *pw = getpwuid(getuid());

  if (server == NULL) {
    server = getenv("HERALD_SERVER");
    from = "HERALD_SERVER";
    if (server == NULL || server[0] == '\0') server = DEFAULT_SERVER;
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

/* ---- herald client: alerts ---------------------------------------------- */

typedef struct client {
  peer_t p;
  int json, once, notify, retry, utf8;
  double give_up;
  long long seen[SEEN_MAX]; /* ring of ids shown in this session */
  size_t seen_n, seen_next;
  pid_t kids[MAX_KIDS];
  int nkids, notify_warned;
} client_t;

static int seen_has(const client_t *c, long long id) {
  for (size_t i = 0; i < c->seen_n; i++)
    if (c->seen[i] == id) return 1;
  return 0;
}

static void seen_add(client_t *c, long long id) {
  c->seen[c->seen_next] = id;
  c->seen_next = (c->seen_next + 1) % SEEN_MAX;
  if (c->seen_n < SEEN_MAX) c->seen_n++;
}

/*
 * Formats the local wall-clock time HH:MM:SS of an ISO 8601 timestamp
 * ("2026-11-26T21:00:00.000Z", or with a +HH:MM offset), or of now when
 * iso is NULL or unreadable.
 */
static void local_hms(const char *iso, char out[16]) {
  time_t t = time(NULL);
  struct tm tm;
  int y, mo, d, h, mi, s, n = 0;
  if (iso != NULL && sscanf(iso, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h,
                            &mi, &s, &n) == 6 && n > 0) {
    const char *z = iso + n;
    int oh = 0, om = 0, sign = 0;
    if (*z == '.')
      for (z++; isdigit((unsigned char)*z); z++) {}
    if ((*z == '+' || *z == '-') && sscanf(z + 1, "%2d:%2d", &oh, &om) == 2)
      sign = *z == '+' ? 1 : -1;
    if (*z == 'Z' || *z == '\0' || sign != 0) {
      memset(&tm, 0, sizeof(tm));
      tm.tm_year = y - 1900;
      tm.tm_mon = mo - 1;
      tm.tm_mday = d;
      tm.tm_hour = h;
      tm.tm_min = mi;
      tm.tm_sec = s;
      t = timegm(&tm) - sign * (oh * 3600 + om * 60);
    }
  }
  localtime_r(&t, &tm);
  strftime(out, 16, "%H:%M:%S", &tm);
}

/* Box width: the terminal's width less one column, at most the maximum. */
static int box_width(void) {
  struct winsize ws;
  int cols = 80;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    cols = ws.ws_col;
  return cols - 1 < ALERT_MAX_WIDTH ? cols - 1 : ALERT_MAX_WIDTH;
}

/* Is `prog` an executable file in one of $PATH's folders? */
static int in_path(const char *prog) {
  const char *path = getenv("PATH"), *p;
  char file[4096];
  if (path == NULL) return 0;
  for (p = path;; p++) {
    const char *end = strchr(p, ':');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    snprintf(file, sizeof(file), "%.*s/%s", n ? (int)n : 1, n ? p : ".",
             prog);
    if (access(file, X_OK) == 0) return 1;
    if (end == NULL) return 0;
    p = end;
  }
}

/* Collects finished notify-send processes, warning once about a failure. */
static void reap_kids(client_t *c) {
  for (int i = 0; i < c->nkids;) {
    int st;
    pid_t r = waitpid(c->kids[i], &st, WNOHANG);
    if (r == 0) {
      i++;
      continue;
    }
    if (r > 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0) &&
        !c->notify_warned) {
      fprintf(stderr, "herald: notify-send failed; messages are still shown "
              "here\n");
      c->notify_warned = 1;
    }
    c->kids[i] = c->kids[--c->nkids];
  }
}

/* Starts `notify-send herald TEXT` without waiting for it. */
static void notify(client_t *c, const char *text) {
  pid_t pid;
  reap_kids(c);
  if (c->nkids >= MAX_KIDS) return; /* the desktop is not keeping up */
  pid = fork();
  if (pid == 0) {
    char *argv[] = {"notify-send", "--", "herald", (char *)text, NULL};
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
      dup2(fd, 0);
      dup2(fd, 1);
      dup2(fd, 2);
    }
    sigprocmask(SIG_SETMASK, &wait_mask, NULL);
    execvp(argv[0], argv);
    _exit(127);
  }
  if (pid > 0) {
    c->kids[c->nkids++] = pid;
  } else if (!c->notify_warned) {
    fprintf(stderr, "herald: cannot start notify-send: %s\n",
            strerror(errno));
    c->notify_warned = 1;
  }
}

/* Shows one message as a box on stdout, rings the bell on a terminal. */
static void show_alert(client_t *c, const char *text, const char *sent_at) {
  char hms[16], *box;
  int width = box_width(), len;
  local_hms(sent_at, hms);
  len = alert_render(NULL, 0, hms, text, width, c->utf8);
  box = len >= 0 ? malloc((size_t)len + 1) : NULL;
  if (box == NULL) {
    /* keep the message visible even without memory for its frame */
    printf("\nMessage from the server (%s): %s\n", hms, text);
  } else {
    alert_render(box, (size_t)len + 1, hms, text, width, c->utf8);
    fputc('\n', stdout);
    fputs(box, stdout);
    free(box);
  }
  if (isatty(STDOUT_FILENO)) fputc('\a', stdout);
  fflush(stdout);
  if (c->notify) notify(c, text);
}

/* ---- herald client: the session ----------------------------------------- */

/* Status lines go to stdout, or to stderr when stdout carries JSON. */
static FILE *info(const client_t *c) { return c->json ? stderr : stdout; }

/* "3C81A8D7…": enough of a session ID to recognize it. */
static const char *short_id(const client_t *c, const char *sid, char *buf,
                            size_t len) {
  snprintf(buf, len, "%.8s%s", sid, c->utf8 ? "\u2026" : "...");
  return buf;
}

/*
 * Handles one `message` frame (on top of the stack): shows it unless its
 * id was shown already, and acknowledges it. Returns 1 when it was new,
 * 0 for a duplicate, -1 when the ack cannot be sent.
 */
static int on_message(client_t *c, char *err, size_t errlen) {
  lua_State *L = c->p.json.L;
  long long id;
  int has_id = field_int(L, -1, "id", &id), fresh;
  const char *text = field_str(L, -1, "text");
  fresh = !has_id || !seen_has(c, id);
  if (fresh) {
    if (c->json)
      echo_line(&c->p);
    else
      show_alert(c, text ? text : "", field_str(L, -1, "sentAt"));
    if (has_id) seen_add(c, id);
  }
  if (has_id) {
    frame_new(L, "ack");
    frame_int(L, "id", id);
    if (send_frame(&c->p, err, errlen) < 0) return -1;
  }
  return fresh;
}

/*
 * Handles the frame on top of the stack (left there). Returns 1 when the
 * client must exit with *status, 0 to go on, -1 when the connection is
 * lost (err says why).
 */
static int on_frame(client_t *c, int *status, char *err, size_t errlen) {
  lua_State *L = c->p.json.L;
  const char *type = field_str(L, -1, "type"), *a, *b;
  int rc;
  if (type == NULL) return 0;
  if (strcmp(type, "ping") == 0) return send_simple(&c->p, "pong", err, errlen);
  if (strcmp(type, "message") == 0) {
    rc = on_message(c, err, errlen);
    if (rc < 0) return -1;
    if (rc == 1 && c->once) {
      send_simple(&c->p, "bye", err, errlen);
      *status = 0;
      return 1;
    }
    return 0;
  }
  if (strcmp(type, "drop") == 0) {
    a = field_str(L, -1, "reason");
    fprintf(stderr, "herald: dropped by the server: %s\n",
            a ? a : "no reason given");
    *status = 1;
    return 1;
  }
  if (strcmp(type, "error") == 0 && !c->json) {
    a = field_str(L, -1, "code");
    b = field_str(L, -1, "message");
    fprintf(stderr, "herald: the server reports an error: %s: %s\n",
            a ? a : "unknown", b ? b : "no message");
  }
  return 0;
}

/*
 * Runs one connected session: answers pings, shows messages, pings a
 * quiet server every heartbeat. Returns 1 with *status when the client
 * must exit, -1 when the connection is lost (err says why). The caller
 * closes the connection.
 */
static int client_session(client_t *c, int *status, char *err,
                          size_t errlen) {
  peer_t *p = &c->p;
  lua_State *L = p->json.L;
  int top = lua_gettop(L);
  int64_t hb = (int64_t)p->heartbeat * 1000;
  for (;;) {
    int64_t lost_at = p->last_heard + LOST_HEARTBEATS * hb;
    int64_t ping_at = (p->last_ping > p->last_heard ? p->last_ping
                                                    : p->last_heard) + hb;
    int rc;
    reap_kids(c);
    rc = read_frame(p, ping_at < lost_at ? ping_at : lost_at, err, errlen);
    if (rc == RD_TIMEOUT) {
      if (now_ms() >= lost_at) {
        snprintf(err, errlen, "nothing heard from the server for %d s",
                 LOST_HEARTBEATS * p->heartbeat);
        return -1;
      }
      p->last_ping = now_ms();
      if (send_simple(p, "ping", err, errlen) < 0) return -1;
      continue;
    }
    if (rc == RD_SIGNAL) {
      send_simple(p, "bye", err, errlen);
      *status = 0;
      return 1;
    }
    if (rc != RD_FRAME) return -1;
    rc = on_frame(c, status, err, errlen);
    lua_settop(L, top);
    if (rc != 0) return rc;
  }
}

/* The delay before reconnection attempt n (1, 2, …): 0.5 s doubling up to
 * 10 s, each ±25% at random so that clients do not return in step. */
static int64_t backoff_ms(int attempt) {
  int64_t d = BACKOFF_START_MS;
  for (int i = 1; i < attempt && d < BACKOFF_CAP_MS; i++) d *= 2;
  if (d > BACKOFF_CAP_MS) d = BACKOFF_CAP_MS;
  return (int64_t)((double)d * (0.75 + 0.5 * drand48()));
}

/* Says which session the client now has, after a successful handshake. */
static void announce(client_t *c, int had_session, const char *old_sid) {
  char a[32], b[32];
  if (!had_session)
    fprintf(info(c), "connected to %s as %s (session %s)\n", c->p.addr_str,
            c->p.user, short_id(c, c->p.sid, a, sizeof(a)));
  else if (strcmp(old_sid, c->p.sid) == 0)
    fprintf(info(c), "resumed session %s\n",
            short_id(c, c->p.sid, a, sizeof(a)));
  else
    fprintf(info(c), "the server no longer had session %s; new session %s\n",
            short_id(c, old_sid, a, sizeof(a)),
            short_id(c, c->p.sid, b, sizeof(b)));
  fflush(info(c));
}

/*
 * Connects, runs sessions and reconnects after each loss (resuming the
 * session when the server still has it) until the client must exit.
 * Returns the exit status.
 */
static int client_run(client_t *c) {
  char err[256], code[64], old_sid[sizeof(c->p.sid)];
  int attempt = 0, had_session = 0, connected_once = 0, status = 0;
  int64_t outage = -1; /* when the current outage began */

  for (;;) {
    int resume = had_session && c->p.token != NULL, rc, lost = 0;
    int64_t delay, now;
    snprintf(old_sid, sizeof(old_sid), "%s", c->p.sid);
    rc = handshake(&c->p, resume, code, sizeof(code), err, sizeof(err));
    if (rc == HS_REFUSED && resume && strcmp(code, "unauthorized") == 0) {
      /* the session expired or the server restarted: start a new one */
      free(c->p.token);
      c->p.token = NULL;
      rc = handshake(&c->p, 0, code, sizeof(code), err, sizeof(err));
    }
    if (rc == HS_SIGNAL) return 0;
    if (rc == HS_REFUSED) {
      fprintf(stderr, "herald: connection refused by the server: %s\n", err);
      return 1;
    }
    if (rc == HS_OK) {
      announce(c, had_session, old_sid);
      if (!had_session || strcmp(old_sid, c->p.sid) != 0)
        c->seen_n = c->seen_next = 0; /* ids are only unique per session */
      had_session = connected_once = 1;
      attempt = 0;
      rc = client_session(c, &status, err, sizeof(err));
      peer_close(&c->p);
      if (rc > 0) return status;
      lost = 1;
      outage = now_ms();
    } else if (!connected_once && !c->retry) {
      fprintf(stderr, "herald: cannot connect to %s: %s\n", c->p.addr_str,
              err);
      return 2;
    } else if (outage < 0) {
      outage = now_ms();
    }

    attempt++;
    delay = backoff_ms(attempt);
    now = now_ms();
    if (c->give_up > 0) {
      int64_t left = outage + (int64_t)(c->give_up * 1000) - now;
      if (left <= 0) {
        fprintf(stderr, "herald: gave up %s %s after %g s: %s\n",
                connected_once ? "reconnecting to" : "connecting to",
                c->p.addr_str, c->give_up, err);
        return connected_once ? 1 : 2;
      }
      if (delay > left) delay = left;
    }
    if (lost)
      fprintf(stderr, "herald: connection lost: %s; reconnecting in %.1f s "
              "(attempt %d)\n", err, (double)delay / 1000, attempt);
    else
      fprintf(stderr, "herald: cannot %s %s: %s; retrying in %.1f s "
              "(attempt %d)\n", connected_once ? "reconnect to" : "connect to",
              c->p.addr_str, err, (double)delay / 1000, attempt);
    if (wait_fd(-1, 0, now + delay, 1) == WAIT_SIGNAL) return 0;
  }
}

static void client_usage(void) {
  printf(
    "usage: herald client [OPTIONS]\n"
    "\n"
    "Connect to a herald server as a remote user and show each message\n"
    "from the server as an alert in this terminal.\n"
    "\n"
    "  --server HOST:PORT   server to connect to (default: $HERALD_SERVER,\n"
    "                       else " DEFAULT_SERVER ")\n"
    "  --user NAME          user name (default: your login name)\n"
    "  --machine NAME       machine name (default: this host's name)\n"
    "  --system-user NAME   OS account name (default: your login name)\n"
    "  --notify             also show messages as desktop notifications\n"
    "                       (notify-send)\n"
    "  --json               print every frame received as one JSON line\n"
    "                       instead of alerts\n"
    "  --once               exit after the first message\n"
    "  --retry              keep trying when the server cannot be reached\n"
    "                       at start (default: exit with status 2)\n"
    "  --give-up SECONDS    stop reconnecting after SECONDS without a\n"
    "                       connection (default 0: never)\n"
    "  --help               show this help\n"
    "\n"
    "The client reconnects by itself and resumes its session. Exit status:\n"
    "0 interrupted or --once done, 1 dropped or refused by the server,\n"
    "2 usage error or server unreachable at start.\n");
}

int client_main(int argc, char **argv) {
  client_t *c;
  const char *server = NULL, *user = NULL, *machine = NULL, *sysuser = NULL;
  const char *give_up = NULL;
  char err[256];
  sigstate_t sigs;
  int status = 2;

  c = calloc(1, sizeof(*c));
  if (c == NULL) {
    fprintf(stderr, "herald: client: out of memory\n");
    return 1;
  }
  c->p.fd = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int r = 0;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      client_usage();
      status = 0;
      goto done;
    }
    if (strcmp(a, "--json") == 0) c->json = 1;
    else if (strcmp(a, "--once") == 0) c->once = 1;
    else if (strcmp(a, "--notify") == 0) c->notify = 1;
    else if (strcmp(a, "--retry") == 0) c->retry = 1;
    else if ((r = opt_value("client", argc, argv, &i, "--server", &server)) ||
             (r = opt_value("client", argc, argv, &i, "--user", &user)) ||
             (r = opt_value("client", argc, argv, &i, "--machine",
                            &machine)) ||
             (r = opt_value("client", argc, argv, &i, "--system-user",
                            &sysuser)) ||
             (r = opt_value("client", argc, argv, &i, "--give-up",
                            &give_up))) {
      if (r < 0) goto usage;
    } else {
      if (a[0] == '-')
        fprintf(stderr, "herald: client: unknown option '%s'\n", a);
      else
        fprintf(stderr, "herald: client: unexpected argument '%s'\n", a);
      goto usage;
    }
  }
  if (give_up != NULL &&
      parse_seconds("client", "--give-up", give_up, 0, &c->give_up) < 0)
    goto usage;
  if (peer_setup(&c->p, "client", server, user, machine, sysuser) < 0)
    goto usage;

  setlocale(LC_CTYPE, "");
  c->utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
  c->p.echo = c->json;
  if (c->notify && !in_path("notify-send")) {
    fprintf(stderr, "herald: client: notify-send not found; messages are "
            "shown in the terminal only\n");
    c->notify = 0;
  }
  if (json_open(&c->p.json, err, sizeof(err)) < 0) {
    fprintf(stderr, "herald: client: %s\n", err);
    status = 1;
    goto done;
  }
  srand48((long)time(NULL) ^ ((long)getpid() << 16));
  signals_catch(&sigs);
  status = client_run(c);
  peer_close(&c->p);
  signals_restore(&sigs);
  goto done;

usage:
  status = usage_error("client");
done:
  json_close(&c->p.json);
  free(c->p.token);
  free(c->p.in.buf);
  free(c);
  return status;
}

/* ---- herald call -------------------------------------------------------- */

static void call_usage(void) {
  printf(
    "usage: herald call [OPTIONS] METHOD [JSON_ARG...]\n"
    "\n"
    "Call the exposed server method METHOD with the given arguments, each\n"
    "one JSON value (quote strings: '\"text\"'), and print its result as\n"
    "JSON.\n"
    "\n"
    "  --server HOST:PORT   server to connect to (default: $HERALD_SERVER,\n"
    "                       else " DEFAULT_SERVER ")\n"
    "  --user NAME          user name (default: your login name)\n"
    "  --timeout SECONDS    how long to wait for the result (default 60)\n"
    "  --help               show this help\n"
    "  --                   what follows is METHOD and arguments\n"
    "\n"
    "Exit status: 0 success, 1 the method failed or the server refused,\n"
    "2 usage error or server unreachable.\n");
}

/*
 * Decodes the JSON arguments into a new array table pushed on the stack
 * (EMPTY_ARRAY when there are none, so the frame says "args":[]). An
 * argument written as [] stays an array the same way; an empty array
 * nested deeper encodes as {}, a limit of lua-cjson 2.1.0. Returns 0, or
 * -1 after printing which argument is not JSON (nothing pushed).
 */
static int push_args(json_t *j, int n, char **args) {
  lua_State *L = j->L;
  char why[200];
  if (n == 0) {
    lua_pushstring(L, EMPTY_ARRAY);
    return 0;
  }
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    const char *s = args[i];
    if (json_decode(j, s, strlen(s), why, sizeof(why)) < 0) {
      fprintf(stderr, "herald: call: argument %d is not valid JSON: %s\n",
              i + 1, why);
      lua_pop(L, 1);
      return -1;
    }
    while (isspace((unsigned char)*s)) s++;
    if (*s == '[' && lua_istable(L, -1)) {
      lua_pushnil(L);
      if (lua_next(L, -2) == 0) {
        lua_pop(L, 1);
        lua_pushstring(L, EMPTY_ARRAY);
      } else {
        lua_pop(L, 2);
      }
    }
    lua_rawseti(L, -2, i + 1);
  }
  return 0;
}

/*
 * Waits for the result of call 1, answering pings. Messages that arrive
 * meanwhile are not acknowledged: nobody has seen them. Returns the exit
 * status; prints the value or the error.
 */
static int call_wait(peer_t *p, const char *method, double timeout) {
  lua_State *L = p->json.L;
  int top = lua_gettop(L);
  int64_t deadline = now_ms() + (int64_t)(timeout * 1000);
  char err[256];
  for (;;) {
    const char *a, *b;
    long long id;
    int rc = read_frame(p, deadline, err, sizeof(err)), ok;
    if (rc == RD_TIMEOUT) {
      fprintf(stderr, "herald: call %s: no result within %g s\n", method,
              timeout);
      return 1;
    }
    if (rc == RD_SIGNAL) {
      fprintf(stderr, "herald: call %s: interrupted\n", method);
      return 1;
    }
    if (rc != RD_FRAME) {
      fprintf(stderr, "herald: call %s: connection lost before the result: "
              "%s\n", method, err);
      return 1;
    }
    if (field_is(L, -1, "type", "ping")) {
      send_simple(p, "pong", err, sizeof(err));
    } else if (field_is(L, -1, "type", "result") &&
               field_int(L, -1, "id", &id) && id == 1) {
      lua_getfield(L, -1, "ok");
      ok = lua_toboolean(L, -1);
      lua_pop(L, 1);
      if (!ok) {
        a = field_str(L, -1, "error");
        fprintf(stderr, "herald: call %s: %s\n", method,
                a ? a : "the method failed");
        return 1;
      }
      lua_getfield(L, -1, "value");
      if (lua_isnil(L, -1)) {
        puts("null");
      } else {
        char *out;
        size_t n;
        if (json_encode(&p->json, -1, 1, 0, &out, &n, err, sizeof(err)) < 0) {
          fprintf(stderr, "herald: call %s: %s\n", method, err);
          return 1;
        }
        fwrite(out, 1, n, stdout);
        free(out);
      }
      fflush(stdout);
      return 0;
    } else if (field_is(L, -1, "type", "drop")) {
      a = field_str(L, -1, "reason");
      fprintf(stderr, "herald: call %s: dropped by the server: %s\n", method,
              a ? a : "no reason given");
      return 1;
    } else if (field_is(L, -1, "type", "error")) {
      a = field_str(L, -1, "code");
      b = field_str(L, -1, "message");
      fprintf(stderr, "herald: call %s: %s: %s\n", method, a ? a : "unknown",
              b ? b : "no message");
      return 1;
    }
    lua_settop(L, top);
  }
}

int client_call_main(int argc, char **argv) {
  peer_t *p;
  const char *server = NULL, *user = NULL, *timeout_s = NULL;
  const char *method = NULL;
  char **args;
  int nargs = 0, status = 2, options = 1, rc;
  double timeout = 60;
  char err[256], code[64];
  sigstate_t sigs;
  lua_State *L;

  p = calloc(1, sizeof(*p));
  args = calloc((size_t)argc + 1, sizeof(*args));
  if (p == NULL || args == NULL) {
    fprintf(stderr, "herald: call: out of memory\n");
    free(p);
    free(args);
    return 1;
  }
  p->fd = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int r = 0;
    if (options && strcmp(a, "--") == 0) {
      options = 0;
    } else if (options && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
      call_usage();
      status = 0;
      goto done;
    } else if (options &&
               ((r = opt_value("call", argc, argv, &i, "--server",
                               &server)) ||
                (r = opt_value("call", argc, argv, &i, "--user", &user)) ||
                (r = opt_value("call", argc, argv, &i, "--timeout",
                               &timeout_s)))) {
      if (r < 0) goto usage;
    } else if (options && strncmp(a, "--", 2) == 0) {
      fprintf(stderr, "herald: call: unknown option '%s'\n", a);
      goto usage;
    } else if (method == NULL) {
      method = a;
    } else {
      args[nargs++] = argv[i]; /* "-1" is a JSON number, not an option */
    }
  }
  if (method == NULL || method[0] == '\0') {
    fprintf(stderr, "herald: call: missing METHOD\n");
    goto usage;
  }
  if (timeout_s != NULL &&
      parse_seconds("call", "--timeout", timeout_s, 1, &timeout) < 0)
    goto usage;
  if (peer_setup(p, "call", server, user, NULL, NULL) < 0) goto usage;
  if (json_open(&p->json, err, sizeof(err)) < 0) {
    fprintf(stderr, "herald: call: %s\n", err);
    status = 1;
    goto done;
  }
  L = p->json.L;
  if (push_args(&p->json, nargs, args) < 0) goto done; /* status 2 */

  signals_catch(&sigs);
  rc = handshake(p, 0, code, sizeof(code), err, sizeof(err));
  if (rc == HS_OK) {
    frame_new(L, "call");
    frame_int(L, "id", 1);
    frame_str(L, "method", method);
    lua_rotate(L, -2, 1); /* the args, pushed earlier, above the frame */
    lua_setfield(L, -2, "args");
    if (send_frame(p, err, sizeof(err)) < 0) {
      fprintf(stderr, "herald: call %s: cannot send the call: %s\n", method,
              err);
      status = 1;
    } else {
      status = call_wait(p, method, timeout);
    }
    send_simple(p, "bye", err, sizeof(err));
  } else if (rc == HS_REFUSED) {
    fprintf(stderr, "herald: connection refused by the server: %s\n", err);
    status = 1;
  } else if (rc == HS_SIGNAL) {
    fprintf(stderr, "herald: call %s: interrupted\n", method);
    status = 1;
  } else {
    fprintf(stderr, "herald: cannot connect to %s: %s\n", p->addr_str, err);
    status = 2;
  }
  peer_close(p);
  signals_restore(&sigs);
  goto done;

usage:
  status = usage_error("call");
done:
  json_close(&p->json);
  free(p->token);
  free(p->in.buf);
  free(p);
  free(args);
  return status;
}
