"""The ``--html`` report: content, caps and escaping checked on the text;
then the page in a real headless chromium driven over the DevTools protocol
(``--remote-debugging-pipe``, standard library only): it loads without a
console error or exception, every ladder shows one arrow per captured
segment of its connection, and clicking a column heading sorts the table."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from analyze.test_jsonl import zoo
from finwait.analyze import analyze_file
from finwait.analyze.classify import Analysis
from finwait.analyze.html import ReportLimits, render_html
from finwait.cli import main


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("html") / "zoo.pcap"
    path.write_bytes(zoo(21, 120))
    return path


def _anomalous(res: Analysis) -> list[int]:
    return [r["id"] for r in res.records() if r["anomalies"]]


def _body_rows(page: str) -> int:
    return page.split("<tbody>", 1)[1].split("</tbody>", 1)[0].count("<tr")


def test_report_has_summary_table_and_ladders(capture: Path) -> None:
    res = analyze_file(capture)
    page = render_html(res)
    bad = _anomalous(res)
    assert bad and len(bad) < res.n
    assert page.count('<tr class="fw-anomalous">') == len(bad)
    assert _body_rows(page) == res.n
    for cid in bad:
        assert f'id="conn-{cid}"' in page
    # The sample adds non-anomalous ladders, at most ReportLimits.sample of them.
    ladders = page.count('class="fw-ladder"')
    assert len(bad) < ladders <= len(bad) + ReportLimits().sample
    for close in {r["close"] for r in res.records()}:
        assert f"<td>{close}</td>" in page
    assert f"All {res.n:,} connections." in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")


def test_caps_are_applied_and_said(capture: Path) -> None:
    res = analyze_file(capture)
    bad = _anomalous(res)
    lim = ReportLimits(max_rows=10, max_ladders=3, sample=2)
    page = render_html(res, lim)
    rows = 10 + sum(1 for cid in bad if cid > 10)
    assert _body_rows(page) == rows
    assert f"Showing {rows:,} of {res.n:,} connections" in page
    assert page.count('class="fw-ladder"') == 3 + 2
    assert f"The first 3 of {len(bad):,} anomalous connections" in page


def test_text_from_outside_is_escaped(tmp_path: Path, capture: Path) -> None:
    hostile = tmp_path / "<img src=x onerror=alert(1)>&.pcap"
    hostile.write_bytes(capture.read_bytes())
    page = render_html(analyze_file(hostile))
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;&amp;.pcap" in page


def test_cli_writes_the_report(tmp_path: Path, capture: Path) -> None:
    out = tmp_path / "r.html"
    r = CliRunner().invoke(main, ["analyze", str(capture), "--html", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    r = CliRunner().invoke(main, ["analyze", str(capture), str(capture), "--html", str(out)])
    assert r.exit_code == 2 and "exactly one FILE" in r.output


# -- in a browser -------------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("FINWAIT_LIVE") == "require":
        pytest.fail("chromium is required (FINWAIT_LIVE=require) but not installed")
    pytest.skip("chromium not installed")


class DevTools:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``
    (the browser reads commands on fd 3 and writes replies and events on fd 4,
    each message JSON ending in a NUL byte)."""

    def __init__(self, browser: str, profile: Path) -> None:
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()

        def to_3_and_4() -> None:
            os.dup2(cmd_r, 3)
            os.dup2(res_w, 4)

        self.proc = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "--window-size=1300,1800",
             "about:blank"],
            pass_fds=(3, 4), preexec_fn=to_3_and_4, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(cmd_r)
        os.close(res_w)
        self._next = 0
        self._buf = b""
        self.events: list[dict[str, Any]] = []

    def _read(self, timeout: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._res_r], [], [], timeout)
            if not ready:
                raise TimeoutError("no message from chromium")
            chunk = os.read(self._res_r, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        out: dict[str, Any] = json.loads(msg)
        return out

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session is not None:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read(60)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60) -> dict[str, Any]:
        seen = [e for e in self.events if e.get("method") == method]
        while not seen:
            e = self._read(timeout)
            self.events.append(e)
            if e.get("method") == method:
                return e
        return seen[0]

    def open_page(self, page: Path) -> str:
        """Open ``page`` in a new target; its session id once it has loaded."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        s: str = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable", s)
        self.call("Page.navigate", s, url=page.as_uri())
        self.wait_event("Page.loadEventFired")
        return s

    def evaluate(self, session: str, expr: str) -> Any:
        """The value of a JavaScript expression; it must not throw."""
        r = self.call("Runtime.evaluate", session, expression=expr, returnByValue=True)
        assert "exceptionDetails" not in r, r
        return r["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError, TimeoutError, RuntimeError):
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._res_r)


def _problems(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions and error log entries (CSP violations too)."""
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            out.append(json.dumps(p["exceptionDetails"])[:300])
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(json.dumps(p.get("args"))[:300])
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
            out.append(p["entry"].get("text", "")[:300])
    return out


