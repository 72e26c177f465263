/*
 * client: `herald client`, the remote user's side of herald: shows each
 * message from the server as an alert in the terminal, and reconnects,
 * resuming its session, when the connection is lost or the server says
 * it is restarting.
 */
#include "client.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <langinfo.h>
#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>

#include "alert.h"
#include "clock.h"
#include "peer.h"

#define LOST_HEARTBEATS 3            /* silence that means a lost server */
#define BACKOFF_START_MS 500
#define BACKOFF_CAP_MS 10000
/* The longest wait a `reconnect` may ask for, in seconds, and the one
 * used when its `after` is missing or not a number. */
#define RESTART_AFTER_MAX 3600
#define RESTART_AFTER_DEFAULT 1
/* Server text in a status line: a reason of 1024 bytes, cleaned. */
#define REASON_MAX 2048
/*
 * Message ids remembered for de-duplication. A resume re-sends at most the
 * session's pending messages (max_pending, 1024 by default), so 4096 ids
 * cover every duplicate the protocol can produce.
 */
#define SEEN_MAX 4096
#define MAX_KIDS 16                  /* notify-send processes in flight */

/* ---- herald client: alerts ---------------------------------------------- */

typedef struct client {
  peer_t *p;
  int json, once, notify, retry, utf8;
  double give_up;
  double restart_after; /* the last `reconnect`'s wait, in seconds */
  char restart_reason[REASON_MAX];
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
    if (*z == 'Z' || *z == '\0' || sign != 0)
      t = (time_t)clock_utc_seconds(y, mo, d, h, mi, s) -
          sign * (oh * 3600 + om * 60);
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
    peer_signals_child();
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
  lua_State *L = peer_lua(c->p);
  long long id;
  int has_id = peer_field_int(L, -1, "id", &id), fresh;
  const char *text = peer_field_str(L, -1, "text");
  fresh = !has_id || !seen_has(c, id);
  if (fresh) {
    if (c->json)
      peer_echo_line(c->p);
    else
      show_alert(c, text ? text : "", peer_field_str(L, -1, "sentAt"));
    if (has_id) seen_add(c, id);
  }
  if (has_id) {
    peer_frame_new(L, "ack");
    peer_frame_int(L, "id", id);
    if (peer_send_frame(c->p, err, errlen) < 0) return -1;
  }
  return fresh;
}

/* client_session's and on_frame's results besides 0 and -1 */
enum { SESSION_EXIT = 1, SESSION_RESTART = 2 };

/*
 * Handles the frame on top of the stack (left there). Returns
 * SESSION_EXIT when the client must exit with *status, SESSION_RESTART
 * when the server is stopping to restart (c->restart_after says when to
 * come back), 0 to go on, -1 when the connection is lost (err says why).
 */
static int on_frame(client_t *c, int *status, char *err, size_t errlen) {
  lua_State *L = peer_lua(c->p);
  const char *type = peer_field_str(L, -1, "type"), *a, *b;
  char clean[REASON_MAX], clean2[REASON_MAX];
  double after;
  int rc;
  if (type == NULL) return 0;
  if (strcmp(type, "ping") == 0)
    return peer_send_simple(c->p, "pong", err, errlen);
  if (strcmp(type, "message") == 0) {
    rc = on_message(c, err, errlen);
    if (rc < 0) return -1;
    if (rc == 1 && c->once) {
      peer_send_simple(c->p, "bye", err, errlen);
      *status = 0;
      return SESSION_EXIT;
    }
    return 0;
  }
  if (strcmp(type, "reconnect") == 0) {
    /* The session is kept across the restart: not a failure. */
    if (!peer_field_num(L, -1, "after", &after) || after < 0)
      after = RESTART_AFTER_DEFAULT;
    if (after > RESTART_AFTER_MAX) after = RESTART_AFTER_MAX;
    c->restart_after = after;
    a = peer_field_str(L, -1, "reason");
    peer_clean(a ? a : "", c->restart_reason, sizeof(c->restart_reason));
    return SESSION_RESTART;
  }
  if (strcmp(type, "drop") == 0) {
    a = peer_field_str(L, -1, "reason");
    fprintf(stderr, "herald: dropped by the server: %s\n",
            a && a[0] ? peer_clean(a, clean, sizeof(clean))
                      : "no reason given");
    *status = 1;
    return SESSION_EXIT;
  }
  if (strcmp(type, "error") == 0 && !c->json) {
    a = peer_field_str(L, -1, "code");
    b = peer_field_str(L, -1, "message");
    fprintf(stderr, "herald: the server reports an error: %s: %s\n",
            a ? peer_clean(a, clean, sizeof(clean)) : "unknown",
            b ? peer_clean(b, clean2, sizeof(clean2)) : "no message");
  }
  return 0;
}

