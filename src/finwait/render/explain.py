"""The seed's explanation of a release, generalized to any Trace.

Finds each side's FIN and the segments that acknowledge it, and says in plain
English, with the numbers, why each number is what it is: a FIN takes one
sequence number, a pure ACK takes none, so the ACK of a FIN at N is N+1 and
the other side's FIN keeps the number its ACK had (plus any bytes it sent
while half-closed).  Also recognises the three-segment close (a FIN that
carries the ACK of the first), the simultaneous close (FINs that cross),
retransmitted and lost FINs, a RST instead of a FIN, a FIN without ACK
(dropped, not a close) and a release that never completed.  Read RFC 9293
§3.4 (sequence space), §3.6 (closing, Figures 12 and 13), §3.10.4 and
§3.10.7.4, and RFC 5961 §3 for the RST check.  ``release_steps`` is the
structured form the analyzer and tests use; ``explain_release`` the text.

Given the analyzer's classification of the connection (``release``: its
``close``, ``first_fin`` and ``reset_by`` fields, docs/analyze.md), the
explanation uses it instead of judging the close again: the second FIN is
labelled by the analyzer's close type and the summary starts with it, so
``finwait analyze --explain`` and ``--json`` never disagree.  Without it (a
simulation's trace) the walk judges the close from the segments itself.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..tcp import seqnum
from ..trace import DELIVERED, LOST, SegmentEvent, Trace
from ..wire.segment import ACK, FIN, RST, SYN, format_flags
from .rows import endpoint_text, sides

FIRST_FIN = "first FIN"
ACK_OF_FIRST_FIN = "ACK of first FIN"
SECOND_FIN = "second FIN"
FINAL_ACK = "final ACK"
THREE_WAY_FIN = "FIN+ACK (three-way)"
SIMULTANEOUS_FIN = "simultaneous FIN"
RETRANSMITTED_FIN = "retransmitted FIN"
REACK = "ACK of retransmitted FIN"
CONFLICTING_FIN = "conflicting FIN"
BARE_FIN = "FIN without ACK"
RESET = "RST"

# The analyzer's close type (docs/analyze.md) -> the role of the second FIN.
SECOND_FIN_ROLE = {
    "four_way": SECOND_FIN,
    "three_way": THREE_WAY_FIN,
    "simultaneous": SIMULTANEOUS_FIN,
}
CLOSE_WORDS = {
    "four_way": "a four-way close (each FIN acknowledged on its own)",
    "three_way": "a three-segment close (the second FIN carries the ACK of the first)",
    "simultaneous": "a simultaneous close (the FINs crossed)",
    "reset": "a reset",
    "refused": "a refused connection (the SYN was answered by a RST)",
    "unanswered": "an unanswered connection attempt",
    "half_closed": "a half-close (one FIN by the end of the capture)",
    "open": "an open connection (no FIN and no RST by the end of the capture)",
    "probe": "a probe (no handshake, a first segment without ACK)",
}


@dataclass(frozen=True, slots=True)
class ReleaseStep:
    """One segment of a release, what part it plays, and why its numbers are
    what they are."""

    event: SegmentEvent
    role: str
    sentence: str


@dataclass(slots=True)
class _Fin:
    """A side's FIN as seen so far."""

    number: int  # raw sequence number the FIN occupies
    first: bool  # sent before the other side's FIN
    crossed: bool = False  # simultaneous: sent before the peer's FIN arrived
    acked: bool = False
    ack_seq: int | None = None  # seq of the peer's segment that acknowledged it
    resent_since_ack: bool = False
    copies: list[SegmentEvent] = field(default_factory=list)


