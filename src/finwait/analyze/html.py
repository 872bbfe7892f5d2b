"""The ``finwait analyze --html`` report: one self-contained page (inline CSS
and JS, no network: a Content-Security-Policy forbids any fetch) with the
summary counts by close type, handshake and anomaly, a sortable table of the
connections, and the SVG ladder (:func:`finwait.render.svg.render_svg`) of
every anomalous connection and of a sample of the others.

Large captures are capped, and the page says so: the table shows the first
``max_rows`` connections plus every anomalous one (up to
``max_anomalous_rows``), and ``max_ladders`` ladders are drawn.  Everything
that comes from the capture or the command line (addresses, file name,
history letters, error text) is escaped; the SVG escapes its own text.
The close types and anomalies are defined in docs/analyze.md; read RFC 9293
§3.5-3.6 for the exchanges the ladders draw.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from typing import Any

from ..render.svg import render_svg
from .classify import CLOSES, HANDSHAKES, Analysis
from .run import connection_traces
from .tracker import ANOMALIES

__all__ = ["ReportLimits", "render_html"]


@dataclass(frozen=True, slots=True)
class ReportLimits:
    """How much of a large capture the page shows."""

    max_rows: int = 5000  # table rows, in connection order ...
    max_anomalous_rows: int = 20_000  # ... plus the anomalous ones after them
    max_ladders: int = 200  # ladders of anomalous connections
    sample: int = 12  # ladders of other connections: one per close type first
    max_segments: int = 2000  # segments read per ladder (the SVG folds long transfers)


# Columns: key, heading, numeric (sorts as a number).
_COLUMNS = (
    ("id", "id", True),
    ("client", "client", False),
    ("server", "server", False),
    ("start", "start s", True),
    ("duration", "duration s", True),
    ("packets", "packets c→s / s→c", True),
    ("bytes", "bytes c→s / s→c", True),
    ("handshake", "handshake", False),
    ("close", "close", False),
    ("first_fin", "first FIN", False),
    ("reset_by", "reset by", False),
    ("anomalies", "anomalies", False),
    ("conn_state", "Zeek state", False),
    ("history", "history", False),
)

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       margin: 0 auto; padding: 16px 24px 48px; max-width: 1280px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
.fw-meta, .fw-note { color: #57606a; } .fw-note { font-size: 13px; }
.fw-error { background: #ffebe9; border: 1px solid #ff8182; padding: 8px 12px; border-radius: 6px; }
.fw-cards { display: flex; flex-wrap: wrap; gap: 16px; }
.fw-card { border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 12px; min-width: 220px; }
.fw-card table td { padding: 1px 8px 1px 0; } .fw-card td.fw-n { text-align: right; }
.fw-bar { display: inline-block; height: 9px; background: #54aeff; vertical-align: middle; }
.fw-bad .fw-bar { background: #ff8182; }
table.fw-conns { border-collapse: collapse; width: 100%; font-size: 12.5px; }
.fw-conns th, .fw-conns td { border-bottom: 1px solid #d8dee4; padding: 3px 6px; text-align: left;
                            white-space: nowrap; }
.fw-conns th { position: sticky; top: 0; background: #f6f8fa; cursor: pointer; user-select: none; }
.fw-conns th[aria-sort="ascending"]::after { content: " ▲"; }
.fw-conns th[aria-sort="descending"]::after { content: " ▼"; }
.fw-conns td.fw-num { text-align: right; font-variant-numeric: tabular-nums; }
.fw-conns tr.fw-anomalous td { background: #fff8f7; }
.fw-wrap { max-height: 70vh; overflow: auto; border: 1px solid #d0d7de; border-radius: 6px; }
.fw-ladder { border-top: 1px solid #d8dee4; margin-top: 16px; }
.fw-ladder svg { max-width: 100%; height: auto; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
"""

# Sorting: numbers by their data-v value, text by content; stable, and the
# arrow shows the order (aria-sort).
_JS = """
(function () {
  const table = document.getElementById("fw-conns");
  if (!table) return;
  const body = table.tBodies[0];
  table.tHead.addEventListener("click", function (ev) {
    const th = ev.target.closest("th");
    if (!th) return;
    const col = th.cellIndex;
    const numeric = th.dataset.type === "num";
    const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    for (const h of table.tHead.rows[0].cells) h.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    const rows = Array.from(body.rows).map(function (r, i) {
      const c = r.cells[col];
      return { r: r, i: i, k: numeric ? parseFloat(c.dataset.v) : c.textContent };
    });
    rows.sort(function (a, b) {
      let d;
      if (numeric) d = a.k - b.k;
      else d = a.k < b.k ? -1 : a.k > b.k ? 1 : 0;
      return d * dir || a.i - b.i;
    });
    const frag = document.createDocumentFragment();
    for (const x of rows) frag.appendChild(x.r);
    body.appendChild(frag);
  });
})();
"""


