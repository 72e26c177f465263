/*
 * serve: `herald serve`, the server's command: configuration, the Lua
 * runtime, the listener, the admin socket and the console, then the loop.
 */
#ifndef HERALD_SERVE_H
#define HERALD_SERVE_H

int serve_main(int argc, char **argv);

#endif
