"""Traffic windows: KDD-style aggregates computed online from raw flow records.

For each record, in stream (timestamp) order, over the last `seconds` of traffic (river's
TimeRolling) and the last `connections` flows: how many connections went to the same
destination host, how many of those were half-open (S0) or rejected (REJ), how many to the
same service, how many from the same source... The same object runs in training (replaying
the window in timestamp order) and in serving, so a record gets the same vector offline and
online. State starts empty in both; idle keys are evicted once their window has passed,
which changes no feature (an expired window is an empty one).

A record timestamped far ahead of the stream is refused: river's TimeRolling expires events
only when a newer one arrives, so after one record from the future every later record of its
host, service and source stayed in their windows (counts grew without bound, and the
windows' memory with them, until that time came). "Ahead" is measured from the latest
timestamp windowed and from this host's clock (after a gap in traffic, or at the start, only
the clock tells a real jump from a wrong one); a whole stream ahead of the clock (a replay, a
host clock behind) is followed once FOLLOW_AFTER of its records in a row ran ahead together.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import math
import time
from collections.abc import Mapping, Sequence

from river import stats, utils

from ..schema import FlowSchema

log = logging.getLogger(__name__)

# well-known destination ports -> service (the rest is "other")
PORT_SERVICES = {20: "ftp_data", 21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "dns", 80: "http",
                 110: "pop3", 123: "ntp", 143: "imap", 161: "snmp", 389: "ldap", 443: "https",
                 445: "smb", 465: "smtps", 587: "submission", 993: "imaps", 995: "pop3s",
                 1433: "mssql", 3306: "mysql", 3389: "rdp", 5432: "postgres", 6379: "redis",
                 8080: "http_alt", 8443: "https_alt"}

DERIVED = ("service", "conn_state", "host_count", "host_serror_rate", "host_rerror_rate",
           "host_same_srv_rate", "srv_count", "srv_serror_rate", "dst_host_count",
           "dst_host_same_srv_rate", "src_host_count")

_EPOCH = dt.datetime(1970, 1, 1)  # naive UTC: river compares with a naive start
# the last second a datetime holds (31 Dec 9999): a later (or negative) timestamp cannot be windowed
_MAX_TS = (dt.datetime(9999, 12, 31, 23, 59, 59) - _EPOCH).total_seconds()
# records in a row, each within max_ahead_s of the one before, all ahead of the clock: it is the
# stream that runs ahead (one device's clock is interleaved with the others' records)
FOLLOW_AFTER = 1000


def _rate(value: float) -> float:
    """A share in [0, 1]: river's rolling mean reverts old values and can land at -1e-16."""
    return 0.0 if value < 1e-12 else min(1.0, value)


def connection_state(protocol: str, flags: str) -> str:
    """Zeek/KDD-style state from the TCP flags seen in a flow."""
    if protocol != "tcp":
        return "SF"
    flags = flags.upper()
    if "R" in flags and "A" not in flags:
        return "REJ"
    if "S" in flags and "A" not in flags:
        return "S0"
    if "F" in flags:
        return "SF"
    if "R" in flags:
        return "RSTO"
    return "OTH"


