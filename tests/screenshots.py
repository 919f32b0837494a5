"""Takes the README's screenshots from the real pages of the demo board.

Starts `cab demo` on a fresh database, drives headless Chromium through
chromedriver (W3C WebDriver, standard library only) and writes PNG files to
docs/screenshots/. Run through tests/screenshots.sh.
"""

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "docs", "screenshots")
CAB = os.environ.get("CAB_BIN", os.path.join(ROOT, "target", "debug", "cab"))
SERVER = os.environ.get("CAB_SCREENSHOT_PG", "postgres://postgres@127.0.0.1:5432")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return json.loads(e.read() or b"null")


class Browser:
    def __init__(self, width, height):
        self.port = free_port()
        self.driver = subprocess.Popen(
            [os.environ.get("CHROMEDRIVER", "chromedriver"), f"--port={self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(100):
            try:
                http("GET", f"{self.base}/status")
                break
            except OSError:
                time.sleep(0.1)
        self.profile = tempfile.mkdtemp(prefix="cab-shots-")
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                         f"--window-size={width},{height}", f"--user-data-dir={self.profile}"],
            },
        }}}
        resp = http("POST", f"{self.base}/session", caps)
        self.session = resp["value"]["sessionId"]

    def cmd(self, method, path, body=None):
        v = http(method, f"{self.base}/session/{self.session}{path}", body)["value"]
        if isinstance(v, dict) and "error" in v:
            raise RuntimeError(f"WebDriver {path}: {v}")
        return v

    def goto(self, url):
        self.cmd("POST", "/url", {"url": url})

    def run(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def sign_in(self, url, user, password):
        self.cmd("DELETE", "/cookie")
        self.goto(f"{url}/login")
        self.run(
            "document.getElementById('username').value = arguments[0];"
            "document.getElementById('password').value = arguments[1];"
            "document.querySelector('form button[type=submit]').click();",
            user, password)
        for _ in range(100):
            if not self.cmd("GET", "/url").endswith("/login"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{user} could not sign in")

    def shot(self, name):
        # The whole page, however long: make the window as tall as the page.
        time.sleep(0.2)
        height = self.run("return Math.min(document.documentElement.scrollHeight, 2400);")
        width = self.run("return window.outerWidth;")
        self.cmd("POST", "/window/rect", {"width": width, "height": height + 120})
        png = base64.b64decode(self.cmd("GET", "/screenshot"))
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(png)
        print(f"wrote docs/screenshots/{name} ({len(png) // 1024} KiB)")

    def close(self):
        try:
            self.cmd("DELETE", "")
        finally:
            self.driver.terminate()
            self.driver.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


def start_demo(database):
    port = free_port()
    env = dict(os.environ, RUST_LOG="warn")
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen(
        [CAB, "demo", "--database", database, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, text=True, env=dict(env, DATABASE_URL=f"{SERVER}/{database}"))
    users = {}
    for line in proc.stdout:
        m = re.match(r"^  (\w+)\s+(\w+)\s+(\S+)$", line)
        if m and m.group(1) != "USERNAME":
            users[m.group(1)] = m.group(3)
        if line.startswith("CAB listening on "):
            return proc, line.split("CAB listening on ", 1)[1].strip(), users
    raise RuntimeError("cab demo stopped before serving")


def api_token(url, user, password):
    return http("POST", f"{url}/api/v1/auth/token", {"username": user, "password": password})["access_token"]


def api_get(url, token, path):
    req = urllib.request.Request(f"{url}{path}")
    req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def main():
    os.makedirs(OUT, exist_ok=True)
    database = f"cab_screenshots_{os.getpid()}"
    proc, url, users = start_demo(database)
    browser = None
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/readyz", timeout=5)
                break
            except OSError:
                time.sleep(0.2)
        token = api_token(url, "audrey", users["audrey"])
        approved = api_get(url, token, "/api/v1/changes?state=approved&type=normal&limit=200")["items"]
        reviewed = api_get(url, token, "/api/v1/changes?state=in_cab_review&limit=200")["items"]
        by_erin = [c for c in reviewed if c.get("author") == "erin"] or reviewed

        browser = Browser(1280, 900)
        browser.sign_in(url, "carol", users["carol"])
        browser.goto(f"{url}/")
        browser.shot("dashboard.png")
        browser.cmd("POST", "/window/rect", {"width": 1280, "height": 900})
        browser.goto(f"{url}/cab")
        browser.shot("cab-queue.png")
        browser.cmd("POST", "/window/rect", {"width": 1280, "height": 900})
        browser.goto(f"{url}/changes/{approved[0]['key']}")
        browser.shot("change-approval-trail.png")

        # A refusal: an author tries to approve her own change by sending the
        # vote form herself (the page offers her no such button).
        browser.cmd("POST", "/window/rect", {"width": 1280, "height": 900})
        browser.sign_in(url, "erin", users["erin"])
        browser.goto(f"{url}/changes/{by_erin[0]['key']}")
        browser.run(
            "const f = document.createElement('form'); f.method = 'post';"
            "f.action = location.pathname + '/votes';"
            "for (const [k, v] of [['_csrf', document.querySelector('input[name=_csrf]').value],"
            "  ['revision', String(arguments[0])], ['vote', 'approve'], ['comment', '']]) {"
            "  const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v;"
            "  f.appendChild(i); }"
            "document.body.appendChild(f); f.submit();",
            api_get(url, token, f"/api/v1/changes/{by_erin[0]['key']}/approvals")["revision"])
        time.sleep(0.5)
        browser.shot("refusal.png")

        browser.close()
        browser = Browser(390, 844)
        browser.sign_in(url, "sam", users["sam"])
        browser.goto(f"{url}/")
        browser.shot("phone-dashboard.png")
    finally:
        if browser is not None:
            browser.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        subprocess.run(["psql", f"{SERVER}/postgres", "-qc",
                        f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'], check=False)


if __name__ == "__main__":
    sys.exit(main())