class _Walker:
    """Walks a trace's segments once, keeping what the sentences need."""

    def __init__(
        self, trace: Trace, relative: bool, release: Mapping[str, Any] | None = None
    ) -> None:
        self.trace = trace
        self.relative = relative
        self.second_role = SECOND_FIN_ROLE.get(release["close"]) if release else None
        self.fins: dict[str, _Fin] = {}
        self.last_ack: dict[str, int] = {}  # side -> last ack it sent (its RCV.NXT)
        self.steps: list[ReleaseStep] = []

    # -- numbers ---------------------------------------------------------

    def rel(self, side: str, raw: int) -> int:
        """Relative position of ``raw`` in ``side``'s sequence space."""
        return seqnum.sub(raw, self.trace.isn(side))

    def show(self, side: str, raw: int) -> str:
        """A number of ``side``'s space as the user asked to see it."""
        return str(self.rel(side, raw) if self.relative else raw)

    def span(self, side: str, first_rel: int, count: int) -> str:
        """``49 bytes (1..49)``, in the chosen numbering."""
        if count <= 0:
            return "no data"
        isn = self.trace.isn(side)
        lo = first_rel if self.relative else seqnum.add(isn, first_rel)
        hi = first_rel + count - 1 if self.relative else seqnum.add(isn, first_rel + count - 1)
        noun = "byte" if count == 1 else "bytes"
        return f"{count:,} {noun} ({lo})" if count == 1 else f"{count:,} {noun} ({lo}..{hi})"

    def headline(self, ev: SegmentEvent) -> str:
        seg = ev.segment
        text = f"{ev.src}→{ev.dst} {format_flags(seg.flags)} seq={self.show(ev.src, seg.seq)}"
        if seg.flags & ACK:
            text += f" ack={self.show(ev.dst, seg.ack)}"
        if seg.payload:
            text += f" len={len(seg.payload)}"
        return text

    # -- the walk --------------------------------------------------------

    def run(self) -> list[ReleaseStep]:
        for ev in self.trace.segments():
            self.segment(ev)
        return self.steps

    def add(self, ev: SegmentEvent, role: str, text: str) -> None:
        self.steps.append(ReleaseStep(ev, role, f"{self.headline(ev)}: {text}{_fate(ev)}"))

    def segment(self, ev: SegmentEvent) -> None:
        seg = ev.segment
        if seg.flags & RST:
            self.add(ev, RESET, self.reset_text(ev))
        elif seg.flags & FIN and not seg.flags & (ACK | SYN):
            self.add(ev, BARE_FIN, self.bare_fin_text(ev))
        elif seg.flags & FIN and not seg.flags & SYN:
            self.fin(ev)
        elif seg.flags & ACK:
            self.ack(ev)
        if seg.flags & ACK:
            self.last_ack[ev.src] = seg.ack

    def acks_fin_of(self, ev: SegmentEvent) -> _Fin | None:
        """The receiver's FIN if this segment acknowledges it (SEG.ACK =
        the FIN's number + 1: the FIN took one number)."""
        fin = self.fins.get(ev.dst)
        if (
            fin is not None
            and ev.segment.flags & ACK
            and ev.segment.ack == seqnum.add(fin.number, 1)
        ):
            return fin
        return None

    def fin(self, ev: SegmentEvent) -> None:
        seg = ev.segment
        number = seqnum.add(seg.seq, len(seg.payload))
        mine, theirs = self.fins.get(ev.src), self.fins.get(ev.dst)
        acked = self.acks_fin_of(ev)
        if mine is not None:
            if mine.number == number:
                self.add(ev, RETRANSMITTED_FIN, self.retransmitted_text(ev, mine))
                mine.copies.append(ev)
                if mine.acked:
                    mine.resent_since_ack = True
            else:
                self.add(ev, CONFLICTING_FIN, self.conflicting_text(ev, mine, number))
            if acked is not None and not acked.acked:
                acked.acked, acked.ack_seq = True, seg.seq
            return
        fin = _Fin(number=number, first=theirs is None, copies=[ev])
        self.fins[ev.src] = fin
        role = self.second_role  # the analyzer's word, when given
        if theirs is None:
            self.add(ev, FIRST_FIN, self.first_fin_text(ev, number))
        elif role == SIMULTANEOUS_FIN or (role is None and acked is None):
            fin.crossed = theirs.crossed = True
            self.add(ev, SIMULTANEOUS_FIN, self.simultaneous_text(ev, theirs, number))
        elif role == SECOND_FIN or (role is None and theirs.acked):
            self.add(ev, SECOND_FIN, self.second_fin_text(ev, theirs, number))
        else:
            if not theirs.acked:
                theirs.acked, theirs.ack_seq = True, seg.seq
            self.add(ev, THREE_WAY_FIN, self.three_way_text(ev, number))

    def ack(self, ev: SegmentEvent) -> None:
        fin = self.acks_fin_of(ev)
        if fin is None:
            return
        if not fin.acked:
            fin.acked, fin.ack_seq = True, ev.segment.seq
            role = ACK_OF_FIRST_FIN if fin.first else FINAL_ACK
            text = self.ack_first_text(ev) if fin.first else self.final_ack_text(ev)
            self.add(ev, role, text)
        elif fin.resent_since_ack:
            fin.resent_since_ack = False
            self.add(ev, REACK, self.reack_text(ev))

    # -- sentences -------------------------------------------------------

    def first_fin_text(self, ev: SegmentEvent, number: int) -> str:
        x, y, seg = ev.src, ev.dst, ev.segment
        sent = self.rel(x, number) - 1
        parts = [f"{x} has sent {self.span(x, 1, sent)}"]
        if seg.payload:
            parts[0] += f", the last {len(seg.payload)} in this segment"
        if seg.flags & ACK:
            got = self.rel(y, seg.ack) - 1
            parts.append(f"and received {self.span(y, 1, got)} from {y}")
        text = " ".join(parts) + f"; its FIN takes sequence number {self.show(x, number)}."
        text += (
            f" {x} closes first (the active closer): it will send no more data but can "
            f"still receive, and enters FIN-WAIT-1."
        )
        return text + self.isn_caveat(x, y)

    def ack_first_text(self, ev: SegmentEvent) -> str:
        x, y, seg = ev.src, ev.dst, ev.segment
        text = (
            f"the FIN consumed one sequence number, so {x} acknowledges {self.show(y, seg.ack)}; "
        )
        own = self.fins.get(x)
        if own is not None:
            # Simultaneous close: this side's FIN already took a number.
            text += (
                f"{x}'s own FIN took {self.show(x, own.number)}, so this ACK's seq is "
                f"{self.show(x, seg.seq)}. {y}→{x} is closed; both sides are in CLOSING "
                f"until their FINs are acknowledged."
            )
        elif seg.payload:
            text += (
                f"this segment also carries {len(seg.payload)} bytes. {y}→{x} is now closed: "
                f"the connection is half-closed; {x} may still send."
            )
        else:
            text += (
                f"a pure ACK consumes none. {y}→{x} is now closed: the connection is "
                f"half-closed; {x} may still send, and {y} still receives. {x} is in "
                f"CLOSE-WAIT, {y} in FIN-WAIT-2 once this arrives."
            )
        return text

    def second_fin_text(self, ev: SegmentEvent, theirs: _Fin, number: int) -> str:
        x, y = ev.src, ev.dst
        assert theirs.ack_seq is not None  # set when theirs.acked became true
        extra = seqnum.sub(number, theirs.ack_seq)
        if extra <= 0:
            why = (
                f"{x} sent no data after {y}'s FIN and its ACK consumed no number, so its "
                f"FIN is still seq {self.show(x, number)}."
            )
        else:
            why = (
                f"{x} sent {self.span(x, self.rel(x, theirs.ack_seq), extra)} during the "
                f"half-close, so its FIN has seq {self.show(x, number)}."
            )
        return why + f" {x} closes its direction too and enters LAST-ACK."

    def three_way_text(self, ev: SegmentEvent, number: int) -> str:
        x, y, seg = ev.src, ev.dst, ev.segment
        sent = self.rel(x, number) - 1
        return (
            f"{x} acknowledges {y}'s FIN (it consumed one number, so ack="
            f"{self.show(y, seg.ack)}) and closes its own direction in the same segment: "
            f"a three-segment close (Linux does this when the application closes before "
            f"its delayed ACK is due). {x} has sent {self.span(x, 1, sent)}, so its FIN "
            f"takes {self.show(x, number)}. {x} passes through CLOSE-WAIT to LAST-ACK at once."
        )

    def simultaneous_text(self, ev: SegmentEvent, theirs: _Fin, number: int) -> str:
        x, y, seg = ev.src, ev.dst, ev.segment
        sent = self.rel(x, number) - 1
        return (
            f"{x} closes before {y}'s FIN (seq {self.show(y, theirs.number)}) has reached "
            f"it: its ack is still {self.show(y, seg.ack)}, so it does not acknowledge that "
            f"FIN. The FINs cross: a simultaneous close (RFC 9293 §3.6, Figure 13). {x} has "
            f"sent {self.span(x, 1, sent)}, so its FIN takes {self.show(x, number)}. Each "
            f"side receives the other's FIN in FIN-WAIT-1, acknowledges it and goes "
            f"through CLOSING to TIME-WAIT."
        )

    def final_ack_text(self, ev: SegmentEvent) -> str:
        x, y, seg = ev.src, ev.dst, ev.segment
        own = self.fins.get(x)
        text = f"{y}'s FIN consumed one number, so {x} acknowledges {self.show(y, seg.ack)}"
        if own is not None:
            text += f" ({x}'s own FIN took {self.show(x, own.number)}, so its seq is {self.show(x, seg.seq)})"
        text += ". Both directions are released; "
        if own is not None and own.crossed:
            return text + (
                "both sides closed actively, so both wait in TIME-WAIT (2×MSL) before CLOSED."
            )
        return text + (
            f"{x}, the active closer, waits in TIME-WAIT (2×MSL) before CLOSED, so that it "
            f"can acknowledge {y}'s FIN again should this ACK be lost, and so that old "
            f"duplicates of this connection die out. {y} goes from LAST-ACK to CLOSED when "
            f"this ACK arrives."
        )

    def retransmitted_text(self, ev: SegmentEvent, mine: _Fin) -> str:
        x, y = ev.src, ev.dst
        text = (
            f"a retransmission of {x}'s FIN, with the same sequence number "
            f"{self.show(x, mine.number)}: a direction is closed by exactly one FIN, resent "
            f"until it is acknowledged (RFC 9293 §3.10.4)."
        )
        if any(c.fate == LOST for c in mine.copies):
            text += " An earlier copy was lost."
        elif mine.acked:
            text += f" {y} had acknowledged it, but that ACK evidently did not reach {x}."
        return text

    def reack_text(self, ev: SegmentEvent) -> str:
        x, y = ev.src, ev.dst
        text = f"{x} acknowledges {y}'s retransmitted FIN again (the same ack)."
        own = self.fins.get(x)
        if own is not None and own.first and not own.crossed:
            text += (
                f" {x} is in TIME-WAIT, and a retransmitted FIN restarts its 2×MSL timer "
                f"(RFC 9293 §3.10.7.4)."
            )
        return text

    def conflicting_text(self, ev: SegmentEvent, mine: _Fin, number: int) -> str:
        x = ev.src
        return (
            f"a second FIN from {x} at a different number ({self.show(x, number)}, not "
            f"{self.show(x, mine.number)}): each direction is closed by exactly one FIN, "
            f"so this is a protocol error (or a different connection on the same ports)."
        )

    def bare_fin_text(self, ev: SegmentEvent) -> str:
        return (
            "a FIN without the ACK bit is not a close. After the handshake every segment "
            "carries ACK, and in a synchronized state a segment without it is dropped "
            "(RFC 9293 §3.10.7.4, fifth step): this FIN is ignored, closes nothing and "
            "takes no sequence number. In real networks such a segment is regarded as "
            "malicious (it is the classic FIN-scan probe)."
        )

    def reset_text(self, ev: SegmentEvent) -> str:
        x, y, seg = ev.src, ev.dst, ev.segment
        text = (
            f"{x} aborts instead of releasing: a RST closes both directions at once, "
            f"discards any data still queued, is never acknowledged, and leaves nobody "
            f"in TIME-WAIT (RFC 9293 §3.10.5, §3.10.7.4)."
        )
        expected = self.last_ack.get(y)
        if expected is None:
            return text
        if seg.seq == expected:
            return text + (
                f" Its seq, {self.show(x, seg.seq)}, is exactly the next number {y} expects, "
                f"so {y} accepts it (RFC 5961 §3.2)."
            )
        return text + (
            f" Its seq, {self.show(x, seg.seq)}, is not the next number {y} expects "
            f"({self.show(x, expected)}): {y} should not reset on it but answer with a "
            f"challenge ACK (RFC 5961 §3.2)."
        )

    def isn_caveat(self, x: str, y: str) -> str:
        unknown = [
            s for s in (x, y) if (ep := self.trace.endpoints.get(s)) is None or ep.isn is None
        ]
        if not unknown:
            return ""
        names = " and ".join(unknown)
        return (
            f" (The ISN of {names} was not seen, so byte counts start at the first segment seen.)"
        )


