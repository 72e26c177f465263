/*
 * consolecmd: `herald console`, a Lua console attached to a running server
 * over its admin socket. On a terminal it edits lines with libedit (the
 * same front end as serve's own prompt); from a pipe it evaluates each
 * line it reads and prints the answers.
 */
#ifndef HERALD_CONSOLECMD_H
#define HERALD_CONSOLECMD_H

int consolecmd_main(int argc, char **argv);

#endif
