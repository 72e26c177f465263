/*
 * peer: the plumbing a command-line tool needs to talk to a herald server
 * as a remote user (PROTOCOL.md), shared by `herald client` and `herald
 * call`: interruptible waits, one blocking-style connection (plain TCP or
 * TLS, peer_tls.c) with its hello and welcome, the password that hello
 * may need, frames as Lua tables encoded by lua-cjson, and the options
 * both commands take.
 */
#ifndef HERALD_PEER_H
#define HERALD_PEER_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#define PEER_DEFAULT_SERVER "127.0.0.1:7400"
#define PEER_SID_MAX 80 /* a session ID's size, its NUL included */
/* The longest password sent, the server's own limit (USERS_PASSWORD_MAX):
 * a longer one could never match, so it is refused here. */
#define PEER_PASSWORD_MAX 1024
/*
 * lua-cjson 2.1.0 (Debian's) has no empty-array value: an empty Lua table
 * encodes as {}. Where a frame needs [], the table holds this string
 * instead and peer_send_frame (or peer_json_encode with `patch`) writes
 * [] in its place.
 */
#define PEER_EMPTY_ARRAY "\001herald:empty_array\001"

enum { PEER_WAIT_SIGNAL = -2 };
/* peer_read_frame's results */
enum { PEER_RD_FRAME = 1, PEER_RD_TIMEOUT = 0, PEER_RD_CLOSED = -1,
       PEER_RD_ERROR = -2, PEER_RD_SIGNAL = -3 };
/* peer_handshake's results */
enum { PEER_HS_OK = 0, PEER_HS_FAILED = -1, PEER_HS_REFUSED = -2,
       PEER_HS_SIGNAL = -3, PEER_HS_TLS = -4, PEER_HS_AUTH = -5 };

/* One server connection and the identity it says hello with. */
typedef struct peer peer_t;

/* ---- time and signals ---- */

/* Monotonic time in ms. */
int64_t peer_now_ms(void);

/*
 * Catches SIGINT and SIGTERM, which then stay blocked except inside
 * peer_wait_fd's ppoll, so a signal can only arrive while the tool waits,
 * and every wait sees it at once (no race between testing the flag and
 * sleeping). peer_signals_restore puts back the handlers and mask found;
 * the two go in pairs, once at a time per process.
 */
void peer_signals_catch(void);
void peer_signals_restore(void);
/* In a forked child before exec: the mask the parent waits with, so the
 * program started is not left with SIGINT and SIGTERM blocked. */
void peer_signals_child(void);

/*
 * Waits until fd is ready for `events` (fd < 0: just sleeps) or until the
 * monotonic time `deadline` (ms). Returns 1 when ready (errors and hang-ups
 * count as ready: the next read or write reports them), 0 at the deadline,
 * PEER_WAIT_SIGNAL when SIGINT/SIGTERM came (since peer_signals_catch) and
 * `interruptible` is set, -1 with errno on failure.
 */
int peer_wait_fd(int fd, short events, int64_t deadline, int interruptible);

/* ---- the connection ---- */

/* A new peer, not connected, with no Lua state yet; NULL when out of
 * memory. peer_free (NULL is fine) closes it, wipes its password and
 * releases everything. */
peer_t *peer_new(void);
void peer_free(peer_t *p);

/*
 * Fills p's address (from `server`, the --server value, else
 * HERALD_SERVER, else PEER_DEFAULT_SERVER) and identity (user, machine,
 * sysuser; NULL for the defaults: login name, host name). `cmd` names the
 * command in messages. Prints the error and returns -1 for an invalid
 * value.
 */
int peer_setup(peer_t *p, const char *cmd, const char *server,
               const char *user, const char *machine, const char *sysuser);

/*
 * Makes p connect with TLS (TLS 1.2 at least), verifying the server's
 * certificate against the CA file `ca`, or the system's CA store when ca
 * is NULL, and its name or IP address against the host of peer_setup's
 * address (call it after peer_setup). Prints the error and returns -1
 * when the CA file cannot be used.
 */
int peer_setup_tls(peer_t *p, const char *cmd, const char *ca);

