/*
 * herald: the remote user's page.
 *
 * Connects to the server that served it (WebSocket, path /ws), shows each
 * message as an alert in the page and as a desktop notification, and
 * acknowledges it once shown. Like `herald client` in a terminal
 * (runtime/client.c), it keeps its session across lost connections, server
 * restarts and page reloads, and never shows a message twice. The wire
 * protocol is docs/protocol.md.
 *
 * The page's Content-Security-Policy forbids inline scripts and styles:
 * everything here is wired with addEventListener, and looks come from
 * classes and attributes styled in style.css.
 */
(function () {
  "use strict";

  /* ---- constants --------------------------------------------------------- */

  // Reconnection delays: 0.5 s doubling up to 10 s, each ±25% at random so
  // that the users of a big server do not all come back at the same moment.
  const BACKOFF_START_MS = 500;
  const BACKOFF_CAP_MS = 10000;
  // A login is answered late on purpose when it fails (up to 30 s after
  // repeated failures), and password checks queue: wait as long as the
  // terminal client before taking an attempt as failed.
  const HANDSHAKE_MS = 40000;
  // Silence from the server for this many heartbeats means a lost connection.
  const LOST_HEARTBEATS = 3;
  const HEARTBEAT_DEFAULT_S = 30;
  const HEARTBEAT_MIN_S = 0.5;
  // Bounds on the wait a `reconnect` frame asks for.
  const RESTART_AFTER_DEFAULT_S = 1;
  const RESTART_AFTER_MAX_S = 3600;
  // Message ids remembered per session: a resume re-sends at most the
  // session's pending messages (1024 by default), so this covers every
  // duplicate the protocol can produce.
  const SEEN_MAX = 4096;
  // The protocol's limits on the hello's fields, in UTF-8 bytes.
  const USER_NAME_MAX = 128;
  const MACHINE_NAME_MAX = 256;
  const SYSTEM_USER_NAME_MAX = 256;
  const PASSWORD_MAX = 1024;
  // Server text shown in the status line is cut to this many characters.
  const SERVER_TEXT_MAX = 300;

  // sessionStorage (this tab only, survives a reload): the session and the
  // message ids shown in it. localStorage: only whether the server asks for
  // passwords, never a password.
  const KEY_SESSION = "herald.session";
  const KEY_SHOWN = "herald.shown";
  const KEY_NEEDS_PASSWORD = "herald.needsPassword";

  // Why the server closed a WebSocket, for the close codes that end the
  // session (see the WebSocket section of docs/protocol.md).
  const CLOSE_MESSAGES = {
    1002: "The server closed the connection: it received something that is " +
      "not valid WebSocket (close code 1002, protocol error). Your session " +
      "has ended.",
    1007: "The server closed the connection: it received text that is not " +
      "valid UTF-8 (close code 1007). Your session has ended.",
    1009: "The server closed the connection: a message from this page was " +
      "larger than the server accepts (close code 1009, message too big). " +
      "Your session has ended.",
  };

  /* ---- state ------------------------------------------------------------- */

  const app = {
    // "disconnected", "connecting", "connected", "reconnecting" or "dropped"
    state: "disconnected",
    conn: null,        // the current connection attempt (see connect)
    session: null,     // {userName, sessionID, token}, also in sessionStorage
    userName: "",      // the name to log in with when there is no session
    attempt: 0,        // failed attempts since the last welcome
    retryTimer: 0,
    connectedBefore: false, // a welcome since the user last pressed Connect
    restarting: false, // the server said `reconnect`; not back yet
    sessionEnded: false, // a resume was refused: the next welcome is new
    shown: [],         // {id, text} shown in this page load (testing hook)
    acked: [],         // ids acknowledged in this page load (testing hook)
    alertSeq: 0,       // makes the alerts' element ids unique
    focusBefore: null, // where focus was before the first alert took it
    baseTitle: document.title,
  };

  // Message ids shown in the current session, oldest first.
  const seen = { sessionID: null, ids: [], set: new Set() };

  let ui = null; // the page's elements, found at start

  /* ---- small helpers ----------------------------------------------------- */

  const encoder = new TextEncoder();

  function utf8Length(s) {
    return encoder.encode(s).length;
  }

  // Cuts s to at most max UTF-8 bytes without splitting a character.
  function clipBytes(s, max) {
    if (utf8Length(s) <= max) return s;
    let out = "", bytes = 0;
    for (const ch of s) {
      const n = utf8Length(ch);
      if (bytes + n > max) break;
      out += ch;
      bytes += n;
    }
    return out;
  }

  // Server text for one line of the page: no control characters, not huge.
  function cleanServerText(s) {
    if (typeof s !== "string") return "";
    s = s.replace(/[\u0000-\u001f\u007f-\u009f]+/g, " ").trim();
    return s.length > SERVER_TEXT_MAX ? s.slice(0, SERVER_TEXT_MAX) + "…" : s;
  }

  // Ends server text with a full stop, unless it has its own.
  function sentence(s) {
    return /[.!?…]$/.test(s) ? s : s + ".";
  }

  function sameId(a, b) {
    return typeof a === "string" && typeof b === "string" &&
      a.toUpperCase() === b.toUpperCase();
  }

  // A session ID or a token as the protocol has them: 1 to 64 bytes.
  function validToken(s) {
    return typeof s === "string" && s.length > 0 && utf8Length(s) <= 64;
  }

  function formatSeconds(ms) {
    const s = ms / 1000;
    return (s < 10 ? s.toFixed(1) : String(Math.round(s))) + " s";
  }

  /* ---- storage ----------------------------------------------------------- */

  // Storage can be missing, disabled or full: the page then still works,
  // it only forgets its session on a reload.
  function storageArea(kind) {
    try {
      return kind === "local" ? window.localStorage : window.sessionStorage;
    } catch (e) {
      return null;
    }
  }

  function load(kind, key) {
    const area = storageArea(kind);
    if (!area) return null;
    try {
      const v = area.getItem(key);
      return v === null ? null : JSON.parse(v);
    } catch (e) {
      return null;
    }
  }

  function store(kind, key, value) {
    const area = storageArea(kind);
    if (!area) return;
    try {
      if (value === null) area.removeItem(key);
      else area.setItem(key, JSON.stringify(value));
    } catch (e) {
      /* see storageArea */
    }
  }

  function loadSession() {
    const s = load("session", KEY_SESSION);
    if (!s || typeof s !== "object" || typeof s.userName !== "string" ||
        s.userName === "" || !validToken(s.sessionID) || !validToken(s.token))
      return null;
    return { userName: s.userName, sessionID: s.sessionID, token: s.token };
  }

  function keepSession(userName, sessionID, token) {
    app.session = { userName: userName, sessionID: sessionID, token: token };
    store("session", KEY_SESSION, app.session);
  }

  // The session is over (or unknown to the server): never resume it again.
  function forgetSession() {
    app.session = null;
    store("session", KEY_SESSION, null);
    store("session", KEY_SHOWN, null);
    seen.sessionID = null;
    seen.ids = [];
    seen.set = new Set();
  }

  function needsPassword() {
    return load("local", KEY_NEEDS_PASSWORD) === true;
  }

  function setNeedsPassword(flag) {
    store("local", KEY_NEEDS_PASSWORD, flag ? true : null);
  }

  /* ---- messages already shown -------------------------------------------- */

  // Starts the set of shown ids for a session, with those a previous load of
  // this page stored for the same session (so a reload shows nothing twice).
  function useSeenFor(sessionID) {
    if (seen.sessionID !== null && sameId(seen.sessionID, sessionID)) return;
    seen.sessionID = sessionID;
    seen.ids = [];
    seen.set = new Set();
    const stored = load("session", KEY_SHOWN);
    if (stored && sameId(stored.sessionID, sessionID) &&
        Array.isArray(stored.ids)) {
      for (const id of stored.ids.slice(-SEEN_MAX)) {
        if (Number.isSafeInteger(id) && !seen.set.has(id)) {
          seen.ids.push(id);
          seen.set.add(id);
        }
      }
    }
    saveSeen();
  }

  function saveSeen() {
    store("session", KEY_SHOWN, { sessionID: seen.sessionID, ids: seen.ids });
  }

  function markSeen(id) {
    seen.ids.push(id);
    seen.set.add(id);
    if (seen.ids.length > SEEN_MAX) seen.set.delete(seen.ids.shift());
    saveSeen();
  }

  /* ---- the status line and the form ------------------------------------- */

  function setState(state, text) {
    app.state = state;
    ui.status.dataset.state = state;
    ui.status.textContent = text;
    renderForm();
  }

  function setNotice(text) {
    ui.notice.textContent = text;
    ui.notice.hidden = text === "";
  }

  function setFormMessage(text, field) {
    ui.formMessage.textContent = text;
    ui.formMessage.hidden = text === "";
    ui.userName.removeAttribute("aria-invalid");
    ui.password.removeAttribute("aria-invalid");
    if (field) field.setAttribute("aria-invalid", "true");
  }

  function showPasswordField(show) {
    ui.passwordField.hidden = !show;
    if (!show) ui.password.value = "";
  }

  function alertsOpen() {
    return ui.alerts.childElementCount > 0;
  }

  // Focus an element unless an alert holds focus (it must keep it).
  function focusLater(el) {
    if (alertsOpen()) app.focusBefore = el;
    else el.focus();
  }

  // The form follows the state: names cannot change during a session, and
  // the buttons offer what makes sense now.
  function renderForm() {
    const s = app.state;
    const active = s === "connecting" || s === "connected" ||
      s === "reconnecting";
    const hadFocus = document.activeElement;
    ui.userName.readOnly = active;
    ui.password.readOnly = active;
    ui.connect.hidden = s === "connecting" || s === "connected";
    ui.connect.textContent = s === "reconnecting" ? "Reconnect now"
      : s === "dropped" || app.connectedBefore ? "Connect again" : "Connect";
    ui.disconnect.hidden = !active;
    ui.disconnect.textContent = s === "connected" ? "Disconnect" : "Stop";
    // A button that was just hidden would drop focus to the page: hand it
    // to the button that replaces it.
    if ((hadFocus === ui.connect || hadFocus === ui.disconnect) &&
        hadFocus.hidden) {
      (ui.connect.hidden ? ui.disconnect : ui.connect).focus();
    }
  }

  /* ---- desktop notifications --------------------------------------------- */

  function notificationsSupported() {
    return "Notification" in window && window.isSecureContext !== false;
  }

  function renderNotify() {
    let text, offer = false;
    if (!window.isSecureContext) {
      text = "Desktop notifications need a secure connection (HTTPS, or " +
        "this computer's own address); messages still show on this page.";
    } else if (!("Notification" in window)) {
      text = "This browser cannot show desktop notifications; messages " +
        "still show on this page.";
    } else if (Notification.permission === "granted") {
      text = "Desktop notifications are on: each message also shows as a " +
        "notification, even when this tab is in the background.";
    } else if (Notification.permission === "denied") {
      text = "Desktop notifications are blocked for this page. You can " +
        "allow them in the browser's settings for this site.";
    } else {
      text = "Get a desktop notification for each message, even when this " +
        "tab is in the background.";
      offer = true;
    }
    ui.notifyInfo.textContent = text;
    const hadFocus = document.activeElement === ui.notify;
    ui.notify.hidden = !offer;
    if (hadFocus && !offer) ui.notifyInfo.focus();
  }

  // Browsers allow the permission prompt only in answer to a click.
  function requestNotifications() {
    if (!notificationsSupported()) return;
    let done = false;
    const after = function () {
      if (done) return;
      done = true;
      renderNotify();
    };
    try {
      // Older Safari takes a callback and returns nothing.
      const p = Notification.requestPermission(after);
      if (p && typeof p.then === "function") p.then(after, after);
    } catch (e) {
      after();
    }
  }

  function notifyDesktop(id, text) {
    if (!notificationsSupported() || Notification.permission !== "granted")
      return;
    try {
      const n = new Notification("Message from the server", {
        body: text,
        // one notification per message, even if two tabs of the page get it
        tag: "herald-" + (seen.sessionID || "") + "-" + id,
      });
      n.addEventListener("click", function () {
        window.focus();
        n.close();
      });
    } catch (e) {
      // Some browsers (Chrome on Android) allow notifications only from a
      // service worker; the alert in the page is there anyway.
    }
  }

  /* ---- alerts ------------------------------------------------------------ */

  // The local time a message was sent, with the date unless it is today.
  function formatSent(date) {
    const now = new Date();
    const today = date.getFullYear() === now.getFullYear() &&
      date.getMonth() === now.getMonth() && date.getDate() === now.getDate();
    try {
      return today
        ? "at " + date.toLocaleTimeString(undefined,
          { hour: "2-digit", minute: "2-digit", second: "2-digit" })
        : "on " + date.toLocaleString(undefined,
          { dateStyle: "medium", timeStyle: "medium" });
    } catch (e) {
      return "on " + date.toLocaleString();
    }
  }

  // Puts a message on top of the pile of alerts and gives its OK button
  // the focus. The text goes in as textContent: never as HTML.
  function showAlert(id, text, sentAt) {
    const node = ui.alertTemplate.content.querySelector(".alert")
      .cloneNode(true);
    const n = ++app.alertSeq;
    const title = node.querySelector(".alert-title");
    const body = node.querySelector(".alert-body");
    const textEl = node.querySelector(".alert-text");
    const timeP = node.querySelector(".alert-time");
    const time = node.querySelector("time");
    const ok = node.querySelector(".alert-ok");

    node.dataset.id = id === null ? "" : String(id);
    title.id = "alert-title-" + n;
    textEl.id = "alert-text-" + n;
    timeP.id = "alert-time-" + n;
    node.setAttribute("aria-labelledby", title.id);
    node.setAttribute("aria-describedby", textEl.id + " " + timeP.id);
    textEl.textContent = text;

    let sent = typeof sentAt === "string" ? new Date(sentAt) : null;
    if (sent === null || isNaN(sent.getTime())) sent = new Date();
    time.dateTime = sent.toISOString();
    time.textContent = formatSent(sent);

    ok.addEventListener("click", function () {
      dismissAlert(node);
    });

    if (!alertsOpen()) {
      app.focusBefore = document.activeElement;
      ui.alerts.hidden = false;
      // The alert is modal: the rest of the page cannot be reached until
      // the last alert is dismissed.
      ui.page.inert = true;
    }
    ui.alerts.appendChild(node);
    restackAlerts();
    // A long message scrolls inside the box: make that reachable by keyboard.
    if (body.scrollHeight > body.clientHeight) {
      body.tabIndex = 0;
      body.setAttribute("aria-label", "Message text");
    }
    ok.focus();
  }

  // Only the newest alert shows (style.css); it tells how many wait behind.
  function restackAlerts() {
    const front = ui.alerts.lastElementChild;
    const waiting = ui.alerts.childElementCount - 1;
    if (front) {
      const more = front.querySelector(".alert-more");
      more.textContent = waiting === 1 ? "1 more message"
        : waiting + " more messages";
      more.hidden = waiting < 1;
      front.toggleAttribute("data-more", waiting > 0);
    }
    const count = ui.alerts.childElementCount;
    document.title = count ? "(" + count + ") " + app.baseTitle : app.baseTitle;
  }

  function dismissAlert(node) {
    if (!node.isConnected) return;
    node.remove();
    restackAlerts();
    const front = ui.alerts.lastElementChild;
    if (front) {
      front.querySelector(".alert-ok").focus();
      return;
    }
    ui.alerts.hidden = true;
    ui.page.inert = false;
    const back = app.focusBefore;
    app.focusBefore = null;
    if (back && back.isConnected && !back.hidden && !back.disabled &&
        typeof back.focus === "function")
      back.focus();
  }

  function dismissFrontAlert() {
    const front = ui.alerts.lastElementChild;
    if (front) dismissAlert(front);
  }

  // Escape or Enter dismiss the alert in front, wherever focus is. Handled
  // here only, with the default prevented, so that Enter on the OK button
  // does not also click it and dismiss a second alert.
  function onKeyDown(event) {
    if (!alertsOpen() || event.repeat || event.isComposing) return;
    if (event.key !== "Escape" && event.key !== "Enter") return;
    event.preventDefault();
    dismissFrontAlert();
  }

  /* ---- frames ------------------------------------------------------------ */

  function send(conn, frame) {
    if (!conn || conn.ws.readyState !== WebSocket.OPEN) return false;
    conn.ws.send(JSON.stringify(frame));
    return true;
  }

  // A sensible machine name for a browser: its platform ("Windows",
  // "macOS", "Linux x86_64"), within the protocol's limit.
  function machineName() {
    const uad = navigator.userAgentData;
    let name = uad && typeof uad.platform === "string" ? uad.platform : "";
    if (name === "" && typeof navigator.platform === "string")
      name = navigator.platform;
    return clipBytes(name.replace(/\u0000/g, ""), MACHINE_NAME_MAX);
  }

  function helloFrame(conn) {
    const hello = {
      type: "hello",
      userName: conn.userName,
      machineName: machineName(),
      // A browser has no operating-system account to report: the person's
      // name stands for it, so that scripts that pick users by
      // systemUserName (4D's example: "Vanessa") reach them here too.
      systemUserName: clipBytes(conn.userName, SYSTEM_USER_NAME_MAX),
      hostType: "browser",
      protocol: 1,
    };
    // A resume needs only its token; a password goes with a new login only.
    if (conn.resume)
      hello.resume = { sessionID: conn.resume.sessionID,
                       token: conn.resume.token };
    else if (conn.password !== "")
      hello.password = conn.password;
    return hello;
  }

  /* ---- the connection ---------------------------------------------------- */

  function socketURL() {
    if (location.protocol !== "http:" && location.protocol !== "https:")
      return null;
    return (location.protocol === "https:" ? "wss://" : "ws://") +
      location.host + "/ws";
  }

  // Opens a connection and says hello: a resume when this tab has a
  // session, else a new login as app.userName.
  function connect() {
    clearRetry();
    closeConnection();
    const url = socketURL();
    if (url === null) {
      setState("disconnected", "Open this page from the herald server " +
        "(its http_listen address) to connect.");
      return;
    }
    const resume = app.session;
    const conn = {
      ws: null,
      userName: resume ? resume.userName : app.userName,
      resume: resume ? { sessionID: resume.sessionID, token: resume.token }
        : null,
      password: resume ? "" : currentPassword(),
      welcomed: false,
      startedAt: Date.now(),
      heardAt: Date.now(),
      pingedAt: 0,
      heartbeatMs: HEARTBEAT_DEFAULT_S * 1000,
      timer: 0,
    };
    try {
      conn.ws = new WebSocket(url);
    } catch (e) {
      setState("disconnected", "This browser cannot open a connection to " +
        "the server.");
      return;
    }
    app.conn = conn;
    conn.ws.addEventListener("open", function () { onOpen(conn); });
    conn.ws.addEventListener("message", function (ev) { onData(conn, ev); });
    conn.ws.addEventListener("close", function (ev) { onClose(conn, ev); });
    // An error is always followed by a close, which does the work.
    showAttempt(conn);
    armTimer(conn);
  }

  function showAttempt(conn) {
    if (app.attempt > 0 || app.connectedBefore || app.restarting) {
      setState("reconnecting", "Reconnecting as " + conn.userName + "…");
    } else if (conn.resume) {
      setState("connecting", "Resuming your session as " + conn.userName +
        "…");
    } else {
      setState("connecting", conn.password !== ""
        ? "Connecting as " + conn.userName + " (checking the password)…"
        : "Connecting as " + conn.userName + "…");
    }
  }

  // The password to log in with: the field's, when the field is shown.
  function currentPassword() {
    return ui.passwordField.hidden ? "" : ui.password.value;
  }

  // Ends the current connection, if any, without hearing from it again.
  function closeConnection() {
    const conn = app.conn;
    if (!conn) return;
    app.conn = null;
    clearTimeout(conn.timer);
    const ws = conn.ws;
    if (ws.readyState === WebSocket.CONNECTING ||
        ws.readyState === WebSocket.OPEN) {
      try {
        ws.close(1000);
      } catch (e) {
        /* already closing */
      }
    }
  }

  function clearRetry() {
    if (app.retryTimer) clearTimeout(app.retryTimer);
    app.retryTimer = 0;
  }

  function retryIn(ms) {
    clearRetry();
    app.retryTimer = setTimeout(function () {
      app.retryTimer = 0;
      connect();
    }, ms);
  }

  // Stops trying: no connection, no retry, the state says why.
  function stop(state, text) {
    clearRetry();
    closeConnection();
    setState(state, text);
  }

  function backoffMs(attempt) {
    let d = BACKOFF_START_MS;
    for (let i = 1; i < attempt && d < BACKOFF_CAP_MS; i++) d *= 2;
    d = Math.min(d, BACKOFF_CAP_MS);
    return Math.round(d * (0.75 + 0.5 * Math.random()));
  }

  // One timer per connection: the deadline for the welcome, then the
  // heartbeat (ping a quiet server, give up on a silent one).
  function armTimer(conn) {
    clearTimeout(conn.timer);
    let at;
    if (!conn.welcomed) {
      at = conn.startedAt + HANDSHAKE_MS;
    } else {
      const hb = conn.heartbeatMs;
      at = Math.min(conn.heardAt + LOST_HEARTBEATS * hb,
        Math.max(conn.pingedAt, conn.heardAt) + hb);
    }
    conn.timer = setTimeout(function () { onTimer(conn); },
      Math.max(0, at - Date.now()));
  }

  function onTimer(conn) {
    if (conn !== app.conn) return;
    const now = Date.now();
    if (!conn.welcomed) {
      connectionLost(conn);
      return;
    }
    const hb = conn.heartbeatMs;
    if (now >= conn.heardAt + LOST_HEARTBEATS * hb) {
      // Closing tells the server at once, if it still listens: it keeps
      // the session for a resume.
      connectionLost(conn);
      return;
    }
    if (now >= Math.max(conn.pingedAt, conn.heardAt) + hb) {
      send(conn, { type: "ping" });
      conn.pingedAt = now;
    }
    armTimer(conn);
  }

  // The connection broke or never came up: try again after a growing delay,
  // resuming the session if there is one.
  function connectionLost(conn) {
    if (conn !== app.conn) return;
    closeConnection();
    app.attempt++;
    const delay = backoffMs(app.attempt);
    const when = formatSeconds(delay) +
      (app.attempt > 1 ? " (attempt " + app.attempt + ")" : "");
    let text;
    if (app.restarting)
      text = "The server is not back yet. Retrying in " + when + ".";
    else if (app.connectedBefore || app.session)
      text = "Connection lost. Reconnecting in " + when + ".";
    else
      text = "Cannot reach the server. Retrying in " + when + ".";
    setState("reconnecting", text);
    retryIn(delay);
  }

  function onOpen(conn) {
    if (conn !== app.conn) return;
    send(conn, helloFrame(conn));
  }

  function onClose(conn, event) {
    if (conn !== app.conn) return;
    const why = CLOSE_MESSAGES[event.code];
    if (why) {
      // These end the session on the server; trying again would most
      // likely meet the same fault, so stop and say what happened.
      forgetSession();
      stop("disconnected", why);
      return;
    }
    connectionLost(conn);
  }

  function onData(conn, event) {
    if (conn !== app.conn) return;
    conn.heardAt = Date.now(); // any frame counts as heard
    if (typeof event.data !== "string") return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    // Unknown frame types and fields are ignored, as the protocol asks.
    if (!frame || typeof frame !== "object" || Array.isArray(frame) ||
        typeof frame.type !== "string")
      return;
    if (conn.welcomed) onFrame(conn, frame);
    else onHandshakeFrame(conn, frame);
  }

  function onHandshakeFrame(conn, frame) {
    switch (frame.type) {
      case "welcome":
        onWelcome(conn, frame);
        break;
      case "error":
        onRefused(conn, frame);
        break;
      case "ping":
        send(conn, { type: "pong" });
        break;
      case "reconnect":
        // The server is stopping before it answered: as good as a refused
        // connection, worth the usual retries.
        connectionLost(conn);
        break;
      case "drop":
        onDrop(conn, frame);
        break;
    }
  }

  function onFrame(conn, frame) {
    switch (frame.type) {
      case "message":
        onMessage(conn, frame);
        break;
      case "ping":
        send(conn, { type: "pong" });
        break;
      case "reconnect":
        onRestart(conn, frame);
        break;
      case "drop":
        onDrop(conn, frame);
        break;
      case "error":
        onServerError(frame);
        break;
    }
  }

  function onWelcome(conn, frame) {
    if (!validToken(frame.sessionID) || !validToken(frame.resumeToken)) {
      stop("disconnected", "The server's answer was not understood: no " +
        "session in its welcome.");
      return;
    }
    const resumed = conn.resume !== null &&
      sameId(conn.resume.sessionID, frame.sessionID);
    useSeenFor(frame.sessionID);
    keepSession(conn.userName, frame.sessionID, frame.resumeToken);
    if (conn.password !== "") setNeedsPassword(true);

    conn.welcomed = true;
    conn.heardAt = Date.now();
    const hb = Number(frame.heartbeat);
    conn.heartbeatMs = (isFinite(hb) && hb > 0
      ? Math.max(hb, HEARTBEAT_MIN_S) : HEARTBEAT_DEFAULT_S) * 1000;

    let note = "";
    if (resumed) note = " (session resumed)";
    else if (app.sessionEnded)
      note = " (a new session: the server no longer had your previous one)";
    app.attempt = 0;
    app.restarting = false;
    app.sessionEnded = false;
    app.connectedBefore = true;
    setFormMessage("");
    setState("connected", "Connected as " + conn.userName + note);
    armTimer(conn);
  }

  // A refused hello: the server sends one error, then closes.
  function onRefused(conn, frame) {
    const code = typeof frame.code === "string" ? frame.code : "";
    const message = cleanServerText(frame.message);
    closeConnection();

    if (code === "unauthorized" && conn.resume) {
      // The session expired or ended: start a new one with the same name,
      // as the terminal client does.
      forgetSession();
      app.sessionEnded = true;
      app.userName = conn.userName;
      if (needsPassword() && currentPassword() === "") {
        askPassword("your session has ended",
          "Your session has ended. Enter your password to connect again " +
          "as " + conn.userName + ".");
        return;
      }
      connect();
      return;
    }
    if (code === "unauthorized" && conn.password !== "") {
      if (/does not use passwords/i.test(message)) {
        // The server has no users (any more): log in without a password.
        setNeedsPassword(false);
        showPasswordField(false);
        setFormMessage("");
        connect();
        return;
      }
      askPassword("wrong user name or password",
        "Wrong user name or password.");
      if (!alertsOpen()) ui.password.select(); // ready to type it again
      return;
    }
    if (code === "unauthorized") {
      // Only the refusal tells that the server wants a password.
      setNeedsPassword(true);
      askPassword("a password is needed",
        "This server needs a password. Enter yours and press Connect.");
      return;
    }
    let text;
    if (code === "rejected")
      text = "The server does not accept new connections at the moment. " +
        "Try again later.";
    else if (code === "busy")
      text = "The server is busy: it cannot open another session now. " +
        "Try again later.";
    else
      text = "The server refused the connection: " +
        sentence(message || code || "no reason given");
    stop("disconnected", text);
  }

  // Never retried by itself: a refused password does not get better.
  // `why` goes in the status line, `text` next to the password field.
  function askPassword(why, text) {
    showPasswordField(true);
    setFormMessage(text, ui.password);
    stop("disconnected", "Not connected: " + why + ".");
    focusLater(ui.password);
  }

  // Shows a message unless this session showed it already, then
  // acknowledges it (duplicates too, as the protocol asks).
  function onMessage(conn, frame) {
    const id = Number.isSafeInteger(frame.id) ? frame.id : null;
    const text = typeof frame.text === "string" ? frame.text : "";
    if (id === null || !seen.set.has(id)) {
      showAlert(id, text, frame.sentAt);
      app.shown.push({ id: id, text: text });
      if (id !== null) markSeen(id);
      notifyDesktop(id, text);
    }
    if (id !== null && send(conn, { type: "ack", id: id })) app.acked.push(id);
  }

  // The server stops but keeps the session: come back after the wait it
  // asks for, plus up to half of it at random, then as after a loss.
  function onRestart(conn, frame) {
    let after = Number(frame.after);
    if (typeof frame.after !== "number" || !isFinite(after) || after < 0)
      after = RESTART_AFTER_DEFAULT_S;
    after = Math.min(after, RESTART_AFTER_MAX_S);
    const reason = cleanServerText(frame.reason);
    const delay = Math.round(after * 1000 * (1 + 0.5 * Math.random()));
    closeConnection();
    app.restarting = true;
    setState("reconnecting", "The server is restarting" +
      (reason && reason !== "server restarting" ? " (" + reason + ")" : "") +
      ". Reconnecting in " + formatSeconds(delay) + ".");
    retryIn(delay);
  }

  // The session is over: do not come back by itself.
  function onDrop(conn, frame) {
    const reason = cleanServerText(frame.reason);
    forgetSession();
    stop("dropped", "You were disconnected: " +
      sentence(reason || "no reason given"));
  }

  // An error after the handshake: bad_frame leaves the connection open;
  // bad_json and too_large close it, and the close brings a reconnection.
  function onServerError(frame) {
    const code = cleanServerText(frame.code) || "unknown";
    const message = cleanServerText(frame.message) || "no message";
    setNotice("The server reports an error: " + code + ": " + message);
  }

  /* ---- the user's actions ------------------------------------------------ */

  // Connect (or Reconnect now, while waiting to reconnect).
  function onSubmit(event) {
    event.preventDefault();
    const s = app.state;
    if (s === "connecting" || s === "connected") return;
    if (s === "reconnecting") {
      connect();
      return;
    }
    const name = ui.userName.value.trim();
    if (!checkName(name)) return;
    const password = currentPassword();
    if (!ui.passwordField.hidden && password === "") {
      setFormMessage("Enter your password.", ui.password);
      ui.password.focus();
      return;
    }
    if (utf8Length(password) > PASSWORD_MAX) {
      setFormMessage("The password is too long (at most " + PASSWORD_MAX +
        " bytes).", ui.password);
      ui.password.focus();
      return;
    }
    // Another name is another session.
    if (app.session && app.session.userName !== name) forgetSession();
    ui.userName.value = name;
    app.userName = name;
    app.attempt = 0;
    app.connectedBefore = false;
    app.restarting = false;
    app.sessionEnded = false;
    setFormMessage("");
    setNotice("");
    connect();
  }

  function checkName(name) {
    let problem = "";
    if (name === "") problem = "Enter your name.";
    else if (utf8Length(name) > USER_NAME_MAX)
      problem = "The name is too long (at most " + USER_NAME_MAX +
        " bytes).";
    else if (name.indexOf("\u0000") >= 0)
      problem = "The name cannot contain a NUL character.";
    if (problem === "") return true;
    setFormMessage(problem, ui.userName);
    focusLater(ui.userName);
    return false;
  }

  // Disconnect ends the session (bye); Stop, while (re)connecting, only
  // stops trying and keeps the session for a later Connect.
  function onDisconnect() {
    const conn = app.conn;
    if (app.state === "connected" && conn && conn.welcomed) {
      send(conn, { type: "bye" });
      closeConnection();
      forgetSession();
      stop("disconnected", "Disconnected. Your session has ended.");
      return;
    }
    stop("disconnected", "Stopped. Press Connect to try again.");
  }

  // Back online: no need to sit out the rest of the backoff.
  function onOnline() {
    if (app.state === "reconnecting" && app.retryTimer && !app.restarting)
      connect();
  }

  // A page restored from the back/forward cache may hold a dead socket.
  function onPageShow(event) {
    if (!event.persisted || !app.conn) return;
    if (app.conn.ws.readyState !== WebSocket.OPEN) connectionLost(app.conn);
  }

  /* ---- start ------------------------------------------------------------- */

  function findElements() {
    const $ = function (id) { return document.getElementById(id); };
    return {
      page: $("page"),
      form: $("connect-form"),
      userName: $("user-name"),
      passwordField: $("password-field"),
      password: $("password"),
      formMessage: $("form-message"),
      connect: $("connect"),
      disconnect: $("disconnect"),
      status: $("status"),
      notice: $("notice"),
      notify: $("notify"),
      notifyInfo: $("notify-info"),
      alerts: $("alerts"),
      alertTemplate: $("alert-template"),
    };
  }

  function start() {
    ui = findElements();
    ui.form.addEventListener("submit", onSubmit);
    ui.disconnect.addEventListener("click", onDisconnect);
    ui.notify.addEventListener("click", requestNotifications);
    ui.notifyInfo.tabIndex = -1; // focus lands here when the button goes
    document.addEventListener("keydown", onKeyDown);
    window.addEventListener("online", onOnline);
    window.addEventListener("pageshow", onPageShow);
    renderNotify();

    const wanted = (new URLSearchParams(location.search).get("user") || "")
      .trim();
    const session = loadSession();
    if (needsPassword()) showPasswordField(true);

    // A reload of this tab: resume its session at once (no password needed),
    // unless the address now asks for another user.
    if (session && (wanted === "" || wanted === session.userName)) {
      app.session = session;
      app.userName = session.userName;
      ui.userName.value = session.userName;
      useSeenFor(session.sessionID);
      connect();
      return;
    }
    if (session) forgetSession();

    ui.userName.value = wanted;
    setState("disconnected", "Not connected.");
    if (wanted === "") {
      ui.userName.focus();
      return;
    }
    if (!checkName(wanted)) return;
    app.userName = wanted;
    if (!ui.passwordField.hidden) {
      // Known to need a password: ask for it rather than fail a login.
      setFormMessage("Enter the password for " + wanted +
        ", then press Connect.");
      ui.password.focus();
      return;
    }
    connect();
  }

  /* ---- testing hook ------------------------------------------------------ */

  window.heraldUser = Object.freeze({
    state: function () { return app.state; },
    sessionID: function () {
      return app.session ? app.session.sessionID : null;
    },
    shown: function () {
      return app.shown.map(function (m) { return { id: m.id, text: m.text }; });
    },
    acked: function () { return app.acked.slice(); },
  });

  if (document.readyState === "loading")
    document.addEventListener("DOMContentLoaded", start);
  else
    start();
})();
