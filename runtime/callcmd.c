/*
 * callcmd: `herald call`, which calls an exposed server method as a remote
 * user and prints its result as JSON.
 */
#include "callcmd.h"

#include <ctype.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>

#include "peer.h"

static void call_usage(void) {
  printf(
    "usage: herald call [OPTIONS] METHOD [JSON_ARG...]\n"
    "\n"
    "Call the exposed server method METHOD with the given arguments, each\n"
    "one JSON value (quote strings: '\"text\"'), and print its result as\n"
    "JSON.\n"
    "\n"
    "  --server HOST:PORT   server to connect to (default: $HERALD_SERVER,\n"
    "                       else " PEER_DEFAULT_SERVER ")\n"
    "  --user NAME          user name (default: your login name)\n"
    "  --timeout SECONDS    how long to wait for the result (default 60)\n"
    "  --tls                connect with TLS; the server's certificate must\n"
    "                       be valid for HOST (system CA store)\n"
    "  --ca FILE            verify the server with the CA certificates in\n"
    "                       FILE instead (implies --tls)\n"
    "  --password-stdin     read the password from the first line of stdin\n"
    "  --help               show this help\n"
    "  --                   what follows is METHOD and arguments\n"
    "\n"
    "The password, where the server asks for one: $HERALD_PASSWORD, else\n"
    "typed on the terminal (asked once, when the server refuses the hello\n"
    "without one), else the first line of stdin with --password-stdin.\n"
    "\n"
    "Exit status: 0 success, 1 the method failed or the server refused (a\n"
    "wrong password too), 2 usage error, server unreachable, TLS failed\n"
    "(the certificate, or TLS on one side only), or the server restarting\n"
    "before the result came (the call may or may not have run).\n");
}

/* A usage error's last line, the same for every command. */
static int usage_error(void) {
  fputs("Try 'herald call --help'.\n", stderr);
  return 2;
}

/*
 * After an argument that is not JSON: the same text as a JSON string,
 * quoted for a POSIX shell (herald call hello world -> '"world"'), unless
 * it looks like an attempt at an array, an object or a string.
 */
static void hint_string(const char *arg) {
  const char *s = arg;
  while (isspace((unsigned char)*s)) s++;
  if (*s == '[' || *s == '{' || *s == '"' || *arg == '\0')
    return;
  fputs("herald: call: hint: a string argument is JSON too: '\"", stderr);
  for (s = arg; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '\'')
      fputs("'\\''", stderr); /* ends the quote, a quote, reopens it */
    else if (c == '"' || c == '\\')
      fprintf(stderr, "\\%c", c);
    else if (c < 0x20 || c == 0x7f)
      fprintf(stderr, "\\u%04x", c);
    else
      fputc(c, stderr);
  }
  fputs("\"'\n", stderr);
}

/*
 * Decodes the JSON arguments into a new array table pushed on the stack
 * (PEER_EMPTY_ARRAY when there are none, so the frame says "args":[]). An
 * argument written as [] stays an array the same way; an empty array
 * nested deeper encodes as {}, a limit of lua-cjson 2.1.0. Returns 0, or
 * -1 after printing which argument is not JSON (nothing pushed).
 */
