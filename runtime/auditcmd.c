#include "auditcmd.h"

#include <errno.h>
#include <getopt.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "jsonline.h"
#include "sockpath.h"
#include "utf8.h"

static const char usage[] =
    "usage: herald audit [--socket PATH] [--since TIME] [--json]\n"
    "\n"
    "Prints the running server's audit log, newest first: every message\n"
    "sent, session dropped, change of reject_new_remote_connections, job\n"
    "scheduled, unscheduled or run with run_job, every refused login and\n"
    "every login to the administrators' page, with who did it\n"
    "(method:NAME@USER, console:OSUSER, run:SCRIPT, job:NAME, admin:USER,\n"
    "server, or remote:IP for a login).\n"
    "\n"
    "  --since TIME  only the entries from TIME on: a date or a date and\n"
    "                time in UTC, as the log shows them (2026-11-30,\n"
    "                2026-11-30T21:00, 2026-11-30T21:00:05Z), or a duration\n"
    "                ago (30s, 10m, 2h, 7d)\n"
    "  --json        one JSON object per line: time, actor, action, target,\n"
    "                count, detail, outcome (the detail in full)\n"
    "  --socket      the server's admin socket (default $HERALD_SOCKET, else\n"
    "                $XDG_RUNTIME_DIR/herald.sock, else\n"
    "                /tmp/herald-$UID/herald.sock), used only when it is\n"
    "                yours, as for herald run\n"
    "\n"
    "Exit status: 0 success, 1 the server could not read its log, 2 usage\n"
    "error, server unreachable or its socket refused.\n";

/* The script the server runs: each entry as one line of JSON. */
static const char script[] =
    "local since = ...\n"
    "local log = since and audit_log(\"time >= :1\", since) or audit_log()\n"
    "for _, e in ipairs(log) do print(cjson.encode(e)) end\n";

/* The columns of the table, in order, and the longest detail shown. */
static const char *const fields[] = {"time",   "actor", "action", "target",
                                     "count",  "detail", NULL};
#define DETAIL_SHOWN 60
/* The longest field read (a detail is at most 1024 bytes). */
#define AUDIT_RAW_MAX 4096

/* --- --since ------------------------------------------------------------ */

/* Reads exactly n digits at *p. */
static int digits(const char **p, int n, int *v) {
  *v = 0;
  for (int i = 0; i < n; i++, (*p)++) {
    if (**p < '0' || **p > '9')
      return -1;
    *v = *v * 10 + (**p - '0');
  }
  return 0;
}

int auditcmd_parse_since(const char *text, int64_t now_ms, int64_t *out) {
  static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const char *p = text;
  int y, mo, d, h = 0, mi = 0, s = 0, ms = 0, leap;
  char *end;

  /* A duration: a number and a unit. */
  if (*p >= '0' && *p <= '9' && strlen(p) < 16 && strchr(p, '-') == NULL) {
    long long n;
    errno = 0;
    n = strtoll(p, &end, 10);
    if (errno != 0 || end[0] == '\0' || end[1] != '\0' ||
        n > 100LL * 365 * 24 * 3600)
      return -1;
    switch (*end) {
    case 's': *out = now_ms - n * 1000; return 0;
    case 'm': *out = now_ms - n * 60 * 1000; return 0;
    case 'h': *out = now_ms - n * 3600 * 1000; return 0;
    case 'd': *out = now_ms - n * 24 * 3600 * 1000; return 0;
    default: return -1;
    }
  }
  /* A date, and maybe a time. */
  if (digits(&p, 4, &y) < 0 || *p++ != '-' || digits(&p, 2, &mo) < 0 ||
      *p++ != '-' || digits(&p, 2, &d) < 0)
    return -1;
  if (*p == 'T' || *p == 't' || *p == ' ') {
    p++;
    if (digits(&p, 2, &h) < 0 || *p++ != ':' || digits(&p, 2, &mi) < 0)
      return -1;
    if (*p == ':') {
      p++;
      if (digits(&p, 2, &s) < 0)
        return -1;
      if (*p == '.') {
        int n = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, n++)
          if (n < 3)
            ms = ms * 10 + (*p - '0');
        if (n == 0)
          return -1;
        for (; n < 3; n++)
          ms *= 10;
      }
    }
    if (*p == 'Z' || *p == 'z')
      p++;
  }
  leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (*p != '\0' || y < 1970 || mo < 1 || mo > 12 || d < 1 ||
      d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 || mi > 59 || s > 59)
    return -1;
  *out = clock_utc_seconds(y, mo, d, h, mi, s) * 1000 + ms;
  return 0;
}

/* --- output ----------------------------------------------------------- */

/*
 * Copies text for a terminal into out (at least 4 * max + 4 bytes): line
 * breaks and tabs become spaces, other control characters (C0, DEL, C1)
 * and bytes that are not UTF-8 become '?' (a name or a message must not
 * drive the terminal), and past max characters the rest becomes "…".
 * Returns the width in characters.
 */
