/*
 * floor: the machine's floor for herald's benchmarks (tests/bench/).
 *
 * The least a server must do for tests/bench/loadgen's herald modes to run
 * against it unchanged, so that `make bench` can say how far herald (and
 * Redis) are from what this machine's kernel allows. One process, one
 * level-triggered epoll loop, non-blocking sockets, libc only. It speaks
 * just enough of herald's protocol (docs/protocol.md: one JSON object per
 * line) and nothing else: it parses no JSON, keeps no session, checks
 * nothing. Every line it reads is taken by its first bytes:
 *
 *   {"type":"hello"...   answered with one fixed welcome line; the socket
 *                        joins the greeted ones.
 *   {"type":"call"...    answered with one fixed result line whose id is
 *                        the call's own digits, copied (loadgen matches a
 *                        result to its call by id). When the call's method
 *                        is "broadcast", first ONE message frame is built
 *                        around its first argument (loadgen's text, which
 *                        names the round and needs no escaping) and that
 *                        same buffer is written to every greeted socket,
 *                        one send() each, in one loop: the fan-out floor.
 *   anything else        read and discarded (acks, pongs).
 *
 * The frames have the shape and size of herald's (message: id, text and
 * a sentAt of 24 characters; welcome: a session id, a resume token, the
 * heartbeat, the server and the groups), so that both put the same bytes on
 * the wire. Bytes a socket does not take at once are kept for it and
 * written when it is writable again, in order, as any server must.
 *
 * Usage: floor [--port P]   (127.0.0.1; default 0, the system's choice)
 * It prints "floor: listening on 127.0.0.1:P" once it accepts connections,
 * runs until SIGTERM or SIGINT, and then prints what it did.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define EVMAX 1024
#define READ_CHUNK 65536
#define LINE_MAX_BYTES 65536            /* a longer line closes the socket */
#define OUT_MAX ((size_t)64 << 20)      /* unwritten bytes kept per socket */

struct conn {
  int open;
  int greeted;                  /* its index in greeted[] + 1, or 0 */
  uint32_t events;              /* current epoll interest */
  char *part;                   /* a partial line from the last read */
  size_t plen;
  char *out;                    /* bytes the socket has not taken yet */
  size_t olen, ooff, ocap;
};

static struct conn *conns;      /* indexed by descriptor */
static int nconns;              /* descriptors the table holds */
static int *greeted;            /* descriptors of the greeted sockets */
static int ngreeted;
static int ep;
static volatile sig_atomic_t stopping;
static char rbuf[LINE_MAX_BYTES + READ_CHUNK];
static char frame[LINE_MAX_BYTES + 256];
static uint64_t n_accepted, n_broadcasts, n_calls, n_deliveries;
static int64_t message_id;

static const char welcome[] =
  "{\"type\":\"welcome\",\"sessionID\":\"3A69DA2BC6DB49089B33F3D999366A42\","
  "\"resumeToken\":\"0A8EE03D3E8C42B3AE2AD6A52C79C9A4\",\"heartbeat\":30,"
  "\"server\":\"floor\",\"groups\":[]}\n";

static void on_stop(int sig)
{
  (void)sig;
  stopping = 1;
}

static void set_events(int fd, uint32_t events)
{
  struct epoll_event ev;
  if (conns[fd].events == events)
    return;
  memset(&ev, 0, sizeof ev);
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) == 0)
    conns[fd].events = events;
}

static void drop(int fd)
{
  struct conn *c = &conns[fd];
  if (!c->open)
    return;
  if (c->greeted) {             /* swap-remove from greeted[] */
    int k = c->greeted - 1, last = greeted[--ngreeted];
    greeted[k] = last;
    conns[last].greeted = k + 1;
  }
  free(c->part);
  free(c->out);
  memset(c, 0, sizeof *c);
  close(fd);                    /* also leaves the epoll set */
}

/* Write p[0..n) to fd, or keep what it does not take for later. */
static void put(int fd, const char *p, size_t n)
{
  struct conn *c = &conns[fd];
  if (c->olen == 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w == (ssize_t)n)
      return;
    if (w < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        drop(fd);
        return;
      }
      w = 0;
    }
    p += w;
    n -= (size_t)w;
    c->ooff = 0;
  }
  if (c->olen + n > OUT_MAX) {
    drop(fd);
    return;
  }
  if (c->ooff + c->olen + n > c->ocap) {
    if (c->ooff > 0) {
      memmove(c->out, c->out + c->ooff, c->olen);
      c->ooff = 0;
    }
    if (c->olen + n > c->ocap) {
      size_t cap = c->ocap ? c->ocap : 4096;
      char *q;
      while (cap < c->olen + n)
        cap *= 2;
      q = realloc(c->out, cap);
      if (q == NULL) {
        drop(fd);
        return;
      }
      c->out = q;
      c->ocap = cap;
    }
  }
  memcpy(c->out + c->ooff + c->olen, p, n);
  c->olen += n;
  set_events(fd, EPOLLIN | EPOLLOUT);
}

