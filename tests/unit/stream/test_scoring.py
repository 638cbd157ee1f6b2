"""The scoring of a batch of messages, without a broker."""

import numpy as np
import orjson
import pytest

from arnstream.stream.client import Message
from arnstream.stream.scoring import (
    FIELD_HEADER,
    REASON_HEADER,
    SIZE_HEADER,
    SOURCE_HEADER,
    dead_letter,
    reason_category,
    score_messages,
)
from arnstream.stream.simulator import FlowSimulator


def _messages(values):
    return [Message("live", 0, i, v) for i, v in enumerate(values)]


def test_scores_alerts_and_ids(model):
    records, truth = FlowSimulator(seed=3, attacks=("synflood",), attack_fraction=0.3).batch(400)
    msgs = _messages([orjson.dumps(r) for r in records])
    result = score_messages(msgs, model, top_k=2)
    scores = [orjson.loads(o.value) for o in result.all_outputs() if o.topic_key == "scores"]
    alerts = [orjson.loads(o.value) for o in result.all_outputs() if o.topic_key == "alerts"]
    assert [d["id"] for d in scores] == [r["flow_id"] for r in records]
    assert result.n_scored == 400 and result.n_anomalies == len(alerts)
    assert all(d["model_version"] == "v0007" and len(d["top_features"]) == 2 for d in scores)
    flagged = {d["id"] for d in scores if d["is_anomaly"]}
    attacks = {r["flow_id"] for r, t in zip(records, truth) if t != "normal"}
    assert len(flagged & attacks) >= 0.9 * len(attacks)
    assert {a["id"] for a in alerts} == flagged
    by_id = {r["flow_id"]: r for r in records}
    assert all(a["record"] == by_id[a["id"]] for a in alerts)  # the record as it came
    # a SYN flood is atypical in its flag, error rate and connection counts
    syn = next(d for d in scores if d["id"] in attacks)
    assert set(syn["top_features"]) & {"flag", "serror_rate", "count", "srv_count"}


def test_a_score_does_not_depend_on_its_batch(model):
    records, _ = FlowSimulator(seed=4).batch(50)
    values = [orjson.dumps(r) for r in records]
    together = score_messages(_messages(values), model).scores
    alone = np.concatenate([score_messages(_messages([v]), model).scores for v in values])
    np.testing.assert_allclose(together, alone, atol=1e-9)


def test_bad_messages_become_dead_letters_with_reasons_and_original_bytes(model):
    good, _ = FlowSimulator(seed=5).batch(3)
    broken = dict(good[0], src_bytes=float("nan"))
    values = [orjson.dumps(good[0]), b"{oops", b"", orjson.dumps([1]),
              orjson.dumps({k: v for k, v in good[1].items() if k != "duration"}),
              orjson.dumps(dict(good[2], service="never-seen-before")),
              orjson.dumps(broken, option=orjson.OPT_NON_STR_KEYS).replace(b"null", b"NaN")]
    msgs = _messages(values)
    result = score_messages(msgs, model)
    dead = [o for o in result.all_outputs() if o.topic_key == "deadletter"]
    by_offset = {int(dict(o.headers)[SOURCE_HEADER].decode().rsplit(":", 1)[1]): o for o in dead}
    assert sorted(by_offset) == [1, 2, 3, 4, 6]
    assert all(by_offset[i].value == values[i] for i in by_offset)
    assert b"JSON" in dict(by_offset[1].headers)[REASON_HEADER]
    assert b"missing" in dict(by_offset[4].headers)[REASON_HEADER]
    assert result.n_scored == 2  # the unknown service is scored, not rejected
    assert sorted(result.rejected_reasons) == sorted(["not_json", "empty", "not_object", "missing_field",
                                                      "not_json"])


def test_record_id_falls_back_to_the_kafka_position(model):
    rec, _ = FlowSimulator(seed=6).batch(1)
    rec = {k: v for k, v in rec[0].items() if k != "flow_id"}
    out = score_messages([Message("live", 3, 42, orjson.dumps(rec))], model).all_outputs()
    assert orjson.loads(out[0].value)["id"] == "live:3:42"