static size_t for_terminal(const char *text, size_t max, char *out) {
  const unsigned char *in = (const unsigned char *)text;
  size_t width = 0;
  char *o = out;

  while (*in != '\0') {
    size_t n = utf8_length(in);
    if (width == max) {
      memcpy(o, "\xE2\x80\xA6", 3); /* … */
      o += 3;
      break;
    }
    if (n == 1 && (*in == '\n' || *in == '\r' || *in == '\t')) {
      *o++ = ' ';
    } else if (n == 0 || (n == 1 && (*in < 0x20 || *in == 0x7f)) ||
               (n == 2 && in[0] == 0xC2 && in[1] < 0xA0)) {
      *o++ = '?';
    } else {
      memcpy(o, in, n);
      o += n;
    }
    in += n > 0 ? n : 1;
    width++;
  }
  *o = '\0';
  return width;
}

/* Writes s as a JSON string. */
static void put_json_string(const char *s) {
  putchar('"');
  for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
    switch (*p) {
    case '"': fputs("\\\"", stdout); break;
    case '\\': fputs("\\\\", stdout); break;
    case '\n': fputs("\\n", stdout); break;
    case '\r': fputs("\\r", stdout); break;
    case '\t': fputs("\\t", stdout); break;
    default:
      if (*p < 0x20 || *p == 0x7f)
        printf("\\u%04x", *p);
      else
        putchar(*p);
    }
  }
  putchar('"');
}

/* The field key of the entry at the top of L as text, copied into buf
 * ("" if missing). */
static const char *field(lua_State *L, const char *key, char *buf,
                         size_t len) {
  lua_getfield(L, -1, key);
  if (lua_type(L, -1) == LUA_TNUMBER)
    snprintf(buf, len, "%lld", (long long)lua_tointeger(L, -1));
  else
    snprintf(buf, len, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
  lua_pop(L, 1);
  return buf;
}

static void print_json(lua_State *L, int list) {
  static const char *const keys[] = {"time",   "actor",  "action", "target",
                                     "count",  "detail", "outcome", NULL};
  lua_Integer n = (lua_Integer)lua_rawlen(L, list);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    putchar('{');
    for (int k = 0; keys[k] != NULL; k++) {
      lua_getfield(L, -1, keys[k]);
      printf("%s\"%s\":", k > 0 ? "," : "", keys[k]);
      if (lua_type(L, -1) == LUA_TNUMBER)
        printf("%lld", (long long)lua_tointeger(L, -1));
      else
        put_json_string(lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
      lua_pop(L, 1);
    }
    puts("}");
    lua_pop(L, 1);
  }
}

/* "2026-11-30T21:00:05.123Z" as "2026-11-30 21:00:05". */
static void short_time(const char *iso, char *out, size_t len) {
  snprintf(out, len, "%.19s", iso);
  if (strlen(out) > 10 && out[10] == 'T')
    out[10] = ' ';
}

static void print_table(lua_State *L, int list) {
  static const char *const heads[] = {"time (UTC)", "actor", "action",
                                      "target",     "count", "detail"};
  enum { NCOL = 6, WIDEST = 200 };
  lua_Integer n = (lua_Integer)lua_rawlen(L, list);
  size_t width[NCOL], w;
  char raw[AUDIT_RAW_MAX], cell[4 * WIDEST + 4];

  if (n == 0) {
    puts("no entries");
    return;
  }
  for (int c = 0; c < NCOL; c++)
    width[c] = strlen(heads[c]);
  width[0] = 19;
  /* First pass: the widths (the detail, last, is not padded). */
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    for (int c = 1; c < NCOL - 1; c++) {
      w = for_terminal(field(L, fields[c], raw, sizeof(raw)), WIDEST, cell);
      if (w > width[c])
        width[c] = w;
    }
    lua_pop(L, 1);
  }
  for (int c = 0; c < NCOL - 1; c++)
    printf(c == 4 ? "%*s  " : "%-*s  ", (int)width[c], heads[c]);
  printf("%s\n", heads[NCOL - 1]);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    for (int c = 0; c < NCOL - 1; c++) {
      size_t pad;
      if (c == 0) {
        short_time(field(L, "time", raw, sizeof(raw)), cell, sizeof(cell));
        w = strlen(cell);
      } else {
        w = for_terminal(field(L, fields[c], raw, sizeof(raw)), WIDEST,
                         cell);
      }
      /* Padded by characters, not bytes; the count to the right. */
      pad = width[c] > w ? width[c] - w : 0;
      if (c == 4)
        printf("%*s%s  ", (int)pad, "", cell);
      else
        printf("%s%*s  ", cell, (int)pad, "");
    }
    w = for_terminal(field(L, "detail", raw, sizeof(raw)), DETAIL_SHOWN,
                     cell);
    fputs(cell, stdout);
    /* The outcome, when not ok, says why not. */
    if (strcmp(field(L, "outcome", raw, sizeof(raw)), "ok") != 0) {
      for_terminal(raw, 80, cell);
      printf("%s(%s)", w > 0 ? " " : "", cell);
    }
    putchar('\n');
    lua_pop(L, 1);
  }
}

