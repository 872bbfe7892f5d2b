"""What became of an arriving segment: ``Host.receive`` / ``Connection.receive``
return a :class:`Verdict`.

A verdict is ACCEPTED (processed by §3.10.7.4: its ACK, text or FIN taken,
or held out of order), RESET (an acceptable RST ended the connection), or a
reason the segment was discarded.  Discarded segments may still have been
answered — with an ACK (the §3.10.7.4 step-one ACK, RFC 5961 challenge
ACKs) or a RST (§3.10.7.1, SA-4.3) — but changed nothing in the TCB.  Every
verdict other than ACCEPTED is counted under its value in the connection's
and the Host's counters, so a counter and the verdict are one name; the
simulator marks a segment "dropped" in the Trace from ``Verdict.dropped``.
"""

from __future__ import annotations

import enum


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    RESET = "rst_received"  # SA-2.x: an acceptable RST
    SYN_RETRANSMITTED = "syn_retransmitted"  # SYN-RECEIVED: our SYN,ACK resent
    # Discarded by a connection (RFC 9293 §3.10.7.3, §3.10.7.4)
    SEGMENT_IN_CLOSED = "segment_in_closed"
    SEGMENT_IN_LISTEN = "segment_in_listen"
    BAD_ACK_SYN_SENT = "bad_ack_syn_sent"  # SA-SS-1, answered with RST
    RST_WITHOUT_ACK_SYN_SENT = "rst_without_ack_syn_sent"
    NO_SYN_IN_SYN_SENT = "no_syn_in_syn_sent"  # SA-SS-6
    FIN_WITHOUT_ACK = "fin_without_ack"  # SA-4.1: the seed's bare FIN
    NO_ACK = "no_ack"  # SA-4.1
    PAWS_REJECTED = "paws_rejected"  # RFC 7323 §5.3, answered with ACK
    UNACCEPTABLE_SEGMENT = "unacceptable_segment"  # SA-1.2, answered with ACK
    RST_OUT_OF_WINDOW = "rst_out_of_window"  # SA-2.1
    RST_IN_TIME_WAIT_IGNORED = "rst_in_time_wait_ignored"  # RFC 1337, TW-4
    CHALLENGE_ACK_RST = "challenge_ack_rst"  # RFC 5961 §3.2, SA-2.3
    CHALLENGE_ACK_SYN = "challenge_ack_syn"  # RFC 5961 §4, SA-3.2
    SYN_IN_SYN_RECEIVED = "syn_in_syn_received"  # SA-3.1: back to LISTEN
    BAD_ACK_SYN_RECEIVED = "bad_ack_syn_received"  # SA-4.3, answered with RST
    ACK_OF_UNSENT_DATA = "ack_of_unsent_data"  # RFC 5961 §5.2, challenge ACK
    ACK_TOO_OLD = "ack_too_old"  # RFC 5961 §5.2, challenge ACK
    # Discarded by the Host (§3.10.7.1, §3.10.7.2, RFC 4987)
    PARSE_ERROR = "parse_error"
    NOT_FOR_US = "not_for_us"
    RST_FOR_NO_CONNECTION = "rst_for_no_connection"  # SA-CL-2
    NO_MATCHING_CONNECTION = "no_matching_connection"  # SA-CL-3/4, answered with RST
    RST_TO_LISTENER = "rst_to_listener"  # SA-LI-1
    ACK_TO_LISTENER = "ack_to_listener"  # SA-LI-2, answered with RST
    NO_SYN_TO_LISTENER = "no_syn_to_listener"
    SYN_QUEUE_FULL = "syn_queue_full"  # answered with a SYN cookie when enabled
    ACCEPT_QUEUE_FULL = "accept_queue_full"
    CONNECTION_TABLE_FULL = "connection_table_full"

    @property
    def dropped(self) -> bool:
        """The segment was discarded (whatever answer it drew)."""
        return self not in _TAKEN

    @property
    def reason(self) -> str:
        """The reason shown in a Trace: "fin without ack", ..."""
        return _REASONS.get(self) or self.value.replace("_", " ")


_TAKEN = frozenset({Verdict.ACCEPTED, Verdict.RESET, Verdict.SYN_RETRANSMITTED})
_REASONS = {Verdict.RST_IN_TIME_WAIT_IGNORED: "rst in time-wait"}
