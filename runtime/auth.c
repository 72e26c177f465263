#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "clock.h"
#include "log.h"
#include "users.h"

#define RELOAD_INTERVAL_MS 500
#define MAX_DELAY_S 30.0
/* Addresses remembered for their failures, and for how long. */
#define MAX_ADDRESSES 1024
#define FORGET_AFTER_MS (15 * 60 * 1000)
/* Checks of one address at once; more wait their turn, so that one
 * address cannot fill the thread pool for everyone else. */
#define MAX_CHECKS_PER_ADDRESS 4

typedef struct address {
  char ip[48];
  int failures, checking;
  int64_t last_ms;
} address_t;

struct auth {
  uv_loop_t *loop;
  char *path;
  users_t *users;
  double delay;
  int protect;
  uv_fs_poll_t poll;
  int polling;
  address_t addresses[MAX_ADDRESSES];
  auth_login_t *waiting; /* checks waiting for their address's turn */
};

struct auth_login {
  uv_work_t work;
  uv_timer_t timer;
  auth_t *a;
  address_t *from;
  char ip[48];
  char name[USERS_NAME_MAX + 1];
  char hash[USERS_HASH_MAX + 1]; /* "" for an unknown name */
  char *groups;
  char *password;
  size_t len;
  int64_t started_ms;
  int ok, cancelled, missing;
  auth_done_fn done;
  void *data;
  auth_login_t *next_waiting;
};

/* --- the users file ---------------------------------------------------- */

static void on_users_changed(uv_fs_poll_t *h, int status,
                             const uv_stat_t *prev, const uv_stat_t *curr) {
  auth_t *a = h->data;
  users_t *fresh;
  char err[512];
  (void)prev;
  (void)curr;
  /* Still missing (libuv reports a stat that fails as a change). */
  if (status < 0 && users_count(a->users) == 0)
    return;
  if (users_load(a->path, &fresh, err, sizeof(err)) < 0) {
    log_error("users file not reloaded, the previous users stay: %s", err);
    return;
  }
  if (a->protect && users_count(fresh) == 0 && users_count(a->users) > 0) {
    log_error("users file %s: no user left; the previous users stay (a "
              "server beyond loopback without users would be open to "
              "anyone)", a->path);
    users_free(fresh);
    return;
  }
  users_free(a->users);
  a->users = fresh;
  log_info("users file %s reloaded: %zu users", a->path, users_count(fresh));
}

auth_t *auth_new(uv_loop_t *loop, const char *users_file, double delay,
                 int protect, char *err, size_t errlen) {
  auth_t *a = calloc(1, sizeof(*a));
  if (a == NULL || users_init() < 0 ||
      (a->path = strdup(users_file)) == NULL) {
    snprintf(err, errlen, "cannot start authentication: out of memory");
    free(a);
    return NULL;
  }
  if (users_load(users_file, &a->users, err, errlen) < 0) {
    free(a->path);
    free(a);
    return NULL;
  }
  a->loop = loop;
  a->delay = delay;
  a->protect = protect;
  uv_fs_poll_init(loop, &a->poll);
  a->poll.data = a;
  a->polling = uv_fs_poll_start(&a->poll, on_users_changed, users_file,
                                RELOAD_INTERVAL_MS) == 0;
  if (!a->polling)
    uv_close((uv_handle_t *)&a->poll, NULL);
  return a;
}

void auth_stop(auth_t *a) {
  if (a != NULL && a->polling) {
    a->polling = 0;
    uv_close((uv_handle_t *)&a->poll, NULL);
  }
}

void auth_free(auth_t *a) {
  if (a == NULL)
    return;
  users_free(a->users);
  free(a->path);
  free(a);
}

size_t auth_user_count(const auth_t *a) {
  return a != NULL ? users_count(a->users) : 0;
}

int auth_user_in_group(const auth_t *a, const char *name,
                       const char *group) {
  const users_user_t *u = a != NULL ? users_find(a->users, name) : NULL;
  return u != NULL && users_in_group(u, group);
}

int auth_required(const auth_t *a) {
  return a != NULL && users_count(a->users) > 0;
}

/* --- addresses --------------------------------------------------------- */

/* The record of ip, made (in the place of the stalest one) if need be. */
static address_t *address_of(auth_t *a, const char *ip) {
  int64_t now = clock_mono_ms();
  address_t *free_slot = NULL, *stalest = NULL;
  for (size_t i = 0; i < MAX_ADDRESSES; i++) {
    address_t *r = &a->addresses[i];
    if (r->ip[0] != '\0' && strcmp(r->ip, ip) == 0) {
      if (r->checking == 0 && now - r->last_ms > FORGET_AFTER_MS)
        r->failures = 0;
      return r;
    }
    if (r->ip[0] == '\0') {
      if (free_slot == NULL)
        free_slot = r;
    } else if (r->checking == 0 &&
               (stalest == NULL || r->last_ms < stalest->last_ms)) {
      stalest = r;
    }
  }
  if (free_slot == NULL)
    free_slot = stalest;
  if (free_slot == NULL)
    return NULL; /* every record is checking: count nothing */
  memset(free_slot, 0, sizeof(*free_slot));
  snprintf(free_slot->ip, sizeof(free_slot->ip), "%s", ip);
  free_slot->last_ms = now;
  return free_slot;
}

/* --- a login ------------------------------------------------------------ */

static void wipe_password(auth_login_t *l) {
  if (l->password != NULL) {
    explicit_bzero(l->password, l->len);
    free(l->password);
    l->password = NULL;
  }
}

static void login_free(auth_login_t *l) {
  wipe_password(l);
  free(l->groups);
  free(l);
}

static void on_timer_closed(uv_handle_t *h) { login_free(h->data); }

