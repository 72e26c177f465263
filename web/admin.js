// herald's administrators' page: 4D Server's administration window in a
// browser. It speaks the protocol of "Administration over WebSocket"
// (docs/protocol.md) on /admin/ws.
//
// The page runs under a strict Content-Security-Policy: no inline script or
// style, no eval. Server data only ever reaches the page as textContent or
// attribute values, never as HTML.
(function () {
  "use strict";

  // ---------------------------------------------------------------------
  // Settings

  const ROW_HEIGHT = 32;            // the sessions table's row height (px); measured again once rows exist
  const OVERSCAN = 10;              // rows rendered above and below the visible ones, for smooth scrolling
  const REQUEST_TIMEOUT_MS = 30000; // a request without a reply by then is given up
  const LOGIN_TIMEOUT_MS = 20000;   // a connection that has not said `ready` by then is closed
  const BACKOFF_S = [1, 2, 4, 8, 15, 30]; // reconnection delays, the last one repeats
  const REQUERY_MIN_MS = 1000;      // an active filter is re-sent at most once a second
  const SCHEDULE_EVERY_MS = 5000;
  const MESSAGES_EVERY_MS = 2000;
  const CLOCK_EVERY_MS = 15000;     // "5 min ago" texts are refreshed this often
  const PROCESS_ROWS_MAX = 2000;    // the processes table is not virtual: it shows at most this many
  const REASON_MAX_BYTES = 1024;    // drop_remote_user's limit on the reason

  // Login errors after which trying again with the same credentials is
  // pointless: the page returns to the login form.
  const FATAL_LOGIN_CODES = new Set(["unavailable", "unauthorized", "forbidden", "bad_json", "login_required"]);

  const PROCESS_TYPES = { 1: "method", 3: "console / script", 5: "job" };
  const PROCESS_STATES = { 0: "executing", 1: "delayed" };

  // ---------------------------------------------------------------------
  // Small helpers

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // The server may send an empty list as {} (see "JSON numbers" and the
  // note on empty lists in the protocol): anything that is not an array is
  // taken as an empty one.
  function asArray(value) {
    return Array.isArray(value) ? value : [];
  }

  function plural(n, one, many) {
    return formatCount(n) + " " + (n === 1 ? one : many);
  }

  function formatCount(n) {
    return typeof n === "number" && isFinite(n) ? n.toLocaleString() : "—";
  }

  function utf8Length(text) {
    return new TextEncoder().encode(text).length;
  }

  // Writes only when the text changes: rows are re-filled every frame, and
  // unchanged DOM is left alone (no layout work, no screen-reader chatter).
  function setText(node, text) {
    const value = text === undefined || text === null ? "" : String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  function setTitle(node, title) {
    const value = title || "";
    if (node.title !== value) node.title = value;
  }

  function setClass(node, className) {
    if (node.className !== className) node.className = className;
  }

  function orDash(value) {
    return value === undefined || value === null || value === "" ? "—" : String(value);
  }

  // ---------------------------------------------------------------------
  // Times: the server sends ISO 8601 UTC; the page shows local time.

  function parseTime(iso) {
    if (typeof iso !== "string" || iso === "") return null;
    const date = new Date(iso);
    return isNaN(date.getTime()) ? null : date;
  }

  function localTime(date) {
    const now = new Date();
    const sameDay = date.getFullYear() === now.getFullYear() &&
      date.getMonth() === now.getMonth() && date.getDate() === now.getDate();
    return sameDay ? date.toLocaleTimeString() : date.toLocaleString();
  }

  function relativeTime(date) {
    let seconds = Math.round((Date.now() - date.getTime()) / 1000);
    const future = seconds < 0;
    seconds = Math.abs(seconds);
    if (seconds < 5) return future ? "in a moment" : "just now";
    let span;
    if (seconds < 60) span = seconds + " s";
    else if (seconds < 3600) span = Math.floor(seconds / 60) + " min";
    else if (seconds < 86400) span = Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
    else span = Math.floor(seconds / 86400) + " d " + Math.floor((seconds % 86400) / 3600) + " h";
    return future ? "in " + span : span + " ago";
  }

  // "14:03:22 (5 min ago)", with the full date and the server's text in the tooltip.
  function timeCell(td, iso, withRelative) {
    const date = parseTime(iso);
    if (!date) {
      setText(td, orDash(iso));
      setTitle(td, "");
      return;
    }
    setText(td, withRelative ? localTime(date) + " (" + relativeTime(date) + ")" : localTime(date));
    setTitle(td, date.toLocaleString() + " — " + iso);
  }

  // ---------------------------------------------------------------------
  // Query parameters: "Van@, 2, 'a, b'" → ["Van@", 2, "a, b"]

  const NUMBER_RE = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i;

  function parseParams(text) {
    const params = [];
    if (text.trim() === "") return params;
    let i = 0;
    for (;;) {
      while (text[i] === " " || text[i] === "\t") i++;
      let value;
      const quote = text[i];
      if (quote === "'" || quote === '"') {
        const read = readQuoted(text, i);
        value = read.value;
        i = read.end;
        while (text[i] === " " || text[i] === "\t") i++;
      } else {
        let end = text.indexOf(",", i);
        if (end < 0) end = text.length;
        const raw = text.slice(i, end).trim();
        value = NUMBER_RE.test(raw) ? Number(raw) : raw;
        i = end;
      }
      params.push(value);
      if (i >= text.length) return params;
      if (text[i] !== ",") throw new Error("parameters: expected a comma after parameter " + params.length);
      i++;
    }
  }

  // A quoted parameter, in the query language's way: a backslash escapes
  // only the opening quote and another backslash.
  function readQuoted(text, start) {
    const quote = text[start];
    let value = "";
    for (let i = start + 1; i < text.length; i++) {
      const c = text[i];
      if (c === "\\" && (text[i + 1] === quote || text[i + 1] === "\\")) {
        value += text[i + 1];
        i++;
      } else if (c === quote) {
        return { value: value, end: i + 1 };
      } else {
        value += c;
      }
    }
    throw new Error("parameters: unclosed " + quote + " at position " + (start + 1));
  }

  // ---------------------------------------------------------------------
  // Connection state

  const conn = {
    ws: null,
    phase: "login",      // login | connecting | ready | error | disconnected
    credentials: null,   // { userName, password }: in memory only, never stored
    everReady: false,    // these credentials logged in once: a lost connection reconnects
    readyHere: false,    // the current socket got `ready`
    loginError: null,    // { code, message } of an `error` frame before `ready`
    attempt: 0,          // reconnection attempts since the last `ready`
    reconnectAt: 0,
    reconnectTimer: 0,
    countdownTimer: 0,
    loginTimer: 0,
    nextID: 1,
    pending: new Map(),  // request id → { resolve, timer, background }
    lastError: null,
    lastResult: null,
    serverName: "",
    adminName: "",
  };

  function socketURL() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + location.host + "/admin/ws";
  }

  function setPhase(phase) {
    conn.phase = phase;
    updateConnectionUI();
    updateControls();
  }

  function connect() {
    clearTimeout(conn.reconnectTimer);
    clearInterval(conn.countdownTimer);
    conn.reconnectTimer = 0;
    conn.countdownTimer = 0;
    conn.loginError = null;
    conn.readyHere = false;

    let ws;
    try {
      ws = new WebSocket(socketURL());
    } catch (err) {
      conn.ws = null;
      handleClose();
      return;
    }
    conn.ws = ws;
    if (conn.phase === "disconnected") setBanner("Connection lost. Reconnecting…", false);

    // Each handler checks that its socket is still the current one: a
    // socket given up (log out, timeout) may still report events later.
    ws.onopen = function () {
      if (ws !== conn.ws || !conn.credentials) return;
      sendFrame({ type: "login", userName: conn.credentials.userName, password: conn.credentials.password });
    };
    ws.onmessage = function (event) {
      if (ws === conn.ws) handleText(event.data);
    };
    ws.onclose = function () {
      if (ws !== conn.ws) return;
      conn.ws = null;
      handleClose();
    };
    ws.onerror = function () { /* a close event follows; it does the work */ };

    clearTimeout(conn.loginTimer);
    conn.loginTimer = setTimeout(function () {
      if (ws === conn.ws && !conn.readyHere) ws.close();
    }, LOGIN_TIMEOUT_MS);
  }

  function sendFrame(frame) {
    if (!conn.ws || conn.ws.readyState !== WebSocket.OPEN) return false;
    try {
      conn.ws.send(JSON.stringify(frame));
      return true;
    } catch (err) {
      return false;
    }
  }

  function handleText(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch (err) {
      return; // not ours to fix; the protocol has one JSON object per message
    }
    if (!frame || typeof frame !== "object") return;
    switch (frame.type) {
      case "ready": onReady(frame); break;
      case "error": onErrorFrame(frame); break;
      case "sessions": onSessions(frame); break;
      case "processes": onProcesses(frame); break;
      case "status": onStatus(frame); break;
      case "reply": onReply(frame); break;
      default: break; // unknown frame types are ignored, as the protocol asks
    }
  }

  function onReady(frame) {
    clearTimeout(conn.loginTimer);
    const reconnected = conn.everReady;
    conn.readyHere = true;
    conn.everReady = true;
    conn.attempt = 0;
    conn.lastError = null;
    conn.serverName = typeof frame.server === "string" ? frame.server : "";
    conn.adminName = typeof frame.userName === "string" ? frame.userName : conn.credentials.userName;
    if (typeof frame.rejecting === "boolean") status.rejecting = frame.rejecting;
    // The old rows stay on screen, marked stale, until the `sessions`
    // reset that follows `ready` replaces them.
    if (reconnected) store.stale = true;
    $("login-password").value = "";
    setBanner(null);
    setPhase("ready");
    showApp();
    if (reconnected) {
      say("Reconnected.", "ok");
      refreshShownView();
    } else {
      $("tab-" + view.current).focus();
    }
    updateHeader();
  }

  function onErrorFrame(frame) {
    const error = { code: String(frame.code || "error"), message: String(frame.message || "") };
    if (!conn.readyHere) {
      conn.loginError = error; // the close that follows decides what to do
      return;
    }
    conn.lastError = error.code + (error.message ? ": " + error.message : "");
    say("The server reported an error: " + conn.lastError, "error");
  }

  function handleClose() {
    clearTimeout(conn.loginTimer);
    failPending("the connection to the server was lost");
    if (!conn.credentials) return; // logged out
    const error = conn.loginError;

    if (error && FATAL_LOGIN_CODES.has(error.code)) {
      loginFailed(error);
      return;
    }
    if (!conn.everReady) {
      loginFailed(error || { code: "network", message: "" });
      return;
    }
    // A session with the server existed: keep trying, more and more slowly.
    store.stale = true;
    scheduleRender();
    setPhase("disconnected");
    scheduleReconnect(error);
  }

  function scheduleReconnect(error) {
    const base = BACKOFF_S[Math.min(conn.attempt, BACKOFF_S.length - 1)];
    conn.attempt++;
    // A little jitter, so that several open pages do not all come back at once.
    const delay = base * 1000 * (1 + Math.random() * 0.2);
    conn.reconnectAt = Date.now() + delay;
    conn.reconnectTimer = setTimeout(connect, delay);
    const why = error && error.code === "busy" ? "The server has too many administrators connected." : "Connection lost.";
    const tick = function () {
      const seconds = Math.max(0, Math.ceil((conn.reconnectAt - Date.now()) / 1000));
      setBanner(why + " Reconnecting in " + seconds + " s…", true);
    };
    tick();
    clearInterval(conn.countdownTimer);
    conn.countdownTimer = setInterval(tick, 1000);
    conn.lastError = why;
  }

  function reconnectNow() {
    if (conn.phase === "disconnected" && !conn.ws) connect();
  }

  // ---------------------------------------------------------------------
  // Requests and replies

  // Sends a request and resolves (never rejects) with { ok, result } or
  // { ok: false, error }. Background requests (periodic refreshes, the
  // automatic re-query) leave lastResult and lastError alone, so that those
  // describe what the administrator did last.
  function request(op, fields, background) {
    return new Promise(function (resolve) {
      const id = conn.nextID++;
      const entry = { resolve: resolve, timer: 0, background: !!background };
      conn.pending.set(id, entry);
      if (conn.phase !== "ready" || !sendFrame(Object.assign({ type: "request", id: id, op: op }, fields || {}))) {
        settle(id, { ok: false, error: "not connected to the server" });
        return;
      }
      entry.timer = setTimeout(function () {
        settle(id, { ok: false, error: "the server did not answer within " + REQUEST_TIMEOUT_MS / 1000 + " s" });
      }, REQUEST_TIMEOUT_MS);
    });
  }

  function onReply(frame) {
    settle(frame.id, frame);
  }

  function settle(id, reply) {
    const entry = conn.pending.get(id);
    if (!entry) return;
    conn.pending.delete(id);
    clearTimeout(entry.timer);
    const outcome = reply.ok === true
      ? { ok: true, result: reply.result && typeof reply.result === "object" ? reply.result : {} }
      : { ok: false, error: String(reply.error || "the request failed") };
    if (!entry.background) {
      conn.lastResult = outcome.ok ? outcome.result : conn.lastResult;
      conn.lastError = outcome.ok ? null : outcome.error;
    }
    entry.resolve(outcome);
  }

  function failPending(why) {
    for (const id of Array.from(conn.pending.keys())) settle(id, { ok: false, error: why });
  }

  // ---------------------------------------------------------------------
  // Login and logout

  function onLoginSubmit(event) {
    event.preventDefault();
    if (conn.phase === "connecting") return;
    const userName = $("login-user").value.trim();
    const password = $("login-password").value;
    if (userName === "" || password === "") {
      showLoginError(userName === "" ? "Enter your user name." : "Enter your password.");
      $(userName === "" ? "login-user" : "login-password").focus();
      return;
    }
    conn.credentials = { userName: userName, password: password };
    conn.everReady = false;
    conn.attempt = 0;
    resetData();
    showLoginError(null);
    setPhase("connecting");
    connect();
  }

  function loginFailed(error) {
    const userName = conn.credentials ? conn.credentials.userName : "";
    const wasReady = conn.everReady;
    conn.credentials = null;
    conn.everReady = false;
    const message = loginErrorMessage(error, userName);
    conn.lastError = message.text;
    setBanner(null);
    showLogin();
    showLoginError(message);
    setPhase("error");
    if (wasReady) resetData(); // the user lost their rights: the data must not stay on screen
    const passwordWasWrong = error.code === "unauthorized";
    if (passwordWasWrong) $("login-password").value = "";
    $(passwordWasWrong ? "login-password" : "login-user").focus();
  }

  // The text of a login error, and optionally a command to show as code.
  function loginErrorMessage(error, userName) {
    switch (error.code) {
      case "unavailable":
        return {
          text: "This server has no users: administration in the browser needs `herald user add NAME --group admin`.",
          before: "This server has no users: administration in the browser needs ",
          code: "herald user add NAME --group admin",
          after: ".",
        };
      case "unauthorized":
        return { text: "Wrong user name or password." };
      case "forbidden":
        return { text: userName + " is not in group admin." };
      case "busy":
        return { text: "Too many administrators are connected already (at most 8). Try again later." };
      case "timeout":
        return { text: "The server gave up waiting for the login. Try again." };
      case "network":
        return { text: "Could not reach the server at " + location.host + ", or it closed the connection." };
      default:
        return { text: "Login failed (" + error.code + ")" + (error.message ? ": " + error.message : ".") };
    }
  }

  function showLoginError(message) {
    const box = $("login-error");
    box.textContent = "";
    if (!message) {
      box.hidden = true;
      return;
    }
    if (typeof message === "string") message = { text: message };
    if (message.code) {
      box.append(message.before, el("code", null, message.code), message.after);
    } else {
      box.textContent = message.text;
    }
    box.hidden = false;
  }

  function logout() {
    const ws = conn.ws;
    conn.ws = null;
    conn.credentials = null;
    conn.everReady = false;
    clearTimeout(conn.reconnectTimer);
    clearInterval(conn.countdownTimer);
    clearTimeout(conn.loginTimer);
    if (ws) ws.close(1000);
    failPending("logged out");
    resetData();
    setBanner(null);
    showLogin();
    setPhase("login");
    $("login-user").focus();
  }

  function showApp() {
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    scheduleRender();
  }

  function showLogin() {
    closeDialogs();
    $("app-view").hidden = true;
    $("login-view").hidden = false;
  }

  // ---------------------------------------------------------------------
  // Header, banner, status line and which controls are usable

  const status = {
    rejecting: false,
    sessions: null,   // the count from `status`; null until one arrives
    rejectBusy: false, // a `reject` request is under way: pushes do not move the switch meanwhile
  };

  function onStatus(frame) {
    if (typeof frame.rejecting === "boolean" && !status.rejectBusy) status.rejecting = frame.rejecting;
    if (typeof frame.sessions === "number") status.sessions = frame.sessions;
    updateHeader();
  }

  function sessionCount() {
    return status.sessions !== null ? status.sessions : store.rows.size;
  }

  function updateHeader() {
    setText($("server-name"), orDash(conn.serverName));
    setText($("admin-name"), orDash(conn.adminName));
    setText($("session-count"), formatCount(sessionCount()));
    const sw = $("reject-switch");
    if (!status.rejectBusy) sw.checked = status.rejecting;
    $("reject-state").hidden = !status.rejecting;
    updateSendPreview();
  }

  function updateConnectionUI() {
    const labels = {
      login: "Logged out", connecting: "Connecting…", ready: "Connected",
      error: "Not connected", disconnected: "Disconnected",
    };
    const node = $("connection-state");
    setText(node, labels[conn.phase]);
    setClass(node, "conn-state conn-" + conn.phase);
    const busy = conn.phase === "connecting";
    $("login-submit").disabled = busy;
    setText($("login-submit"), busy ? "Logging in…" : "Log in");
  }

  function setBanner(text, canReconnectNow) {
    const banner = $("connection-banner");
    if (!text) {
      banner.hidden = true;
      return;
    }
    setText($("connection-banner-text"), text);
    $("reconnect-now").hidden = !canReconnectNow;
    banner.hidden = false;
  }

  function updateControls() {
    const ready = conn.phase === "ready";
    $("reject-switch").disabled = !ready || status.rejectBusy;
    $("send-open").disabled = !ready;
    $("drop-open").disabled = !ready || selection.ids.size === 0;
    $("filter-apply").disabled = !ready || filter.applying;
    $("schedule-refresh").disabled = !ready;
    $("messages-refresh").disabled = !ready;
    $("audit-apply").disabled = !ready;
    $("select-none").disabled = selection.ids.size === 0;
  }

  // The status line under the views (aria-live): results of actions.
  function say(text, kind) {
    const node = $("action-status");
    setClass(node, "action-status" + (kind ? " " + kind : ""));
    node.textContent = text;
  }

  function sayError(what, error) {
    say(what + ": " + error, "error");
  }

  // ---------------------------------------------------------------------
  // The sessions, as pushed by the server

  const store = {
    rows: new Map(), // ID → the session row, in the server's order
    stale: false,    // rows from before a reconnection, until the next reset
  };

  function onSessions(frame) {
    if (frame.reset === true) {
      store.rows.clear();
      store.stale = false;
    }
    const rows = asArray(frame.rows);
    const removed = asArray(frame.removed);
    for (const row of rows) {
      if (row && typeof row.ID === "string") store.rows.set(row.ID, row);
    }
    for (const id of removed) store.rows.delete(id);
    users.shownDirty = true;
    scheduleRender();
    if (frame.reset === true || rows.length > 0 || removed.length > 0) requestRequery();
  }

  function resetData() {
    store.rows.clear();
    store.stale = false;
    status.sessions = null;
    status.rejecting = false;
    selection.ids.clear();
    selection.anchor = null;
    clearFilterState();
    processes.rows = [];
    processes.dirty = true;
    conn.serverName = "";
    conn.adminName = "";
    $("filter-query").value = "";
    $("filter-params").value = "";
    users.shownDirty = true;
    for (const name of ["schedule", "messages", "audit"]) {
      renderKeyed($(name + "-body"), [], null, null, null);
      $(name + "-empty").hidden = false;
      showDialogError(name + "-error", null);
      const updated = $(name + "-updated");
      if (updated) updated.textContent = "";
    }
    $("action-status").textContent = "";
    scheduleRender();
  }

  // ---------------------------------------------------------------------
  // The users view: filtering, sorting and virtual scrolling

  const users = {
    shown: [],         // the rows shown, in display order
    shownDirty: true,
    sortKey: null,     // null: the server's order
    sortDir: 1,
    rowHeight: ROW_HEIGHT,
    rendered: new Map(), // ID → <tr>, only the rows in the DOM
  };

  const NUMERIC_KEYS = new Set(["processes", "pending"]);
  const collator = new Intl.Collator(undefined, { sensitivity: "base", numeric: true });

  function compareRows(a, b) {
    const key = users.sortKey;
    const x = a[key];
    const y = b[key];
    let order;
    if (NUMERIC_KEYS.has(key)) order = (Number(x) || 0) - (Number(y) || 0);
    else order = collator.compare(x === undefined || x === null ? "" : String(x), y === undefined || y === null ? "" : String(y));
    return order * users.sortDir;
  }

  // The rows shown, recomputed only when the sessions, the filter or the
  // sort changed since last time.
  function shownList() {
    if (!users.shownDirty) return users.shown;
    const list = [];
    const ids = filter.ids;
    for (const row of store.rows.values()) {
      if (!ids || ids.has(row.ID)) list.push(row);
    }
    if (users.sortKey) list.sort(compareRows); // stable: ties keep the server's order
    users.shown = list;
    users.shownDirty = false;
    pruneSelection();
    return list;
  }

  function onSortClick(event) {
    const th = event.target.closest("th[data-key]");
    if (!th) return;
    const key = th.dataset.key;
    if (users.sortKey === key) users.sortDir = -users.sortDir;
    else {
      users.sortKey = key;
      users.sortDir = 1;
    }
    for (const other of document.querySelectorAll("#sessions-table th[data-key]")) {
      const sorted = other.dataset.key === users.sortKey;
      other.setAttribute("aria-sort", sorted ? (users.sortDir > 0 ? "ascending" : "descending") : "none");
    }
    users.shownDirty = true;
    scheduleRender();
  }

  // Renders only the rows inside the scrolled window (plus OVERSCAN), with
  // two spacer rows standing for the others: 10,000 sessions cost as much
  // as fifty. Rows are keyed by session ID and reused, so a row that stays
  // keeps its focus and its DOM.
  function renderSessions() {
    const scroller = $("sessions-scroll");
    const tbody = $("sessions-body");
    const top = $("sessions-top");
    const bottom = $("sessions-bottom");
    const list = shownList();

    measureRowHeight();
    const rowHeight = users.rowHeight;
    const headHeight = $("sessions-table").tHead.offsetHeight;
    const scrollTop = scroller.scrollTop;
    const viewHeight = Math.max(rowHeight, scroller.clientHeight - headHeight);
    // When the list just shrank, scrollTop may still point past its end
    // (the browser clamps it only at the next layout): keep a full window.
    const lastWindow = Math.max(0, list.length - Math.ceil(viewHeight / rowHeight) - OVERSCAN);
    const first = Math.min(lastWindow, Math.max(0, Math.floor(scrollTop / rowHeight) - OVERSCAN));
    const last = Math.min(list.length, Math.ceil((scrollTop + viewHeight) / rowHeight) + OVERSCAN);

    setSpacer(top, first * rowHeight);
    setSpacer(bottom, (list.length - last) * rowHeight);

    const next = new Map();
    let cursor = top.nextElementSibling;
    for (let i = first; i < last; i++) {
      const row = list[i];
      let tr = users.rendered.get(row.ID);
      if (!tr) tr = buildSessionRow(row.ID);
      fillSessionRow(tr, row);
      next.set(row.ID, tr);
      if (tr === cursor) cursor = cursor.nextElementSibling;
      else tbody.insertBefore(tr, cursor);
    }
    for (const [id, tr] of users.rendered) {
      if (!next.has(id)) tr.remove();
    }
    users.rendered = next;

    $("sessions-table").classList.toggle("stale", store.stale);
    renderSessionsSummary(list);
  }

  function measureRowHeight() {
    const any = users.rendered.values().next().value;
    if (any && any.offsetHeight > 0) users.rowHeight = any.offsetHeight;
  }

  function setSpacer(tr, height) {
    tr.hidden = height <= 0;
    const td = tr.firstElementChild;
    const value = height + "px";
    // Setting a style through the CSSOM is allowed by the CSP (only style
    // attributes written as markup are not).
    if (td.style.height !== value) td.style.height = value;
  }

  function buildSessionRow(id) {
    const tr = el("tr", "session-row");
    tr.dataset.id = id;
    const selectCell = el("td", "col-select");
    const box = el("input", "select-row");
    box.type = "checkbox";
    selectCell.append(box);
    tr.append(selectCell);
    for (let i = 0; i < 9; i++) tr.append(el("td"));
    tr.cells[8].className = "num";
    tr.cells[9].className = "num";
    return tr;
  }

  function fillSessionRow(tr, row) {
    const selected = selection.ids.has(row.ID);
    setClass(tr, selected ? "session-row selected" : "session-row");
    const box = tr.cells[0].firstElementChild;
    if (box.checked !== selected) box.checked = selected;
    const label = "Select " + orDash(row.userName) + " (" + row.ID.slice(0, 8) + "…)";
    if (box.getAttribute("aria-label") !== label) box.setAttribute("aria-label", label);

    const texts = [row.userName, row.machineName, row.systemUserName, row.IPAddress, row.hostType];
    for (let i = 0; i < texts.length; i++) {
      setText(tr.cells[i + 1], orDash(texts[i]));
      setTitle(tr.cells[i + 1], texts[i] ? String(texts[i]) : "");
    }
    const stateCell = tr.cells[6];
    setText(stateCell, orDash(row.state));
    setClass(stateCell, "state state-" + String(row.state || "unknown").replace(/[^a-z]/gi, ""));
    timeCell(tr.cells[7], row.creationDateTime, true);
    setText(tr.cells[8], formatCount(row.processes));
    setText(tr.cells[9], formatCount(row.pending));
  }

  function renderSessionsSummary(list) {
    const total = store.rows.size;
    let text = filter.ids
      ? "Showing " + formatCount(list.length) + " of " + plural(total, "session", "sessions")
      : plural(total, "session", "sessions");
    if (selection.ids.size > 0) text += " · " + formatCount(selection.ids.size) + " selected";
    if (store.stale) text += " · reconnecting: this list may be out of date";
    setText($("shown-count"), text);

    const empty = $("sessions-empty");
    empty.hidden = list.length > 0;
    setText(empty, filter.ids && total > 0 ? "No session matches the filter." : "No sessions.");

    const all = $("select-all");
    const some = selection.ids.size > 0;
    const every = some && selection.ids.size === list.length;
    all.checked = every;
    all.indeterminate = some && !every;
    all.disabled = list.length === 0;
    $("select-all-shown").disabled = list.length === 0 || every;
    updateControls();
  }

  // ---------------------------------------------------------------------
  // Selection: only sessions that are shown can be selected, so that an
  // action never reaches a session the administrator cannot see.

  const selection = {
    ids: new Set(),
    anchor: null, // the row a shift-click range starts from
  };

  function pruneSelection() {
    if (selection.ids.size === 0) return;
    const shown = new Set(users.shown.map((row) => row.ID));
    for (const id of Array.from(selection.ids)) {
      if (!shown.has(id)) selection.ids.delete(id);
    }
  }

  function indexOfShown(id) {
    const list = shownList();
    for (let i = 0; i < list.length; i++) if (list[i].ID === id) return i;
    return -1;
  }

  function selectRange(fromID, toID, value) {
    const list = shownList();
    const a = indexOfShown(fromID);
    const b = indexOfShown(toID);
    if (a < 0 || b < 0) return false;
    for (let i = Math.min(a, b); i <= Math.max(a, b); i++) {
      if (value) selection.ids.add(list[i].ID);
      else selection.ids.delete(list[i].ID);
    }
    return true;
  }

  function setSelected(id, value) {
    if (value) selection.ids.add(id);
    else selection.ids.delete(id);
  }

  // A click on the checkbox toggles that row (shift: the range from the
  // last click takes the box's new state). A click elsewhere on a row
  // selects that row alone; Ctrl or Cmd toggles it; shift selects a range.
  function onRowClick(event) {
    const tr = event.target.closest("tr.session-row");
    if (!tr) return;
    const id = tr.dataset.id;
    const onBox = event.target.classList.contains("select-row");
    if (onBox) {
      const value = event.target.checked;
      if (!(event.shiftKey && selection.anchor && selectRange(selection.anchor, id, value))) setSelected(id, value);
    } else if (event.shiftKey && selection.anchor) {
      selectRange(selection.anchor, id, true);
    } else if (event.ctrlKey || event.metaKey) {
      setSelected(id, !selection.ids.has(id));
    } else {
      selection.ids.clear();
      selection.ids.add(id);
    }
    selection.anchor = id;
    scheduleRender();
  }

  // Shift-click would otherwise select the text between the two rows.
  function onRowMouseDown(event) {
    if (event.shiftKey && event.target.closest("tr.session-row")) event.preventDefault();
  }

  function selectAllShown() {
    for (const row of shownList()) selection.ids.add(row.ID);
    scheduleRender();
  }

  function selectNone() {
    selection.ids.clear();
    selection.anchor = null;
    scheduleRender();
  }

  function onSelectAllToggle(event) {
    if (event.target.checked) selectAllShown();
    else selectNone();
  }

  // ---------------------------------------------------------------------
  // The filter: the server evaluates the query (4D's syntax, exactly as
  // sessions:query()); the page keeps the IDs it answered.

  const filter = {
    active: null,     // { query, params } once applied
    ids: null,        // Set of matching IDs, null without a filter
    generation: 0,    // bumped by every apply or clear: late replies of an older one are dropped
    applying: false,
    inFlight: false,  // an automatic re-query is under way
    again: false,     // the sessions changed during it: re-query once more afterwards
    lastSent: 0,
    timer: 0,
  };

  async function applyFilter(event) {
    if (event) event.preventDefault();
    const query = $("filter-query").value.trim();
    if (query === "") {
      clearFilter();
      return;
    }
    let params;
    try {
      params = parseParams($("filter-params").value);
    } catch (err) {
      showFilterError(err.message);
      return;
    }
    const generation = ++filter.generation;
    filter.applying = true;
    updateControls();
    filter.lastSent = Date.now();
    const reply = await request("query", { query: query, params: params });
    filter.applying = false;
    updateControls();
    if (generation !== filter.generation) return;
    if (!reply.ok) {
      showFilterError(reply.error);
      return;
    }
    showFilterError(null);
    filter.active = { query: query, params: params };
    filter.ids = new Set(asArray(reply.result.ids));
    users.shownDirty = true;
    scheduleRender();
    say("Filter applied: " + plural(filter.ids.size, "session matches", "sessions match") + ".", "ok");
  }

  function clearFilterState() {
    filter.generation++;
    filter.active = null;
    filter.ids = null;
    filter.again = false;
    clearTimeout(filter.timer);
    filter.timer = 0;
    showFilterError(null);
    users.shownDirty = true;
  }

  function clearFilter() {
    clearFilterState();
    $("filter-query").value = "";
    $("filter-params").value = "";
    scheduleRender();
    say("Filter cleared: every session is shown.", "ok");
  }

  function showFilterError(text) {
    const box = $("filter-error");
    box.hidden = !text;
    box.textContent = text || "";
    $("filter-query").setAttribute("aria-invalid", text ? "true" : "false");
  }

  // While a filter is active, the sessions that match change with the
  // sessions: send the query again, at most once a second, one at a time.
  function requestRequery() {
    if (!filter.active || filter.timer) return;
    if (filter.inFlight) {
      filter.again = true;
      return;
    }
    const wait = Math.max(0, filter.lastSent + REQUERY_MIN_MS - Date.now());
    filter.timer = setTimeout(requery, wait);
  }

  async function requery() {
    filter.timer = 0;
    if (!filter.active || conn.phase !== "ready") return;
    const generation = filter.generation;
    filter.inFlight = true;
    filter.lastSent = Date.now();
    const reply = await request("query", filter.active, true);
    filter.inFlight = false;
    if (generation === filter.generation && filter.active) {
      if (reply.ok) {
        filter.ids = new Set(asArray(reply.result.ids));
        users.shownDirty = true;
        scheduleRender();
      } else if (conn.phase === "ready") {
        showFilterError(reply.error);
      }
    }
    if (filter.again) {
      filter.again = false;
      requestRequery();
    }
  }

  // ---------------------------------------------------------------------
  // Send message dialog

  const sendState = { ids: [] }; // the selection when the dialog opened: what the preview promised

  function openSendDialog() {
    sendState.ids = shownList().filter((row) => selection.ids.has(row.ID)).map((row) => row.ID);
    const hasSelection = sendState.ids.length > 0;
    $("send-target-selected").disabled = !hasSelection;
    $("send-target-selected").checked = hasSelection;
    $("send-target-everyone").checked = !hasSelection;
    setText($("send-selected-count"), formatCount(sendState.ids.length));
    showDialogError("send-error", null);
    $("send-submit").disabled = false;
    updateSendPreview();
    openDialog("send-dialog", "send-text", "send-open");
  }

  function sendToEveryone() {
    return $("send-target-everyone").checked;
  }

  function updateSendPreview() {
    const preview = $("send-preview");
    if (!preview) return;
    if (sendToEveryone()) {
      setText(preview, "This message will reach everyone: " + plural(sessionCount(), "session", "sessions") +
        " now, postponed ones when they resume.");
    } else {
      setText(preview, "This message will reach " + plural(sendState.ids.length, "session", "sessions") + ".");
    }
  }

  async function submitSend(event) {
    event.preventDefault();
    const text = $("send-text").value;
    if (text.trim() === "") {
      showDialogError("send-error", "Write a message first.");
      $("send-text").focus();
      return;
    }
    const fields = { message: text };
    if (!sendToEveryone()) fields.sessions = sendState.ids.slice();
    $("send-submit").disabled = true;
    const reply = await request("send", fields);
    $("send-submit").disabled = false;
    if (!reply.ok) {
      showDialogError("send-error", reply.error);
      sayError("Message not sent", reply.error);
      return;
    }
    const ids = asArray(reply.result.messageIDs);
    const queued = reply.result.queued;
    $("send-text").value = "";
    closeDialog("send-dialog");
    say("Message " + (ids.length ? ids.join(", ") + " " : "") + "queued for " +
      plural(Number(queued) || 0, "session", "sessions") + ".", "ok");
    if (view.current === "messages") loadMessages(true);
  }

  // ---------------------------------------------------------------------
  // Drop dialog

  const dropState = { ids: [] };

  function openDropDialog() {
    const rows = shownList().filter((row) => selection.ids.has(row.ID));
    if (rows.length === 0) return;
    dropState.ids = rows.map((row) => row.ID);
    setText($("drop-confirm-text"), "Drop " + plural(rows.length, "session", "sessions") + "?");
    setText($("drop-names"), namesPreview(rows));
    showDialogError("drop-error", null);
    $("drop-submit").disabled = false;
    openDialog("drop-dialog", "drop-reason", "drop-open");
  }

  // "alice (linux), bob (browser) and 3 more": who is about to be dropped.
  function namesPreview(rows) {
    const shown = rows.slice(0, 5).map((row) => orDash(row.userName) + (row.machineName ? " on " + row.machineName : ""));
    const more = rows.length - shown.length;
    return shown.join(", ") + (more > 0 ? " and " + formatCount(more) + " more" : "");
  }

  async function submitDrop(event) {
    event.preventDefault();
    const reason = $("drop-reason").value.trim();
    if (reason === "") {
      showDialogError("drop-error", "A reason is required: the clients show it to their users.");
      $("drop-reason").focus();
      return;
    }
    if (utf8Length(reason) > REASON_MAX_BYTES) {
      showDialogError("drop-error", "The reason is too long: at most " + REASON_MAX_BYTES + " bytes.");
      return;
    }
    $("drop-submit").disabled = true;
    const reply = await request("drop", { sessions: dropState.ids.slice(), reason: reason });
    $("drop-submit").disabled = false;
    if (!reply.ok) {
      showDialogError("drop-error", reply.error);
      sayError("Drop failed", reply.error);
      return;
    }
    const dropped = Number(reply.result.dropped) || 0;
    const gone = dropState.ids.length - dropped;
    for (const id of dropState.ids) selection.ids.delete(id);
    $("drop-reason").value = "";
    closeDialog("drop-dialog");
    scheduleRender();
    say("Dropped " + plural(dropped, "session", "sessions") +
      (gone > 0 ? " (" + formatCount(gone) + " had already left)" : "") + ".", "ok");
  }

  // ---------------------------------------------------------------------
  // Dialogs: <dialog> with showModal gives Escape and a focus trap.

  const dialogOpener = new Map(); // dialog id → the element to give focus back to

  // The button that opens a dialog gets the focus back when it closes
  // (named, not taken from document.activeElement: a click does not focus
  // a button in every browser).
  function openDialog(id, focusID, openerID) {
    const dialog = $(id);
    if (dialog.open) return;
    dialogOpener.set(id, $(openerID));
    dialog.showModal();
    $(focusID).focus();
  }

  function closeDialog(id) {
    const dialog = $(id);
    if (dialog.open) dialog.close();
  }

  function onDialogClosed(event) {
    const opener = dialogOpener.get(event.target.id);
    dialogOpener.delete(event.target.id);
    if (opener && opener.isConnected && !opener.disabled) opener.focus();
  }

  function closeDialogs() {
    closeDialog("send-dialog");
    closeDialog("drop-dialog");
  }

  function showDialogError(id, text) {
    const box = $(id);
    box.hidden = !text;
    box.textContent = text || "";
  }

  // ---------------------------------------------------------------------
  // Refuse new connections

  async function onRejectToggle() {
    const sw = $("reject-switch");
    const want = sw.checked;
    status.rejectBusy = true;
    updateControls();
    const reply = await request("reject", { flag: want });
    status.rejectBusy = false;
    if (reply.ok) {
      status.rejecting = typeof reply.result.rejecting === "boolean" ? reply.result.rejecting : want;
      say(status.rejecting ? "New connections are now refused; existing sessions stay and may resume."
        : "New connections are accepted again.", "ok");
    } else {
      sayError("Could not change whether new connections are refused", reply.error);
    }
    updateHeader();
    updateControls();
    sw.focus();
  }

  // ---------------------------------------------------------------------
  // Processes view

  const processes = { rows: [], dirty: true };

  function onProcesses(frame) {
    processes.rows = asArray(frame.rows);
    processes.dirty = true;
    scheduleRender();
  }

  function processSession(proc) {
    if (!proc.sessionID) return "— (server)";
    if (proc.userName) return proc.userName;
    const row = store.rows.get(proc.sessionID);
    return row ? orDash(row.userName) : proc.sessionID;
  }

  function renderProcesses() {
    const all = processes.rows;
    const rows = all.slice(0, PROCESS_ROWS_MAX);
    renderKeyed($("processes-body"), rows, (proc) => proc.number, buildCells(7, [0, 5]), fillProcessRow);
    $("processes-empty").hidden = all.length > 0;
    let text = plural(all.length, "process", "processes");
    if (all.length > rows.length) text += " (the first " + formatCount(rows.length) + " shown)";
    setText($("processes-count"), text);
    processes.dirty = false;
  }

  function fillProcessRow(tr, proc) {
    const c = tr.cells;
    setText(c[0], orDash(proc.number));
    setText(c[1], orDash(proc.name));
    setTitle(c[1], proc.name || "");
    setText(c[2], proc.type in PROCESS_TYPES ? proc.type + " · " + PROCESS_TYPES[proc.type] : orDash(proc.type));
    setText(c[3], proc.state in PROCESS_STATES ? PROCESS_STATES[proc.state] : orDash(proc.state));
    setText(c[4], processSession(proc));
    setTitle(c[4], proc.sessionID || "");
    setText(c[5], typeof proc.cpuTime === "number" ? proc.cpuTime.toFixed(2) : "—");
    timeCell(c[6], proc.creationDateTime, true);
  }

  // ---------------------------------------------------------------------
  // Schedule view

  const polled = {
    schedule: { busy: false },
    messages: { busy: false },
    audit: { busy: false },
  };

  async function loadSchedule(background) {
    if (polled.schedule.busy) return;
    polled.schedule.busy = true;
    const reply = await request("schedule", {}, background);
    polled.schedule.busy = false;
    if (!reply.ok) {
      showDialogError("schedule-error", "Could not read the schedule: " + reply.error);
      return;
    }
    showDialogError("schedule-error", null);
    const jobs = asArray(reply.result.jobs);
    renderKeyed($("schedule-body"), jobs, (job) => job.ID, buildScheduleRow, fillScheduleRow);
    $("schedule-empty").hidden = jobs.length > 0;
    setText($("schedule-updated"), "Updated " + new Date().toLocaleTimeString());
  }

  function buildScheduleRow() {
    const tr = buildCells(9, [0])();
    const button = el("button", "small", "Run now");
    button.type = "button";
    button.dataset.action = "run-job";
    tr.cells[8].append(button);
    return tr;
  }

  function fillScheduleRow(tr, job) {
    const c = tr.cells;
    setText(c[0], orDash(job.ID));
    setText(c[1], orDash(job.name));
    setTitle(c[1], job.name || "");
    setText(c[2], orDash(job.spec));
    setText(c[3], orDash(job.script));
    setTitle(c[3], job.script || "");
    if (job.nextRun) timeCell(c[4], job.nextRun, true);
    else setText(c[4], "none");
    if (job.lastRun) timeCell(c[5], job.lastRun, true);
    else setText(c[5], "never");
    const result = job.lastResult === undefined || job.lastResult === null ? "—" : String(job.lastResult);
    setText(c[6], result);
    setTitle(c[6], job.lastResult ? String(job.lastResult) : "");
    setClass(c[6], result === "ok" ? "result-ok" : result === "—" ? "" : "result-bad");
    setText(c[7], job.running ? "running" + (job.process ? " (process " + job.process + ")" : "") : "idle");
    const button = c[8].firstElementChild;
    button.dataset.job = String(job.ID);
    button.dataset.name = job.name || "";
    button.setAttribute("aria-label", "Run " + orDash(job.name) + " now");
    // A job that runs is not started twice (run_job answers false).
    button.disabled = !!job.running;
  }

  async function onScheduleClick(event) {
    const button = event.target.closest("button[data-action='run-job']");
    if (!button || button.disabled) return;
    const jobID = Number(button.dataset.job);
    const name = button.dataset.name || "job " + jobID;
    button.disabled = true;
    const reply = await request("run_job", { job: jobID });
    if (!reply.ok) sayError("Could not run " + name, reply.error);
    else if (reply.result.started) say("Job " + jobID + " (" + name + ") started.", "ok");
    else say("Job " + jobID + " (" + name + ") was not started: it is running already, or no longer exists.", "error");
    loadSchedule(true);
  }

  // ---------------------------------------------------------------------
  // Messages view

  async function loadMessages(background) {
    if (polled.messages.busy) return;
    polled.messages.busy = true;
    const reply = await request("messages", {}, background);
    polled.messages.busy = false;
    if (!reply.ok) {
      showDialogError("messages-error", "Could not read the messages: " + reply.error);
      return;
    }
    showDialogError("messages-error", null);
    const messages = asArray(reply.result.messages);
    renderKeyed($("messages-body"), messages, (m) => m.id, buildCells(7, [0, 4, 5, 6]), fillMessageRow);
    $("messages-empty").hidden = messages.length > 0;
    setText($("messages-updated"), "Updated " + new Date().toLocaleTimeString());
  }

  // A message's target: everyone, or one session (named by its user while
  // the page knows it).
  function targetText(target) {
    if (target === undefined || target === null || target === "" || target === "all" || target === "everyone") {
      return "everyone";
    }
    if (Array.isArray(target)) return plural(target.length, "session", "sessions");
    const row = store.rows.get(String(target));
    return row ? orDash(row.userName) + " (" + row.ID.slice(0, 8) + "…)" : String(target);
  }

  function fillMessageRow(tr, m) {
    const c = tr.cells;
    setText(c[0], orDash(m.id));
    timeCell(c[1], m.sentAt, true);
    setText(c[2], targetText(m.target));
    setTitle(c[2], typeof m.target === "string" ? m.target : "");
    setText(c[3], orDash(m.text));
    setTitle(c[3], m.text || "");
    setText(c[4], formatCount(m.queued));
    setText(c[5], formatCount(m.delivered));
    setText(c[6], formatCount(m.acknowledged));
  }

  // ---------------------------------------------------------------------
  // Audit view

  async function loadAudit(event) {
    if (event) event.preventDefault();
    if (polled.audit.busy) return;
    const fields = {};
    const query = $("audit-query").value.trim();
    if (query !== "") {
      try {
        fields.params = parseParams($("audit-params").value);
      } catch (err) {
        showDialogError("audit-error", err.message);
        return;
      }
      fields.query = query;
    }
    const limit = parseInt($("audit-limit").value, 10);
    if (limit > 0) fields.limit = limit;
    polled.audit.busy = true;
    const reply = await request("audit", fields);
    polled.audit.busy = false;
    if (!reply.ok) {
      showDialogError("audit-error", reply.error);
      $("audit-query").setAttribute("aria-invalid", "true");
      return;
    }
    showDialogError("audit-error", null);
    $("audit-query").setAttribute("aria-invalid", "false");
    const rows = asArray(reply.result.rows);
    renderKeyed($("audit-body"), rows, null, buildCells(7, [4]), fillAuditRow);
    $("audit-empty").hidden = rows.length > 0;
  }

  function fillAuditRow(tr, entry) {
    const c = tr.cells;
    timeCell(c[0], entry.time, false);
    setText(c[1], orDash(entry.actor));
    setTitle(c[1], entry.actor || "");
    setText(c[2], orDash(entry.action));
    const known = typeof entry.target === "string" ? store.rows.get(entry.target) : null;
    setText(c[3], orDash(entry.target) + (known ? " (" + orDash(known.userName) + ")" : ""));
    setTitle(c[3], entry.target ? String(entry.target) : "");
    setText(c[4], formatCount(entry.count));
    setText(c[5], orDash(entry.detail));
    setTitle(c[5], entry.detail || "");
    const outcome = orDash(entry.outcome);
    setText(c[6], outcome);
    setTitle(c[6], entry.outcome || "");
    setClass(c[6], outcome === "ok" ? "result-ok" : "result-bad");
  }

  // ---------------------------------------------------------------------
  // Keyed tables (processes, schedule, messages, audit): rows are reused
  // by key, so that a periodic refresh keeps a focused button focused.

  const keyedRows = new WeakMap(); // tbody → Map key → <tr>

  function buildCells(count, numericColumns) {
    return function () {
      const tr = el("tr");
      for (let i = 0; i < count; i++) tr.append(el("td", numericColumns.includes(i) ? "num" : null));
      return tr;
    };
  }

  // key null: rows have no identity (the audit log); they are rebuilt.
  function renderKeyed(tbody, items, key, build, fill) {
    const old = keyedRows.get(tbody) || new Map();
    const next = new Map();
    if (!key) {
      tbody.textContent = "";
      old.clear();
    }
    let cursor = tbody.firstElementChild;
    items.forEach(function (item, index) {
      let k = key ? String(key(item)) : String(index);
      if (next.has(k)) k += "#" + index; // a repeated key must not steal another row
      let tr = old.get(k);
      if (!tr) tr = build();
      fill(tr, item);
      next.set(k, tr);
      if (tr === cursor) cursor = cursor.nextElementSibling;
      else tbody.insertBefore(tr, cursor);
    });
    for (const [k, tr] of old) {
      if (next.get(k) !== tr) tr.remove();
    }
    keyedRows.set(tbody, next);
  }

  // ---------------------------------------------------------------------
  // Tabs (WAI-ARIA tabs: arrows move between tabs, activation follows focus)

  const TABS = ["users", "processes", "schedule", "messages", "audit"];
  const view = { current: "users", pollTimer: 0 };

  function selectTab(name, focus) {
    view.current = name;
    for (const tab of TABS) {
      const selected = tab === name;
      const button = $("tab-" + tab);
      button.setAttribute("aria-selected", selected ? "true" : "false");
      button.tabIndex = selected ? 0 : -1;
      $("panel-" + tab).hidden = !selected;
    }
    if (focus) $("tab-" + name).focus();
    startPolling();
    refreshShownView();
  }

  function onTabClick(event) {
    const tab = event.target.closest("[role=tab]");
    if (tab) selectTab(tab.id.slice(4), false);
  }

  function onTabKey(event) {
    const i = TABS.indexOf(view.current);
    let next = -1;
    if (event.key === "ArrowRight") next = (i + 1) % TABS.length;
    else if (event.key === "ArrowLeft") next = (i - 1 + TABS.length) % TABS.length;
    else if (event.key === "Home") next = 0;
    else if (event.key === "End") next = TABS.length - 1;
    if (next < 0) return;
    event.preventDefault();
    selectTab(TABS[next], true);
  }

  // Loads what the view shows when it appears (and after a reconnection).
  function refreshShownView() {
    if (conn.phase !== "ready") {
      scheduleRender();
      return;
    }
    if (view.current === "schedule") loadSchedule(false);
    else if (view.current === "messages") loadMessages(false);
    else if (view.current === "audit") loadAudit();
    scheduleRender();
  }

  // Schedule and messages refresh themselves while shown, and only then.
  function startPolling() {
    clearInterval(view.pollTimer);
    view.pollTimer = 0;
    const every = { schedule: SCHEDULE_EVERY_MS, messages: MESSAGES_EVERY_MS }[view.current];
    if (!every) return;
    const load = view.current === "schedule" ? loadSchedule : loadMessages;
    view.pollTimer = setInterval(function () {
      if (conn.phase === "ready" && !document.hidden) load(true);
    }, every);
  }

  // ---------------------------------------------------------------------
  // Rendering, coalesced: many pushes and clicks in one frame cost one render.

  let renderQueued = false;

  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(render);
  }

  function render() {
    renderQueued = false;
    updateHeader();
    updateControls();
    if ($("app-view").hidden) return;
    if (view.current === "users") renderSessions();
    else if (view.current === "processes" && processes.dirty) renderProcesses();
  }

  function onClockTick() {
    if (view.current === "processes") processes.dirty = true;
    scheduleRender();
  }

  // ---------------------------------------------------------------------
  // The hook for browser tests

  window.heraldAdmin = Object.freeze({
    state: () => conn.phase,
    sessions: () => Array.from(store.rows.values()),
    visibleIDs: () => shownList().map((row) => row.ID),
    lastError: () => conn.lastError,
    lastResult: () => conn.lastResult,
  });

  // ---------------------------------------------------------------------
  // Wiring

  function init() {
    // The sessions body must hold elements only: the renderer walks it by element.
    for (const node of Array.from($("sessions-body").childNodes)) {
      if (node.nodeType !== Node.ELEMENT_NODE) node.remove();
    }
    $("login-form").addEventListener("submit", onLoginSubmit);
    $("logout").addEventListener("click", logout);
    $("reconnect-now").addEventListener("click", reconnectNow);
    $("reject-switch").addEventListener("change", onRejectToggle);

    $("tablist").addEventListener("click", onTabClick);
    $("tablist").addEventListener("keydown", onTabKey);

    $("filter-form").addEventListener("submit", applyFilter);
    $("filter-clear").addEventListener("click", clearFilter);

    const table = $("sessions-table");
    table.tHead.addEventListener("click", onSortClick);
    $("select-all").addEventListener("change", onSelectAllToggle);
    $("sessions-body").addEventListener("click", onRowClick);
    $("sessions-body").addEventListener("mousedown", onRowMouseDown);
    $("sessions-scroll").addEventListener("scroll", scheduleRender, { passive: true });
    $("select-all-shown").addEventListener("click", selectAllShown);
    $("select-none").addEventListener("click", selectNone);
    window.addEventListener("resize", scheduleRender);
    if (window.ResizeObserver) new ResizeObserver(scheduleRender).observe($("sessions-scroll"));

    $("send-open").addEventListener("click", openSendDialog);
    $("send-form").addEventListener("submit", submitSend);
    $("send-cancel").addEventListener("click", () => closeDialog("send-dialog"));
    $("send-target-selected").addEventListener("change", updateSendPreview);
    $("send-target-everyone").addEventListener("change", updateSendPreview);
    $("send-dialog").addEventListener("close", onDialogClosed);

    $("drop-open").addEventListener("click", openDropDialog);
    $("drop-form").addEventListener("submit", submitDrop);
    $("drop-cancel").addEventListener("click", () => closeDialog("drop-dialog"));
    $("drop-dialog").addEventListener("close", onDialogClosed);

    $("schedule-refresh").addEventListener("click", () => loadSchedule(false));
    $("schedule-body").addEventListener("click", onScheduleClick);
    $("messages-refresh").addEventListener("click", () => loadMessages(false));
    $("audit-form").addEventListener("submit", loadAudit);

    setInterval(onClockTick, CLOCK_EVERY_MS);
    setPhase("login");
    $("login-user").focus();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
