"""A headless Chromium driven over Chrome's DevTools protocol (CDP) through
--remote-debugging-pipe: JSON messages ended by a NUL byte, which the
browser reads from its fd 3 and writes to its fd 4. Standard library only.

    path = chromium_path()
    if path is None:
        self.fail(NO_CHROMIUM)
    with Browser() as b:
        page = b.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.type("#message", "hello")
        page.press("Enter")
        page.wait_for("document.querySelectorAll('.row').length == 2")
        page.screenshot("/tmp/page.png")

Every wait has a deadline (scaled by HERALD_SLOW, as in harness.py): a
stuck browser fails the test, it never hangs it. A background thread reads
the pipe and hands answers to their callers by id, and events to a list
per session. JavaScript dialogs (alert, confirm, prompt) are accepted at
once, so they never block a page, and noted among its console messages.
"""
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

SLOW = float(os.environ.get("HERALD_SLOW", "1"))
CALL_TIMEOUT = 15  # seconds for one CDP call (times SLOW)
NO_CHROMIUM = ("no Chromium found (looked for $HERALD_CHROMIUM, "
               "/usr/bin/chromium): install Debian's chromium: make deps")

# key name: (code, windowsVirtualKeyCode, text sent with it)
KEYS = {
    "Enter": ("Enter", 13, "\r"),
    "Escape": ("Escape", 27, ""),
    "Tab": ("Tab", 9, ""),
    "Backspace": ("Backspace", 8, ""),
    "Delete": ("Delete", 46, ""),
    "Space": ("Space", 32, " "),
    "ArrowUp": ("ArrowUp", 38, ""),
    "ArrowDown": ("ArrowDown", 40, ""),
    "ArrowLeft": ("ArrowLeft", 37, ""),
    "ArrowRight": ("ArrowRight", 39, ""),
    "Home": ("Home", 36, ""),
    "End": ("End", 35, ""),
    "PageUp": ("PageUp", 33, ""),
    "PageDown": ("PageDown", 34, ""),
}
MODIFIERS = {"Alt": 1, "Control": 2, "Ctrl": 2, "Meta": 4, "Shift": 8}


