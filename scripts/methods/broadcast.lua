-- broadcast(text): sends text to every remote user; returns how many
-- sessions it was queued for. For group admin (on a server with users).
--   herald call broadcast '"The server restarts at 10pm"'
return {
  allow = { "admin" },
  run = function(text)
    if type(text) ~= "string" then
      error("broadcast: text must be a string, got " .. type(text), 0)
    end
    return (send_message_to_remote_user(text))
  end,
}
