-- herald.conf.lua: a sample configuration. `herald serve` reads
-- ./herald.conf.lua when it exists (or the file given with --config); every
-- key has a default (docs/configuration.md), so each line below is optional.
-- The commented-out values are the defaults.

-- listen = "127.0.0.1:7400"
-- The browser side: the remote user's page at http://127.0.0.1:7480/, the
-- administrators' page at /admin (for users of group admin), WebSocket at
-- /ws. Off unless set.
http_listen = "127.0.0.1:7480"
-- admin_socket = nil            -- $XDG_RUNTIME_DIR/herald.sock, else
--                               -- /tmp/herald-$UID/herald.sock
-- scripts = "scripts"           -- methods in scripts/methods, jobs in
--                               -- scripts/maintenance
-- method_timeout = 10           -- seconds of CPU a method or a job may use
-- max_blocking = 0.5            -- seconds Lua may hold the loop unyielding
-- session_memory_limit = 64 * 1024 * 1024
-- max_calls_per_session = 16

-- Identity. With users in users_file (`herald user add NAME --group admin`),
-- every hello needs a password and methods may be for some groups only.
-- A server beyond loopback needs users and TLS (`herald cert HOST`), unless
-- insecure = true.
-- users_file = "herald.users"   -- beside this file; missing: no passwords
-- tls = { cert = "server.crt", key = "server.key" }
-- auth_delay = 1                -- seconds before a failed login's answer

-- Scheduled jobs. Each runs as a process of type 5 in the sandbox, named
-- after its script (or `name`). Cron times are the server's local time
-- (TZ); `every` counts seconds from the server's start. A job still
-- running when it is due again is not started twice.
schedule = {
  -- 4D's 10pm example: on weekdays at 21:45, warn everyone that the server
  -- restarts at 10pm, then greet Vanessa.
  { cron = "45 21 * * 1-5", script = "maintenance/restart_notice.lua",
    name = "restart notice", args = { "Vanessa" } },
  -- Every five minutes, drop the sessions that have been sleeping and were
  -- opened more than 8 hours ago (see the script for why that is safe).
  { every = 300, script = "maintenance/sweep.lua", args = { 28800 },
    timeout = 5 },
}