def chromium_path():
    """The Chromium to run ($HERALD_CHROMIUM, else Debian's
    /usr/bin/chromium, else chromium or chromium-browser on the PATH), or
    None when there is none."""
    env = os.environ.get("HERALD_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserError(AssertionError):
    """The browser failed, died, or did not answer in time. An
    AssertionError, so a test reports it as a failure; the message ends
    with the tail of the browser's log."""


class CDPError(BrowserError):
    """A CDP command answered with an error."""

    def __init__(self, method, error):
        self.method = method
        self.error = error
        super().__init__(f"{method}: {error.get('message')} "
                         f"({error.get('code')}) {error.get('data', '')}")


class JSError(AssertionError):
    """A JavaScript exception thrown by page.eval: .text is its
    description (message and stack)."""

    def __init__(self, text, details=None):
        self.text = text
        self.details = details
        super().__init__(text)


class Browser:
    """A headless Chromium with its own temporary profile, stopped by
    close() (or at the end of a with block).

    args: more command-line switches; ignore_https_errors: accept any
    certificate (--ignore-certificate-errors), for a server whose CA the
    browser does not know; timeout: the default for each CDP call (s,
    times HERALD_SLOW)."""

    def __init__(self, path=None, args=(), ignore_https_errors=False,
                 timeout=CALL_TIMEOUT):
        self.path = path or chromium_path()
        if self.path is None:
            raise BrowserError(NO_CHROMIUM)
        self.timeout = timeout
        self.dir = tempfile.mkdtemp(prefix="herald-chromium-")
        self.log_path = os.path.join(self.dir, "chromium.log")
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._answers = {}       # id -> message
        self._pending = {}       # id -> sessionId (None: the browser)
        self._events = {}        # sessionId -> [event], None: the browser's
        self._console = {}       # sessionId -> [text]
        self._detached = set()   # sessionIds whose target went away
        self._wlock = threading.Lock()
        self._dead = None        # why the pipe ended, once it did
        self.pages = []
        profile = os.path.join(self.dir, "profile")
        cmd = [self.path, "--headless=new", "--remote-debugging-pipe",
               "--no-sandbox", f"--user-data-dir={profile}",
               "--no-first-run", "--no-default-browser-check",
               "--disable-gpu", "--disable-extensions",
               "--disable-dev-shm-usage", "--disable-background-networking",
               "--disable-component-update", "--disable-sync",
               "--disable-default-apps", "--disable-crash-reporter",
               "--disable-breakpad", "--no-proxy-server", "--mute-audio",
               "--password-store=basic", "--use-mock-keychain",
               "--disable-features=Translate,MediaRouter,"
               "OptimizationHints,DialMediaRouteProvider",
               "--window-size=1280,800"]
        if ignore_https_errors:
            cmd.append("--ignore-certificate-errors")
        cmd += list(args)
        cmd.append("about:blank")
        # Chromium wants the pipe at exactly fds 3 and 4, and pass_fds
        # keeps a descriptor's number from the parent: hand the pipes over
        # as stdin and stdout and let a shell move them (dash takes only
        # one-digit descriptors, so no 3<&12).
        to_child, self._to_browser = os.pipe()
        self._from_browser, from_child = os.pipe()
        self._log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c",
                 'exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2', *cmd],
                stdin=to_child, stdout=from_child, stderr=self._log,
                start_new_session=True)
        except OSError:
            for fd in (to_child, from_child, self._to_browser,
                       self._from_browser):
                os.close(fd)
            self._log.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        os.close(to_child)
        os.close(from_child)
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name="chromium-cdp")
        self._reader.start()
        self._started = False
        try:
            self.version = self.call("Browser.getVersion")
        except BaseException:
            self.close()
            raise
        self._started = True

    # -- the pipe ---------------------------------------------------------

    def _read(self):
        buf = b""
        why = "the browser closed its end of the pipe"
        try:
            while True:
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    break
                buf += chunk
                while b"\0" in buf:
                    raw, buf = buf.split(b"\0", 1)
                    self._dispatch(json.loads(raw))
        except Exception as e:  # noqa: BLE001 - reported to every waiter
            why = f"reading the pipe failed: {e!r}"
        with self._cond:
            self._dead = why
            self._cond.notify_all()

    def _dispatch(self, msg):
        if "id" in msg:
            with self._cond:
                self._answers[msg["id"]] = msg
                self._cond.notify_all()
            return
        method = msg.get("method", "")
        params = msg.get("params", {})
        sid = msg.get("sessionId")
        note = None
        if method == "Runtime.consoleAPICalled":
            args = [_remote_text(a) for a in params.get("args", [])]
            note = f"console.{params.get('type')}: " + " ".join(args)
        elif method == "Runtime.exceptionThrown":
            note = "exception: " + _exception_text(
                params.get("exceptionDetails", {}))
        elif method == "Log.entryAdded":
            e = params.get("entry", {})
            note = (f"log.{e.get('level')} ({e.get('source')}): "
                    f"{e.get('text')} {e.get('url', '')}").rstrip()
        elif method == "Page.javascriptDialogOpening":
            note = (f"dialog {params.get('type')}: "
                    f"{params.get('message')!r} (accepted)")
            self._send("Page.handleJavaScriptDialog", {"accept": True},
                       sid, next(self._ids))
        with self._cond:
            if note is not None:
                self._console.setdefault(sid, []).append(note)
            if method == "Target.detachedFromTarget":
                self._detached.add(params.get("sessionId"))
            self._events.setdefault(sid, []).append(msg)
            self._cond.notify_all()

    def _send(self, method, params, session, msg_id):
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        with self._wlock:
            view = memoryview(data)
            while view:
                n = os.write(self._to_browser, view)
                view = view[n:]

    def call(self, method, params=None, session=None, timeout=None):
        """Sends a CDP command (to the browser, or to session's target)
        and returns its result; raises CDPError when it answered an error
        and BrowserError when it did not answer within timeout."""
        timeout = (self.timeout if timeout is None else timeout) * SLOW
        msg_id = next(self._ids)
        with self._cond:
            if self._dead:
                raise BrowserError(f"{method}: browser gone: {self._dead}"
                                   + self.log_tail())
            self._pending[msg_id] = session
        try:
            self._send(method, params, session, msg_id)
        except OSError as e:
            with self._cond:
                self._pending.pop(msg_id, None)
            raise BrowserError(f"{method}: cannot write to the browser: "
                               f"{e}" + self.log_tail()) from None
        deadline = time.monotonic() + timeout
        with self._cond:
            try:
                while msg_id not in self._answers:
                    left = deadline - time.monotonic()
                    if self._dead:
                        raise BrowserError(f"{method}: browser gone: "
                                           f"{self._dead}" + self.log_tail())
                    if session is not None and session in self._detached:
                        raise BrowserError(f"{method}: the page is gone "
                                           f"(target detached)")
                    if left <= 0:
                        raise BrowserError(
                            f"{method}: no answer within "
                            f"{timeout:.1f} s" + self.log_tail())
                    self._cond.wait(left)
                msg = self._answers.pop(msg_id)
            finally:
                self._pending.pop(msg_id, None)
        if "error" in msg:
            raise CDPError(method, msg["error"])
        return msg.get("result", {})

    def event_count(self, session=None):
        """How many events session received so far: pass it to
        wait_event(since=) to wait for one after an action."""
        with self._cond:
            return len(self._events.get(session, []))

    def wait_event(self, method, session=None, since=0, timeout=None,
                   predicate=None):
        """The first event named method (whose params satisfy predicate)
        among session's events from index since; raises BrowserError
        after timeout."""
        timeout = (self.timeout if timeout is None else timeout) * SLOW
        deadline = time.monotonic() + timeout
        with self._cond:
            i = since
            while True:
                events = self._events.get(session, [])
                while i < len(events):
                    e = events[i]
                    i += 1
                    if e.get("method") == method and (
                            predicate is None or predicate(e.get("params",
                                                                 {}))):
                        return e.get("params", {})
                if self._dead:
                    raise BrowserError(f"waiting for {method}: browser gone: "
                                       f"{self._dead}" + self.log_tail())
                if session is not None and session in self._detached:
                    raise BrowserError(f"waiting for {method}: the page is "
                                       f"gone (target detached)")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"no {method} within {timeout:.1f} s")
                self._cond.wait(left)

    def console(self, session):
        with self._cond:
            return list(self._console.get(session, []))

    def log_tail(self, n=4000):
        """The end of the browser's own output (and its exit status), for
        error messages."""
        status = ""
        proc = getattr(self, "proc", None)
        if proc is not None and self._dead:
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
            if proc.returncode is not None:
                status = f" (browser exit status {proc.returncode})"
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - n))
                text = f.read().decode(errors="replace")
        except OSError:
            return status
        return status + (f"\n--- {self.log_path} (end) ---\n{text}"
                         if text else "")

    # -- pages ------------------------------------------------------------

    def new_page(self, url="about:blank"):
        """A new tab, attached and ready (Page, Runtime and Log enabled)."""
        page = Page(self, url)
        self.pages.append(page)
        return page

    def grant(self, origin, permissions):
        """Grants permissions (e.g. ["notifications"]) to origin (e.g.
        "http://127.0.0.1:7480") without asking."""
        self.call("Browser.grantPermissions",
                  {"origin": origin, "permissions": list(permissions)})

    # -- the end ----------------------------------------------------------

    def close(self):
        """Stops the browser (politely, then SIGKILL to its whole process
        group) and removes its profile and log."""
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None and self._started:
            if not self._dead:
                try:
                    self._send("Browser.close", None, None, next(self._ids))
                except OSError:
                    pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for fd in ("_to_browser", "_from_browser"):
            n = getattr(self, fd, None)
            if n is not None:
                try:
                    os.close(n)
                except OSError:
                    pass
                setattr(self, fd, None)
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.join(5)
        if getattr(self, "_log", None) is not None:
            self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Page:
    """One tab. Timeouts are in seconds, times HERALD_SLOW."""

    def __init__(self, browser, url="about:blank"):
        self.browser = browser
        self.target = browser.call("Target.createTarget",
                                   {"url": url})["targetId"]
        self.session = browser.call("Target.attachToTarget",
                                    {"targetId": self.target,
                                     "flatten": True})["sessionId"]
        self.closed = False
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method, params=None, timeout=None):
        """A CDP command to this page's target."""
        return self.browser.call(method, params, self.session, timeout)

    def wait_event(self, method, since=0, timeout=None, predicate=None):
        return self.browser.wait_event(method, self.session, since, timeout,
                                       predicate)

    def event_count(self):
        return self.browser.event_count(self.session)

    # -- navigation -------------------------------------------------------

    def goto(self, url, wait=True, timeout=None):
        """Loads url; with wait, returns once its load event fired. Raises
        BrowserError when the navigation failed (connection refused, ...)."""
        since = self.event_count()
        r = self.call("Page.navigate", {"url": url}, timeout=timeout)
        if r.get("errorText"):
            raise BrowserError(f"cannot load {url}: {r['errorText']}")
        if wait and r.get("loaderId"):  # none: same-document navigation
            self.wait_event("Page.loadEventFired", since, timeout)

    def reload(self, wait=True, ignore_cache=False, timeout=None):
        since = self.event_count()
        self.call("Page.reload", {"ignoreCache": ignore_cache},
                  timeout=timeout)
        if wait:
            self.wait_event("Page.loadEventFired", since, timeout)

    @property
    def url(self):
        return self.eval("location.href")

    # -- JavaScript -------------------------------------------------------

    def eval(self, js, timeout=None):
        """The value of the JavaScript expression js (awaited when a
        promise; JSON-like values only: a DOM node comes back as {}; None
        for undefined). Raises JSError with the exception's text."""
        r = self.call("Runtime.evaluate",
                      {"expression": js, "returnByValue": True,
                       "awaitPromise": True, "userGesture": True},
                      timeout=timeout)
        if "exceptionDetails" in r:
            raise JSError(_exception_text(r["exceptionDetails"]),
                          r["exceptionDetails"])
        return r.get("result", {}).get("value")

    def wait_for(self, js, timeout=10, interval=0.1):
        """js's first truthy value, polled every interval; a JavaScript
        exception counts as false. Fails after timeout with the last value
        (or exception) and the page's console messages."""
        deadline = time.monotonic() + timeout * SLOW
        last = None
        while True:
            left = deadline - time.monotonic()
            try:
                value = self.eval(js, timeout=max(left / SLOW, 1))
                if value:
                    return value
                last = repr(value)
            except JSError as e:
                last = f"exception {e.text}"
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"not true within {timeout} s: {js}\nlast value: {last}"
                    + self._console_text())
            time.sleep(interval)

    # -- input ------------------------------------------------------------

    def _element_center(self, css, timeout):
        """Scrolls css's element into view and returns its centre, once it
        exists and has a size."""
        sel = json.dumps(css)
        return self.wait_for(
            f"""(() => {{
                const e = document.querySelector({sel});
                if (!e) return null;
                e.scrollIntoView({{block: "center", inline: "center"}});
                const r = e.getBoundingClientRect();
                if (r.width === 0 || r.height === 0) return null;
                return {{x: r.left + r.width / 2, y: r.top + r.height / 2}};
            }})()""", timeout)

    def click(self, css, timeout=10):
        """A real mouse click in the middle of the first element matching
        css (waited for until visible)."""
        at = self._element_center(css, timeout)
        base = {"x": at["x"], "y": at["y"], "button": "left",
                "clickCount": 1}
        self.call("Input.dispatchMouseEvent", {**base, "type": "mouseMoved",
                                               "button": "none"})
        self.call("Input.dispatchMouseEvent", {**base,
                                               "type": "mousePressed"})
        self.call("Input.dispatchMouseEvent", {**base,
                                               "type": "mouseReleased"})

    def focus(self, css, timeout=10):
        sel = json.dumps(css)
        self.wait_for(f"""(() => {{
            const e = document.querySelector({sel});
            if (!e) return false;
            e.focus();
            return document.activeElement === e;
        }})()""", timeout)

    def type(self, css, text, timeout=10):
        """Focuses css's element and types text into it (as an input
        method would: one input event)."""
        self.focus(css, timeout)
        self.call("Input.insertText", {"text": text})

    def press(self, key):
        """Presses and releases key: a name of KEYS (Enter, Escape, Tab,
        Backspace, Arrow...), or a single character, with modifiers joined
        by "+" ("Shift+Tab", "Control+Enter")."""
        *mods, name = key.split("+") if key != "+" else ["+"]
        modifiers = 0
        for m in mods:
            if m not in MODIFIERS:
                raise ValueError(f"unknown modifier {m!r} in {key!r}")
            modifiers |= MODIFIERS[m]
        if name in KEYS:
            code, vk, text = KEYS[name]
        elif len(name) == 1:
            code = f"Key{name.upper()}" if name.isalpha() else ""
            vk, text = ord(name.upper()), name
        else:
            raise ValueError(f"unknown key {name!r}")
        if modifiers & ~MODIFIERS["Shift"]:
            text = ""  # Control+A selects, it does not type "a"
        common = {"key": name if name != "Space" else " ", "code": code,
                  "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk,
                  "modifiers": modifiers}
        down = {**common, "type": "keyDown" if text else "rawKeyDown"}
        if text:
            down.update(text=text, unmodifiedText=text)
        self.call("Input.dispatchKeyEvent", down)
        self.call("Input.dispatchKeyEvent", {**common, "type": "keyUp"})

    # -- the rest ---------------------------------------------------------

    def screenshot(self, path, full_page=False):
        """Writes a PNG of the page (the window, or all of it) to path."""
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def grant_notifications(self, origin):
        """Lets origin (e.g. "http://127.0.0.1:7480") show notifications
        without asking: Notification.permission is then "granted"."""
        self.browser.grant(origin, ["notifications"])

    def console_messages(self):
        """What the page logged: console calls, uncaught exceptions,
        browser log entries (a refused WebSocket, a CSP violation...) and
        dialogs, in order, as text."""
        return self.browser.console(self.session)

    def _console_text(self):
        msgs = self.console_messages()
        if not msgs:
            return ""
        return "\nconsole:\n  " + "\n  ".join(msgs[-50:])

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            self.browser.call("Target.closeTarget",
                              {"targetId": self.target}, timeout=5)
        except BrowserError:
            pass


def _remote_text(obj):
    """A short text for a Runtime.RemoteObject (a console argument)."""
    if "value" in obj:
        v = obj["value"]
        return v if isinstance(v, str) else json.dumps(v)
    if obj.get("unserializableValue"):
        return obj["unserializableValue"]
    return obj.get("description") or obj.get("type", "?")


def _exception_text(details):
    """The message (and stack) of Runtime.ExceptionDetails."""
    exc = details.get("exception") or {}
    text = exc.get("description") or exc.get("value") or details.get("text")
    where = details.get("url") or ""
    if where:
        where = (f" ({where}:{details.get('lineNumber', 0) + 1}:"
                 f"{details.get('columnNumber', 0) + 1})")
    return f"{text}{where}"