static void flush_out(int fd)
{
  struct conn *c = &conns[fd];
  while (c->olen > 0) {
    ssize_t w = send(fd, c->out + c->ooff, c->olen,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        drop(fd);
      return;
    }
    c->ooff += (size_t)w;
    c->olen -= (size_t)w;
  }
  c->ooff = 0;
  set_events(fd, EPOLLIN);
}

/* The message frame around text, written to every greeted socket. */
static void broadcast(const char *text, size_t tlen)
{
  static const char head[] = "{\"type\":\"message\",\"id\":";
  static const char mid[] = ",\"text\":\"";
  static const char tail[] = "\",\"sentAt\":\"2000-01-01T00:00:00.000Z\"}\n";
  size_t n = sizeof head - 1;
  int k;
  memcpy(frame, head, n);
  n += (size_t)snprintf(frame + n, 24, "%lld", (long long)++message_id);
  memcpy(frame + n, mid, sizeof mid - 1);
  n += sizeof mid - 1;
  memcpy(frame + n, text, tlen);
  n += tlen;
  memcpy(frame + n, tail, sizeof tail - 1);
  n += sizeof tail - 1;
  n_broadcasts++;
  /* downwards: a socket dropped on the way is replaced at its index by the
   * last one, which has had the frame already */
  for (k = ngreeted - 1; k >= 0; k--) {
    if (k >= ngreeted)
      continue;
    n_deliveries++;
    put(greeted[k], frame, n);
  }
}

/* One call line: broadcast first when the method is broadcast, then the
 * result with the call's own id digits. */
static void call(int fd, const char *p, size_t n)
{
  static const char head[] = "{\"type\":\"result\",\"id\":";
  static const char tail[] = ",\"ok\":true,\"value\":null}\n";
  char reply[128];
  const char *end = p + n, *id, *d, *m;
  size_t idlen, len;
  n_calls++;
  id = memmem(p, n, "\"id\":", 5);
  if (id == NULL)
    return;
  for (d = id += 5; d < end && *d >= '0' && *d <= '9' && d - id < 20; d++)
    ;
  idlen = (size_t)(d - id);
  m = memmem(p, n, "\"method\":\"broadcast\"", 20);
  if (m != NULL) {
    const char *t = memmem(m, (size_t)(end - m), "\"args\":[\"", 9), *q;
    if (t != NULL) {
      t += 9;
      q = memchr(t, '"', (size_t)(end - t));
      if (q != NULL)
        broadcast(t, (size_t)(q - t));
    }
    if (!conns[fd].open)
      return;
  }
  memcpy(reply, head, sizeof head - 1);
  len = sizeof head - 1;
  memcpy(reply + len, id, idlen);
  len += idlen;
  memcpy(reply + len, tail, sizeof tail - 1);
  len += sizeof tail - 1;
  put(fd, reply, len);
}

static void line(int fd, const char *p, size_t n)
{
  static const char type[] = "{\"type\":\"";
  const size_t tl = sizeof type - 1;
  if (n < tl + 5 || memcmp(p, type, tl) != 0)
    return;
  if (memcmp(p + tl, "ack\"", 4) == 0)
    return;
  if (memcmp(p + tl, "call\"", 5) == 0) {
    call(fd, p, n);
  } else if (n >= tl + 6 && memcmp(p + tl, "hello\"", 6) == 0 &&
             !conns[fd].greeted) {
    greeted[ngreeted++] = fd;
    conns[fd].greeted = ngreeted;
    put(fd, welcome, sizeof welcome - 1);
  }
}

