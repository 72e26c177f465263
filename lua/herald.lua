---@meta _
-- herald's Lua API for lua-language-server (LuaLS): completion, hover and
-- type checking of the natives, constants and objects that herald gives
-- scripts. Only declarations: nothing here runs. The reference is
-- docs/lua-api.md; tests/e2e/test_luals.py checks this file against the
-- runtime. Point LuaLS at its folder with "workspace.library" in .luarc.json.

-- ---------------------------------------------------------------------------
-- Types
-- ---------------------------------------------------------------------------

---What `get_process_activity` returns.
---@alias herald.ActivityOption
---|>0 # PROCESSES_AND_SESSIONS: both `sessions` and `processes` (the default)
---| 1 # PROCESSES_ONLY: `processes` alone
---| 2 # SESSIONS_ONLY: `sessions` alone

---A session's state.
---@alias herald.SessionState
---| "active"    # connected and talking
---| "sleeping"  # connected, nothing but ping or pong for `sleep_after` seconds
---| "postponed" # connection lost, awaiting a resume

---The client's platform, from its hello; `""` when it sent none.
---@alias herald.HostType "linux"|"mac"|"windows"|"browser"|""

---4D's process types.
---@alias herald.ProcessType
---| 1 # a method called by a remote client
---| 3 # a console line or a `herald run` script
---| 5 # a scheduled job

---A process's state.
---@alias herald.ProcessState
---| 0 # executing, or ready to
---| 1 # delayed, in `delay_process`

---What an audit entry records.
---@alias herald.AuditAction
---| "send"
---| "drop"
---| "reject"
---| "schedule"
---| "unschedule"
---| "run_job"
---| "login_failed"
---| "admin_login"
---| string

---A sort direction for `orderBy`, in any case.
---@alias herald.SortDirection "asc"|"desc"|"ASC"|"DESC"|string

---A job's schedule: a cron string (`"45 21 * * 1-5"`, `"@hourly"`), seconds
---between runs, or a table.
---@alias herald.ScheduleSpec string|number|herald.JobSpec

---A remote user's session, with 4D's names and values: a copy made when it
---is asked for.
---@class herald.Session
---@field type "remote" Always `"remote"`.
---@field userName string From the hello; on a server with users, the user who logged in.
---@field machineName string From the hello, or `""`.
---@field systemUserName string From the hello, or `""`.
---@field IPAddress string The client's address: `"192.168.1.20"`, `"::1"`.
---@field hostType herald.HostType From the hello, or `""`.
---@field creationDateTime string When the session began: ISO 8601 UTC with milliseconds.
---@field state herald.SessionState `"active"`, `"sleeping"` or `"postponed"`.
---@field ID string The session ID: 32 upper-case hexadecimal digits.
---@field persistentID string A second ID that stays through resumes.
---@field groups string[] The user's groups; empty on a server without users.
---@field authenticated boolean Whether the session logged in with a password.

---A process: a method call, a console line, a `herald run` script or a job.
---@class herald.Process
---@field number integer Unique, never reused.
---@field ID integer The same as `number`.
---@field name string The method's name, `"console"`, the script's file name or the job's name.
---@field sessionID string The owner session's ID; `""` for the console, scripts and jobs.
---@field type herald.ProcessType 1 a method, 3 a console line or script, 5 a job.
---@field state herald.ProcessState 0 executing, 1 delayed.
---@field visible boolean Always `true`.
---@field preemptive boolean Always `false`: processes share the server's one thread.
---@field systemID string `"PID:NUMBER"`: the server's process ID and the process number.
---@field creationDateTime string When it started: ISO 8601 UTC with milliseconds.
---@field cpuTime number Seconds it has spent running.
---@field cpuUsage number `cpuTime` over its age, 0 to 1.
---@field session? herald.Session Its owner's session, when it has one that still exists.

---A snapshot from `get_process_activity`; the key the option leaves out is
---absent.
---@class herald.Activity
---@field sessions? herald.Collection<herald.Session> The sessions (absent with no server).
---@field processes? herald.Collection<herald.Process> The processes, each with its `session`.

---What became of a message: `message_status`'s result.
---@class herald.MessageStatus
---@field queued integer The sessions it was queued for.
---@field delivered integer The sessions whose socket took every byte of it.
---@field acknowledged integer The sessions whose client sent `ack`.
---@field pending string[] The IDs of the sessions that still owe its `ack`.

---One entry of the audit log.
---@class herald.AuditEntry
---@field time string ISO 8601 UTC with milliseconds.
---@field actor string `method:NAME@USER`, `console:OSUSER`, `run:SCRIPT`, `job:NAME`, `server`, `remote:IP`, `admin:USER`.
---@field action herald.AuditAction What was done.
---@field target string A session ID, `all`, a job ID or a user name.
---@field count integer The sessions reached.
---@field detail string The text or the reason, at most 1024 bytes.
---@field outcome string `"ok"`, or why not.