class TrafficWindows:
    def __init__(self, seconds: float = 2.0, connections: int = 100, max_keys: int = 100_000,
                 max_ahead_s: float = 300.0, clock=time.time):
        self.seconds = seconds
        self.connections = connections
        self.max_keys = max_keys
        # the most a timestamp may run ahead of both the latest one windowed and this host's
        # clock (which a stream produced faster than real time passes step by step)
        self.max_ahead_s = max_ahead_s
        self._clock = clock
        self._latest = -math.inf  # the latest timestamp windowed
        self._ahead_run, self._ahead_ts = 0, -math.inf  # records refused in a row as ahead, the last one's ts
        self._period = dt.timedelta(seconds=seconds)
        # last ts: the latest seen for the key (a late record must not make a busy key look idle)
        self._host: dict[str, list] = {}  # dst -> [TimeRolling(serror), TimeRolling(rerror), last ts]
        self._host_srv: dict[tuple, list] = {}  # (dst, service) -> [TimeRolling, last ts]
        self._srv: dict[str, list] = {}  # service -> [TimeRolling(serror), last ts]
        self._src: dict[str, list] = {}  # src -> [TimeRolling, last ts]
        self._recent: collections.deque = collections.deque()  # last N (dst, service)
        self._recent_dst: collections.Counter = collections.Counter()
        self._recent_dst_srv: collections.Counter = collections.Counter()
        self._seen = 0

    @classmethod
    def from_schema(cls, schema: FlowSchema) -> "TrafficWindows | None":
        return cls(**schema.windows) if schema.windows is not None else None

    def _rolling(self):
        return utils.TimeRolling(stats.Mean, period=self._period)

    def apply(self, records: Sequence) -> tuple[list[dict], list[int], list[tuple[int, str | None, str]]]:
        """Copies of the valid records with the derived fields added, their positions in
        `records`, and (row, field, reason) for the records that cannot be windowed."""
        out, rows, rejected = [], [], []
        for row, record in enumerate(records):
            problem = self._check(record)
            if problem is not None:
                rejected.append((row, *problem))
                continue
            out.append(self._one(record))
            rows.append(row)
        return out, rows, rejected

    def _check(self, r) -> tuple[str | None, str] | None:
        if not isinstance(r, Mapping):
            return None, f"record is not an object (got {type(r).__name__})"
        ts = r.get("ts")
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
            return "ts", "missing field" if ts is None else f"expected a finite number of seconds, got {ts!r:.40}"
        if not 0 <= ts <= _MAX_TS:  # (it raised OverflowError in the windows, which stopped serve)
            return "ts", f"value {ts:g} is out of range: seconds since 1970 up to {_MAX_TS:.0f} (year 9999)"
        if ts > self._latest + self.max_ahead_s:  # the clock is read only at the start and on a jump
            ahead = ts - max(self._latest, self._clock())
            if ahead > self.max_ahead_s and not self._stream_runs_ahead(ts):
                return "ts", (f"value {ts:.0f} is out of range: {ahead:,.0f} s ahead of the stream's latest time "
                              f"and of this host's clock (windows.max_ahead_s: {self.max_ahead_s:g})")
        for name in ("src_addr", "dst_addr"):
            if not isinstance(r.get(name), str) or not r.get(name):
                return name, "missing field" if r.get(name) is None else "expected an address string"
        port = r.get("dst_port")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            return "dst_port", "missing field" if port is None else f"expected a port 0-65535, got {port!r:.40}"
        if not isinstance(r.get("protocol"), str):
            return "protocol", "missing field" if r.get("protocol") is None else "expected a string"
        flags = r.get("tcp_flags", "")
        if flags is not None and not isinstance(flags, str):
            return "tcp_flags", "expected a string of flag letters"
        return None

    def _stream_runs_ahead(self, ts: float) -> bool:
        """One more record ahead; True (follow the stream) when FOLLOW_AFTER came in a row."""
        together = abs(ts - self._ahead_ts) <= self.max_ahead_s
        self._ahead_run, self._ahead_ts = (self._ahead_run + 1 if together else 1), ts
        if self._ahead_run < FOLLOW_AFTER:
            return False
        log.warning("the last %d records all ran %.0f s or more ahead of this host's clock: following the "
                    "stream's time (a replay, or this host's clock is behind)", self._ahead_run, self.max_ahead_s)
        return True

    def _one(self, r: Mapping) -> dict:
        ts = float(r["ts"])
        self._latest = max(self._latest, ts)
        self._ahead_run = 0
        t = _EPOCH + dt.timedelta(seconds=ts)
        dst, src, proto = r["dst_addr"], r["src_addr"], r["protocol"]
        service = PORT_SERVICES.get(r["dst_port"], "other") if proto in ("tcp", "udp") else proto
        state = connection_state(proto, r.get("tcp_flags") or "")
        serror, rerror = float(state == "S0"), float(state == "REJ")

        host = self._host.get(dst)
        if host is None:
            host = self._host[dst] = [self._rolling(), self._rolling(), t]
        host[0].update(serror, t=t)
        host[1].update(rerror, t=t)
        host[2] = max(host[2], t)
        host_srv = self._host_srv.get((dst, service))
        if host_srv is None:
            host_srv = self._host_srv[(dst, service)] = [self._rolling(), t]
        host_srv[0].update(1.0, t=t)
        host_srv[1] = max(host_srv[1], t)
        srv = self._srv.get(service)
        if srv is None:
            srv = self._srv[service] = [self._rolling(), t]
        srv[0].update(serror, t=t)
        srv[1] = max(srv[1], t)
        from_src = self._src.get(src)
        if from_src is None:
            from_src = self._src[src] = [self._rolling(), t]
        from_src[0].update(1.0, t=t)
        from_src[1] = max(from_src[1], t)

        # last N connections (all hosts): a deque with counters, O(1) per record
        self._recent.append((dst, service))
        self._recent_dst[dst] += 1
        self._recent_dst_srv[(dst, service)] += 1
        if len(self._recent) > self.connections:
            old_dst, old_srv = self._recent.popleft()
            self._recent_dst[old_dst] -= 1
            self._recent_dst_srv[(old_dst, old_srv)] -= 1
            if not self._recent_dst[old_dst]:
                del self._recent_dst[old_dst]
            if not self._recent_dst_srv[(old_dst, old_srv)]:
                del self._recent_dst_srv[(old_dst, old_srv)]

        host_n = host[0].obj.n
        dst_n = self._recent_dst[dst]
        out = dict(r)
        out.update(service=service, conn_state=state, host_count=host_n,
                   host_serror_rate=_rate(host[0].get()), host_rerror_rate=_rate(host[1].get()),
                   host_same_srv_rate=host_srv[0].obj.n / host_n, srv_count=srv[0].obj.n,
                   srv_serror_rate=_rate(srv[0].get()), dst_host_count=float(dst_n),
                   dst_host_same_srv_rate=self._recent_dst_srv[(dst, service)] / dst_n,
                   src_host_count=from_src[0].obj.n)
        self._seen += 1
        if self._seen % 10_000 == 0:
            self._evict(t)
        return out

    def _evict(self, now: dt.datetime) -> None:
        """Drop keys idle for longer than the window (their windows are empty anyway)."""
        horizon = now - self._period
        for table, last in ((self._host, 2), (self._host_srv, 1), (self._srv, 1), (self._src, 1)):
            for key in [k for k, v in table.items() if v[last] < horizon]:
                del table[key]
            while len(table) > self.max_keys:  # still too many live keys: oldest first
                del table[min(table, key=lambda k: table[k][last])]

    @property
    def n_keys(self) -> int:
        return len(self._host) + len(self._host_srv) + len(self._srv) + len(self._src)
