"""Engine tunables.  Defaults follow the RFCs, and Linux where a peer meets it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Config:
    mss: int = 1460  # our receive MSS, sent on SYN (RFC 9293 §3.7.1)
    default_peer_mss: int = 536  # when the peer's SYN has none (RFC 9293 §3.7.1, MUST-15)
    recv_buffer: int = 262_144  # bytes; RCV.WND is its free space
    send_buffer: int = 262_144  # bytes the user may queue ahead of SND.UNA
    window_scaling: bool = True  # RFC 7323 §2
    timestamps: bool = True  # RFC 7323 §3
    sack_permitted: bool = True  # RFC 2018 SACK; received blocks drive RFC 6675 recovery
    nagle: bool = False
    delayed_ack: bool = True  # RFC 9293 §3.8.6.3, RFC 1122 §4.2.3.2
    delayed_ack_timeout: float = 0.040  # Linux TCP_DELACK_MIN; RFC bound is 0.5 s
    msl: float = 30.0  # TIME-WAIT lasts 2*MSL = 60 s, Linux's TCP_TIMEWAIT_LEN
    rto_initial: float = 1.0  # RFC 6298 §2.1
    rto_min: float = 0.2  # Linux TCP_RTO_MIN (RFC 6298 says 1 s; see docs)
    rto_max: float = 120.0  # Linux TCP_RTO_MAX
    syn_retries: int = 6  # Linux tcp_syn_retries
    data_retries: int = 15  # Linux tcp_retries2 (R2)
    fin_wait_2_timeout: float | None = 60.0  # after close(discard=True): Linux tcp_fin_timeout
    user_timeout: float | None = None  # RFC 9293 §3.8.3 USER TIMEOUT
    congestion_control: str = "newreno"  # a name in congestion.ALGORITHMS
    initial_window_segments: int | None = None  # None: RFC 5681 §3.1 formula; Linux: 10
    max_ooo_segments: int = 256  # bound on held out-of-order segments (SHLD-31)
    keepalive: float | None = None  # idle seconds before a keep-alive probe
    challenge_ack_interval: float = 0.5  # per-connection limit, Linux tcp_invalid_ratelimit
    abort_on_close_with_unread: bool = True  # Linux tcp_close(): RFC 2525 §2.17
    rfc1337: bool = True  # ignore RST in TIME-WAIT
    # Header prediction (RFC 7323 Appendix D): a shortcut past §3.10.7.4 steps
    # one to four for the common in-order segment.  Off gives the same
    # segments, states and counters, only slower (tests/tcp/test_differential.py).
    header_prediction: bool = True
    # The largest data segment _push builds, when the device cuts segments to
    # the MSS itself (TSO/GSO: a TUN with offload); None: SMSS.  Rounded down
    # to a multiple of SMSS, so the device's cut gives full-sized segments.
    send_size: int | None = None
    # Linux's quick-ACK mode (tcp_in_quickack_mode(), TCP_MAX_QUICKACKS = 16):
    # the first N data segments, and a FIN, are ACKed at once unless the
    # connection is interactive ("pingpong": we sent data within the delayed-
    # ACK time of receiving some).  0: the RFC's delayed ACK from the start.
    quick_acks: int = 0
    window_scale: int | None = None  # shift offered on SYN; None: the least that covers recv_buffer
    # An abort's RST carries ACK and RCV.NXT, as Linux's tcp_send_active_reset();
    # False: RFC 9293 §3.10.5's <SEQ=SND.NXT><CTL=RST>.
    rst_ack: bool = False
    # Pacing (CC-16), off by default: each piece of data segments leaves no sooner than
    # its length at Linux's pacing rate after the one before (once ten have
    # gone), the rate cwnd*SMSS/SRTT times pacing_ss_ratio % while cwnd is
    # below half ssthresh, pacing_ca_ratio % after (Linux
    # tcp_update_pacing_rate(), as the fq queueing discipline applies it).
    pacing: bool = False
    pacing_ss_ratio: int = 200  # net.ipv4.tcp_pacing_ss_ratio
    pacing_ca_ratio: int = 120  # net.ipv4.tcp_pacing_ca_ratio
    pacing_min_segs: int = 2  # net.ipv4.tcp_min_tso_segs: the least segments a paced piece holds
    # Loss recovery as Linux runs it (tcp_recovery=1, tcp_early_retrans=3;
    # ``rack.py``): with SACK, RACK detects loss by time (RFC 8985 §6) and TLP
    # probes the tail of a flight (§7); without, DupAcks are counted as
    # Linux's tcp_is_reno() does (CC-15); either way PRR paces cwnd down to
    # ssthresh in recovery (RFC 6937).  TLP and PRR work on RACK's transmit
    # log, so they need ``rack``.  Off: RFC 6675 / RFC 6582 recovery.
    rack: bool = False
    tlp: bool = False
    prr: bool = False
    # Grow cwnd only while it is used (Linux tcp_is_cwnd_limited(), LX-16):
    # a burst filled it this round, or, in slow start, it is below twice the
    # most segments out.  Off: every ACK of new data grows it (RFC 5681).
    cwnd_validate: bool = False
    # Linux's segment test (tcp_sequence(), tcp_data_queue()) where a segment
    # reaches past the right edge of the receive window.  RFC 9293
    # §3.10.7.4 accepts the part in the window and trims the rest (SA-1.5).
    # over_window_when_empty (LX-14): a segment starting in the window (or at
    # its right edge) is taken whole when nothing unread waits in the receive
    # queue, and dropped whole (with an ACK) when something does.
    # fin_beyond_window (LX-15): a FIN that is all that lies beyond the window
    # is accepted, so a bare FIN at RCV.NXT enters a zero window.
    over_window_when_empty: bool = False
    fin_beyond_window: bool = False
    # RTO = SRTT + max(4·RTTVAR, rto_min), Linux's __tcp_set_rto(), where RFC
    # 6298 §2 takes max(SRTT + 4·RTTVAR, rto_min) (D-11).
    rto_linux: bool = False
    # Linux's scheduler tick (CONFIG_HZ): with it the retransmission timer
    # and the tail-loss probe fire as Linux's do, on a tick and in the timer
    # wheel's bucket (:func:`timers.tick_expiry`); None: at the exact time.
    # The Linux profile takes 1000, what the upstream packetdrill scripts
    # assume; Config.linux(hz=250) matches a CONFIG_HZ=250 kernel.
    hz: int | None = None

    @classmethod
    def linux(cls, **changes: object) -> Config:
        """The Linux profile: what a Linux peer does where the RFCs leave a
        choice — quick ACKs at connection start, an initial window of ten
        segments (RFC 6928), CUBIC with HyStart++ (RFC 9438, RFC 9406; byte
        counting in slow start, RFC 3465, as Linux), RST,ACK on an abort,
        RACK-TLP and PRR for loss recovery (without SACK, Linux's DupAck
        counting with PRR), Linux's test of segments that
        reach past the receive window.  Used by ``finwait script`` unless
        ``--profile rfc``."""
        base: dict[str, object] = {
            "quick_acks": 16,
            "initial_window_segments": 10,
            "rst_ack": True,
            "over_window_when_empty": True,
            "fin_beyond_window": True,
            "rto_linux": True,
            "hz": 1000,
            "congestion_control": "cubic-linux",
            "rack": True,
            "tlp": True,
            "prr": True,
            "cwnd_validate": True,
        }
        base.update(changes)
        return cls(**base)  # type: ignore[arg-type]
