#include "serve.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../modules/audit.h"
#include "admin.h"
#include "audit.h"
#include "config.h"
#include "herald.h"
#include "http.h"
#include "log.h"
#include "methods.h"
#include "notify.h"
#include "process.h"
#include "prompt.h"
#include "proto.h"
#include "sched.h"
#include "schedule.h"
#include "server.h"
#include "state.h"
#include "vm.h"
#include "webadmin.h"

static const char usage[] =
    "usage: herald serve [--config FILE] [--listen HOST:PORT]\n"
    "                    [--http-listen HOST:PORT] [--admin-socket PATH]\n"
    "                    [--scripts DIR] [--no-console]\n"
    "                    [--log-level debug|info|warn|error] "
    "[--fresh-state]\n"
    "\n"
    "Runs the herald server: remote users connect on --listen (default\n"
    "127.0.0.1:7400), administrators on the admin socket (default\n"
    "$XDG_RUNTIME_DIR/herald.sock, else /tmp/herald-$UID/herald.sock).\n"
    "With --http-listen (or http_listen), browsers get the remote user's\n"
    "page at /, the administrators' page at /admin, and WebSocket at /ws.\n"
    "The configuration is FILE, else ./herald.conf.lua when it exists.\n"
    "With a terminal on stdin, a Lua console runs at the same time, unless\n"
    "--no-console is given. SIGINT or SIGTERM stops the server, within 5 s\n"
    "whatever Lua code is running: with a state database (`state`, default\n"
    "herald.db beside the configuration) every session is kept and its\n"
    "client told to reconnect; without one (state = false), every session\n"
    "is dropped. --fresh-state moves the state database aside and starts\n"
    "empty.\n";

typedef struct serve_opts {
  const char *config, *listen, *http_listen, *admin_socket, *scripts;
  const char *log_level;
  int no_console, fresh_state;
} serve_opts_t;

