-- list_sessions(): every session object, as get_process_activity sees them.
return function()
  return get_process_activity(SESSIONS_ONLY).sessions
end