static int push_args(peer_t *p, int n, char **args) {
  lua_State *L = peer_lua(p);
  char why[200];
  if (n == 0) {
    lua_pushstring(L, PEER_EMPTY_ARRAY);
    return 0;
  }
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    const char *s = args[i];
    if (peer_json_decode(p, s, strlen(s), why, sizeof(why)) < 0) {
      fprintf(stderr, "herald: call: argument %d is not valid JSON: %s\n",
              i + 1, why);
      hint_string(s);
      lua_pop(L, 1);
      return -1;
    }
    while (isspace((unsigned char)*s)) s++;
    if (*s == '[' && lua_istable(L, -1)) {
      lua_pushnil(L);
      if (lua_next(L, -2) == 0) {
        lua_pop(L, 1);
        lua_pushstring(L, PEER_EMPTY_ARRAY);
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
 * status; prints the value or the error. A `reconnect` (the server
 * stopping to restart) before the result is status 2: the call may have
 * run, or been ended half-way, or not have started.
 */
static int call_wait(peer_t *p, const char *method, double timeout) {
  lua_State *L = peer_lua(p);
  int top = lua_gettop(L);
  int64_t deadline = peer_now_ms() + (int64_t)(timeout * 1000);
  char err[256], clean[2048], clean2[2048];
  for (;;) {
    const char *a, *b;
    double after;
    long long id;
    int rc = peer_read_frame(p, deadline, err, sizeof(err)), ok;
    if (rc == PEER_RD_TIMEOUT) {
      fprintf(stderr, "herald: call %s: no result within %g s\n", method,
              timeout);
      return 1;
    }
    if (rc == PEER_RD_SIGNAL) {
      fprintf(stderr, "herald: call %s: interrupted\n", method);
      return 1;
    }
    if (rc != PEER_RD_FRAME) {
      fprintf(stderr, "herald: call %s: connection lost before the result: "
              "%s\n", method, err);
      return 1;
    }
    if (peer_field_is(L, -1, "type", "ping")) {
      peer_send_simple(p, "pong", err, sizeof(err));
    } else if (peer_field_is(L, -1, "type", "result") &&
               peer_field_int(L, -1, "id", &id) && id == 1) {
      lua_getfield(L, -1, "ok");
      ok = lua_toboolean(L, -1);
      lua_pop(L, 1);
      if (!ok) {
        a = peer_field_str(L, -1, "error");
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
        if (peer_json_encode(p, -1, 1, 0, &out, &n, err, sizeof(err)) < 0) {
          fprintf(stderr, "herald: call %s: %s\n", method, err);
          return 1;
        }
        fwrite(out, 1, n, stdout);
        free(out);
      }
      fflush(stdout);
      return 0;
    } else if (peer_field_is(L, -1, "type", "reconnect")) {
      if (!peer_field_num(L, -1, "after", &after) || !(after >= 0) ||
          after > 3600)
        after = 1;
      fprintf(stderr, "herald: call %s: the server is restarting and sent "
              "no result: the call may or may not have run; try again in "
              "%g s\n", method, after);
      return 2;
    } else if (peer_field_is(L, -1, "type", "drop")) {
      a = peer_field_str(L, -1, "reason");
      fprintf(stderr, "herald: call %s: dropped by the server: %s\n", method,
              a && a[0] ? peer_clean(a, clean, sizeof(clean))
                        : "no reason given");
      return 1;
    } else if (peer_field_is(L, -1, "type", "error")) {
      a = peer_field_str(L, -1, "code");
      b = peer_field_str(L, -1, "message");
      fprintf(stderr, "herald: call %s: %s: %s\n", method,
              a ? peer_clean(a, clean, sizeof(clean)) : "unknown",
              b ? peer_clean(b, clean2, sizeof(clean2)) : "no message");
      return 1;
    }
    lua_settop(L, top);
  }
}

int callcmd_main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"help", no_argument, NULL, 'h'},
      {"timeout", required_argument, NULL, 'T'},
      PEER_LONGOPTS,
      {NULL, 0, NULL, 0}};
  peer_t *p;
  const char *timeout_s = NULL, *method = NULL;
  peer_opts_t opts = {0};
  char **args;
  int nargs = 0, status = 2, rc;
  double timeout = 60;
  char err[256], code[64];
  lua_State *L;

  p = peer_new();
  args = calloc((size_t)argc + 1, sizeof(*args));
  if (p == NULL || args == NULL) {
    fprintf(stderr, "herald: call: out of memory\n");
    peer_free(p);
    free(args);
    return 1;
  }
  /* Options may come before or after METHOD, but a JSON argument may
   * start with '-' ("-1"): after METHOD only "--word" and -h are options,
   * and after "--" nothing is. getopt_long reads one option at a time. */
  opterr = 0;
  optind = 1;
  while (optind < argc) {
    const char *a = argv[optind];
    int ch;
    if (strcmp(a, "--") == 0) {
      for (optind++; optind < argc; optind++) {
        if (method == NULL)
          method = argv[optind];
        else
          args[nargs++] = argv[optind];
      }
      break;
    }
    if (a[0] != '-' || (method != NULL && a[1] != '-' &&
                        strcmp(a, "-h") != 0)) {
      if (method == NULL)
        method = a;
      else
        args[nargs++] = argv[optind];
      optind++;
      continue;
    }
    ch = getopt_long(argc, argv, "+h", longopts, NULL);
    switch (ch) {
    case 'h':
      call_usage();
      status = 0;
      goto done;
    case 'T': timeout_s = optarg; break;
    default:
      if (peer_take_option(&opts, ch, optarg))
        break;
      peer_option_error("call", argv[optind - 1]);
      goto usage;
    }
  }
  if (method == NULL || method[0] == '\0') {
    fprintf(stderr, "herald: call: missing METHOD\n");
    goto usage;
  }
  if (timeout_s != NULL &&
      peer_parse_seconds("call", "--timeout", timeout_s, 1, &timeout) < 0)
    goto usage;
  rc = peer_setup_opts(p, "call", &opts, NULL, NULL);
  if (rc == -2)
    goto usage;
  if (rc < 0)
    goto done; /* status 2, no hint: the options were right */
  if (peer_json_open(p, err, sizeof(err)) < 0) {
    fprintf(stderr, "herald: call: %s\n", err);
    status = 1;
    goto done;
  }
  L = peer_lua(p);
  if (push_args(p, nargs, args) < 0) goto done; /* status 2 */

  peer_signals_catch();
  rc = peer_login(p, code, sizeof(code), err, sizeof(err));
  if (rc == PEER_HS_OK) {
    peer_frame_new(L, "call");
    peer_frame_int(L, "id", 1);
    peer_frame_str(L, "method", method);
    lua_rotate(L, -2, 1); /* the args, pushed earlier, above the frame */
    lua_setfield(L, -2, "args");
    if (peer_send_frame(p, err, sizeof(err)) < 0) {
      fprintf(stderr, "herald: call %s: cannot send the call: %s\n", method,
              err);
      status = 1;
    } else {
      status = call_wait(p, method, timeout);
    }
    peer_send_simple(p, "bye", err, sizeof(err));
  } else if (rc == PEER_HS_AUTH) {
    fprintf(stderr, "herald: call: %s\n", err);
    status = 1;
  } else if (rc == PEER_HS_TLS) {
    fprintf(stderr, "herald: call: %s\n", err);
    status = 2;
  } else if (rc == PEER_HS_REFUSED) {
    fprintf(stderr, "herald: connection refused by the server: %s\n", err);
    status = 1;
  } else if (rc == PEER_HS_SIGNAL) {
    fprintf(stderr, "herald: call %s: interrupted\n", method);
    status = 1;
  } else {
    fprintf(stderr, "herald: cannot connect to %s: %s\n", peer_addr(p), err);
    status = 2;
  }
  peer_close(p);
  peer_signals_restore();
  goto done;

usage:
  status = usage_error();
done:
  peer_free(p);
  free(args);
  return status;
}