---The table form of a job's schedule: exactly one of `cron` or `every`.
---@class herald.JobSpec
---@field cron? string A cron expression: `"45 21 * * 1-5"`, `"@hourly"`.
---@field every? number Seconds between runs (0.01 to 366 days).
---@field name? string Its name in logs and listings.
---@field args? any[] At most 250 values, copied now, passed to each run as `...`.
---@field timeout? number Seconds of running time for each run (at most 86400).

---A scheduled job, as `get_schedule` lists it.
---@class herald.Job
---@field ID integer The job's ID.
---@field name string Its name.
---@field spec string The cron text, or `"every N s"`.
---@field script string The script's path, or `"function"`.
---@field nextRun? string ISO 8601 UTC; absent when there is none (`@reboot`).
---@field lastRun? string When the last run started; absent before the first.
---@field lastResult? string `"ok"`, or the last failure's message; absent before the first run.
---@field running boolean Whether a run is in progress or about to start.
---@field process? integer The running process's number, while it runs.

---One criterion of `orderBy`'s third form.
---@class herald.OrderBy
---@field propertyPath string An attribute path: `"state"`, `"session.userName"`.
---@field descending? boolean Descending rather than ascending.

-- ---------------------------------------------------------------------------
-- Collections
-- ---------------------------------------------------------------------------

---A Lua array (1-based; `#`, `ipairs` and the table library work) with
---4D's collection methods. The methods that return a collection return a
---new one, holding the same elements (not copies).
---@class herald.Collection<T>: { [integer]: T }
local Collection = {}

---The elements that match a query in 4D's syntax, in their order:
---`c:query("systemUserName = :1 and state != 'postponed'", "Van@")`.
---@generic T
---@param self herald.Collection<T>
---@param queryString string Comparisons joined by `and`, `or`, `not`; `:1`, `:2`… take the values after it.
---@param ... any The placeholders' values.
---@return herald.Collection<T>
function Collection:query(queryString, ...) end

---The number of elements: `#c`.
---@return integer
function Collection:length() end

---The first element, or `nil` for an empty collection.
---@generic T
---@param self herald.Collection<T>
---@return T?
function Collection:first() end

---`fn(element, index)` for each element; `nil` results are left out.
---@generic T, R
---@param self herald.Collection<T>
---@param fn fun(element: T, index: integer): R?
---@return herald.Collection<R>
function Collection:map(fn) end

---The elements for which `fn(element, index)` is true.
---@generic T
---@param self herald.Collection<T>
---@param fn fun(element: T, index: integer): any
---@return herald.Collection<T>
function Collection:filter(fn) end

---Sorted as 4D's `orderBy` (stable): `"state, userName desc"`, comma-separated
---attribute paths, each ascending or followed by `asc` or `desc`. Also
---`orderBy(path, "asc" or "desc")`, and `orderBy({ {propertyPath = "state",
---descending = true}, {propertyPath = "userName"} })`.
---@generic T
---@param self herald.Collection<T>
---@param pathStrings string Comma-separated attribute paths, each optionally followed by `asc` or `desc`.
---@return herald.Collection<T>
---@overload fun(self: herald.Collection<T>, path: string, direction: herald.SortDirection): herald.Collection<T>
---@overload fun(self: herald.Collection<T>, pathObjects: herald.OrderBy[]): herald.Collection<T>
function Collection:orderBy(pathStrings) end

-- ---------------------------------------------------------------------------
-- Constants
-- ---------------------------------------------------------------------------

---`get_process_activity` option: both sessions and processes (the default).
---@type 0
PROCESSES_AND_SESSIONS = 0

---`get_process_activity` option: processes alone.
---@type 1
PROCESSES_ONLY = 1

---`get_process_activity` option: sessions alone.
---@type 2
SESSIONS_ONLY = 2

-- ---------------------------------------------------------------------------
-- Natives
-- ---------------------------------------------------------------------------

---A snapshot of the sessions and processes: `{sessions = collection,
---processes = collection}`. With a session ID: that session alone and its
---processes, or `nil` for an unknown or ending session. With no server: no
---`sessions`, and the local processes.
---@param options? herald.ActivityOption `PROCESSES_AND_SESSIONS` (default), `PROCESSES_ONLY` or `SESSIONS_ONLY`.
---@return herald.Activity
---@overload fun(sessionID: string, options?: herald.ActivityOption): herald.Activity?
function get_process_activity(options) end

---Queues `message` for every session, or for the one session. Returns the
---number of sessions it was queued for and the message's ID (`0` alone with
---no server). Raises when `message` is not UTF-8 text of at most
---`max_message` bytes.
---@param message string
---@param sessionID? string One session; every session when absent.
---@return integer count
---@return integer? messageID
function send_message_to_remote_user(message, sessionID) end

---What became of a message sent earlier, or `nil` for an unknown or
---forgotten ID.
---@param id integer The message's ID, from `send_message_to_remote_user`.
---@return herald.MessageStatus?
function message_status(id) end

---Ends that session now: its client gets `drop` with `reason`. `true` if the
---session existed, `false` otherwise.
---@param sessionID string
---@param reason? string At most 1024 bytes of UTF-8 text; default "dropped by an administrator".
---@return boolean existed
function drop_remote_user(sessionID, reason) end

