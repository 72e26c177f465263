/*
 * auditcmd: `herald audit`, the audit log of the running server, read over
 * the admin socket as `herald run` does (the same trust checks), as a
 * table or as JSON lines.
 */
#ifndef HERALD_AUDITCMD_H
#define HERALD_AUDITCMD_H

#include <stdint.h>

int auditcmd_main(int argc, char **argv);

/*
 * Reads a --since value into wall-clock milliseconds: an ISO date or date
 * and time in UTC (2026-11-30, 2026-11-30T21:00, 2026-11-30T21:00:05,
 * with optional .mmm and Z; a space may stand for the T), or a duration
 * before now_ms (30s, 10m, 2h, 7d). 0, or -1 for anything else.
 */
int auditcmd_parse_since(const char *text, int64_t now_ms, int64_t *out);

#endif
