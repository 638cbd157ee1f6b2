import json

import pytest

from arnstream.errors import ArtifactError
from arnstream.models import make_detector
from arnstream.registry import Registry


@pytest.fixture
def fitted(synthetic_problem):
    p = synthetic_problem
    det = make_detector("iforest", seed=0, n_estimators=10).fit(p["X_train"])
    det.calibrate(p["X_train"], fpr=0.01)
    return det, p["encoder"].to_dict()


def test_versions_are_numbered_and_promotion_is_explicit(tmp_path, fitted):
    det, enc = fitted
    reg = Registry(tmp_path)
    assert reg.current() is None and reg.list() == []
    v1 = reg.add(det, encoder_state=enc, metadata={}, card={"note": "first"})
    v2 = reg.add(det, encoder_state=enc, metadata={}, card={"note": "second"})
    assert (v1, v2) == ("v0001", "v0002")
    assert reg.current() is None, "adding must not promote"
    reg.promote(v1)
    assert reg.current() == v1
    assert [v.card["note"] for v in reg.list()] == ["first", "second"]
    loaded = reg.load(v1)
    assert loaded.detector.threshold_ == det.threshold_
    assert not any(p.name.startswith(".staging") for p in reg.versions_dir.iterdir())


def test_rollback_walks_back_the_promotion_chain(tmp_path, fitted):
    det, enc = fitted
    reg = Registry(tmp_path)
    names = [reg.add(det, encoder_state=enc, metadata={}, card={}) for _ in range(3)]
    for n in names:
        reg.promote(n)
    assert reg.rollback() == "v0002"
    assert reg.rollback() == "v0001"
    with pytest.raises(ArtifactError, match="no earlier promoted version"):
        reg.rollback()
    events = [e["event"] for e in reg.history()]
    assert events == ["promote"] * 3 + ["rollback"] * 2


def test_unknown_version_and_empty_registry_errors_name_what_exists(tmp_path, fitted):
    det, enc = fitted
    reg = Registry(tmp_path)
    with pytest.raises(ArtifactError, match="nothing is promoted"):
        reg.rollback()
    reg.add(det, encoder_state=enc, metadata={}, card={})
    with pytest.raises(ArtifactError, match=r"no model version 'v0009' \(known: v0001\)"):
        reg.promote("v0009")


def test_a_tampered_version_is_refused(tmp_path, fitted):
    det, enc = fitted
    reg = Registry(tmp_path)
    v = reg.add(det, encoder_state=enc, metadata={}, card={})
    envelope = reg.artifact_path(v) / "detector.json"
    data = json.loads(envelope.read_text())
    data["threshold"] = 0.0
    envelope.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        reg.load(v)


def test_a_version_keeps_its_reference_records_in_order_and_a_damaged_file_is_named(tmp_path, fitted):
    det, enc = fitted
    reg = Registry(tmp_path)
    records = [{"i": i, "proto": "tcp", "bytes": 1.5 * i} for i in range(300)]
    with_reference = reg.add(det, encoder_state=enc, metadata={}, card={}, reference=records)
    without = reg.add(det, encoder_state=enc, metadata={}, card={})
    assert reg.reference(with_reference) == records and reg.reference(without) == []
    (reg.versions_dir / with_reference / "reference.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(ArtifactError, match="reference.jsonl.gz: unreadable reference records"):
        reg.reference(with_reference)