static void readable(int fd)
{
  struct conn *c = &conns[fd];
  size_t have = c->plen, start = 0;
  ssize_t r;
  char *nl;
  if (have > 0) {
    memcpy(rbuf, c->part, have);
    free(c->part);
    c->part = NULL;
    c->plen = 0;
  }
  r = recv(fd, rbuf + have, READ_CHUNK, MSG_DONTWAIT);
  if (r <= 0) {
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      r = 0;
    else {
      drop(fd);
      return;
    }
  }
  have += (size_t)r;
  while ((nl = memchr(rbuf + start, '\n', have - start)) != NULL) {
    size_t stop = (size_t)(nl - rbuf);
    line(fd, rbuf + start, stop - start);
    if (!c->open)
      return;
    start = stop + 1;
  }
  if (start < have) {
    if (have - start > LINE_MAX_BYTES || (c->part = malloc(have - start))
        == NULL) {
      drop(fd);
      return;
    }
    c->plen = have - start;
    memcpy(c->part, rbuf + start, c->plen);
  }
}

static void accept_all(int lfd)
{
  for (;;) {
    struct epoll_event ev;
    int one = 1;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        fprintf(stderr, "floor: accept failed: %s\n", strerror(errno));
      return;
    }
    if (fd >= nconns) {
      close(fd);
      continue;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
      close(fd);
      continue;
    }
    memset(&conns[fd], 0, sizeof conns[fd]);
    conns[fd].open = 1;
    conns[fd].events = EPOLLIN;
    n_accepted++;
  }
}

int main(int argc, char **argv)
{
  struct sockaddr_in sa;
  socklen_t salen = sizeof sa;
  struct epoll_event ev[EVMAX];
  struct rlimit rl;
  struct sigaction act;
  long port = 0;
  int lfd, one = 1, i;
  for (i = 1; i < argc; i++) {
    char *end;
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      port = strtol(argv[++i], &end, 10);
      if (*end != '\0' || port < 0 || port > 65535) {
        fprintf(stderr, "floor: --port wants 0..65535\n");
        return 2;
      }
    } else {
      fprintf(stderr, "usage: floor [--port P]\n");
      return 2;
    }
  }
  memset(&act, 0, sizeof act);
  act.sa_handler = on_stop;
  sigaction(SIGTERM, &act, NULL);
  sigaction(SIGINT, &act, NULL);
  signal(SIGPIPE, SIG_IGN);
  /* as many sockets as the open-file limit allows (raised to the hard
   * limit when it is lower) */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  nconns = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
           && rl.rlim_cur < (1u << 22) ? (int)rl.rlim_cur : 1 << 22;
  conns = calloc((size_t)nconns, sizeof *conns);
  greeted = calloc((size_t)nconns, sizeof *greeted);
  if (conns == NULL || greeted == NULL) {
    fprintf(stderr, "floor: out of memory for %d sockets\n", nconns);
    return 1;
  }
  lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (lfd < 0 ||
      setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      listen(lfd, 4096) < 0 ||
      getsockname(lfd, (struct sockaddr *)&sa, &salen) < 0) {
    fprintf(stderr, "floor: cannot listen on 127.0.0.1:%ld: %s\n", port,
            strerror(errno));
    return 1;
  }
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    fprintf(stderr, "floor: epoll_create1 failed: %s\n", strerror(errno));
    return 1;
  }
  memset(ev, 0, sizeof ev[0]);
  ev[0].events = EPOLLIN;
  ev[0].data.fd = lfd;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev[0]) < 0) {
    fprintf(stderr, "floor: epoll_ctl failed: %s\n", strerror(errno));
    return 1;
  }
  printf("floor: listening on 127.0.0.1:%d (up to %d sockets)\n",
         ntohs(sa.sin_port), nconns);
  fflush(stdout);
  while (!stopping) {
    /* at most a second, so that a signal just before the wait is seen */
    int n = epoll_wait(ep, ev, EVMAX, 1000), k;
    if (n < 0) {
      if (errno == EINTR)
        continue;
      fprintf(stderr, "floor: epoll_wait failed: %s\n", strerror(errno));
      return 1;
    }
    for (k = 0; k < n; k++) {
      int fd = ev[k].data.fd;
      if (fd == lfd) {
        accept_all(lfd);
        continue;
      }
      if (!conns[fd].open)
        continue;
      if (ev[k].events & EPOLLOUT)
        flush_out(fd);
      if (conns[fd].open && (ev[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        readable(fd);
    }
  }
  printf("floor: stopped: %llu connections accepted, %llu calls, "
         "%llu broadcasts, %llu deliveries\n", (unsigned long long)n_accepted,
         (unsigned long long)n_calls, (unsigned long long)n_broadcasts,
         (unsigned long long)n_deliveries);
  return 0;
}