@pytest.mark.parametrize("reason,category", [("value is NaN", "not_finite"), ("missing field", "missing_field"),
                                             ("value -1 is below the minimum 0", "out_of_range"),
                                             ("not a number: 'x'", "wrong_type"), ("weird", "invalid")])
def test_reason_categories_are_bounded(reason, category):
    assert reason_category("f", reason) == category


def test_the_scored_records_kept_for_the_feedback_store_are_those_scored(model, tmp_path):
    from arnstream.feedback import FeedbackStore
    from arnstream.feedback.store import ScoredRecord

    records, _ = FlowSimulator(seed=7, attacks=("synflood",), attack_fraction=0.3).batch(20)
    values = [orjson.dumps(r) for r in records]
    values.insert(5, b"{oops")  # a dead letter is not kept
    result = score_messages(_messages(values), model, keep_records=True)
    kept = result.retained
    assert kept.ids == [r["flow_id"] for r in records] and kept.model_versions == ["v0007"] * 20
    assert kept.records == [orjson.dumps(r) for r in records]
    assert kept.scores == result.scores.tolist() and 0 < sum(kept.flagged) < 20
    assert kept.flagged == [int(s > model.threshold) for s in result.scores]
    store = FeedbackStore(tmp_path / "store.sqlite3")
    try:
        store.put_scored_columns(kept, now=1.0)
        assert store.count_scored() == 20
        for i in (0, 7, 19):
            assert store.scored(records[i]["flow_id"]) == ScoredRecord(
                records[i]["flow_id"], 1.0, "v0007", kept.scores[i], kept.flagged[i], orjson.dumps(records[i]))
    finally:
        store.close()


def _padded(record: dict, size: int) -> bytes:
    """A record grown to exactly `size` bytes by a field the schema does not name."""
    base = orjson.dumps(dict(record, pad=""))
    return base.replace(b'"pad":""', b'"pad":"' + b"x" * (size - len(base)) + b'"')


@pytest.mark.parametrize("general", [False, True])
def test_a_record_over_the_size_limit_is_a_dead_letter_cut_to_it(model, general):
    if general:  # the path of schemas with windows, and of batches the typed path refuses
        model.typed = None
    records, _ = FlowSimulator(seed=8, attacks=("synflood",), attack_fraction=0.3).batch(30)
    values = [orjson.dumps(r) for r in records]
    limit = 4096
    big = [_padded(records[3], limit + 1), b"x" * 50_000, _padded(records[5], limit)]  # the last one fits
    values[3], values[9], values[5] = big
    values.insert(12, None)  # a message without a value (a tombstone) among them
    result = score_messages(_messages(values), model, max_bytes=limit, keep_records=True)
    dead = {int(dict(o.headers)[SOURCE_HEADER].decode().rsplit(":", 1)[1]): o
            for o in result.all_outputs() if o.topic_key == "deadletter"}
    assert sorted(dead) == [3, 9, 12]
    for i in (3, 9):
        headers = dict(dead[i].headers)
        assert dead[i].value == values[i][:limit] and int(headers[SIZE_HEADER]) == len(values[i])
        assert b"too large" in headers[REASON_HEADER] and b"serve.max_record_bytes (4,096)" in headers[REASON_HEADER]
    assert SIZE_HEADER not in dict(dead[12].headers)
    assert sorted(result.rejected_reasons) == ["empty", "too_large", "too_large"]
    # every other record is scored as it would be without the oversize ones beside it
    kept = [v for i, v in enumerate(values) if i not in dead]
    alone = score_messages(_messages(kept), model, max_bytes=limit, keep_records=True)
    np.testing.assert_array_equal(result.scores, alone.scores)
    ids = [orjson.loads(v)["id"] for v in result.score_values]
    assert ids == [orjson.loads(v)["flow_id"] for v in kept] and result.retained.records == kept
    # outputs never exceed twice the limit: an alert carries its record and its id
    assert max(len(o.value) + len(o.key or b"") for o in result.all_outputs()) <= 2 * limit + 1024


def test_a_dead_letter_bounds_what_its_reason_quotes():
    msg = Message("live", 0, 1, b"{}")
    out = dead_letter(msg, "f" * 10_000, "bad value " + "v" * 100_000)
    headers = dict(out.headers)
    assert len(headers[REASON_HEADER]) == 1000 and len(headers[FIELD_HEADER]) == 200
