/*
 * auth: who may log in. The users file (users.h), reloaded when it changes
 * (uv_fs_poll, twice a second), and the check of a hello's name and
 * password on libuv's thread pool: argon2id is slow by design and never
 * runs on the loop, so a storm of failing logins delays no one's ping.
 *
 * A failed login is answered auth_delay seconds after its hello, doubling
 * with each further failure from the same address up to 30 s; a success
 * resets it. An unknown name costs the same time as a wrong password, and
 * gets the same answer.
 */
#ifndef HERALD_AUTH_H
#define HERALD_AUTH_H

#include <stddef.h>
#include <uv.h>

typedef struct auth auth_t;
typedef struct auth_login auth_login_t;

/*
 * The answer to a login, on the loop: ok, and the user's groups
 * (comma-separated, valid during the call) when ok. The login is over
 * after the call.
 */
typedef void (*auth_done_fn)(void *data, int ok, const char *groups);

/*
 * Loads the users file and watches it. protect: a reload that leaves no
 * user is refused (the server listens beyond loopback and must not become
 * open). NULL with the reason in err (an unreadable or broken file).
 */
auth_t *auth_new(uv_loop_t *loop, const char *users_file, double delay,
                 int protect, char *err, size_t errlen);
/* Stops watching the file (the loop can then run out). */
void auth_stop(auth_t *a);
/* After the loop has run out. */
void auth_free(auth_t *a);

/* Whether the users file (as loaded now) has user name in group. */
int auth_user_in_group(const auth_t *a, const char *name, const char *group);
/* Whether hellos need a password: the file holds at least one user. */
int auth_required(const auth_t *a);
size_t auth_user_count(const auth_t *a);

/*
 * Starts checking name and password (password NULL: missing) for a hello
 * from ip; done follows on the loop. Returns the login, to cancel it when
 * its connection goes away first, or NULL when memory runs out.
 */
auth_login_t *auth_check(auth_t *a, const char *ip, const char *name,
                         const char *password, size_t len, auth_done_fn done,
                         void *data);
/* done will not be called. */
void auth_cancel(auth_login_t *l);

#endif
