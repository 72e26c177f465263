#include "usercmd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <termios.h>
#include <unistd.h>

#include "config.h"
#include "users.h"

static const char usage[] =
    "usage: herald user add NAME [--group G]... [--file FILE] "
    "[--config FILE]\n"
    "       herald user del NAME [--file FILE] [--config FILE]\n"
    "       herald user passwd NAME [--file FILE] [--config FILE]\n"
    "       herald user list [--file FILE] [--config FILE]\n"
    "\n"
    "Edits the users file: who may log in to the server, with which\n"
    "password, and in which groups. The server picks up every change by\n"
    "itself.\n"
    "\n"
    "  add      adds a user (refused if the name is taken: use passwd)\n"
    "  del      removes a user\n"
    "  passwd   sets a user's password (the groups stay)\n"
    "  list     prints each user and its groups, one a line\n"
    "\n"
    "  --group G       a group of the new user (repeat it, or G1,G2)\n"
    "  --file FILE     the users file (default: users_file of the\n"
    "                  configuration, else herald.users)\n"
    "  --config FILE   the configuration to read users_file from (default\n"
    "                  ./herald.conf.lua when it exists)\n"
    "  --help          show this help\n"
    "\n"
    "The password is asked twice, without echo, on a terminal; otherwise\n"
    "it is the first line of standard input (printf '%s\\n' \"$PW\" | herald\n"
    "user add NAME). It is never taken from the command line, and only its\n"
    "argon2id hash is stored. Names are 1 to 64 letters, digits, '_', '.',\n"
    "'@' or '-'; groups 1 to 64 letters, digits, '_' or '-'. The file is\n"
    "replaced atomically, with mode 0600.\n"
    "\n"
    "Exit status: 0 success, 1 the change was refused or failed, 2 usage\n"
    "error or a bad configuration.\n";

#define MAX_GROUPS 64

static int usage_error(const char *fmt, const char *arg) {
  fputs("herald: user: ", stderr);
  fprintf(stderr, fmt, arg);
  fputs("\nTry 'herald user --help'.\n", stderr);
  return 2;
}

/* ---- the file ---------------------------------------------------------- */

/* The users file: --file, else the configuration's users_file. A copy to
 * free in *out; returns 0, or the exit status after saying why. */
static int users_path(const char *file, const char *config, char **out) {
  config_t cfg;
  char err[1024];

  if (file != NULL) {
    *out = strdup(file);
    return *out == NULL ? 1 : 0;
  }
  if (config == NULL && access("herald.conf.lua", F_OK) == 0)
    config = "herald.conf.lua";
  config_defaults(&cfg);
  if (config != NULL && config_load_file(&cfg, config, err, sizeof(err)) <
                            0) {
    fprintf(stderr, "herald: configuration: %s\n", err);
    config_free(&cfg);
    return 2;
  }
  /* config.c makes a relative users_file relative to the configuration's
   * folder, so this is the file the server reads. */
  *out = strdup(cfg.users_file ? cfg.users_file : "herald.users");
  config_free(&cfg);
  return *out == NULL ? 1 : 0;
}

static int load(const char *path, users_t **u) {
  char err[1024];
  if (users_load(path, u, err, sizeof(err)) < 0) {
    fprintf(stderr, "herald: user: %s\n", err);
    return 1;
  }
  return 0;
}

/*
 * Two `herald user` at once would each load the file, change it and save
 * it, and the first change would be lost. A lock on the folder (not a lock
 * file, which would stay behind) makes the second wait for the first.
 * Returns the locked descriptor, or -1 after saying why.
 */
static int lock_folder(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  int fd;

  snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path + 1) : 1,
           slash ? path : ".");
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "herald: user: cannot open the folder of %s: %s\n", path,
            strerror(errno));
    return -1;
  }
  while (flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      fprintf(stderr, "herald: user: cannot lock the folder of %s: %s\n",
              path, strerror(errno));
      close(fd);
      return -1;
    }
  }
  return fd;
}

/* ---- the password ------------------------------------------------------ */

/* The terminal's settings while echo is off, for the signal handler. */
static struct termios saved_tty;
static volatile sig_atomic_t tty_changed;

/* Ctrl-C at the prompt must not leave the terminal without echo. */
static void restore_and_die(int sig) {
  if (tty_changed)
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
  signal(sig, SIG_DFL);
  raise(sig);
}

/*
 * Reads one line from fd into buf (room for USERS_PASSWORD_MAX and a NUL)
 * a byte at a time, so no stdio buffer keeps a copy of the password.
 * Returns 0, or -1 with why in err.
 */
