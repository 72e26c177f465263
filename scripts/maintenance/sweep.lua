-- Sweep of long-idle sessions: drops the sessions that are "sleeping" (no
-- frame from their user for sleep_after seconds, 600 by default) and that
-- were opened more than max_age seconds ago (default 28800, 8 hours).
--
-- Scheduled every five minutes in herald.conf.lua:
--   { every = 300, script = "maintenance/sweep.lua", args = { 28800 } }
-- Or from the system's crontab:
--   */5 * * * * herald run scripts/maintenance/sweep.lua 28800
--
-- Why it is harmless: an active user is never dropped, whatever the age of
-- the session, and a sleeping one only after a whole working day; the
-- client is told why (a `drop` frame) and may simply log in again.
-- Postponed sessions (connection lost) are left alone: the server removes
-- them itself after resume_timeout. Pass "dry-run" as the second argument
-- to list what would be dropped without dropping it.

local given, mode = ...
local max_age = 28800
if given ~= nil then
  max_age = tonumber(given)
  if max_age == nil or max_age < 0 then
    error("sweep: max_age must be a number of seconds, not "
      .. tostring(given), 0)
  end
end
local dry_run = mode == "dry-run"

-- creationDateTime is ISO 8601 UTC with milliseconds, so comparing the
-- text compares the times.
local cutoff = os.date("!%Y-%m-%dT%H:%M:%S.000Z", os.time() - max_age)
local idle = get_process_activity(SESSIONS_ONLY).sessions
  :query("state = :1 and creationDateTime < :2", "sleeping", cutoff)

local dropped = 0
for _, session in ipairs(idle) do
  if dry_run then
    print(string.format("sweep: would drop %s (%s@%s, since %s)",
      session.ID, session.userName, session.machineName,
      session.creationDateTime))
  elseif drop_remote_user(session.ID) then
    dropped = dropped + 1
    print(string.format("sweep: dropped %s (%s@%s, since %s)", session.ID,
      session.userName, session.machineName, session.creationDateTime))
  end
end
if not dry_run then
  print(string.format("sweep: %d sleeping session(s) older than %d s "
    .. "dropped", dropped, max_age))
end
