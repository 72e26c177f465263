#include "audit.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "process.h"
#include "text.h"

#define DAY_MS (24 * 60 * 60 * 1000LL)

/* One entry of the memory log: the strings live in one block, mem. */
typedef struct held {
  state_audit_t e;
  char *mem;
} held_t;

static struct {
  int open;
  state_t *st;
  long keep_days;
  const session_table_t *sessions;
  int64_t next_prune_ms; /* monotonic */
  held_t *ring;          /* without a state database */
  size_t head, count;    /* the next slot to write; entries held */
  int freed_at_exit;
} au;

/* --- the memory log ------------------------------------------------------ */

static void forget_memory(void) {
  if (au.ring == NULL)
    return;
  for (size_t i = 0; i < AUDIT_MEMORY_MAX; i++)
    free(au.ring[i].mem);
  free(au.ring);
  au.ring = NULL;
  au.head = au.count = 0;
}

static void at_exit(void) { forget_memory(); }

static void hold(const state_audit_t *a) {
  const char *parts[5] = {a->actor, a->action, a->target, a->detail,
                          a->outcome};
  size_t lens[5], total = 0;
  held_t *h;
  char *mem, *p;

  if (au.ring == NULL)
    return; /* out of memory at init: logged then */
  for (int i = 0; i < 5; i++)
    total += (lens[i] = strlen(parts[i])) + 1;
  mem = malloc(total);
  if (mem == NULL) {
    log_error("audit: out of memory: an entry (%s by %s) is lost",
              a->action, a->actor);
    return;
  }
  h = &au.ring[au.head];
  free(h->mem);
  h->mem = p = mem;
  h->e = *a;
  for (int i = 0; i < 5; i++) {
    memcpy(p, parts[i], lens[i] + 1);
    parts[i] = p;
    p += lens[i] + 1;
  }
  h->e.actor = parts[0];
  h->e.action = parts[1];
  h->e.target = parts[2];
  h->e.detail = parts[3];
  h->e.outcome = parts[4];
  au.head = (au.head + 1) % AUDIT_MEMORY_MAX;
  if (au.count < AUDIT_MEMORY_MAX)
    au.count++;
}

/* --- the state database --------------------------------------------------- */

/* Forgets what is older than keep_days, now or when a day has passed
 * since the last time. */
static void prune(int force) {
  int64_t now = clock_mono_ms();
  if (au.st == NULL || (!force && now < au.next_prune_ms))
    return;
  au.next_prune_ms = now + DAY_MS;
  if (state_prune_audit(au.st, clock_wall_ms() - au.keep_days * DAY_MS) ==
      0)
    log_debug("audit: entries older than %ld days pruned", au.keep_days);
}

void audit_init(state_t *st, long keep_days,
                const session_table_t *sessions) {
  forget_memory();
  au.open = 1;
  au.st = st;
  au.keep_days = keep_days > 0 ? keep_days : 1;
  au.sessions = sessions;
  if (st != NULL) {
    prune(1);
    return;
  }
  au.ring = calloc(AUDIT_MEMORY_MAX, sizeof(*au.ring));
  if (au.ring == NULL)
    log_error("audit: out of memory: nothing will be recorded");
  if (!au.freed_at_exit) {
    au.freed_at_exit = 1;
    atexit(at_exit);
  }
}

/* --- the actor --------------------------------------------------------- */

/* The name of the server's own user (who runs serve's own console). */
static const char *own_user(void) {
  static char name[64];
  if (name[0] == '\0') {
    struct passwd pw, *found = NULL;
    char buf[1024];
    if (getpwuid_r(getuid(), &pw, buf, sizeof(buf), &found) == 0 &&
        found != NULL && strlen(found->pw_name) < sizeof(name))
      snprintf(name, sizeof(name), "%s", found->pw_name);
    else
      snprintf(name, sizeof(name), "%ld", (long)getuid());
  }
  return name;
}

const char *audit_actor(char *out, size_t len) {
  const process_t *p = process_running();
  const session_t *s;

  if (p == NULL) {
    snprintf(out, len, "server");
    return out;
  }
  switch (p->type) {
  case PROCESS_METHOD:
    s = au.sessions != NULL ? session_find(au.sessions, p->session_id)
                            : NULL;
    snprintf(out, len, "method:%s@%s", p->name,
             s != NULL ? s->user_name : p->session_id);
    break;
  case PROCESS_JOB:
    snprintf(out, len, "job:%s", p->name);
    break;
  case PROCESS_EVAL:
    /* A console line's process is named "console" (serve's own prompt:
     * the server's own user) or "console:<os user>" (`herald console`:
     * the admin socket names who connected); a request of the
     * administrators' page's is named "admin:<userName>" (webadmin.c); a
     * `herald run` script's is named after the script. */
    if (strcmp(p->name, "console") == 0)
      snprintf(out, len, "console:%s", own_user());
    else if (TEXT_STARTS_WITH(p->name, "console:") ||
             TEXT_STARTS_WITH(p->name, "admin:"))
      snprintf(out, len, "%s", p->name);
    else
      snprintf(out, len, "run:%s", p->name);
    break;
  default:
    snprintf(out, len, "process:%s", p->name);
    break;
  }
  return out;
}

/* --- recording ------------------------------------------------------------ */

void audit_record_as(const char *actor, const char *action,
                     const char *target, long count, const char *detail,
                     const char *outcome) {
  char cut[AUDIT_DETAIL_MAX + 1];
  state_audit_t a;
  size_t len;

  if (!au.open)
    return;
  if (detail == NULL)
    detail = "";
  len = strlen(detail);
  if (len > AUDIT_DETAIL_MAX) {
    /* Back to the start of the character that would be cut. */
    len = AUDIT_DETAIL_MAX;
    while (len > 0 && ((unsigned char)detail[len] & 0xC0) == 0x80)
      len--;
    memcpy(cut, detail, len);
    cut[len] = '\0';
    detail = cut;
  }
  a.time_ms = clock_wall_ms();
  a.actor = actor != NULL ? actor : "server";
  a.action = action;
  a.target = target != NULL ? target : "";
  a.count = count;
  a.detail = detail;
  a.outcome = outcome != NULL ? outcome : "ok";
  if (au.st != NULL) {
    prune(0);
    if (state_put_audit(au.st, &a) < 0)
      log_error("audit: an entry (%s by %s) could not be written", action,
                a.actor);
  } else {
    hold(&a);
  }
}

void audit_record(const char *action, const char *target, long count,
                  const char *detail, const char *outcome) {
  char actor[512];
  if (au.open)
    audit_record_as(audit_actor(actor, sizeof(actor)), action, target, count,
                    detail, outcome);
}

void audit_record_remote(const char *ip, const char *action,
                         const char *target, const char *detail,
                         const char *outcome) {
  char actor[128];
  if (!au.open)
    return;
  snprintf(actor, sizeof(actor), "remote:%s", ip);
  audit_record_as(actor, action, target, 0, detail, outcome);
}

/* --- reading ------------------------------------------------------------ */

int audit_each(int64_t since_ms, state_audit_fn fn, void *data) {
  if (!au.open)
    return 0;
  if (au.st != NULL) {
    prune(0);
    return state_each_audit(au.st, since_ms, fn, data);
  }
  for (size_t i = 1; i <= au.count; i++) {
    const held_t *h =
        &au.ring[(au.head + AUDIT_MEMORY_MAX - i) % AUDIT_MEMORY_MAX];
    if (h->e.time_ms >= since_ms)
      fn(data, &h->e);
  }
  return 0;
}