/*
 * Runs one connected session: answers pings, shows messages, pings a
 * quiet server every heartbeat. Returns SESSION_EXIT with *status when
 * the client must exit, SESSION_RESTART when the server restarts, -1 when
 * the connection is lost (err says why). The caller closes the
 * connection.
 */
static int client_session(client_t *c, int *status, char *err,
                          size_t errlen) {
  peer_t *p = c->p;
  lua_State *L = peer_lua(p);
  int top = lua_gettop(L);
  int64_t hb = (int64_t)peer_heartbeat(p) * 1000;
  for (;;) {
    int64_t heard = peer_last_heard(p), pinged = peer_last_ping(p);
    int64_t lost_at = heard + LOST_HEARTBEATS * hb;
    int64_t ping_at = (pinged > heard ? pinged : heard) + hb;
    int rc;
    reap_kids(c);
    rc = peer_read_frame(p, ping_at < lost_at ? ping_at : lost_at, err, errlen);
    if (rc == PEER_RD_TIMEOUT) {
      if (peer_now_ms() >= lost_at) {
        snprintf(err, errlen, "nothing heard from the server for %d s",
                 LOST_HEARTBEATS * peer_heartbeat(p));
        return -1;
      }
      if (peer_send_ping(p, err, errlen) < 0) return -1;
      continue;
    }
    if (rc == PEER_RD_SIGNAL) {
      peer_send_simple(p, "bye", err, errlen);
      *status = 0;
      return SESSION_EXIT;
    }
    if (rc != PEER_RD_FRAME) return -1;
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

/* Says which session the client now has, after a successful handshake
 * (`restarted`: the first since the server said it was restarting). */
static void announce(client_t *c, int had_session, const char *old_sid,
                     int restarted) {
  char a[32], b[32];
  if (restarted && strcmp(old_sid, peer_sid(c->p)) == 0)
    fprintf(info(c), "herald: reconnected to %s (session resumed)\n",
            peer_addr(c->p));
  else if (restarted)
    fprintf(info(c), "herald: reconnected to %s (new session %s: the server "
            "no longer had session %s)\n", peer_addr(c->p),
            short_id(c, peer_sid(c->p), b, sizeof(b)),
            short_id(c, old_sid, a, sizeof(a)));
  else if (!had_session)
    fprintf(info(c), "connected to %s as %s (session %s)\n", peer_addr(c->p),
            peer_user(c->p), short_id(c, peer_sid(c->p), a, sizeof(a)));
  else if (strcmp(old_sid, peer_sid(c->p)) == 0)
    fprintf(info(c), "resumed session %s\n",
            short_id(c, peer_sid(c->p), a, sizeof(a)));
  else
    fprintf(info(c), "the server no longer had session %s; new session %s\n",
            short_id(c, old_sid, a, sizeof(a)),
            short_id(c, peer_sid(c->p), b, sizeof(b)));
  fflush(info(c));
}

/*
 * Connects, runs sessions and reconnects after each loss (resuming the
 * session when the server still has it) until the client must exit.
 * Returns the exit status.
 */
static int client_run(client_t *c) {
  char err[256], code[64], old_sid[PEER_SID_MAX];
  int attempt = 0, had_session = 0, connected_once = 0, status = 0;
  int restarting = 0; /* the server said so; not back yet */
  int64_t outage = -1; /* when the current outage began */

  for (;;) {
    int resume = had_session && peer_has_token(c->p), rc, lost = 0;
    int64_t delay, now;
    snprintf(old_sid, sizeof(old_sid), "%s", peer_sid(c->p));
    if (resume) {
      rc = peer_handshake(c->p, 1, code, sizeof(code), err, sizeof(err));
      if (rc == PEER_HS_REFUSED && strcmp(code, "unauthorized") == 0) {
        /* the session expired or the server restarted: start a new one */
        peer_drop_token(c->p);
        rc = peer_login(c->p, code, sizeof(code), err, sizeof(err));
      }
    } else {
      rc = peer_login(c->p, code, sizeof(code), err, sizeof(err));
    }
    if (rc == PEER_HS_SIGNAL) return 0;
    /* Neither a refused password nor a certificate that fails
     * verification gets better with retries: stop at once, even with
     * --retry or after a lost connection. */
    if (rc == PEER_HS_AUTH) {
      fprintf(stderr, "herald: client: %s\n", err);
      return 1;
    }
    if (rc == PEER_HS_TLS) {
      fprintf(stderr, "herald: client: %s\n", err);
      return 2;
    }
    if (rc == PEER_HS_REFUSED) {
      fprintf(stderr, "herald: connection refused by the server: %s\n", err);
      return 1;
    }
    if (rc == PEER_HS_OK) {
      announce(c, had_session, old_sid, restarting);
      /* Ids are unique per session: a resumed session, even across a
       * server restart, keeps the ids shown, and a message re-sent after
       * it is not shown again. */
      if (!had_session || strcmp(old_sid, peer_sid(c->p)) != 0)
        c->seen_n = c->seen_next = 0;
      had_session = connected_once = 1;
      attempt = restarting = 0;
      rc = client_session(c, &status, err, sizeof(err));
      peer_close(c->p);
      if (rc == SESSION_EXIT) return status;
      outage = peer_now_ms();
      if (rc == SESSION_RESTART) {
        /* Come back after the wait asked for, plus up to 50% at random so
         * that the clients of a big server do not all return at once;
         * then, while the server is not back, the usual backoff. */
        restarting = 1;
        delay = (int64_t)(c->restart_after * 1000 *
                          (1 + 0.5 * drand48()));
        if (c->give_up > 0 && delay > (int64_t)(c->give_up * 1000))
          delay = (int64_t)(c->give_up * 1000);
        if (c->restart_reason[0] != '\0' &&
            strcmp(c->restart_reason, "server restarting") != 0)
          fprintf(stderr, "herald: the server is restarting (%s); "
                  "reconnecting in %.1f s\n", c->restart_reason,
                  (double)delay / 1000);
        else
          fprintf(stderr, "herald: the server is restarting; reconnecting "
                  "in %.1f s\n", (double)delay / 1000);
        if (peer_wait_fd(-1, 0, outage + delay, 1) == PEER_WAIT_SIGNAL)
          return 0;
        continue;
      }
      lost = 1;
    } else if (!connected_once && !c->retry) {
      fprintf(stderr, "herald: cannot connect to %s: %s\n", peer_addr(c->p),
              err);
      return 2;
    } else if (outage < 0) {
      outage = peer_now_ms();
    }

    attempt++;
    delay = backoff_ms(attempt);
    now = peer_now_ms();
    if (c->give_up > 0) {
      int64_t left = outage + (int64_t)(c->give_up * 1000) - now;
      if (left <= 0) {
        fprintf(stderr, "herald: gave up %s %s after %g s: %s\n",
                connected_once ? "reconnecting to" : "connecting to",
                peer_addr(c->p), c->give_up, err);
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
              peer_addr(c->p), err, (double)delay / 1000, attempt);
    if (peer_wait_fd(-1, 0, now + delay, 1) == PEER_WAIT_SIGNAL) return 0;
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
    "                       else " PEER_DEFAULT_SERVER ")\n"
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
    "  --tls                connect with TLS; the server's certificate must\n"
    "                       be valid for HOST (system CA store)\n"
    "  --ca FILE            verify the server with the CA certificates in\n"
    "                       FILE instead (implies --tls)\n"
    "  --password-stdin     read the password from the first line of stdin\n"
    "  --help               show this help\n"
    "\n"
    "The password, where the server asks for one: $HERALD_PASSWORD, else\n"
    "typed on the terminal (asked once, when the server refuses the hello\n"
    "without one), else the first line of stdin with --password-stdin.\n"
    "\n"
    "The client reconnects by itself and resumes its session, also when\n"
    "the server restarts (it says so, and the client comes back after the\n"
    "time it asks for); a message is never shown twice. Exit status:\n"
    "0 interrupted or --once done, 1 dropped or refused by the server (a\n"
    "wrong password too), 2 usage error, server unreachable at start, or\n"
    "TLS failed (the certificate, or TLS on one side only).\n");
}

int client_main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"help", no_argument, NULL, 'h'},
      {"json", no_argument, NULL, 'j'},
      {"once", no_argument, NULL, 'o'},
      {"notify", no_argument, NULL, 'n'},
      {"retry", no_argument, NULL, 'r'},
      {"machine", required_argument, NULL, 'm'},
      {"system-user", required_argument, NULL, 'y'},
      {"give-up", required_argument, NULL, 'g'},
      PEER_LONGOPTS,
      {NULL, 0, NULL, 0}};
  client_t *c;
  int ch;
  const char *machine = NULL, *sysuser = NULL, *give_up = NULL;
  peer_opts_t opts = {0};
  char err[256];
  int status = 2, r;

  c = calloc(1, sizeof(*c));
  if (c != NULL) c->p = peer_new();
  if (c == NULL || c->p == NULL) {
    fprintf(stderr, "herald: client: out of memory\n");
    free(c);
    return 1;
  }
  opterr = 0;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
    switch (ch) {
    case 'h':
      client_usage();
      status = 0;
      goto done;
    case 'j': c->json = 1; break;
    case 'o': c->once = 1; break;
    case 'n': c->notify = 1; break;
    case 'r': c->retry = 1; break;
    case 'm': machine = optarg; break;
    case 'y': sysuser = optarg; break;
    case 'g': give_up = optarg; break;
    default:
      if (peer_take_option(&opts, ch, optarg))
        break;
      peer_option_error("client", argv[optind - 1]);
      goto usage;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "herald: client: unexpected argument '%s'\n",
            argv[optind]);
    goto usage;
  }
  if (give_up != NULL &&
      peer_parse_seconds("client", "--give-up", give_up, 0, &c->give_up) < 0)
    goto usage;
  r = peer_setup_opts(c->p, "client", &opts, machine, sysuser);
  if (r == -2)
    goto usage;
  if (r < 0)
    goto done; /* status 2, no hint: the options were right */

  setlocale(LC_CTYPE, "");
  c->utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
  peer_set_echo(c->p, c->json);
  if (c->notify && !in_path("notify-send")) {
    fprintf(stderr, "herald: client: notify-send not found; messages are "
            "shown in the terminal only\n");
    c->notify = 0;
  }
  if (peer_json_open(c->p, err, sizeof(err)) < 0) {
    fprintf(stderr, "herald: client: %s\n", err);
    status = 1;
    goto done;
  }
  srand48((long)time(NULL) ^ ((long)getpid() << 16));
  peer_signals_catch();
  status = client_run(c);
  peer_close(c->p);
  peer_signals_restore();
  goto done;

usage:
  fputs("Try 'herald client --help'.\n", stderr); /* as every command */
  status = 2;
done:
  peer_free(c->p);
  free(c);
  return status;
}
