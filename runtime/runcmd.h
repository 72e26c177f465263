/*
 * runcmd: `herald run`, the client side of the admin socket for scripts,
 * and `herald run --local`, a standalone runtime with no server.
 */
#ifndef HERALD_RUNCMD_H
#define HERALD_RUNCMD_H

int runcmd_main(int argc, char **argv);

#endif