static int read_line(int fd, char *buf, char *err, size_t errlen) {
  size_t len = 0;
  for (;;) {
    char c;
    ssize_t r = read(fd, &c, 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      snprintf(err, errlen, "cannot read the password: %s", strerror(errno));
      return -1;
    }
    if (r == 0 || c == '\n')
      break;
    if (c == '\0') {
      snprintf(err, errlen, "the password holds a NUL byte");
      return -1;
    }
    if (len == USERS_PASSWORD_MAX) {
      snprintf(err, errlen, "the password is longer than %d bytes",
               USERS_PASSWORD_MAX);
      return -1;
    }
    buf[len++] = c;
  }
  buf[len] = '\0';
  if (len == 0) {
    snprintf(err, errlen, "empty password");
    return -1;
  }
  return 0;
}

/* Prompts on stderr and reads a line from the terminal without echo. */
static int ask(const char *prompt, char *buf, char *err, size_t errlen) {
  struct termios quiet;
  struct sigaction sa, old[4];
  static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  int r;

  if (tcgetattr(STDIN_FILENO, &saved_tty) != 0) {
    snprintf(err, errlen, "cannot read the terminal's settings: %s",
             strerror(errno));
    return -1;
  }
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = restore_and_die;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < 4; i++)
    sigaction(sigs[i], &sa, &old[i]);
  quiet = saved_tty;
  /* ECHONL still shows the newline, so the next prompt starts a line. */
  quiet.c_lflag &= ~(tcflag_t)ECHO;
  quiet.c_lflag |= ECHONL;
  /* Echo goes off before the prompt shows: what is typed after it is
   * never shown, nor thrown away by the flush. */
  tty_changed = 1;
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  fputs(prompt, stderr);
  fflush(stderr);
  r = read_line(STDIN_FILENO, buf, err, errlen);
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
  tty_changed = 0;
  for (size_t i = 0; i < 4; i++)
    sigaction(sigs[i], &old[i], NULL);
  return r;
}

/*
 * The new password of name into pw: asked twice on a terminal, else the
 * first line of standard input. Returns 0, or 1 after saying why.
 */
static int get_password(const char *name, char *pw) {
  char again[USERS_PASSWORD_MAX + 1], prompt[128], err[256];
  int r = 0;

  if (!isatty(STDIN_FILENO)) {
    if (read_line(STDIN_FILENO, pw, err, sizeof(err)) < 0)
      r = 1;
  } else {
    snprintf(prompt, sizeof(prompt), "Password for %s: ", name);
    if (ask(prompt, pw, err, sizeof(err)) < 0 ||
        ask("Again: ", again, err, sizeof(err)) < 0)
      r = 1;
    else if (strcmp(pw, again) != 0) {
      snprintf(err, sizeof(err), "the two passwords differ");
      r = 1;
    }
    sodium_memzero(again, sizeof(again));
  }
  if (r != 0) {
    sodium_memzero(pw, USERS_PASSWORD_MAX + 1);
    fprintf(stderr, "herald: user: %s\n", err);
  }
  return r;
}

/* ---- the commands ------------------------------------------------------ */

static int list(const char *path) {
  users_t *u;
  size_t width = 0;
  int r = load(path, &u);

  if (r != 0)
    return r;
  for (size_t i = 0; i < users_count(u); i++) {
    size_t len = strlen(users_at(u, i)->name);
    width = len > width ? len : width;
  }
  for (size_t i = 0; i < users_count(u); i++) {
    const users_user_t *user = users_at(u, i);
    if (user->ngroups == 0) {
      printf("%s\n", user->name);
      continue;
    }
    printf("%-*s  ", (int)width, user->name);
    for (size_t j = 0; j < user->ngroups; j++)
      printf("%s%s", j ? "," : "", user->groups[j]);
    putchar('\n');
  }
  users_free(u);
  return 0;
}

static int del(const char *path, const char *name) {
  users_t *u = NULL;
  char err[1024];
  int lock = lock_folder(path), r;

  if (lock < 0)
    return 1;
  r = load(path, &u);
  if (r == 0 && users_del(u, name) < 0) {
    fprintf(stderr, "herald: user: no user %s in %s\n", name, path);
    r = 1;
  }
  if (r == 0 && users_save(u, path, err, sizeof(err)) < 0) {
    fprintf(stderr, "herald: user: %s\n", err);
    r = 1;
  }
  close(lock);
  if (r == 0)
    printf("deleted user %s\n", name);
  users_free(u);
  return r;
}