/* Runs on the thread pool. */
static void check(uv_work_t *w) {
  auth_login_t *l = w->data;
  int known = l->hash[0] != '\0';
  int match = users_verify(known ? l->hash : NULL, l->password, l->len);
  l->ok = known && match;
  wipe_password(l);
}

static void answer_refusal(uv_timer_t *t) {
  auth_login_t *l = t->data;
  if (!l->cancelled)
    l->done(l->data, 0, NULL);
  l->cancelled = 1;
  uv_close((uv_handle_t *)&l->timer, on_timer_closed);
}

/* The check is over (or was never run): answer now, or after the delay. */
static void conclude(auth_login_t *l) {
  auth_t *a = l->a;
  int64_t wait_ms;
  double delay;
  int failures;

  if (l->ok) {
    if (l->from != NULL)
      l->from->failures = 0;
    log_info("login of %s from %s", l->name, l->ip);
    l->done(l->data, 1, l->groups != NULL ? l->groups : "");
    uv_close((uv_handle_t *)&l->timer, on_timer_closed);
    return;
  }
  failures = 1;
  if (l->from != NULL) {
    failures = ++l->from->failures;
    l->from->last_ms = clock_mono_ms();
  }
  delay = a->delay;
  for (int i = 1; i < failures && delay < MAX_DELAY_S; i++)
    delay *= 2;
  if (delay > MAX_DELAY_S)
    delay = MAX_DELAY_S;
  log_warn("login failed: %s from %s (%s; failure %d from this address, "
           "answered after %g s)", l->name, l->ip,
           l->hash[0] == '\0' ? "no such user"
           : l->missing        ? "no password"
                               : "wrong password",
           failures, delay);
  audit_record_remote(l->ip, "login_failed", l->name,
                      l->hash[0] == '\0' ? "no such user"
                      : l->missing        ? "no password"
                                          : "wrong password", "refused");
  wait_ms = l->started_ms + (int64_t)(delay * 1000) - clock_mono_ms();
  uv_timer_start(&l->timer, answer_refusal, wait_ms > 0 ? (uint64_t)wait_ms
                                                        : 0, 0);
}

static void start_check(auth_login_t *l);

/* A check of l's address is over: the next one of that address that
 * waits may run. */
static void next_of_address(auth_t *a, address_t *from) {
  for (auth_login_t **pp = &a->waiting; *pp != NULL;
       pp = &(*pp)->next_waiting) {
    if ((*pp)->from == from) {
      auth_login_t *l = *pp;
      *pp = l->next_waiting;
      start_check(l);
      return;
    }
  }
}

static void after_check(uv_work_t *w, int status) {
  auth_login_t *l = w->data;
  auth_t *a = l->a;
  address_t *from = l->from;
  (void)status;
  if (from != NULL)
    from->checking--;
  if (l->cancelled)
    uv_close((uv_handle_t *)&l->timer, on_timer_closed);
  else
    conclude(l);
  if (from != NULL)
    next_of_address(a, from);
}

static void start_check(auth_login_t *l) {
  l->work.data = l;
  if (uv_queue_work(l->a->loop, &l->work, check, after_check) == 0) {
    if (l->from != NULL)
      l->from->checking++;
    return;
  }
  wipe_password(l);
  conclude(l);
}

auth_login_t *auth_check(auth_t *a, const char *ip, const char *name,
                         const char *password, size_t len, auth_done_fn done,
                         void *data) {
  auth_login_t *l = calloc(1, sizeof(*l));
  const users_user_t *u;
  int run_check;

  if (l == NULL)
    return NULL;
  l->a = a;
  l->done = done;
  l->data = data;
  l->started_ms = clock_mono_ms();
  snprintf(l->ip, sizeof(l->ip), "%s", ip);
  snprintf(l->name, sizeof(l->name), "%s", name);
  u = users_find(a->users, name);
  if (u != NULL) {
    size_t total = 1;
    snprintf(l->hash, sizeof(l->hash), "%s", u->hash);
    for (size_t i = 0; i < u->ngroups; i++)
      total += strlen(u->groups[i]) + 1;
    l->groups = calloc(1, total);
    for (size_t i = 0; l->groups != NULL && i < u->ngroups; i++) {
      if (i > 0)
        strcat(l->groups, ",");
      strcat(l->groups, u->groups[i]);
    }
  }
  uv_timer_init(a->loop, &l->timer);
  l->timer.data = l;
  l->from = address_of(a, ip);
  /* A missing or oversized password fails without a check; it still
   * waits its delay. */
  l->missing = password == NULL;
  run_check = password != NULL && len <= USERS_PASSWORD_MAX &&
              (l->password = malloc(len + 1)) != NULL;
  if (!run_check) {
    conclude(l);
    return l;
  }
  memcpy(l->password, password, len);
  l->password[len] = '\0';
  l->len = len;
  if (l->from != NULL && l->from->checking >= MAX_CHECKS_PER_ADDRESS) {
    auth_login_t **pp = &a->waiting;
    while (*pp != NULL)
      pp = &(*pp)->next_waiting;
    *pp = l;
    return l;
  }
  start_check(l);
  return l;
}

void auth_cancel(auth_login_t *l) {
  if (l->cancelled)
    return;
  l->cancelled = 1;
  for (auth_login_t **pp = &l->a->waiting; *pp != NULL;
       pp = &(*pp)->next_waiting) {
    if (*pp == l) { /* never started: nothing else holds it */
      *pp = l->next_waiting;
      uv_close((uv_handle_t *)&l->timer, on_timer_closed);
      return;
    }
  }
  /* During the check, after_check frees it; during the delay, now. */
  if (uv_is_active((uv_handle_t *)&l->timer)) {
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, on_timer_closed);
  }
}