def _fate(ev: SegmentEvent) -> str:
    if ev.fate == DELIVERED:
        return ""
    if ev.fate == LOST:
        text = f" This segment was lost on the way and never reached {ev.dst}"
        if ev.segment.flags & (FIN | SYN):
            return text + f"; {ev.src} will retransmit it with the same sequence number."
        return text + "."
    reason = f" ({ev.reason})" if ev.reason else ""
    return f" {ev.dst} {ev.fate} it{reason}."


def release_steps(
    trace: Trace, *, relative: bool = True, release: Mapping[str, Any] | None = None
) -> list[ReleaseStep]:
    """The segments of ``trace`` that make up its release (or abort), in
    order; ``release`` is the analyzer's classification, when there is one."""
    return _Walker(trace, relative, release).run()


def _classified(release: Mapping[str, Any]) -> str:
    """The analyzer's verdict as a sentence."""
    close = release["close"]
    text = f"The analyzer classifies this as {CLOSE_WORDS.get(close, close)}"
    if release.get("first_fin") in ("client", "server"):
        text += f", {release['first_fin']} closing first"
    if release.get("reset_by"):
        text += f", reset by the {release['reset_by']}"
    return text + "."


def release_summary(
    trace: Trace, *, relative: bool = True, release: Mapping[str, Any] | None = None
) -> str:
    """One paragraph: did the release complete, and if not, what is missing;
    with the analyzer's classification first when ``release`` is given."""
    walker = _Walker(trace, relative, release)
    steps = walker.run()
    final = trace.final_states()
    states = ", ".join(f"{name} {state}" for name, state in final.items())
    tail = f" Final states: {states}." if states else ""
    if release is not None:
        tail = " " + _classified(release) + tail
    if any(s.role == RESET for s in steps):
        return "The connection was reset, not released: no orderly close took place." + tail
    if not walker.fins:
        return "No FIN was seen: this trace does not contain a release." + tail
    missing: list[str] = []
    for name, fin in walker.fins.items():
        if not fin.acked:
            missing.append(
                f"{name}'s FIN (seq {walker.show(name, fin.number)}) was never acknowledged"
            )
    left, right = sides(trace)
    for name in (left, right):
        if name not in walker.fins and any(n != name for n in walker.fins):
            other = next(n for n in walker.fins if n != name)
            missing.append(
                f"{name} never sent its FIN: the connection stays half-closed "
                f"({other}→{name} is closed), {name} in CLOSE-WAIT until its application "
                f"closes — connections piling up in CLOSE-WAIT are the classic leak"
            )
    if missing:
        return "The release did not complete: " + "; ".join(missing) + "." + tail
    return "The release completed: both FINs were sent and acknowledged." + tail


