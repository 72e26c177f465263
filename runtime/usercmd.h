/*
 * usercmd: `herald user add|del|passwd|list`, which edits the users file
 * (users.h) that the server reads for logins and groups.
 */
#ifndef HERALD_USERCMD_H
#define HERALD_USERCMD_H

int usercmd_main(int argc, char **argv);

#endif
