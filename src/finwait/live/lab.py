"""The network-namespace lab: one namespace holding one TUN device.

Owns creating, inspecting and removing the lab that every live run uses
(``finwait lab up|down|status``, and :class:`Lab` for tests): a network
namespace (default ``finwait``) with loopback up and a TUN device (default
``fw0``) whose kernel side is 198.18.0.1/24 and 2001:db8::1/64; finwait's own
addresses, 198.18.0.2 and 2001:db8::2, are routed through the TUN, so whatever
the kernel sends to them is read by finwait from the TUN file descriptor.
Everything is done over netlink with pyroute2, never by running ``ip``.
Addresses come from the benchmarking range (RFC 2544/RFC 6890, 198.18.0.0/15)
and the documentation prefix (RFC 3849, 2001:db8::/32) only.

The TUN device is made **persistent** (``TUNSETPERSIST``) when the lab comes
up, so it outlives the ``finwait lab up`` process and a later ``finwait serve``
attaches to it by name.  It belongs to the namespace and disappears with it.
A process does not have to live inside the namespace to use the lab: it enters
it only for the ``open()`` + ``TUNSETIFF`` of the TUN (:func:`open_tun`) or the
``socket()`` of a kernel peer (:func:`inside`), because a TUN file descriptor
and a socket stay bound to the namespace they were created in.  ``setns`` moves
only the calling thread, so a helper thread may do it while the event loop runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import ipaddress
import itertools
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType

from pyroute2 import IPRoute, netns

# linux/if_tun.h
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01  # we accept packets whose TCP checksum is left partial
TUN_F_TSO4 = 0x02  # ... and IPv4/IPv6 TCP super-packets up to 64 KB
TUN_F_TSO6 = 0x04
VNET_HDR_LEN = 10  # struct virtio_net_hdr (linux/virtio_net.h), no num_buffers
SIOCGIFFLAGS = 0x8913
IFF_RUNNING = 0x40  # operationally up: carrier, and the link watcher has run
# linux/if_addr.h: no duplicate address detection, so 2001:db8::1 is usable at once.
IFA_F_NODAD = 0x02
TUN_PATH = "/dev/net/tun"


class LabError(RuntimeError):
    """The lab cannot be created, used or removed; the message says why."""


@dataclass(frozen=True, slots=True)
class LabConfig:
    """Names and addresses of one lab.  The defaults are the documented lab."""

    netns: str = "finwait"
    tun: str = "fw0"
    kernel_v4: str = "198.18.0.1"
    prefix_v4: int = 24
    kernel_v6: str = "2001:db8::1"
    prefix_v6: int = 64
    finwait_v4: str = "198.18.0.2"
    finwait_v6: str = "2001:db8::2"
    mtu: int = 1500
    # The TUN's transmit queue (packets towards finwait).  Linux's default,
    # 500, overflows under a burst of connections while the engine works
    # through the first packets (1,500 connections: ~20,000 drops); 16,384
    # holds a burst of 1,500 (benchmarks/live_burst.py: drops start between
    # 1,500 and 3,000; the kernel recovers them, no reset up to 10,000).
    # Only queued packets take memory.
    txqlen: int = 16384

    def __post_init__(self) -> None:
        # The live rules: never any address outside the two lab ranges.
        for addr in (self.kernel_v4, self.finwait_v4, self.kernel_v6, self.finwait_v6):
            check_lab_address(addr)
        if not 1 <= len(self.tun) <= 15:  # IFNAMSIZ - 1
            raise LabError(f"TUN name {self.tun!r} must be 1 to 15 characters")
        if not 68 <= self.mtu <= 65535:
            raise LabError(f"MTU {self.mtu} out of range 68..65535")
        if not 1 <= self.txqlen <= 1_000_000:
            raise LabError(f"txqlen {self.txqlen} out of range 1..1000000")


_LAB_V4 = ipaddress.ip_network("198.18.0.0/15")
_LAB_V6 = ipaddress.ip_network("2001:db8::/32")


def check_lab_address(addr: str) -> None:
    """Raise :class:`LabError` unless ``addr`` is in 198.18.0.0/15 or 2001:db8::/32."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError as exc:
        raise LabError(f"{addr!r} is not an IP address") from exc
    net = _LAB_V4 if ip.version == 4 else _LAB_V6
    if ip not in net:
        raise LabError(f"{addr} is outside the lab ranges 198.18.0.0/15 and 2001:db8::/32")


