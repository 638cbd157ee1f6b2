"""Traffic windows: the derived netflow features, their expiry, and offline/online equality."""

import numpy as np
import pytest

from arnstream.features import RecordEncoder
from arnstream.features.pipeline import FeaturePipeline, derive
from arnstream.features.windows import FOLLOW_AFTER, TrafficWindows, connection_state
from arnstream.schema import FlowSchema
from arnstream.stream.netflow_sim import NetflowSimulator


def flow(ts, dst="10.1.0.10", port=80, flags="SAF", src="10.0.0.2", proto="tcp", **extra):
    return {"flow_id": f"f{ts}", "ts": ts, "src_addr": src, "dst_addr": dst, "src_port": 40000,
            "dst_port": port, "protocol": proto, "tcp_flags": flags, "duration": 0.1, "bytes_out": 100.0,
            "bytes_in": 200.0, "packets_out": 1.0, "packets_in": 1.0, **extra}


@pytest.mark.parametrize("proto,flags,state", [("tcp", "S", "S0"), ("tcp", "SR", "REJ"), ("tcp", "SAF", "SF"),
                                               ("tcp", "SAR", "RSTO"), ("tcp", "SA", "OTH"), ("udp", "", "SF")])
def test_connection_state(proto, flags, state):
    assert connection_state(proto, flags) == state


def test_counts_and_rates_over_the_time_window():
    w = TrafficWindows(seconds=2.0, connections=3)
    records = [flow(100.0), flow(100.5, flags="S"), flow(101.0, port=443, flags="SR"),
               flow(101.2, dst="10.1.0.11"), flow(103.0)]
    out, rows, rejected = w.apply(records)
    assert rows == [0, 1, 2, 3, 4] and rejected == []
    third = out[2]  # 3 connections to 10.1.0.10 within 2 s: one S0, one REJ, one https
    assert (third["host_count"], third["service"], third["conn_state"]) == (3, "https", "REJ")
    assert third["host_serror_rate"] == pytest.approx(1 / 3)
    assert third["host_rerror_rate"] == pytest.approx(1 / 3)
    assert third["host_same_srv_rate"] == pytest.approx(1 / 3)
    assert third["srv_count"] == 1 and third["src_host_count"] == 3
    assert (out[3]["host_count"], out[3]["src_host_count"]) == (1, 4)
    # count window of 3 connections: 10.1.0.10 appears twice among the last three
    assert out[3]["dst_host_count"] == 1 and out[4]["dst_host_count"] == 2
    last = out[4]  # at t=103 the flows of t <= 101 have left the 2 s window
    assert last["host_count"] == 1 and last["host_serror_rate"] == 0.0 and last["src_host_count"] == 2


def test_records_that_cannot_be_windowed_are_rejected_with_the_field():
    w = TrafficWindows()
    bad = [flow(1.0, dst_port=None), {"ts": "soon"}, flow(2.0, dst=""), "text", flow(3.0)]
    bad[0]["dst_port"] = 70000
    _, rows, rejected = w.apply(bad)
    assert rows == [4]
    assert [(r, f) for r, f, _ in rejected] == [(0, "dst_port"), (1, "ts"), (2, "dst_addr"), (3, None)]


@pytest.mark.parametrize("ts", [1e12, 1e308, -1.0])  # past year 9999 (or before 1970): OverflowError before
def test_a_timestamp_no_date_can_hold_is_rejected_and_the_rest_windowed(ts):
    w = TrafficWindows()
    out, rows, rejected = w.apply([flow(1.0), flow(ts), flow(2.0)])
    assert rows == [0, 2] and [(r, f) for r, f, _ in rejected] == [(1, "ts")]
    assert "out of range" in rejected[0][2] and out[1]["host_count"] == 2


def test_a_timestamp_far_ahead_is_rejected_and_the_windows_stay_as_without_it():
    # before: river's TimeRolling expires events only when a newer one arrives, so after one
    # record from 2065 every later record of its service stayed in the window (srv_count 72 -> 2,569
    # after 30,000 records, and growing)
    records, _ = NetflowSimulator(seed=3, rate=500.0, start=0.0).batch(6000)
    clean = TrafficWindows(clock=lambda: 0.0)
    expected, _, _ = clean.apply(records)
    skewed = TrafficWindows(clock=lambda: 0.0)
    out, rows, rejected = skewed.apply(records[:100] + [dict(records[100], ts=3e9)] + records[100:])
    assert [(r, f) for r, f, _ in rejected] == [(100, "ts")] and "ahead" in rejected[0][2]
    assert len(rows) == len(records) and out == expected
    held = [sum(len(v[0]._timestamps) for v in w._srv.values()) for w in (clean, skewed)]
    assert held[0] == held[1]


