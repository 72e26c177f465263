/*
 * config: herald.conf.lua into a struct. Every key has a default (API.md);
 * an unknown key, a wrong type or a value out of range is refused with a
 * message that names the key.
 */
#ifndef HERALD_CONFIG_H
#define HERALD_CONFIG_H

#include <stddef.h>

#include "netaddr.h"

typedef struct config_job {
  char *name;      /* defaults to the script's path */
  char *cron;      /* a cron expression, or NULL */
  double every;    /* seconds, when cron is NULL */
  char *script;    /* relative to the scripts folder */
  char *args_json; /* a JSON array of the job's arguments, or NULL */
  double timeout;  /* seconds; 0: method_timeout */
} config_job_t;

typedef struct config {
  netaddr_t listen;
  netaddr_t http_listen; /* the browser pages and WebSocket */
  int has_http;          /* http_listen is set (default: not) */
  char *admin_socket; /* NULL: the default path of API.md */
  char *scripts;
  long max_sessions;
  long max_frame;
  long max_message;
  long max_pending;
  long max_outbound_bytes;
  double handshake_timeout;
  double heartbeat;
  double resume_timeout;
  double sleep_after;
  double method_timeout;
  long lua_memory_limit;
  long session_memory_limit;  /* one session's running processes together */
  long max_calls_per_session;
  double max_blocking; /* seconds Lua may hold the loop without yielding */
  char *users_file;    /* resolved beside the configuration file */
  char *tls_cert, *tls_key; /* both, or neither: no TLS */
  int insecure;        /* a non-loopback listen without users and TLS */
  double auth_delay;   /* seconds before a failed login is answered */
  char *state;         /* the state database, beside the configuration;
                          NULL: none (state = false) */
  int durability_full; /* durability = "full": also across power loss */
  long message_history;
  long audit_keep_days;
  config_job_t *jobs;
  size_t njobs;
} config_t;

void config_defaults(config_t *c);
/*
 * Runs the configuration file at path (a Lua chunk that sets globals, in an
 * environment of its own that reads through to Lua's base library, string,
 * math and table) and stores
 * what it sets into c. Returns 0, or -1 with "FILE: key 'x': why" in err.
 */
int config_load_file(config_t *c, const char *path, char *err, size_t errlen);
/* Same, for a chunk held in memory; name is used in messages. */
int config_load_string(config_t *c, const char *chunk, const char *name,
                       char *err, size_t errlen);
/* Sets c->admin_socket (if NULL) to $XDG_RUNTIME_DIR/herald.sock, else
 * /tmp/herald-$UID/herald.sock. */
void config_default_admin_socket(char *out, size_t len);
void config_free(config_t *c);
/* Whether the listen address is a loopback one (127.0.0.0/8, ::1,
 * localhost). */
int config_listen_is_loopback(const config_t *c);
/* The same for the http_listen address (true when there is none). */
int config_http_is_loopback(const config_t *c);

#endif
