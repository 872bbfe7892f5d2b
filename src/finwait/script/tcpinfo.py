"""``%{ }%`` blocks: assertions on ``tcp_info``, evaluated without exec.

packetdrill runs each block in Python with the connection's ``struct
tcp_info`` fields (``tcpi_snd_cwnd``, ``tcpi_ca_state``…) bound to names, at
the block's time; names a block assigns are seen by the later ones
(``cwnd += 10``).  finwait evaluates the same small language on a syntax
tree, never ``exec``: statements ``assert``, ``=``, ``+=`` and friends,
``print(...)`` (ignored); expressions of numbers, strings, names, arithmetic,
comparisons, ``and``/``or``/``not`` and ``%`` formatting.  A block outside
that language is reported as skipped, as before, never guessed at.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

# linux/tcp.h: enum tcp_ca_state, and the "infinite" ssthresh tcp_info shows.
CONSTANTS: dict[str, int] = {
    "TCP_CA_Open": 0,
    "TCP_CA_Disorder": 1,
    "TCP_CA_CWR": 2,
    "TCP_CA_Recovery": 3,
    "TCP_CA_Loss": 4,
    "TCP_INFINITE_SSTHRESH": 0x7FFFFFFF,
}

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.BitOr: operator.or_, ast.BitAnd: operator.and_, ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
}  # fmt: skip
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
    ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}  # fmt: skip


class Unsupported(Exception):
    """The block uses what this evaluator does not: it is skipped."""


class AssertionFailed(Exception):
    """An ``assert`` in the block is false; the message is its second part."""


def _eval(node: ast.expr, names: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise Unsupported(f"name {node.id!r}")
        return names[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval(node.left, names), _eval(node.right, names))
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, names)
        if isinstance(node.op, ast.Not):
            return not v
        if isinstance(node.op, ast.USub):
            return -v
    if isinstance(node, ast.BoolOp):
        vals = (_eval(v, names) for v in node.values)
        return all(vals) if isinstance(node.op, ast.And) else any(vals)
    if isinstance(node, ast.Compare) and all(type(op) in _CMPOPS for op in node.ops):
        left = _eval(node.left, names)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, names)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Tuple):
        return tuple(_eval(e, names) for e in node.elts)
    raise Unsupported(type(node).__name__)


def _statement(st: ast.stmt, names: dict[str, Any]) -> None:
    if isinstance(st, ast.Assert):
        if not _eval(st.test, names):
            msg = "" if st.msg is None else _eval(st.msg, names)
            raise AssertionFailed(f"{ast.unparse(st.test)} ({msg})")
    elif isinstance(st, ast.Assign) and all(isinstance(t, ast.Name) for t in st.targets):
        value = _eval(st.value, names)
        for t in st.targets:
            names[t.id] = value  # type: ignore[attr-defined]
    elif isinstance(st, ast.AugAssign) and isinstance(st.target, ast.Name):
        if type(st.op) not in _BINOPS or st.target.id not in names:
            raise Unsupported("augmented assignment")
        names[st.target.id] = _BINOPS[type(st.op)](names[st.target.id], _eval(st.value, names))
    elif (
        isinstance(st, ast.Expr)
        and isinstance(st.value, ast.Call)
        and isinstance(st.value.func, ast.Name)
        and st.value.func.id == "print"
    ):
        for arg in st.value.args:
            _eval(arg, names)  # checked, not printed
    else:
        raise Unsupported(type(st).__name__)


def parse(code: str) -> list[ast.stmt]:
    """The block's statements (``\\`` line continuations as packetdrill's);
    Unsupported if it is not Python."""
    lines = code.replace("\\\n", " ").splitlines()
    try:  # no compound statements: each line stands at the left margin
        return ast.parse("\n".join(line.strip() for line in lines)).body
    except SyntaxError as exc:
        raise Unsupported(f"syntax: {exc.msg}") from None


def run_block(code: str, info: Mapping[str, int], names: dict[str, Any]) -> None:
    """Run one block with the connection's ``info``; ``names`` carries the
    script's own variables from block to block.  Raises AssertionFailed or
    Unsupported (then nothing it assigned is kept)."""
    body = parse(code)
    scope = {**CONSTANTS, **names, **info}
    for st in body:
        _statement(st, scope)
    for k, v in scope.items():
        if k not in info and k not in CONSTANTS:
            names[k] = v


def engine_tcp_info(conn: Any) -> dict[str, int]:
    """The ``tcp_info`` fields of an engine connection that have a faithful
    counterpart (others are absent, and a block naming one is skipped):
    congestion window and ssthresh in segments (TCP_INFINITE_SSTHRESH before
    any loss), the congestion-avoidance state as Linux names it, segments out,
    SACKed (without SACK, the DupAcks counted, as Linux's ``sacked_out``),
    lost and retransmitted, the reordering degree and how often it was seen
    (the Linux profile's transmit log), RTTs in µs, probes since the last
    ACK (zero-window, or refused by the device) and the backoff (the
    retransmission timer's plus the zero-window probes')."""
    cc, rtt, smss = conn.cc, conn.rtt, conn.smss
    rack = conn._rack
    ssthresh = cc.ssthresh // smss if cc.ssthresh < 1 << 30 else CONSTANTS["TCP_INFINITE_SSTHRESH"]
    flight = (conn.snd_max - conn.snd_una) & 0xFFFFFFFF
    info = {
        "tcpi_snd_cwnd": cc.cwnd // smss,
        "tcpi_snd_ssthresh": ssthresh,
        "tcpi_snd_mss": smss,
        "tcpi_probes": conn._probes,
        "tcpi_backoff": rtt.backoff + conn._persist_backoff,
    }
    if rack is not None:
        if rack.loss_high is not None:
            state = "TCP_CA_Loss"
        elif cc.in_recovery:
            state = "TCP_CA_Recovery"
        elif rack.sacked_out or rack.lost_out or rack.retrans_out:
            state = "TCP_CA_Disorder"
        else:
            state = "TCP_CA_Open"
        info.update(
            tcpi_ca_state=CONSTANTS[state],
            tcpi_unacked=len(rack.log),
            tcpi_sacked=rack.sacked_out,
            tcpi_lost=rack.lost_out,
            tcpi_retrans=rack.retrans_out,
            tcpi_reordering=rack.reordering,
            tcpi_reord_seen=rack.reord_seen,
        )
    elif not flight:
        info.update(tcpi_unacked=0, tcpi_sacked=0, tcpi_lost=0, tcpi_retrans=0)
    if rtt.srtt is not None:
        info["tcpi_rtt"] = int(rtt.srtt * 1e6)
    if rtt.min_rtt is not None:
        info["tcpi_min_rtt"] = int(rtt.min_rtt * 1e6)
    return info


# struct tcp_info (linux/tcp.h): the u8 fields, then u32 fields from byte 8.
_U8 = ("tcpi_state", "tcpi_ca_state", "tcpi_retransmits", "tcpi_probes", "tcpi_backoff")
_U32 = (
    "tcpi_rto", "tcpi_ato", "tcpi_snd_mss", "tcpi_rcv_mss", "tcpi_unacked", "tcpi_sacked",
    "tcpi_lost", "tcpi_retrans", "tcpi_fackets", "tcpi_last_data_sent", "tcpi_last_ack_sent",
    "tcpi_last_data_recv", "tcpi_last_ack_recv", "tcpi_pmtu", "tcpi_rcv_ssthresh", "tcpi_rtt",
    "tcpi_rttvar", "tcpi_snd_ssthresh", "tcpi_snd_cwnd", "tcpi_advmss", "tcpi_reordering",
    "tcpi_rcv_rtt", "tcpi_rcv_space", "tcpi_total_retrans",
)  # fmt: skip
_MIN_RTT_AT = 148  # after the u64 pacing and byte counts, segs_out/in, notsent_bytes
_REORD_SEEN_AT = 220


def kernel_tcp_info(raw: bytes) -> dict[str, int]:
    """Decode ``getsockopt(TCP_INFO)``."""
    import struct

    info = dict(zip(_U8, raw[: len(_U8)], strict=True))
    info.update(zip(_U32, struct.unpack_from(f"<{len(_U32)}I", raw, 8), strict=True))
    if len(raw) >= _MIN_RTT_AT + 4:
        info["tcpi_min_rtt"] = struct.unpack_from("<I", raw, _MIN_RTT_AT)[0]
    if len(raw) >= _REORD_SEEN_AT + 4:
        info["tcpi_reord_seen"] = struct.unpack_from("<I", raw, _REORD_SEEN_AT)[0]
    return info