def test_the_host_clock_bounds_the_first_record_and_a_fast_stream_passes_step_by_step():
    w = TrafficWindows(max_ahead_s=300.0, clock=lambda: 1000.0)
    _, rows, rejected = w.apply([flow(1301.0), flow(1299.0)])
    assert rows == [1] and [(r, f) for r, f, _ in rejected] == [(0, "ts")]
    # produced faster than real time (a simulator, a replay): an hour ahead of the clock, in steps
    fast, _ = NetflowSimulator(seed=4, rate=1.0, start=1000.0).batch(3600)
    _, rows, rejected = TrafficWindows(max_ahead_s=300.0, clock=lambda: 1000.0).apply(fast)
    assert rejected == [] and fast[-1]["ts"] > 3000.0


def test_a_stream_ahead_of_the_clock_is_followed_and_one_device_ahead_is_not(caplog):
    # a replay (or this host's clock behind): every record an hour ahead from the start
    ahead, _ = NetflowSimulator(seed=5, rate=100.0, start=4600.0).batch(FOLLOW_AFTER + 500)
    _, rows, rejected = TrafficWindows(clock=lambda: 1000.0).apply(ahead)
    assert len(rejected) == FOLLOW_AFTER - 1 and rows == list(range(FOLLOW_AFTER - 1, len(ahead)))
    assert "following the stream's time" in caplog.text
    # one device an hour ahead among the others, as many of its records as that: all refused
    normal, _ = NetflowSimulator(seed=6, rate=100.0, start=1000.0).batch(2 * FOLLOW_AFTER)
    mixed = [dict(r, ts=r["ts"] + 3600.0) if i % 2 else r for i, r in enumerate(normal)]
    _, rows, rejected = TrafficWindows(clock=lambda: 1000.0).apply(mixed)
    assert rows == list(range(0, len(mixed), 2)) and len(rejected) == FOLLOW_AFTER


def test_a_late_record_does_not_make_a_busy_key_look_idle():
    w = TrafficWindows(seconds=2.0)
    w.apply([flow(100.0), flow(101.0), flow(5.0)])  # the last one late (a device clock behind)
    assert w._host["10.1.0.10"][2] == w._host["10.1.0.10"][0]._latest


def test_eviction_of_idle_keys_changes_no_feature():
    sim = NetflowSimulator(seed=3, attacks=("scan", "synflood"), rate=500.0, start=0.0)
    records, _ = sim.batch(25000)
    evicting = TrafficWindows(seconds=2.0)
    keeping = TrafficWindows(seconds=2.0)
    keeping._evict = lambda now: None
    a, _, _ = evicting.apply(records)
    b, _, _ = keeping.apply(records)
    assert a == b
    assert evicting.n_keys < keeping.n_keys  # spoofed SYN-flood sources were dropped


def test_pipeline_maps_rows_back_and_replay_equals_streaming():
    schema = FlowSchema.load("netflow")
    train, _ = NetflowSimulator(seed=0, start=0.0).batch(3000)
    derived, _ = derive(train, schema)
    enc = RecordEncoder(schema).fit(derived)
    live, _ = NetflowSimulator(seed=1, attacks=("scan",), start=10.0).batch(2000)
    live.insert(5, {"ts": 1.0})  # rejected by the windows
    live[10] = dict(live[10], bytes_out=-1.0)  # rejected by the encoder
    offline = FeaturePipeline(enc).transform_batch(live)
    online_pipe = FeaturePipeline(enc)  # the same records arriving in batches of 128
    parts = [online_pipe.transform_batch(live[i:i + 128]) for i in range(0, len(live), 128)]
    np.testing.assert_array_equal(offline.X, np.concatenate([p.X for p in parts]))
    assert [(r.row, r.field) for r in offline.rejected] == [(5, "src_addr"), (10, "bytes_out")]
    assert len(offline.rows) == len(live) - 2 and 5 not in offline.rows and 10 not in offline.rows
