/*
 * callcmd: `herald call`, which calls an exposed server method as a remote
 * user and prints its result as JSON.
 */
#ifndef HERALD_CALLCMD_H
#define HERALD_CALLCMD_H

/*
 * `herald call [OPTIONS] METHOD [JSON_ARG...]`: argv[0] is the command
 * name ("call"), options start at argv[1]. Prints the method's result as
 * JSON on stdout and returns 0; 1 when the method fails or the server
 * refuses; 2 for usage errors or an unreachable server. Returns the
 * process exit status.
 */
int callcmd_main(int argc, char **argv);

#endif