@dataclass(slots=True)
class LabStatus:
    """What exists of a lab (``finwait lab status``)."""

    netns: str
    tun: str
    netns_exists: bool = False
    tun_exists: bool = False
    tun_up: bool = False  # administratively up (IFF_UP)
    carrier: bool = False  # a process holds the TUN open (IFLA_CARRIER)
    mtu: int | None = None
    txqlen: int | None = None
    # Packets the kernel could not queue for finwait (the TUN's transmit
    # queue was full): each is a loss the kernel's TCP must recover from.
    tx_dropped: int | None = None
    addresses: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.netns_exists and self.tun_exists and self.tun_up

    def to_json(self) -> dict[str, object]:
        return {
            "netns": self.netns,
            "tun": self.tun,
            "netns_exists": self.netns_exists,
            "tun_exists": self.tun_exists,
            "tun_up": self.tun_up,
            "carrier": self.carrier,
            "mtu": self.mtu,
            "txqlen": self.txqlen,
            "tx_dropped": self.tx_dropped,
            "addresses": self.addresses,
            "routes": self.routes,
            "pids": self.pids,
            "ready": self.ready,
        }


def check_prerequisites() -> None:
    """Raise :class:`LabError` with the reason when live networking is impossible."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run with sudo")
    if not os.path.exists(TUN_PATH):
        raise LabError(f"{TUN_PATH} is missing: load the tun module (modprobe tun)")
    if not os.path.exists("/proc/self/ns/net"):
        raise LabError("this kernel has no network namespaces (CONFIG_NET_NS)")


def netns_exists(name: str) -> bool:
    return name in netns.listnetns()


# Namespaces that lab_up() created in this process and lab_down() has not yet
# removed: what a test may check for leaks without listing /run/netns, which
# other processes change at any moment.
_made_here: set[str] = set()
_made_lock = threading.Lock()


def namespaces_made_here() -> frozenset[str]:
    """Namespaces created by :func:`lab_up` in this process and not yet removed."""
    with _made_lock:
        return frozenset(_made_here)


CLONE_NEWNET = 0x40000000  # linux/sched.h


def _create_netns(name: str) -> None:
    """Create namespace ``name`` (like ``ip netns add``) without forking.

    pyroute2's ``netns.create`` forks the calling process to ``unshare`` in the
    child and gives up after 2 s; forking a large multi-threaded process (a
    whole test suite, an event loop with helper threads) is slow under load
    and the child can block on a lock another thread held at fork time.
    ``unshare(CLONE_NEWNET)`` moves only the calling thread (unshare(2)), so a
    short-lived helper thread makes the namespace, bind-mounts it from
    ``/proc/thread-self/ns/net`` onto ``/run/netns/NAME`` and exits.  The file
    is created with ``O_EXCL``: an existing namespace is an error, never
    silently shared.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    failure: list[BaseException] = []

    def make() -> None:
        saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            if libc.unshare(CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
            try:
                netns.attach(name, "thread-self")
            except FileExistsError:
                raise
            except OSError:
                # The file was made but the mount failed: do not leave a
                # namespace name that is no namespace.
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(netns.NETNS_RUN_DIR, name))
                raise
            finally:
                netns.setns(saved)
        except BaseException as exc:  # reported to the caller's thread
            failure.append(exc)
        finally:
            os.close(saved)

    t = threading.Thread(target=make, name=f"netns-create-{name}")
    t.start()
    t.join()
    if failure:
        raise failure[0]


