-- webadmin: the requests of the administrators' page (/admin), each run
-- by runtime/webadmin.c as a process named admin:<userName>, so that what
-- it changes goes through the same natives as the console's and is
-- audited under that name. handle(request) returns the reply's result,
-- or raises with a message for the page.

local ops = {}

local function fail(fmt, ...)
  error(string.format(fmt, ...), 0)
end

-- The request's `sessions`: an array of session IDs.
local function session_ids(req)
  local ids = req.sessions
  if type(ids) ~= "table" then
    fail("'sessions' must be an array of session IDs")
  end
  for i, id in ipairs(ids) do
    if type(id) ~= "string" then
      fail("'sessions' item %d is not a session ID", i)
    end
  end
  return ids
end

-- A query and its parameters, as the collection's query takes them.
local function run_query(coll, req)
  if req.query == nil or req.query == "" then
    return coll
  end
  if type(req.query) ~= "string" then
    fail("'query' must be a string")
  end
  local params = req.params
  if params ~= nil and type(params) ~= "table" then
    fail("'params' must be an array")
  end
  local ok, found = pcall(coll.query, coll, req.query,
                          table.unpack(params or {}))
  if not ok then
    fail("%s", tostring(found):gsub("^.-:%d+: ", ""))
  end
  return found
end

function ops.query(req)
  local sessions = get_process_activity(SESSIONS_ONLY).sessions
  local ids = {}
  for i, s in ipairs(run_query(sessions, req)) do
    ids[i] = s.ID
  end
  return { ids = ids, count = #ids }
end

function ops.send(req)
  if type(req.message) ~= "string" or req.message == "" then
    fail("'message' must be a non-empty string")
  end
  if req.sessions == nil then
    local queued, id = send_message_to_remote_user(req.message)
    return { queued = queued, messageIDs = { id } }
  end
  local queued, ids = 0, {}
  for _, sid in ipairs(session_ids(req)) do
    local n, id = send_message_to_remote_user(req.message, sid)
    queued = queued + n
    ids[#ids + 1] = id
  end
  return { queued = queued, messageIDs = ids }
end

function ops.drop(req)
  if type(req.reason) ~= "string" or req.reason == "" then
    fail("'reason' must be a non-empty string")
  end
  local dropped = 0
  for _, sid in ipairs(session_ids(req)) do
    if drop_remote_user(sid, req.reason) then
      dropped = dropped + 1
    end
  end
  return { dropped = dropped }
end

function ops.reject(req)
  if type(req.flag) ~= "boolean" then
    fail("'flag' must be true or false")
  end
  reject_new_remote_connections(req.flag)
  return { rejecting = req.flag }
end

function ops.schedule()
  local jobs = {}
  for i, job in ipairs(get_schedule()) do
    jobs[i] = job
  end
  return { jobs = jobs }
end

function ops.run_job(req)
  if math.type(req.job) ~= "integer" then
    fail("'job' must be a job ID")
  end
  return { started = run_job(req.job) and true or false }
end

local function limit_of(req, default)
  local limit = req.limit
  if limit == nil then
    return default
  end
  if math.type(limit) ~= "integer" or limit < 1 then
    fail("'limit' must be a positive whole number")
  end
  return math.min(limit, 10000)
end

function ops.audit(req)
  local limit = limit_of(req, 200)
  local rows = {}
  for i, entry in ipairs(run_query(audit_log(), req)) do
    if i > limit then
      break
    end
    rows[i] = entry
  end
  return { rows = rows }
end

local function handle(req)
  local op = ops[req.op]
  if op == nil then
    fail("unknown op '%s'", tostring(req.op))
  end
  return op(req)
end

return { handle = handle }