---The audit log, newest first; with a query string, only the entries it
---matches. Not for methods, and not in `herald run --local`.
---@param queryString? string As the collection's `query`.
---@param ... any The placeholders' values.
---@return herald.Collection<herald.AuditEntry>
function audit_log(queryString, ...) end

---While `flag` is `true`, every new hello is refused (existing sessions stay,
---resumes still work). `true`, or `false` with no server.
---@param flag boolean
---@return boolean
function reject_new_remote_connections(flag) end

---The session object, or `nil` for an unknown or ending session.
---@param sessionID string
---@return herald.Session?
function session_info(sessionID) end

---The process object (with its `session`), or `nil` once it has ended.
---@param number integer
---@return herald.Process?
function process_info(number) end

---In a method, the session of the client that called it; `nil` elsewhere.
---@return herald.Session?
function current_session() end

---Suspends the calling process for `seconds` (0 or less: the next turn of
---the loop); the server goes on serving. Only a process's own code can be
---delayed (not a coroutine it created).
---@param seconds number
function delay_process(seconds) end

---Its arguments, through `tostring`, joined by tabs, as one line: back to
---the console or `herald run`, to the server's log from a method or a job,
---to standard output with `herald run --local`.
---@param ... any
function print(...) end

-- ---------------------------------------------------------------------------
-- Scheduled jobs (on a server only: not in `herald run --local`)
-- ---------------------------------------------------------------------------

---Adds a job and returns its ID. Not for methods.
---@param spec herald.ScheduleSpec A cron string, seconds between runs, or `{cron = … or every = …, name =, args =, timeout =}`.
---@param script_or_function string|fun(...: any) A path inside the scripts folder, or a function.
---@return integer id
function schedule(spec, script_or_function) end

---Removes a job: `true`, or `false` for an unknown ID. Not for methods.
---@param id integer
---@return boolean
function unschedule(id) end

---Starts a run now: `true`, or `false` for an unknown ID or a job that is
---running. Not for methods.
---@param id integer
---@return boolean
function run_job(id) end

---The jobs, in ID order.
---@return herald.Collection<herald.Job>
function get_schedule() end

-- ---------------------------------------------------------------------------
-- Elsewhere only
-- ---------------------------------------------------------------------------

---`table.unpack`, in methods and job scripts (the sandbox) only.
---@generic T
---@param list T[]
---@param i? integer
---@param j? integer
---@return T ...
function unpack(list, i, j) end

---In the console only: every session, printed as an aligned table.
---@return herald.Collection<herald.Session>
function sessions() end

---In the console only: every process, printed as an aligned table.
---@return herald.Collection<herald.Process>
function processes() end

---In a `herald run` script: `arg[0]` the script's file name, `arg[1..n]`
---its arguments (also `...`).
---@type string[]
arg = {}

-- ---------------------------------------------------------------------------
-- cjson (lua-cjson 2.1; the full environment only, not methods or jobs)
-- ---------------------------------------------------------------------------

---JSON: lua-cjson.
---@class herald.cjson
cjson = {}

---"cjson".
---@type string
cjson._NAME = "cjson"

---The module's version: "2.1.0".
---@type string
cjson._VERSION = "2.1.0"

---Stands for JSON `null` (a light userdata), in and out.
---@type lightuserdata
cjson.null = nil

---A value as JSON text. Raises on what JSON cannot carry.
---@param value any
---@return string json
function cjson.encode(value) end

---JSON text as a Lua value; `null` becomes `cjson.null`.
---@param json string
---@return any
function cjson.decode(json) end

---A new cjson module with settings of its own.
---@return herald.cjson
function cjson.new() end

---How sparse arrays encode: sets and returns (convert, ratio, safe).
---@param convert? boolean|"on"|"off"
---@param ratio? integer
---@param safe? integer
---@return boolean convert
---@return integer ratio
---@return integer safe
function cjson.encode_sparse_array(convert, ratio, safe) end

---The deepest nesting `encode` accepts (default 1000); sets and returns it.
---@param depth? integer
---@return integer
function cjson.encode_max_depth(depth) end

---The deepest nesting `decode` accepts (default 1000); sets and returns it.
---@param depth? integer
---@return integer
function cjson.decode_max_depth(depth) end

---Significant digits of encoded numbers (1 to 14, default 14); sets and
---returns it.
---@param precision? integer
---@return integer
function cjson.encode_number_precision(precision) end

---Whether `encode` keeps its buffer between calls; sets and returns it.
---@param keep? boolean|"on"|"off"
---@return boolean
function cjson.encode_keep_buffer(keep) end

---Whether `encode` accepts NaN and infinities (`"null"`: as null); sets and
---returns it.
---@param setting? boolean|"on"|"off"|"null"
---@return boolean|"null"
function cjson.encode_invalid_numbers(setting) end

---Whether `decode` accepts NaN, Infinity and hexadecimal numbers; sets and
---returns it.
---@param setting? boolean|"on"|"off"
---@return boolean
function cjson.decode_invalid_numbers(setting) end