def _netlink(name: str) -> IPRoute:
    """An rtnetlink socket in namespace ``name``, opened by this thread from
    inside it: ``IPRoute(netns=...)`` would fork a child, and with its default
    ``O_CREAT`` flag re-create a namespace that was just removed."""
    with inside(name):
        return IPRoute()


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the body with the calling *thread* in namespace ``name``.

    Sockets and TUN descriptors created in the body stay in that namespace
    after the thread returns to where it was.
    """
    if not netns_exists(name):
        raise LabError(f"network namespace {name!r} does not exist (finwait lab up?)")
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        netns.setns(name, flags=0)  # flags=0: never create it by accident
        try:
            yield
        finally:
            netns.setns(saved)
    finally:
        os.close(saved)


def open_tun(name: str, tun: str, *, create: bool = False, offload: bool = False) -> int:
    """Open TUN device ``tun`` in namespace ``name``; return a non-blocking fd.

    ``IFF_TUN | IFF_NO_PI``: every read is one bare IPv4/IPv6 packet and every
    write must be one.  With ``create`` a missing device is created (and made
    persistent by :func:`lab_up`); without it, a missing device is an error
    rather than a fresh unconfigured one.

    With ``offload`` every packet is preceded by a 10-byte ``virtio_net_hdr``
    (``IFF_VNET_HDR``) and the kernel may hand over TCP super-packets of up to
    64 KB with the checksum left partial (``TUNSETOFFLOAD``), as it does to a
    virtual machine's tap: one read or write then carries many MTU-sized
    segments (Documentation/networking/tuntap.rst, linux/virtio_net.h).  The
    persistent device takes the flags and offloads of whoever attaches, so
    both are set explicitly every time.
    """
    with inside(name):
        if not create and not _link_exists(tun):
            raise LabError(f"TUN device {tun!r} does not exist in {name!r} (finwait lab up?)")
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", tun.encode(), flags))
            if offload:
                fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
            # Without the header the kernel must not hand us super-packets.
            offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 if offload else 0
            fcntl.ioctl(fd, TUNSETOFFLOAD, offloads)
        except OSError as exc:
            os.close(fd)
            if exc.errno == errno.EBUSY:
                raise LabError(f"TUN device {tun!r} is already in use by another process") from exc
            if exc.errno == errno.EINVAL:
                raise LabError(f"{tun!r} exists but is not a TUN device without PI") from exc
            raise LabError(f"cannot attach to TUN {tun!r}: {exc.strerror}") from exc
    return fd


def tun_running(name: str, tun: str) -> bool:
    """Whether TUN ``tun`` in namespace ``name`` is RUNNING.

    Attaching a descriptor raises the device's carrier, but the kernel
    attaches its transmit queue (the qdisc; until then what is sent to the
    device is dropped) only when its link watcher runs, a moment later, in
    a worker thread: a SYN written at once can be answered into the void,
    its SYN,ACK lost and the connection a retransmission timeout late (2 of
    20 fresh labs on a loaded machine).  The watcher sets the operational
    state in the same step, which SIOCGIFFLAGS reports as IFF_RUNNING."""
    with inside(name):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        try:
            ifr = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sH14x", tun.encode(), 0))
        except OSError:
            return False
    return bool(struct.unpack_from("16sH", ifr)[1] & IFF_RUNNING)


def _link_exists(ifname: str) -> bool:
    # if_nametoindex asks through a fresh socket, i.e. in the *thread's*
    # namespace; /sys/class/net would show the namespace /sys was mounted in.
    try:
        socket.if_nametoindex(ifname)
    except OSError:
        return False
    return True


def lab_up(cfg: LabConfig | None = None, *, exclusive: bool = False) -> LabStatus:
    """Create (or complete) the lab; running it twice changes nothing.

    With ``exclusive`` the namespace must not exist yet (a private lab never
    adopts a namespace someone else made or left behind)."""
    cfg = cfg or LabConfig()
    check_prerequisites()
    if exclusive or not netns_exists(cfg.netns):
        try:
            _create_netns(cfg.netns)
        except FileExistsError as exc:
            raise LabError(f"namespace {cfg.netns!r} already exists") from exc
        except OSError as exc:
            raise LabError(f"cannot create namespace {cfg.netns!r}: {exc}") from exc
        with _made_lock:
            _made_here.add(cfg.netns)
    with inside(cfg.netns):
        tun_exists = _link_exists(cfg.tun)
    if not tun_exists:
        fd = open_tun(cfg.netns, cfg.tun, create=True)
        try:
            fcntl.ioctl(fd, TUNSETPERSIST, 1)  # survives this fd; see module docstring
        finally:
            os.close(fd)
    with _netlink(cfg.netns) as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.link("set", index=lo, state="up")
        idx = ipr.link_lookup(ifname=cfg.tun)[0]
        ipr.link("set", index=idx, mtu=cfg.mtu, txqlen=cfg.txqlen)
        have = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=idx)}
        if (cfg.kernel_v4, cfg.prefix_v4) not in have:
            ipr.addr("add", index=idx, address=cfg.kernel_v4, prefixlen=cfg.prefix_v4)
        if (cfg.kernel_v6, cfg.prefix_v6) not in have:
            ipr.addr(
                "add", index=idx, address=cfg.kernel_v6, prefixlen=cfg.prefix_v6,
                flags=IFA_F_NODAD,
            )  # fmt: skip
        ipr.link("set", index=idx, state="up")
        # finwait's own addresses live behind the TUN: host routes through it.
        # (198.18.0.2 is also inside the /24, but the /32 says so explicitly and
        # keeps working if the prefix is narrowed.)
        for dst, plen, family in ((cfg.finwait_v4, 32, 2), (cfg.finwait_v6, 128, 10)):
            with contextlib.suppress(Exception):  # already there: idempotent
                ipr.route("replace", dst=dst, dst_len=plen, oif=idx, family=family)
    return lab_status(cfg)


def lab_status(cfg: LabConfig | None = None) -> LabStatus:
    cfg = cfg or LabConfig()
    st = LabStatus(cfg.netns, cfg.tun)
    if os.geteuid() != 0 or not netns_exists(cfg.netns):
        return st
    st.netns_exists = True
    st.pids = netns_pids(cfg.netns)
    with _netlink(cfg.netns) as ipr:
        found = ipr.link_lookup(ifname=cfg.tun)
        if not found:
            return st
        idx = found[0]
        link = ipr.get_links(idx)[0]
        st.tun_exists = True
        st.tun_up = bool(link["flags"] & 1)  # IFF_UP
        st.carrier = bool(link.get_attr("IFLA_CARRIER"))
        st.mtu = link.get("mtu")
        st.txqlen = link.get("IFLA_TXQLEN")
        stats = link.get("IFLA_STATS64")
        st.tx_dropped = stats["tx_dropped"] if stats else None
        st.addresses = [f"{a.get('address')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx)]
        for family in (2, 10):
            for r in ipr.get_routes(family=family, oif=idx, table=254):
                if r.get("dst"):
                    st.routes.append(f"{r.get('dst')}/{r['dst_len']}")
    return st


def tun_counters(cfg: LabConfig) -> dict[str, int]:
    """The TUN's packet counters, seen from the kernel: ``tx_*`` is towards
    finwait (``tx_dropped``: the transmit queue was full, finwait did not read
    fast enough), ``rx_*`` from finwait."""
    with _netlink(cfg.netns) as ipr:
        found = ipr.link_lookup(ifname=cfg.tun)
        if not found:
            raise LabError(f"TUN device {cfg.tun!r} does not exist in {cfg.netns!r}")
        link = ipr.get_links(found[0])[0]
    stats = link.get("IFLA_STATS64") or {}
    out = {
        k: int(stats.get(k, 0)) for k in ("tx_packets", "tx_dropped", "rx_packets", "rx_dropped")
    }
    out["txqlen"] = int(link.get("IFLA_TXQLEN") or 0)
    return out


def netns_pids(name: str) -> list[int]:
    """Processes whose network namespace is ``name``."""
    return sorted(netns.ns_pids().get(name, []))


def lab_down(cfg: LabConfig | None = None, *, kill_grace: float = 1.0) -> bool:
    """Remove the lab: stop its processes, then the namespace (and with it the
    TUN).  Returns False when there was nothing to remove."""
    cfg = cfg or LabConfig()
    check_prerequisites()
    if not netns_exists(cfg.netns):
        return False
    kill_netns_processes(cfg.netns, grace=kill_grace)
    # Delete the device explicitly: a TUN fd still open in some process
    # outside the namespace would otherwise keep the namespace alive.
    with contextlib.suppress(Exception), _netlink(cfg.netns) as ipr:
        found = ipr.link_lookup(ifname=cfg.tun)
        if found:
            ipr.link("del", index=found[0])
    try:
        netns.remove(cfg.netns)
    except OSError as exc:
        raise LabError(f"cannot remove namespace {cfg.netns!r}: {exc}") from exc
    with _made_lock:
        _made_here.discard(cfg.netns)
    return True


def kill_netns_processes(name: str, *, grace: float = 1.0) -> list[int]:
    """SIGTERM every process in namespace ``name``, SIGKILL survivors after ``grace``."""
    me = os.getpid()
    pids = [p for p in netns_pids(name) if p != me]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _alive(p)]
        if pids:
            time.sleep(0.02)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap our own children
        if done:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


_lab_counter = itertools.count(1)


class Lab:
    """A private lab for one test or benchmark: a uniquely named namespace,
    removed (with its processes) on exit.

    ``with Lab() as lab: fd = lab.open_tun()`` — ``lab.cfg`` has the names and
    addresses.
    """

    def __init__(
        self, name: str | None = None, tun: str = "fw0", mtu: int = 1500, txqlen: int = 16384
    ) -> None:
        if name is None:
            # The pid alone is not enough: pids are reused (pid_max may be
            # 32768), and a killed run leaves its namespace behind.
            name = f"fwt-{os.getpid()}-{next(_lab_counter)}-{os.urandom(3).hex()}"
        self.cfg = LabConfig(netns=name, tun=tun, mtu=mtu, txqlen=txqlen)

    @property
    def name(self) -> str:
        return self.cfg.netns

    def __enter__(self) -> Lab:
        before = namespaces_made_here()
        try:
            lab_up(self.cfg, exclusive=True)
        except BaseException:
            # __exit__ does not run when __enter__ fails: remove what this
            # call made (an existing namespace was refused, not made).
            if self.cfg.netns in namespaces_made_here() - before:
                lab_down(self.cfg)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lab_down(self.cfg)

    def open_tun(self) -> int:
        return open_tun(self.cfg.netns, self.cfg.tun)

    def inside(self) -> contextlib.AbstractContextManager[None]:
        return inside(self.cfg.netns)

    def status(self) -> LabStatus:
        return lab_status(self.cfg)
