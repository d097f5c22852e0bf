"""The HTML report of a smoke run in a real headless browser (Debian's chromium).

Chromium is driven over the DevTools protocol (a websocket), so the test sees what a person
would: console errors, failed loads, images that do not decode, and a screenshot.
"""

import base64
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--remote-debugging-port=0"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                       reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)"),
]


class DevTools:
    """The smallest DevTools client: one page session, commands in order, events collected."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=64 * 2**20, open_timeout=20)
        self.next_id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def send(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def browser(tmp_path):
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        ws_url = None
        while ws_url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            ws_url = m.group(1) if m else None
        if ws_url is None:
            pytest.fail(f"chromium did not start its DevTools endpoint (exit code {proc.poll()})")
        tools = DevTools(ws_url)
        yield tools
        tools.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_report__renders_in_chromium_with_cards_chart_and_no_console_errors(smoke_run_dir, browser, tmp_path):
    from soxai.run_dir import RunDir

    report = RunDir(smoke_run_dir).report_html
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    browser.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        browser.send(f"{domain}.enable")
    browser.send("Emulation.setDeviceMetricsOverride",
                 {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    browser.send("Page.navigate", {"url": report.as_uri()})
    browser.wait_for("Page.loadEventFired")

    def js(expr: str):
        return browser.send("Runtime.evaluate", {"expression": expr, "returnByValue": True})["result"]["value"]

    cards = js("document.querySelectorAll('.concept-card').length")
    flagged = js("document.querySelectorAll('.concept-card.flagged').length")
    first_is_flagged = js("document.querySelector('.concept-card').classList.contains('flagged')")
    chart = js("(() => { const i = document.querySelector('#comparison-chart img');"
               " return i ? [i.complete, i.naturalWidth, i.getBoundingClientRect().width] : null })()")
    broken = js("[...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt)")
    summary = js("document.querySelector('#summary-sentence').innerText")
    shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    png = tmp_path / "report.png"
    png.write_bytes(base64.b64decode(shot["data"]))

    errors = [e for e in browser.events
              if (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == [], f"console errors: {errors}"
    assert cards >= 2 and flagged >= 1 and first_is_flagged
    assert chart is not None and chart[0] and chart[1] > 300 and chart[2] > 300, chart
    assert broken == [], f"images that do not decode: {broken}"
    # the smoke run retrains on 2 seeds: the gains are means, and the sentence says there is no interval
    assert summary.startswith("soxai flagged") and "(n=2, no interval)" in summary
    from PIL import Image

    with Image.open(png) as im:
        assert im.width == 1280 and im.height > 2000  # the whole page, cards included
