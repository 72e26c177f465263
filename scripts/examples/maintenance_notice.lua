-- 4D's example of SEND MESSAGE TO REMOTE USER, line for line, in Lua.
-- Run it on the server:  herald run scripts/examples/maintenance_notice.lua

-- Method to be executed on server

local message
local element
local userCol

-- retrieve session information

userCol = get_process_activity(SESSIONS_ONLY).sessions

-- send message to all users

message = "A maintenance operation is scheduled for 10pm. The server will be restarted. Please log out before 10pm."

send_message_to_remote_user(message)

-- send message to a single user, "Vanessa"

message = "Hello Vanessa"

userCol = get_process_activity(SESSIONS_ONLY).sessions:query("systemUserName = :1", "Vanessa")

for _, element in ipairs(userCol) do
  send_message_to_remote_user(message, element.ID)
end
