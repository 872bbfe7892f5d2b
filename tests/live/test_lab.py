"""The lab itself, without the engine: namespace, TUN, addresses, routes, and
that the kernel's packets to finwait's address come out of the TUN fd."""

from __future__ import annotations

import asyncio
import os
import select
import socket

import dpkt
import pytest

from finwait.live.lab import (
    Lab,
    LabConfig,
    LabError,
    lab_status,
    lab_up,
    namespaces_made_here,
    open_tun,
    tun_running,
)
from finwait.live.streams import Stack

from .peers import SYN, Capture, kernel_socket

pytestmark = pytest.mark.live


def test_lab_up_is_idempotent_and_complete(lab: Lab) -> None:
    st = lab.status()
    assert st.ready
    assert sorted(st.addresses) == ["198.18.0.1/24", "2001:db8::1/64"]
    assert "198.18.0.2/32" in st.routes and "2001:db8::2/128" in st.routes
    # The queue towards finwait holds a burst (Linux's default 500 does not),
    # and its drops are reported.
    assert st.txqlen == 16384 and st.tx_dropped == 0
    assert st.to_json()["tx_dropped"] == 0
    again = lab_up(lab.cfg)  # second time: nothing changes, nothing fails
    assert sorted(again.addresses) == sorted(st.addresses)
    assert again.routes == st.routes


def test_a_private_lab_never_adopts_an_existing_namespace(lab: Lab) -> None:
    # pids are reused: a namespace left by a killed run must not be taken over
    # (and then removed) by a new run whose lab happens to get the same name.
    with pytest.raises(LabError, match="already exists"), Lab(name=lab.name):
        pass
    assert lab.status().ready  # the refused attempt removed nothing
    assert lab.name in namespaces_made_here()


def test_status_of_absent_lab() -> None:
    st = lab_status(LabConfig(netns="fw-does-not-exist"))
    assert not st.netns_exists and not st.ready


def test_addresses_outside_the_lab_ranges_are_refused() -> None:
    with pytest.raises(LabError, match="outside the lab ranges"):
        LabConfig(kernel_v4="192.168.1.100")
    with pytest.raises(LabError, match="outside the lab ranges"):
        LabConfig(finwait_v6="2001:db9::2")


def test_open_tun_of_a_missing_device_is_a_clear_error(lab: Lab) -> None:
    with pytest.raises(LabError, match="does not exist"):
        open_tun(lab.name, "nosuchtun0")


def _read_packet(fd: int) -> bytes:
    r, _, _ = select.select([fd], [], [], 3.0)
    assert r, "nothing came out of the TUN"
    return os.read(fd, 65536)


@pytest.mark.parametrize(
    ("family", "dst"), [(socket.AF_INET, "198.18.0.2"), (socket.AF_INET6, "2001:db8::2")]
)
def test_kernel_syn_comes_out_of_the_tun_and_our_rst_refuses_it(
    lab: Lab, family: int, dst: str
) -> None:
    fd = lab.open_tun()
    cap = Capture(lab)
    s = kernel_socket(lab, family)
    s.setblocking(False)
    try:
        with pytest.raises(BlockingIOError):
            s.connect((dst, 9))
        pkt = _read_packet(fd)
        while pkt[0] >> 4 != (4 if family == socket.AF_INET else 6) or (
            family == socket.AF_INET6 and pkt[6] != 6  # skip router/neighbour chatter
        ):
            pkt = _read_packet(fd)
        ip = dpkt.ip.IP(pkt) if family == socket.AF_INET else dpkt.ip6.IP6(pkt)
        syn = ip.data
        assert syn.flags == dpkt.tcp.TH_SYN and syn.dport == 9
        # Answer as a closed port does (RFC 9293 §3.10.7.1): RST,ACK ack=ISN+1,
        # built with dpkt, not with finwait's codec.
        rst = dpkt.tcp.TCP(sport=9, dport=syn.sport, seq=0, ack=syn.seq + 1,
                           flags=dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK, off=5, win=0)  # fmt: skip
        if family == socket.AF_INET:
            reply = dpkt.ip.IP(src=ip.dst, dst=ip.src, p=6, ttl=64, data=rst)
        else:
            reply = dpkt.ip6.IP6(
                src=ip.dst, dst=ip.src, nxt=6, hlim=64, data=rst, plen=len(bytes(rst))
            )
        rst.sum = 0
        os.write(fd, bytes(reply))
        select.select([], [s], [], 3.0)
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 111  # ECONNREFUSED
    finally:
        s.close()
        os.close(fd)
    pkts = cap.stop()
    kinds = [(p.out, p.flags) for p in pkts]
    assert (True, SYN) in kinds and (False, 0x14) in kinds, [str(p) for p in pkts]


def test_stack_opens_once_the_kernel_can_send_to_the_tun(lab: Lab) -> None:
    """Attaching the TUN raises its carrier; its transmit queue follows when
    the kernel's link watcher runs.  Stack.open returns only then, so the
    SYN,ACK to a first SYN is not dropped (it was in 2 of 20 fresh labs)."""

    async def main() -> bool:
        assert not tun_running(lab.cfg.netns, lab.cfg.tun)  # nobody attached
        async with Stack.open(lab.cfg.netns, lab.cfg.tun, linger=False):
            return tun_running(lab.cfg.netns, lab.cfg.tun)

    assert asyncio.run(main())
