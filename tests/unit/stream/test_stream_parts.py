"""Simulator, time parsing, histogram batching, drift monitor: the parts serve is built from."""

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from arnstream.errors import ConfigError
from arnstream.stream.client import Message, next_offsets
from arnstream.stream.serve import ScoreDriftMonitor, _observe_many
from arnstream.stream.simulator import FlowSimulator, diurnal_rate
from arnstream.stream.window import parse_time


def test_simulator_mixes_attacks_and_keeps_truth_out_of_the_record():
    sim = FlowSimulator(seed=0, attacks=("scan", "exfiltration"), attack_fraction=0.2)
    records, truth = sim.batch(2000)
    assert len(records) == len(truth) == 2000
    assert {"normal", "scan", "exfiltration"} == set(truth)
    assert 0.15 < np.mean([t != "normal" for t in truth]) < 0.25
    assert all("label" not in r and isinstance(r["src_bytes"], float) for r in records)
    assert len({r["flow_id"] for r in records}) == 2000
    more, _ = sim.batch(10)
    assert more[0]["flow_id"] == "sim-0-2000"


def test_simulator_refuses_unknown_attacks():
    with pytest.raises(ValueError, match="unknown attack"):
        FlowSimulator(attacks=("ddos",))


def test_diurnal_rate_swings_between_half_and_one_and_a_half():
    rates = [diurnal_rate(100, t, 600) for t in range(0, 600, 5)]
    assert min(rates) == pytest.approx(50, abs=0.5) and max(rates) == pytest.approx(150, abs=0.5)


def test_parse_time_accepts_epoch_and_iso():
    assert parse_time("1700000000", "--from") == 1700000000.0
    assert parse_time("2023-11-14T22:13:20Z", "--from") == 1700000000.0
    assert parse_time(None, "--to") is None
    with pytest.raises(ConfigError, match="--to"):
        parse_time("yesterday", "--to")


def test_next_offsets_commit_past_each_partitions_last_message():
    polled = [Message("live", p, o, b"{}") for p, o in ((0, 10), (1, 5), (0, 11), (1, 6), (1, 7), (0, 12))]
    polled.append(Message("other", 0, 3, b"{}"))
    assert next_offsets(polled) == {("live", 0): 13, ("live", 1): 8, ("other", 0): 4}
    # a list that goes back (a re-read appended): the earlier position, so records are read again, never skipped
    assert next_offsets(polled + [Message("live", 0, 4, b"{}")])[("live", 0)] == 5
    assert next_offsets([]) == {}


def test_batched_histogram_equals_per_value_observe():
    values = np.random.default_rng(0).random(1000)
    values[:5] = [0.0, 0.1, 0.5, 1.0, 0.99]
    a = Histogram("a", "x", buckets=(0.1, 0.5, 0.9, 0.99), registry=CollectorRegistry())
    b = Histogram("b", "x", buckets=(0.1, 0.5, 0.9, 0.99), registry=CollectorRegistry())
    _observe_many(a, values)
    for v in values:
        b.observe(v)
    sa, sb = a.collect()[0].samples, b.collect()[0].samples
    assert [(s.labels, s.value) for s in sa if s.name.endswith("_bucket")] == \
           [(s.labels, s.value) for s in sb if s.name.endswith("_bucket")]
    sums_a, sums_b = ([s.value for s in samples if s.name.endswith("_sum")] for samples in (sa, sb))
    assert sums_a == pytest.approx(sums_b)


def test_drift_monitor_fires_on_a_shift_of_the_score_distribution():
    rng = np.random.default_rng(0)
    mon = ScoreDriftMonitor(delta=0.002)
    assert not any(mon.update(rng.normal(0.1, 0.02, 500)) for _ in range(20))
    assert any(mon.update(rng.normal(0.6, 0.02, 500)) for _ in range(5))


def test_serve_keeps_its_model_when_a_broken_version_is_promoted(tmp_path, caplog):
    """A corrupt promotion is logged once and ignored; the next good promotion is picked up."""
    import json

    from arnstream.config import load_config
    from arnstream.registry import Registry
    from arnstream.schema import FlowSchema
    from arnstream.stream.serve import Service
    from arnstream.trainer import detector_params, train_on_records

    cfg = load_config(None, {}, {"model.name": "iforest", "registry.dir": str(tmp_path),
                                 "serve.metrics_address": None})
    records, _ = FlowSimulator(seed=0).batch(1000)
    reg = Registry(tmp_path)
    for _ in range(3):
        train_on_records(records, FlowSchema.load("flowsim"), cfg, detector_params(cfg), registry=reg,
                         source={}, promote=False)
    reg.promote("v0001")
    service = Service(cfg, reg)
    assert service.maybe_reload(force=True) and service.model.version == "v0001"
    envelope = reg.artifact_path("v0002") / "detector.json"
    envelope.write_text(json.dumps({**json.loads(envelope.read_text()), "threshold": 0.0}))
    reg.promote("v0002")
    assert not service.maybe_reload(force=True) and not service.maybe_reload(force=True)
    assert service.model.version == "v0001"
    assert sum("cannot load promoted model v0002" in r.message for r in caplog.records) == 1
    reg.promote("v0003")
    assert service.maybe_reload(force=True) and service.model.version == "v0003"