/* --- the conversation with the server ------------------------------------- */

/*
 * Handles one frame (a table at the top of L, popped): an entry printed by
 * the script is decoded and added to the list at index list. Returns the
 * script's exit status once it has ended, else -1.
 */
static int on_frame(lua_State *L, int list) {
  const char *type;
  int status = -1;

  lua_getfield(L, -1, "type");
  type = lua_tostring(L, -1);
  if (type != NULL && strcmp(type, "print") == 0) {
    lua_getglobal(L, "cjson");
    lua_getfield(L, -1, "decode");
    lua_getfield(L, -4, "text");
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1))
      lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
    else
      lua_pop(L, 1);
    lua_pop(L, 1); /* cjson */
  } else if (type != NULL && strcmp(type, "exit") == 0) {
    lua_getfield(L, -2, "status");
    lua_getfield(L, -3, "error");
    status = (int)lua_tointeger(L, -2);
    if (lua_isstring(L, -1))
      fprintf(stderr, "herald: audit: %s\n", lua_tostring(L, -1));
    lua_pop(L, 2);
  }
  lua_pop(L, 2);
  return status;
}

static int audit_remote(const char *socket_path, const char *since,
                        int json) {
  jsonline_t *j;
  lua_State *L;
  char err[1024];
  int status = -1, r, list;

  /* Only to a server of the user's own (sockpath.h), as herald run. */
  if (sockpath_check(socket_path, err, sizeof(err)) < 0) {
    fprintf(stderr, "herald: audit: %s\n", err);
    return 2;
  }
  j = jsonline_connect_unix(socket_path);
  if (j == NULL) {
    fprintf(stderr, "herald: audit: cannot reach the server at %s: %s\n",
            socket_path, strerror(errno));
    return 2;
  }
  if (sockpath_check_peer(jsonline_fd(j), socket_path, err,
                          sizeof(err)) < 0) {
    fprintf(stderr, "herald: audit: %s\n", err);
    jsonline_close(j);
    return 2;
  }
  L = jsonline_lua(j);
  lua_newtable(L);
  list = lua_gettop(L);
  lua_createtable(L, 0, 4);
  lua_pushliteral(L, "run");
  lua_setfield(L, -2, "type");
  lua_pushliteral(L, "herald-audit");
  lua_setfield(L, -2, "name");
  lua_pushstring(L, script);
  lua_setfield(L, -2, "source");
  if (since != NULL) {
    lua_createtable(L, 1, 0);
    lua_pushstring(L, since);
    lua_rawseti(L, -2, 1);
    lua_setfield(L, -2, "args");
  }
  if (jsonline_send(j) < 0) {
    fprintf(stderr, "herald: audit: cannot send the request: %s\n",
            strerror(errno));
    jsonline_close(j);
    return 2;
  }
  while (status < 0 && (r = jsonline_recv(j)) != 0) {
    if (r < 0) {
      fprintf(stderr, "herald: audit: unreadable answer from the server\n");
      status = 1;
    } else {
      status = on_frame(L, list);
    }
  }
  if (status < 0) {
    fprintf(stderr, "herald: audit: the server closed the connection "
                    "before the log was read\n");
    status = 1;
  }
  if (status == 0) {
    if (json)
      print_json(L, list);
    else
      print_table(L, list);
    if (fflush(stdout) != 0)
      status = 1;
  }
  jsonline_close(j);
  return status;
}

int auditcmd_main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"socket", required_argument, NULL, 's'},
      {"since", required_argument, NULL, 'S'},
      {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *socket_path = getenv("HERALD_SOCKET"), *since_text = NULL;
  char default_path[512], since[32];
  int ch, json = 0;
  int64_t since_ms;

  opterr = 0;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
    switch (ch) {
    case 's': socket_path = optarg; break;
    case 'S': since_text = optarg; break;
    case 'j': json = 1; break;
    case 'h': fputs(usage, stdout); return 0;
    default:
      fprintf(stderr, "herald: audit: unknown or incomplete option '%s'\n"
                      "Try 'herald audit --help'.\n", argv[optind - 1]);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "herald: audit: unexpected argument '%s'\n"
                    "Try 'herald audit --help'.\n", argv[optind]);
    return 2;
  }
  if (since_text != NULL) {
    if (auditcmd_parse_since(since_text, clock_wall_ms(), &since_ms) < 0) {
      fprintf(stderr, "herald: audit: --since: expected a date "
                      "(2026-11-30), a date and time in UTC "
                      "(2026-11-30T21:00) or a duration (30s, 10m, 2h, 7d), "
                      "got '%s'\nTry 'herald audit --help'.\n", since_text);
      return 2;
    }
    clock_format_iso8601(since_ms > 0 ? since_ms : 0, since, sizeof(since));
  }
  if (socket_path == NULL || socket_path[0] == '\0') {
    config_default_admin_socket(default_path, sizeof(default_path));
    socket_path = default_path;
  }
  return audit_remote(socket_path, since_text != NULL ? since : NULL, json);
}