def render_html(res: Analysis, limits: ReportLimits | None = None) -> str:
    """The report of one analysed capture, as a complete HTML document."""
    lim = limits or ReportLimits()
    anomalous = sorted(i + 1 for i in res.cols.get("an_by_conn", {}))
    ladder_ids = _ladder_choice(res, anomalous, lim)
    traces = connection_traces(res.path, res, ladder_ids, limit=lim.max_segments)
    row_ids = _row_choice(res, anomalous, lim)
    records = _records(res, row_ids)
    ladders = {cid: render_svg(traces[cid]) for cid in ladder_ids}

    out: list[str] = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No network at all: everything the page needs is in it.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>finwait analyze: {escape(res.path)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>How each TCP connection opened and was released</h1>",
        f'<p class="fw-meta"><code>{escape(res.path)}</code>: {res.records_read:,} packets, '
        f"{res.tcp_packets:,} TCP, {res.n:,} connections, {len(anomalous):,} with anomalies.</p>",
    ]
    if res.error is not None:
        out.append(
            f'<p class="fw-error">{escape(res.error)} — the connections read before it are '
            "reported below.</p>"
        )
    out += _summary(res, anomalous)
    out += _table(res, records, anomalous, row_ids, set(ladder_ids), lim)
    out += _ladders(res, records, ladders, anomalous, lim)
    out.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(out) + "\n"


# -- choosing what to show -------------------------------------------------------


