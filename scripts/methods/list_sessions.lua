-- list_sessions(): every session object, as get_process_activity sees them
-- (names, machines, IP addresses): for group admin (on a server with users).
return {
  allow = { "admin" },
  run = function()
    return get_process_activity(SESSIONS_ONLY).sessions
  end,
}
