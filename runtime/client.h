/*
 * client: the remote-user side of herald, `herald client` (show messages
 * from the server as terminal alerts) and `herald call` (call an exposed
 * server method and print its result as JSON).
 */
#ifndef HERALD_CLIENT_H
#define HERALD_CLIENT_H

/*
 * `herald client [OPTIONS]`: argv[0] is the command name ("client"),
 * options start at argv[1]. Runs until the user interrupts it (0), the
 * server drops or refuses the session (1), or the first connection fails
 * (2; also for usage errors). Returns the process exit status.
 */
int client_main(int argc, char **argv);

/*
 * `herald call [OPTIONS] METHOD [JSON_ARG...]`: argv as for client_main.
 * Prints the method's result as JSON on stdout and returns 0; 1 when the
 * method fails or the server refuses; 2 for usage errors or an unreachable
 * server.
 */
int client_call_main(int argc, char **argv);

#endif