@pytest.mark.browser
def test_report_in_headless_chromium(tmp_path: Path, capture: Path) -> None:
    browser = _chromium()
    res = analyze_file(capture)
    page = tmp_path / "report.html"
    page.write_text(render_html(res), encoding="utf-8")
    cdp = DevTools(browser, tmp_path / "profile")
    try:
        s = cdp.open_page(page)

        def js(expr: str) -> Any:
            return cdp.evaluate(s, expr)

        # Every ladder: one drawn arrow (non-empty box) per captured segment.
        drawn = js(
            "Object.fromEntries([...document.querySelectorAll('section.fw-ladder')].map(s => "
            "[s.id, [...s.querySelectorAll('g.segment')].filter(g => {const b = g.getBBox(); "
            "return b.width > 0 && b.height > 0;}).length]))"
        )
        assert drawn and len(drawn) >= len(_anomalous(res))
        for sid, arrows in drawn.items():
            rec = res.record(int(sid.removeprefix("conn-")))
            assert arrows == sum(rec["packets"].values()), sid

        # Sorting: numbers by value, both ways; text alphabetically.
        def column(key: str) -> list[str]:
            value: list[str] = js(
                f"(() => {{const i = document.querySelector('th[data-key={key}]').cellIndex; "
                "return [...document.querySelectorAll('#fw-conns tbody tr')].map(r => "
                "r.cells[i].dataset.v ?? r.cells[i].textContent);})()"
            )
            return value

        def click(key: str) -> None:
            js(f"document.querySelector('th[data-key={key}]').click()")

        before = column("id")
        assert [int(x) for x in before] == sorted(int(x) for x in before)
        click("packets")
        up = [int(x) for x in column("packets")]
        assert up == sorted(up) and up != [int(x) for x in before]
        click("packets")
        down = [int(x) for x in column("packets")]
        assert down == sorted(up, reverse=True)
        assert js("document.querySelector('th[data-key=packets]').getAttribute('aria-sort')") == (
            "descending"
        )
        click("close")
        closes = column("close")
        assert closes == sorted(closes) and len(set(closes)) > 3
        click("id")
        assert column("id") == before

        shot = cdp.call("Page.captureScreenshot", s, format="png")["data"]
        assert len(shot) > 1000
        (tmp_path / "report.png").write_bytes(base64.b64decode(shot))
        assert _problems(cdp.events) == []
    finally:
        cdp.close()


@pytest.mark.browser
def test_console_errors_are_caught(tmp_path: Path) -> None:
    # The check above must be able to fail: a page with an error is reported.
    browser = _chromium()
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><script>console.error('x'); nope();</script>", "utf-8")
    cdp = DevTools(browser, tmp_path / "profile")
    try:
        target = cdp.call("Target.createTarget", url="about:blank")["targetId"]
        s = cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            cdp.call(f"{domain}.enable", s)
        cdp.call("Page.navigate", s, url=page.as_uri())
        cdp.wait_event("Page.loadEventFired")
        cdp.call("Runtime.evaluate", s, expression="1")  # let pending events arrive
        assert len(_problems(cdp.events)) == 2
    finally:
        cdp.close()