/* add (replace 0) and passwd (replace 1). */
static int set(const char *path, const char *name, int replace,
               const char *const *groups, size_t ngroups) {
  char pw[USERS_PASSWORD_MAX + 1], err[1024];
  users_t *u = NULL;
  const users_user_t *found;
  int lock, exists, r = load(path, &u);

  if (r != 0)
    return r;
  /* Said before the password is typed, not after. */
  exists = users_find(u, name) != NULL;
  users_free(u);
  u = NULL;
  if (exists && !replace) {
    fprintf(stderr, "herald: user: user %s already exists; use 'herald "
            "user passwd %s'\n", name, name);
    return 1;
  }
  if (!exists && replace) {
    fprintf(stderr, "herald: user: no user %s in %s\n", name, path);
    return 1;
  }
  if (get_password(name, pw) != 0)
    return 1;
  /* Loaded again under the lock: someone may have changed it while the
   * password was typed. */
  lock = lock_folder(path);
  if (lock < 0) {
    sodium_memzero(pw, sizeof(pw));
    return 1;
  }
  r = load(path, &u);
  if (r == 0 && users_set(u, name, pw, replace ? NULL : groups,
                          replace ? 0 : ngroups, replace, err,
                          sizeof(err)) < 0) {
    fprintf(stderr, "herald: user: %s\n", err);
    r = 1;
  }
  sodium_memzero(pw, sizeof(pw));
  if (r == 0 && users_save(u, path, err, sizeof(err)) < 0) {
    fprintf(stderr, "herald: user: %s\n", err);
    r = 1;
  }
  close(lock);
  if (r == 0 && replace)
    printf("changed the password of %s\n", name);
  else if (r == 0) {
    found = users_find(u, name);
    printf("added user %s (", name);
    if (found->ngroups == 0)
      fputs("no groups", stdout);
    for (size_t i = 0; i < found->ngroups; i++)
      printf("%s%s", i ? "," : "groups: ", found->groups[i]);
    puts(")");
  }
  users_free(u);
  return r;
}

/* Splits each --group on ',' into groups (strtok's pieces of the argument
 * itself); returns the count, or -1 after saying why (exit 2). */
static int add_groups(char *arg, char **groups, size_t *n) {
  char *save = NULL;
  for (char *g = strtok_r(arg, ",", &save); g != NULL;
       g = strtok_r(NULL, ",", &save)) {
    if (!users_valid_group(g)) {
      usage_error("bad group '%s': 1 to 64 letters, digits, '_' or '-'", g);
      return -1;
    }
    if (*n == MAX_GROUPS) {
      usage_error("more than %s groups", "64");
      return -1;
    }
    groups[(*n)++] = g;
  }
  return 0;
}

int usercmd_main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"group", required_argument, NULL, 'g'},
      {"file", required_argument, NULL, 'f'},
      {"config", required_argument, NULL, 'c'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  char *groups[MAX_GROUPS], *path = NULL;
  const char *file = NULL, *config = NULL, *sub, *name = NULL;
  size_t ngroups = 0;
  int ch, want_groups = 0, r;

  opterr = 0;
  optind = 1;
  /* Options may come after the subcommand and the name. */
  while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch (ch) {
    case 'g':
      want_groups = 1;
      if (add_groups(optarg, groups, &ngroups) < 0)
        return 2;
      break;
    case 'f': file = optarg; break;
    case 'c': config = optarg; break;
    case 'h': fputs(usage, stdout); return 0;
    default:
      return usage_error("unknown or incomplete option '%s'",
                         argv[optind - 1]);
    }
  }
  if (optind >= argc)
    return usage_error("%s", "no subcommand given (add, del, passwd, list)");
  sub = argv[optind++];
  if (strcmp(sub, "list") == 0) {
    if (optind < argc)
      return usage_error("unexpected argument '%s'", argv[optind]);
  } else if (strcmp(sub, "add") == 0 || strcmp(sub, "del") == 0 ||
             strcmp(sub, "passwd") == 0) {
    if (optind >= argc)
      return usage_error("%s: no user name given", sub);
    name = argv[optind++];
    if (optind < argc)
      return usage_error("unexpected argument '%s'", argv[optind]);
    if (!users_valid_name(name))
      return usage_error("bad user name '%s': 1 to 64 letters, digits, "
                         "'_', '.', '@' or '-'", name);
  } else {
    return usage_error("unknown subcommand '%s' (add, del, passwd, list)",
                       sub);
  }
  if (want_groups && strcmp(sub, "add") != 0)
    return usage_error("--group goes with 'add' only, not '%s'", sub);
  if (users_init() < 0) {
    fprintf(stderr, "herald: user: cannot initialise libsodium\n");
    return 1;
  }
  r = users_path(file, config, &path);
  if (r != 0)
    return r;
  if (strcmp(sub, "list") == 0)
    r = list(path);
  else if (strcmp(sub, "del") == 0)
    r = del(path, name);
  else
    r = set(path, name, strcmp(sub, "passwd") == 0,
            (const char *const *)groups, ngroups);
  free(path);
  return r;
}
