-- The 10pm restart notice of 4D's SEND MESSAGE TO REMOTE USER example, as a
-- scheduled job: warn everyone, then greet one user by their system name.
--
-- Scheduled in herald.conf.lua (weekdays at 21:45):
--   { cron = "45 21 * * 1-5", script = "maintenance/restart_notice.lua",
--     args = { "Vanessa" } }
-- Or run by hand, or from the system's crontab:
--   herald run scripts/maintenance/restart_notice.lua Vanessa
--
-- Argument: the systemUserName of the user to greet (default "Vanessa").
-- Prints how many sessions got each message (the server's log shows it
-- for a job; `herald run` prints it).

local user = ...
if user == nil or user == "" then
  user = "Vanessa"
end

local message = "A maintenance operation is scheduled for 10pm. The "
  .. "server will be restarted. Please log out before 10pm."
local everyone = send_message_to_remote_user(message)

local greeted = 0
local sessions = get_process_activity(SESSIONS_ONLY).sessions
  :query("systemUserName = :1", user)
for _, session in ipairs(sessions) do
  greeted = greeted + send_message_to_remote_user("Hello " .. user,
    session.ID)
end

print(string.format("restart notice: %d session(s) warned, %d greeted as %s",
  everyone, greeted, user))