static int parse_opts(int argc, char **argv, serve_opts_t *o) {
  static const struct option longopts[] = {
      {"config", required_argument, NULL, 'c'},
      {"listen", required_argument, NULL, 'l'},
      {"http-listen", required_argument, NULL, 'H'},
      {"admin-socket", required_argument, NULL, 'a'},
      {"scripts", required_argument, NULL, 's'},
      {"log-level", required_argument, NULL, 'L'},
      {"no-console", no_argument, NULL, 'n'},
      {"fresh-state", no_argument, NULL, 'f'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int ch;
  memset(o, 0, sizeof(*o));
  opterr = 0;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
    switch (ch) {
    case 'c': o->config = optarg; break;
    case 'l': o->listen = optarg; break;
    case 'H': o->http_listen = optarg; break;
    case 'a': o->admin_socket = optarg; break;
    case 's': o->scripts = optarg; break;
    case 'L': o->log_level = optarg; break;
    case 'n': o->no_console = 1; break;
    case 'f': o->fresh_state = 1; break;
    case 'h': fputs(usage, stdout); return 1;
    default:
      fprintf(stderr, "herald: serve: unknown or incomplete option '%s'\n"
                      "Try 'herald serve --help'.\n", argv[optind - 1]);
      return -1;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "herald: serve: unexpected argument '%s'\n"
                    "Try 'herald serve --help'.\n", argv[optind]);
    return -1;
  }
  return 0;
}

/* A missing scripts folder is not an error (methods and job scripts may be
 * added later, and a server may live on the configuration's functions),
 * but it usually is a mistake: say so at start. */
static void warn_scripts(const char *dir) {
  struct stat st;
  if (stat(dir, &st) < 0)
    log_warn("scripts folder %s does not exist: no method can be called "
             "and no job script found", dir);
  else if (!S_ISDIR(st.st_mode))
    log_warn("scripts folder %s is not a folder: no method can be called "
             "and no job script found", dir);
}

/* The configuration: defaults, then the file, then the command line. */
static int load_config(const serve_opts_t *o, config_t *cfg) {
  char err[1024];
  const char *file = o->config;

  config_defaults(cfg);
  if (file == NULL && access("herald.conf.lua", F_OK) == 0)
    file = "herald.conf.lua";
  if (file != NULL && config_load_file(cfg, file, err, sizeof(err)) < 0) {
    fprintf(stderr, "herald: configuration: %s\n", err);
    return -1;
  }
  if (o->listen != NULL &&
      netaddr_parse(o->listen, &cfg->listen, err, sizeof(err)) < 0) {
    fprintf(stderr, "herald: serve: --listen: %s\n", err);
    return -1;
  }
  if (o->http_listen != NULL) {
    if (netaddr_parse(o->http_listen, &cfg->http_listen, err, sizeof(err)) <
        0) {
      fprintf(stderr, "herald: serve: --http-listen: %s\n", err);
      return -1;
    }
    cfg->has_http = 1;
  }
  if (o->admin_socket != NULL) {
    free(cfg->admin_socket);
    cfg->admin_socket = strdup(o->admin_socket);
  }
  if (o->scripts != NULL) {
    free(cfg->scripts);
    cfg->scripts = strdup(o->scripts);
  }
  if (cfg->admin_socket == NULL) {
    char path[512];
    config_default_admin_socket(path, sizeof(path));
    cfg->admin_socket = strdup(path);
  }
  if (file != NULL)
    log_info("configuration %s", file);
  warn_scripts(cfg->scripts);
  return 0;
}

/* The scheduler of the configuration's jobs and of schedule(). */
static sched_t *scheduler;

/* What the server does not own, stopped first at shutdown. */
typedef struct serve_parts {
  admin_t *admin;
  webadmin_t *webadmin;
  http_t *http;
} serve_parts_t;

static void stop_parts(void *data) {
  serve_parts_t *parts = data;
  notify_stopping();
  sched_stop(scheduler);
  prompt_stop();
  admin_stop(parts->admin);
  parts->admin = NULL;
  http_stop(parts->http);
  parts->http = NULL;
  webadmin_stop(parts->webadmin);
}

int serve_main(int argc, char **argv) {
  serve_opts_t o;
  config_t cfg;
  uv_loop_t *loop = uv_default_loop();
  vm_t *vm = NULL;
  server_t *srv = NULL;
  serve_parts_t parts = {NULL, NULL, NULL};
  state_t *state = NULL;
  char err[1024];
  int r = parse_opts(argc, argv, &o), status = 1;

  if (r != 0)
    return r > 0 ? 0 : 2;
  if (o.log_level != NULL) {
    log_level_t level;
    if (log_parse_level(o.log_level, &level) < 0) {
      fprintf(stderr, "herald: serve: --log-level must be debug, info, warn "
                      "or error\n");
      return 2;
    }
    log_set_level(level);
  }
  if (load_config(&o, &cfg) < 0) {
    config_free(&cfg);
    return 2;
  }
  vm = vm_new((size_t)cfg.lua_memory_limit, err, sizeof(err));
  if (vm == NULL || (srv = server_new(loop, &cfg, vm)) == NULL ||
      proto_init(vm_state(vm)) < 0) {
    fprintf(stderr, "herald: serve: cannot start the lua runtime: %s\n",
            vm == NULL ? err : "out of memory");
    goto done;
  }
  if (cfg.state != NULL) {
    state = state_open(cfg.state, cfg.durability_full, o.fresh_state, err,
                       sizeof(err));
    if (state == NULL || server_use_state(srv, state, err, sizeof(err)) < 0) {
      fprintf(stderr, "herald: state: %s\n", err);
      status = 2;
      goto done;
    }
  }
  server_on_call(srv, methods_call, srv);
  audit_init(state, cfg.audit_keep_days, server_sessions(srv));
  herald_open(vm_state(vm), srv);
  scheduler = sched_new(loop, vm_state(vm), &cfg, err, sizeof(err));
  if (scheduler == NULL) {
    fprintf(stderr, "herald: configuration: %s\n", err);
    status = 2;
    goto done;
  }
  if (state != NULL)
    sched_use_state(scheduler, state);
  schedule_open(vm_state(vm), scheduler);
  audit_open(vm_state(vm));
  process_init(loop, vm_state(vm));
  process_set_limits(cfg.max_blocking);
  vm_seal(vm_state(vm)); /* after every native and guard is in place */
  if (server_start(srv, err, sizeof(err)) < 0) {
    fprintf(stderr, "herald: serve: %s\n", err);
    status = 2;
    goto done;
  }
  server_on_shutdown(srv, stop_parts, &parts);
  parts.admin = admin_start(srv, cfg.admin_socket, err, sizeof(err));
  if (parts.admin != NULL && cfg.has_http) {
    parts.webadmin = webadmin_new(srv);
    if (parts.webadmin == NULL)
      snprintf(err, sizeof(err), "out of memory");
    else
      parts.http = http_start(srv, parts.webadmin, err, sizeof(err));
  }
  if (parts.admin == NULL || (cfg.has_http && parts.http == NULL)) {
    fprintf(stderr, "herald: serve: %s\n", err);
    status = 2;
    server_shutdown(srv);
    uv_run(loop, UV_RUN_DEFAULT);
    goto done;
  }
  server_announce(srv);
  if (parts.http != NULL)
    http_announce(parts.http);
  notify_ready(loop);
  sched_start(scheduler);
  if (!o.no_console && isatty(STDIN_FILENO) && prompt_start(srv) < 0)
    log_warn("cannot start the console; the server runs without it");
  uv_run(loop, UV_RUN_DEFAULT);
  log_info("stopped");
  status = 0;
done:
  webadmin_free(parts.webadmin);
  server_free(srv);
  state_close(state);
  sched_free(scheduler);
  scheduler = NULL;
  vm_free(vm);
  uv_loop_close(loop);
  config_free(&cfg);
  return status;
}