def explain_release(
    trace: Trace,
    *,
    relative: bool = True,
    width: int = 78,
    release: Mapping[str, Any] | None = None,
) -> str:
    """The release of ``trace`` explained step by step, as the seed does;
    ``release`` is the analyzer's classification of the connection (its
    ``close``, ``first_fin``, ``reset_by``), used instead of judging again."""
    left, right = sides(trace)
    numbering = (
        "relative sequence numbers: ISN = 0, first data byte = 1"
        if relative
        else "raw sequence numbers"
    )
    heading = (
        f"Release of {endpoint_text(trace, left)} ⇄ {endpoint_text(trace, right)} ({numbering})"
    )
    out = [textwrap.fill(heading, width=width, break_long_words=False, break_on_hyphens=False), ""]
    steps = release_steps(trace, relative=relative, release=release)
    for i, step in enumerate(steps, 1):
        lead = f"{i}. [{step.role}] "
        out.append(
            textwrap.fill(
                step.sentence,
                width=width,
                initial_indent=lead,
                subsequent_indent=" " * len(f"{i}. "),
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    if steps:
        out.append("")
    out.append(
        textwrap.fill(
            release_summary(trace, relative=relative, release=release),
            width=width,
            break_long_words=False,
            break_on_hyphens=False,
        )
    )
    return "\n".join(out) + "\n"