/*
 * Where the hello's password comes from: HERALD_PASSWORD (then wiped from
 * the environment, so that no child inherits it); else, when stdin is a
 * terminal, peer_login may ask for it once; else, with `from_stdin`, one
 * line read from stdin now. Prints the error
 * and returns -1 for a password that is missing on stdin, longer than
 * PEER_PASSWORD_MAX bytes, or not UTF-8. The password stays in p until
 * peer_free wipes it: a new session after a lost one needs it again.
 */
int peer_setup_password(peer_t *p, const char *cmd, int from_stdin);

/*
 * Creates p's private Lua state with cjson loaded at stack index 1.
 * Frames are built as Lua tables above it (peer_lua); callers restore the
 * stack top they found. Building a frame runs unprotected: in this small
 * state only a memory error can raise there, and Lua's default panic then
 * aborts, which is the right end for an out-of-memory CLI. Returns 0, or
 * -1 with the reason in err.
 */
int peer_json_open(peer_t *p, char *err, size_t errlen);
lua_State *peer_lua(const peer_t *p);

/* With `on`, peer_read_frame prints each frame's line on stdout, except
 * message frames, which the caller echoes itself (client --json). */
void peer_set_echo(peer_t *p, int on);
/* "host:port" of the server, for messages. */
const char *peer_addr(const peer_t *p);
const char *peer_user(const peer_t *p);

/*
 * Connects and says hello, resuming peer_sid with the resume token when
 * `resume` is set, and waits a bounded time for the answer, answering
 * pings. PEER_HS_OK: connected, p holds the welcome's session.
 * PEER_HS_REFUSED: the server answered `error`; code holds its code and
 * err "code: message". PEER_HS_FAILED: err says why the connection
 * failed. PEER_HS_TLS: as for peer_login. PEER_HS_SIGNAL: interrupted.
 * A `reconnect` before the welcome (the server stopping for a restart)
 * is PEER_HS_FAILED, err "the server is restarting". The hello carries
 * p's password unless it resumes. The connection is closed on every
 * result but PEER_HS_OK.
 */
int peer_handshake(peer_t *p, int resume, char *code, size_t codelen,
                   char *err, size_t errlen);
/*
 * peer_handshake for a new session (never a resume), with what
 * authentication needs: the password, if p has one, goes in the hello;
 * when a hello without one is refused `unauthorized` and stdin is a
 * terminal, asks for it ("Password for NAME: ", no echo) and says hello
 * once more. PEER_HS_AUTH: the server refused the user name or the
 * password (err says which hint fits); never worth a retry. PEER_HS_TLS:
 * TLS cannot work with this server (a certificate that fails
 * verification, TLS against plaintext or the reverse); err is the whole
 * reason ("TLS with HOST:PORT failed: ..."); never worth a retry either.
 * The other results are peer_handshake's.
 */
int peer_login(peer_t *p, char *code, size_t codelen, char *err,
               size_t errlen);
/* Closes the connection, if any; p can connect again. */
void peer_close(peer_t *p);

/* From the last welcome: the session ID, whether it came with a resume
 * token, and the heartbeat in seconds. */
const char *peer_sid(const peer_t *p);
int peer_has_token(const peer_t *p);
/* Forgets the resume token: the session cannot be resumed any more. */
void peer_drop_token(peer_t *p);
int peer_heartbeat(const peer_t *p);
/* When the last bytes came from the server, and the last ping went. */
int64_t peer_last_heard(const peer_t *p);
int64_t peer_last_ping(const peer_t *p);

/*
 * Reads the next frame, waiting until the monotonic `deadline`.
 * PEER_RD_FRAME: the decoded object is pushed (caller pops it).
 * PEER_RD_TIMEOUT, PEER_RD_SIGNAL, PEER_RD_CLOSED and PEER_RD_ERROR push
 * nothing; the last two say why in err.
 */
int peer_read_frame(peer_t *p, int64_t deadline, char *err, size_t errlen);
/* Prints the last frame's text on stdout (client --json). */
void peer_echo_line(const peer_t *p);

