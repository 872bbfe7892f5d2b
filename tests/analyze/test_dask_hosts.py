"""``--dask tcp://…`` on a cluster of separate hosts: a ``dask scheduler``
and two ``dask worker`` processes, each in a network namespace of its own
(one Ethernet, 198.18.0.0/15), and ``finwait analyze`` run as a user would,
from the scheduler's host.  Nothing here is a LocalCluster: the workers are
not children of finwait, no spool directory is shared with them, and every
piece and line travels over TCP between the namespaces.  The capture is
read from a filesystem all the hosts see (as on a cluster's shared
filesystem), and by URL from a fourth host, an HTTP server that answers
range requests (as an object store does; fsspec's ``http`` backend).

The output must be byte for byte the sequential run's."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as papq
import pytest

from .netlab import hosts
from .test_chunks import rotate_at
from .test_jsonl import zoo

pytest.importorskip("distributed")

PORT = 8786
HTTP_PORT = 8080

# An HTTP server for the files of a directory that answers byte-range
# requests (http.server does not): how fsspec reads a remote file.
_SERVER = """
import http.server, io, os, re, sys


class Ranges(http.server.SimpleHTTPRequestHandler):
    def send_head(self):
        m = re.fullmatch(r"bytes=(\\d+)-(\\d*)", self.headers.get("Range", ""))
        if m is None:
            return super().send_head()
        try:
            with open(self.translate_path(self.path), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                lo, hi = int(m[1]), min(int(m[2] or size - 1), size - 1)
                f.seek(lo)
                body = f.read(max(0, hi - lo + 1))
        except OSError:
            self.send_error(404)
            return None
        if lo >= size:
            self.send_error(416)
            return None
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {lo}-{hi}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def log_message(self, *args):
        pass


def handler(*a):
    return Ranges(*a, directory=sys.argv[1])


http.server.ThreadingHTTPServer((sys.argv[2], int(sys.argv[3])), handler).serve_forever()
"""

# Run in the scheduler's namespace: wait for the two workers, then report
# each worker's address and whether finwait's tasks module is loaded there.
_WORKERS = """
import json, sys
from distributed import Client

def loaded():
    import sys
    return "finwait.analyze.dask" in sys.modules

with Client(sys.argv[1], timeout=60) as c:
    c.wait_for_workers(2, timeout=60)
    print(json.dumps(c.run(loaded)))
"""


def _in(ns: str, *cmd: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], text=True, **kw)  # type: ignore[call-overload, no-any-return]


def _run(ns: str, *cmd: str) -> str:
    proc = _in(ns, *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    return out


def _workers(ns: str, address: str) -> dict[str, bool]:
    got: dict[str, bool] = json.loads(_run(ns, sys.executable, "-c", _WORKERS, address))
    return got


@pytest.mark.usefixtures("live_ok")
def test_cluster_of_three_hosts(tmp_path: Path) -> None:
    data = zoo(12, 400)
    path = tmp_path / "z.pcap"
    path.write_bytes(data)
    files = rotate_at(data, [0.3, 0.6], tmp_path)
    finwait = [sys.executable, "-m", "finwait", "analyze"]
    chunks = ["--chunk-mb", f"{len(data) / 7 / 1e6:.4f}"]  # (7 chunks)
    want = {
        mode: subprocess.run([*finwait, mode, str(path)], capture_output=True, text=True,
                             check=True).stdout
        for mode in ("--json", "--csv")
    }  # fmt: skip
    want_set = subprocess.run([*finwait, "--json", "--set", *map(str, files)],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
    procs: list[subprocess.Popen[str]] = []
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    with hosts(4) as ((sched_ns, sched), (w1_ns, w1), (w2_ns, w2), (store_ns, store)):
        address = f"tcp://{sched}:{PORT}"
        try:
            procs.append(_in(store_ns, sys.executable, "-c", _SERVER, str(tmp_path), store,
                             str(HTTP_PORT), **quiet))  # fmt: skip
            procs.append(_in(sched_ns, sys.executable, "-m", "dask", "scheduler", "--host", sched,
                             "--port", str(PORT), "--no-dashboard", **quiet))  # fmt: skip
            for ns, host in ((w1_ns, w1), (w2_ns, w2)):
                procs.append(_in(ns, sys.executable, "-m", "dask", "worker", address, "--host", host,
                                 "--nthreads", "1", "--no-dashboard", **quiet))  # fmt: skip
            time.sleep(1)  # (the scheduler listening before the first Client connects)
            before = _workers(sched_ns, address)
            # Two workers, at the two other hosts' addresses; finwait has not
            # run there yet.
            assert sorted(a.split("//")[1].rsplit(":", 1)[0] for a in before) == sorted([w1, w2])
            assert not any(before.values())
            dask = ["--dask", address, *chunks]
            for mode in ("--json", "--csv"):
                got = _run(sched_ns, *finwait, mode, *dask, str(path))
                assert got == want[mode]
            got_set = _run(sched_ns, *finwait, "--json", *dask, "--set", *map(str, files))
            assert got_set == want_set
            # By URL: each worker reads its chunks from the store itself.
            url = f"http://{store}:{HTTP_PORT}/{path.name}"
            assert _run(sched_ns, *finwait, "--json", *dask, url) == want["--json"]
            urls = [f"http://{store}:{HTTP_PORT}/{f.name}" for f in files]
            set_urls = _run(sched_ns, *finwait, "--json", *dask, "--set", *urls)
            assert set_urls == _run(sched_ns, *finwait, "--json", "--set", *urls)
            assert set_urls.replace(f"http://{store}:{HTTP_PORT}/", str(tmp_path) + "/") == want_set
            # The connection table through the merges (every worker's
            # tracker to the scheduler's host): Parquet, as the sequential run.
            pq = tmp_path / "dask.parquet"
            _run(sched_ns, *finwait, "--parquet", str(pq), *dask, str(path))
            _run(sched_ns, *finwait, "--parquet", str(tmp_path / "seq.parquet"), str(path))
            table = papq.read_table(pq)
            assert table.num_rows > 300
            assert table.equals(papq.read_table(tmp_path / "seq.parquet"))
            # Both workers ran finwait's tasks.
            assert all(_workers(sched_ns, address).values())
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    assert want["--json"].count("\n") > 300  # (some 4-tuples reused: 376 connections)
