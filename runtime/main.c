/*
 * herald: one executable, a command per job (API.md).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "auditcmd.h"
#include "callcmd.h"
#include "certcmd.h"
#include "client.h"
#include "consolecmd.h"
#include "runcmd.h"
#include "serve.h"
#include "usercmd.h"

static const char usage[] =
    "usage: herald COMMAND [OPTIONS]\n"
    "\n"
    "herald is a Lua application server for administering connected users.\n"
    "\n"
    "Commands:\n"
    "  serve     run the server (with a Lua console on a terminal)\n"
    "  console   attach a Lua console to a running server\n"
    "  run       run a Lua script on the running server (or --local)\n"
    "  audit     print the running server's audit log\n"
    "  client    connect as a remote user and show messages as alerts\n"
    "  call      call a server method and print its result as JSON\n"
    "  user      add, remove or list the users who may log in\n"
    "  cert      make a self-signed TLS certificate and key\n"
    "  version   print herald's version\n"
    "\n"
    "'herald COMMAND --help' tells more about each.\n"
    "Exit status: 0 success, 1 runtime failure, 2 usage or connection "
    "error.\n";

typedef struct command {
  const char *name;
  int (*main)(int argc, char **argv);
} command_t;

static int version_main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  printf("herald %s\n", HERALD_VERSION);
  return 0;
}

static const command_t commands[] = {
    {"serve", serve_main},   {"console", consolecmd_main},
    {"run", runcmd_main},    {"audit", auditcmd_main},
    {"client", client_main}, {"call", callcmd_main},
    {"user", usercmd_main},  {"cert", certcmd_main},
    {"version", version_main},
};

int main(int argc, char **argv) {
  /* A peer that closes while we write must be an EPIPE error on that one
   * connection, not a signal that ends the whole server. */
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
      strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "--version") == 0)
    return version_main(argc, argv);
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    if (strcmp(argv[1], commands[i].name) == 0)
      return commands[i].main(argc - 1, argv + 1);
  fprintf(stderr, "herald: unknown command '%s'\nTry 'herald --help'.\n",
          argv[1]);
  return 2;
}
