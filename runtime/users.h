/*
 * users: the users file (`users_file`, default herald.users beside the
 * configuration). One user a line:
 *
 *   NAME:HASH:GROUP,GROUP...
 *
 * NAME is 1..64 of letters, digits and "_.@-"; HASH is libsodium's argon2id
 * string (crypto_pwhash_str: it holds no ':'); the groups (letters, digits,
 * '_' and '-', 1..64 each) may be empty. Blank lines and lines starting
 * with '#' are ignored. A missing or empty file means no authentication.
 * The file is written atomically (a temporary file in the same folder,
 * then rename) with mode 0600; passwords are never stored in clear.
 *
 * Used by the server (to load and reload the file, to check a password on
 * libuv's thread pool) and by `herald user`.
 */
#ifndef HERALD_USERS_H
#define HERALD_USERS_H

#include <stddef.h>

#define USERS_NAME_MAX 64
#define USERS_GROUP_MAX 64
/* Room for crypto_pwhash_STRBYTES (128) and its NUL. */
#define USERS_HASH_MAX 128
/* Longest password accepted anywhere (hello, herald user). */
#define USERS_PASSWORD_MAX 1024

typedef struct users_user {
  char name[USERS_NAME_MAX + 1];
  char hash[USERS_HASH_MAX + 1];
  char **groups; /* ngroups group names */
  size_t ngroups;
} users_user_t;

typedef struct users users_t;

/* Initialises libsodium; call once before anything else here. 0 or -1. */
int users_init(void);

/* A new empty set. NULL when memory runs out. */
users_t *users_new(void);
void users_free(users_t *u);

/*
 * Reads the file at path into *out (a new set). A missing file gives an
 * empty set. Returns 0, or -1 with "PATH:LINE: why" (or "PATH: why") in err
 * and *out untouched.
 */
int users_load(const char *path, users_t **out, char *err, size_t errlen);
/* Writes u to path atomically with mode 0600. 0, or -1 with err. */
int users_save(const users_t *u, const char *path, char *err,
               size_t errlen);

size_t users_count(const users_t *u);
const users_user_t *users_at(const users_t *u, size_t i);
/* The user of that name, or NULL. */
const users_user_t *users_find(const users_t *u, const char *name);
/* Whether user is in group. */
int users_in_group(const users_user_t *user, const char *group);

/* 1 when name may be a user name (see above), else 0. Same for groups. */
int users_valid_name(const char *name);
int users_valid_group(const char *group);

/*
 * Adds a user (name not there yet) or replaces one (`replace` set: the
 * password and, when groups is not NULL, the groups). The password is
 * hashed here (argon2id, libsodium's interactive limits). Returns 0, or -1
 * with err ("user NAME already exists", "no user NAME", a bad name...).
 */
int users_set(users_t *u, const char *name, const char *password,
              const char *const *groups, size_t ngroups, int replace,
              char *err, size_t errlen);
/* Removes the user; 0, or -1 when there is no such user. */
int users_del(users_t *u, const char *name);

/*
 * Checks password against hash (crypto_pwhash_str_verify); thread-safe,
 * slow by design (call it off the event loop). hash may be NULL: then a
 * dummy hash made once with the same cost is checked, so that an unknown
 * name costs the same time as a wrong password. 1 when it matches, else 0.
 */
int users_verify(const char *hash, const char *password, size_t len);

#endif