/*
 * Encodes the frame table on top of the stack (PEER_EMPTY_ARRAY markers
 * as []), pops it and sends it, waiting a bounded time for the server to
 * read. Returns 0 or -1 with the reason in err.
 */
int peer_send_frame(peer_t *p, char *err, size_t errlen);
/* Sends a frame that has only a type ("pong", "bye"). */
int peer_send_simple(peer_t *p, const char *type, char *err, size_t errlen);
/* Sends a ping and records when (peer_last_ping). */
int peer_send_ping(peer_t *p, char *err, size_t errlen);

/* ---- JSON through lua-cjson (p's Lua state) ---- */

/*
 * Decodes s (len bytes) and pushes the value. Returns 0, or -1 with
 * cjson's reason in err and nothing pushed.
 */
int peer_json_decode(peer_t *p, const char *s, size_t len, char *err,
                     size_t errlen);
/*
 * Encodes the value at idx (left in place) into a new NUL-terminated
 * string *out (caller frees), "\n"-terminated when `line` is set, with
 * PEER_EMPTY_ARRAY markers as [] when `patch` is set. Returns 0 or -1
 * with the reason in err.
 */
int peer_json_encode(peer_t *p, int idx, int line, int patch, char **out,
                     size_t *outlen, char *err, size_t errlen);

/* Field `key` of the table at idx as a string, or NULL. The string lives
 * as long as the table. */
const char *peer_field_str(lua_State *L, int idx, const char *key);
/* Field `key` of the table at idx as an integer (cjson 2.1.0 decodes
 * every number as a float). Returns 1 and sets *out, or 0. */
int peer_field_int(lua_State *L, int idx, const char *key, long long *out);
/* Field `key` of the table at idx as a number (not NaN). Returns 1 and
 * sets *out, or 0. */
int peer_field_num(lua_State *L, int idx, const char *key, double *out);
/* Is field `key` of the table at idx the string v? */
int peer_field_is(lua_State *L, int idx, const char *key, const char *v);

/*
 * Copies text from the server (a drop's reason, an error's message) into
 * out, outlen bytes at most (cut on a character's boundary), with each
 * control character (C0, DEL, C1) and each byte that is not UTF-8 as '?':
 * the line it goes in stays one line and cannot drive the terminal.
 * Returns out.
 */
const char *peer_clean(const char *s, char *out, size_t outlen);

/* Pushes a new frame table {type = type}; the next two set its fields. */
void peer_frame_new(lua_State *L, const char *type);
void peer_frame_str(lua_State *L, const char *key, const char *v);
void peer_frame_int(lua_State *L, const char *key, long long v);

/* ---- command line ---- */

/* Says that arg (what getopt_long could not take) is an unknown option,
 * or one without its value, as every command says it. */
void peer_option_error(const char *cmd, const char *arg);

/* The options herald client and herald call share, as getopt_long reads
 * them: PEER_LONGOPTS in each command's option table. */
typedef struct peer_opts {
  const char *server, *user, *ca;
  int tls, pw_stdin;
} peer_opts_t;
#define PEER_LONGOPTS                                                      \
  {"server", required_argument, NULL, 's'},                                \
      {"user", required_argument, NULL, 'u'},                              \
      {"ca", required_argument, NULL, 'c'},                                \
      {"tls", no_argument, NULL, 't'},                                     \
      {"password-stdin", no_argument, NULL, 'p'}
/* Takes getopt_long's answer ch (and optarg) when it is one of
 * PEER_LONGOPTS: 1, else 0. */
int peer_take_option(peer_opts_t *o, int ch, const char *arg);
/* peer_setup with o's server and user (and machine, sysuser), then TLS
 * and the password as o says. 0; -2 for a usage error (said, the caller
 * adds its hint); -1 for a CA file or password that cannot be used (said:
 * the options were right). */
int peer_setup_opts(peer_t *p, const char *cmd, const peer_opts_t *o,
                    const char *machine, const char *sysuser);
/* Parses a number of seconds >= 0 (> 0 when `positive`) for option
 * `name` into *out; prints the error and returns -1 for a bad value. */
int peer_parse_seconds(const char *cmd, const char *name, const char *s,
                       int positive, double *out);

#endif