def _ladder_choice(res: Analysis, anomalous: list[int], lim: ReportLimits) -> list[int]:
    """Anomalous connections first (capped), then a sample of the others:
    the first connection of each close type, then evenly spread ones."""
    chosen = anomalous[: lim.max_ladders]
    bad = set(anomalous)
    if res.n == 0 or lim.sample <= 0:
        return chosen
    close = res.cols["close"]
    sample: list[int] = []
    for k in range(len(CLOSES)):
        for i in (close == k).nonzero()[0][:50].tolist():
            if i + 1 not in bad:
                sample.append(i + 1)
                break
    step = max(1, res.n // max(1, lim.sample))
    for cid in range(1, res.n + 1, step):
        if len(sample) >= lim.sample:
            break
        if cid not in bad and cid not in sample:
            sample.append(cid)
    return chosen + sorted(sample[: lim.sample])


def _row_choice(res: Analysis, anomalous: list[int], lim: ReportLimits) -> list[int]:
    head = list(range(1, min(res.n, lim.max_rows) + 1))
    later = [cid for cid in anomalous if cid > lim.max_rows][: lim.max_anomalous_rows]
    return head + later


def _records(res: Analysis, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Records by id: the leading run in one pass, the scattered rest one by one."""
    ids = sorted(set(ids))
    out: dict[int, dict[str, Any]] = {}
    run = 0
    while run < len(ids) and ids[run] == run + 1:
        run += 1
    for rec in res.records(0, run):
        out[rec["id"]] = rec
    for cid in ids[run:]:
        out[cid] = res.record(cid)
    return out


# -- sections --------------------------------------------------------------------


def _card(title: str, rows: list[tuple[str, int, str]], total: int, bad: bool = False) -> str:
    """A small table of counts with proportional bars."""
    cls = "fw-card fw-bad" if bad else "fw-card"
    body = "".join(
        f'<tr><td>{escape(name)}</td><td class="fw-n">{n:,}</td><td>'
        f'<span class="fw-bar" style="width:{max(1, round(120 * n / max(total, 1)))}px"></span>'
        f'</td><td class="fw-note">{escape(extra)}</td></tr>'
        for name, n, extra in rows
    )
    return f'<div class="{cls}"><h3>{escape(title)}</h3><table>{body}</table></div>'


def _summary(res: Analysis, anomalous: list[int]) -> list[str]:
    if res.n == 0:
        return ["<p>No TCP connection in this capture.</p>"]
    closes = res.counts("close", CLOSES)
    grid = res.by_close_and_closer()
    close_rows = []
    for name in CLOSES:
        if name in closes:
            firsts = [f"{side} {grid[(name, side)]:,}" for side in ("client", "server")
                      if grid.get((name, side))]  # fmt: skip
            close_rows.append(
                (name, closes[name], "first FIN: " + ", ".join(firsts) if firsts else "")
            )
    hs = res.counts("handshake", HANDSHAKES)
    an = res.anomaly_counts()
    an_rows = [
        (name, an[name][0], f"{an[name][1]:,} segment" + ("s" if an[name][1] != 1 else ""))
        for name in ANOMALIES
        if name in an
    ]
    cards = [
        _card("Close type", close_rows, res.n),
        _card("Handshake", [(k, v, "") for k, v in hs.items()], res.n),
    ]
    if an_rows:
        cards.append(_card("Anomalies (connections)", an_rows, res.n, bad=True))
    else:
        cards.append('<div class="fw-card"><h3>Anomalies</h3><p>None.</p></div>')
    return ["<h2>Summary</h2>", '<div class="fw-cards">', *cards, "</div>"]


def _table(
    res: Analysis,
    records: dict[int, dict[str, Any]],
    anomalous: list[int],
    row_ids: list[int],
    with_ladder: set[int],
    lim: ReportLimits,
) -> list[str]:
    if not row_ids:
        return []
    shown_bad = sum(1 for cid in anomalous if cid in records)
    note = f"All {res.n:,} connections."
    if len(row_ids) < res.n:
        note = (
            f"Showing {len(row_ids):,} of {res.n:,} connections: the first "
            f"{min(res.n, lim.max_rows):,} and {shown_bad:,} of the {len(anomalous):,} anomalous ones "
            "(the JSON Lines output, <code>--json</code>, has them all)."
        )
    head = "".join(
        f'<th scope="col" data-key="{key}"'
        + (' data-type="num"' if num else "")
        + f">{escape(title)}</th>"
        for key, title, num in _COLUMNS
    )
    t0 = float(res.cols["start"].min())
    bad = set(anomalous)
    body = [_row(records[cid], t0, cid in bad, cid in with_ladder) for cid in row_ids]
    return [
        "<h2>Connections</h2>",
        f'<p class="fw-note">{note} Click a column heading to sort; anomalous rows are tinted, '
        "and an id links to its ladder when one is drawn.</p>",
        '<div class="fw-wrap"><table class="fw-conns" id="fw-conns">',
        f"<thead><tr>{head}</tr></thead><tbody>",
        *body,
        "</tbody></table></div>",
    ]


def _row(r: dict[str, Any], t0: float, bad: bool, ladder: bool) -> str:
    cid = r["id"]
    pk, by = r["packets"], r["bytes"]
    npk = pk["client_to_server"] + pk["server_to_client"]
    nby = by["client_to_server"] + by["server_to_client"]
    ident = f'<a href="#conn-{cid}">{cid}</a>' if ladder else str(cid)
    start = r["start"] - t0
    cells = [
        f'<td class="fw-num" data-v="{cid}">{ident}</td>',
        f"<td>{escape(_ep(r['client']))}</td>",
        f"<td>{escape(_ep(r['server']))}</td>",
        f'<td class="fw-num" data-v="{start!r}">{start:.6f}</td>',
        f'<td class="fw-num" data-v="{r["duration"]!r}">{r["duration"]:.6f}</td>',
        f'<td class="fw-num" data-v="{npk}">{pk["client_to_server"]} / {pk["server_to_client"]}</td>',
        f'<td class="fw-num" data-v="{nby}">{by["client_to_server"]} / {by["server_to_client"]}</td>',
        f"<td>{escape(r['handshake'])}</td>",
        f"<td>{escape(r['close'])}</td>",
        f"<td>{escape(r['first_fin'] or '')}</td>",
        f"<td>{escape(r['reset_by'] or '')}</td>",
        f"<td>{escape(' '.join(a['name'] for a in r['anomalies']))}</td>",
        f"<td>{escape(r['conn_state'])}</td>",
        f"<td><code>{escape(r['history'])}</code></td>",
    ]
    cls = ' class="fw-anomalous"' if bad else ""
    return f"<tr{cls}>{''.join(cells)}</tr>"


def _ep(e: dict[str, Any]) -> str:
    addr = str(e["addr"])
    return f"[{addr}]:{e['port']}" if ":" in addr else f"{addr}:{e['port']}"


def _ladders(
    res: Analysis,
    records: dict[int, dict[str, Any]],
    ladders: dict[int, str],
    anomalous: list[int],
    lim: ReportLimits,
) -> list[str]:
    if not ladders:
        return []
    bad = set(anomalous)
    n_bad = sum(1 for cid in ladders if cid in bad)
    note = f"Every anomalous connection ({n_bad:,})"
    if len(anomalous) > n_bad:
        note = f"The first {n_bad:,} of {len(anomalous):,} anomalous connections"
    out = [
        "<h2>Ladders</h2>",
        f'<p class="fw-note">{note}, then a sample of {len(ladders) - n_bad:,} others '
        "(one per close type first). Times are ms since the connection's first packet; "
        "sequence numbers are relative to each side's ISN.</p>",
    ]
    for cid, svg in ladders.items():
        r = records.get(cid) or res.record(cid)
        total = r["packets"]["client_to_server"] + r["packets"]["server_to_client"]
        drawn = svg.count('<g class="segment"')
        what = ", ".join(a["name"] for a in r["anomalies"]) or "no anomaly"
        fold = (
            "" if drawn == total else f" ({drawn:,} of {total:,} segments drawn: long runs folded)"
        )
        body = svg.split("?>", 1)[1] if svg.startswith("<?xml") else svg
        out.append(
            f'<section class="fw-ladder" id="conn-{cid}" data-packets="{total}">'
            f"<h3>Connection {cid}: {escape(_ep(r['client']))} → {escape(_ep(r['server']))}</h3>"
            f'<p class="fw-note">close {escape(r["close"])}, handshake {escape(r["handshake"])}, '
            f"{escape(what)}{fold}</p>{body}</section>"
        )
    return out
