/*
 * jobspec: the one reader and checker of a scheduled job's spec. The
 * configuration's schedule entries and schedule()'s table form go through
 * jobspec_read (the same fields, types and messages), and every job,
 * whatever its form, through jobspec_check before it is added (config.c
 * checks too, so that a bad entry stops the server before it listens).
 */
#ifndef HERALD_JOBSPEC_H
#define HERALD_JOBSPEC_H

#include <lua.h>
#include <stddef.h>

/* The longest period of an every job: 366 days. */
#define JOBSPEC_MAX_EVERY (366.0 * 86400)
/* The longest timeout a job may have: a day. */
#define JOBSPEC_MAX_TIMEOUT 86400.0

typedef struct jobspec {
  const char *cron;   /* NULL: every */
  double every;       /* seconds, when cron is NULL */
  const char *name;   /* NULL: none given */
  const char *script; /* NULL: none given (read only with_script) */
  double timeout;     /* 0: none given */
  int has_args;       /* args is a table (the caller reads it) */
} jobspec_t;

/*
 * Reads the spec table at idx without metamethods: only the fields cron,
 * every, name, timeout, args (and script, with_script, where it is then
 * required), each of its type, and exactly one of cron and every. The
 * strings point into the table and live as long as it does. 0, or -1
 * with why in err; out->name and out->script are set as far as they were
 * read, for the caller's message.
 */
int jobspec_read(lua_State *L, int idx, int with_script, jobspec_t *out,
                 char *err, size_t errlen);

/*
 * The values' rules, for any spec: exactly one of a cron expression (which
 * must parse and fire within cron's horizon) and every (0.01 s to
 * JOBSPEC_MAX_EVERY); a timeout from 0 (none) to JOBSPEC_MAX_TIMEOUT.
 * 0, or -1 with why in err.
 */
int jobspec_check(const char *cron, double every, double timeout, char *err,
                  size_t errlen);

#endif
