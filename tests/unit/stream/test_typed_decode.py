"""Serve's typed fast path: what it accepts, and that it changes no output."""

import dataclasses

import numpy as np
import orjson
import pytest

from arnstream.schema import FlowSchema
from arnstream.stream.client import Message
from arnstream.stream.scoring import decode_batch, score_messages
from arnstream.stream.simulator import FlowSimulator
from arnstream.stream.typed_decode import TypedDecoder


def _messages(values):
    return [Message("live", i % 2, i, v) for i, v in enumerate(values)]


def _outputs(result):
    return [(o.topic_key, o.value, o.key, o.headers) for o in result.all_outputs()]


def test_a_clean_batch_takes_the_typed_path_and_changes_no_output(model):
    records, _ = FlowSimulator(seed=1, attacks=("synflood", "exfiltration"), attack_fraction=0.2).batch(300)
    records[3]["flow_id"] = 12345  # an integer id is the id as text
    records[4]["flow_id"] = ""  # an empty id: the Kafka position
    del records[5]["flow_id"]  # no id: the Kafka position
    msgs = _messages([orjson.dumps(r) for r in records])
    typed = decode_batch(msgs, model)
    assert typed.records is None  # the typed path
    general_model = _general(model)
    general = decode_batch(msgs, general_model)
    assert general.records is not None
    np.testing.assert_array_equal(typed.encoded.X, general.encoded.X)
    fast, slow = score_messages(msgs, model, keep_records=True), score_messages(msgs, general_model, keep_records=True)
    assert fast.n_anomalies > 0 and _outputs(fast) == _outputs(slow)
    assert fast.retained == slow.retained
    ids = [orjson.loads(v)["id"] for v in fast.score_values]
    assert ids[3:6] == ["12345", "live:0:4", "live:1:5"]


def _general(model):
    general_model = dataclasses.replace(model)
    general_model.typed = None
    return general_model


CHANGES = [
    lambda r: r.update(src_bytes=True),  # a bool where a number belongs (the general path reads it as 1)
    lambda r: r.update(service=80),  # a number as category (compared as text by the general path)
    lambda r: r.pop("duration"),  # missing field
    lambda r: r.update(duration=None),
    lambda r: r.update(flow_id=1.5),  # an id of another type
    lambda r: r.update(src_bytes=-1),  # below the schema's minimum: the encoder rejects it
    lambda r: r.update(extra={"nested": [1, 2]}),  # a field the schema does not name
]


@pytest.mark.parametrize("change", CHANGES)
def test_a_record_the_typed_path_does_not_take_goes_the_general_way_alone(model, change):
    records, _ = FlowSimulator(seed=2, attacks=("synflood",), attack_fraction=0.3).batch(20)
    change(records[7])
    msgs = _messages([orjson.dumps(r) for r in records])
    assert decode_batch(msgs, model).records is None  # the other 19 stay typed
    fast = score_messages(msgs, model, keep_records=True)
    slow = score_messages(msgs, _general(model), keep_records=True)
    assert _outputs(fast) == _outputs(slow) and fast.retained == slow.retained
    np.testing.assert_array_equal(fast.scores, slow.scores)


def test_a_batch_with_refusals_here_and_there_gives_the_general_paths_outputs(model):
    records, _ = FlowSimulator(seed=6, attacks=("synflood", "scan"), attack_fraction=0.3).batch(60)
    for i, change in zip((0, 9, 10, 31, 59), CHANGES):  # first, adjacent, last
        change(records[i])
    values = [orjson.dumps(r) for r in records]
    values[20], values[21] = b"{oops", b""  # not JSON, empty: dead letters in between
    msgs = _messages(values)
    decoded = decode_batch(msgs, model)
    assert decoded.records is None and len(decoded.encoded.X) == len(decoded.kept) == 60 - 2 - 2  # two rejected
    fast = score_messages(msgs, model, keep_records=True)
    slow = score_messages(msgs, _general(model), keep_records=True)
    assert _outputs(fast) == _outputs(slow) and fast.retained == slow.retained
    assert fast.rejected_reasons == slow.rejected_reasons and len(fast.rejected_reasons) == 4
    assert fast.n_anomalies > 0


def test_random_mixes_of_good_and_bad_records_give_the_general_paths_outputs(model):
    """Many small batches, each record clean, refused by the typed path, rejected by the
    encoder or not JSON at random: the outputs always equal the general path's."""
    rng = np.random.default_rng(0)
    records, _ = FlowSimulator(seed=9, attacks=("synflood", "scan"), attack_fraction=0.3).batch(600)
    breakers = CHANGES + [lambda r: r.update(src_bytes=-5.0), lambda r: r.update(flow_id=None),
                          lambda r: r.pop("flow_id"), lambda r: r.update(service="never-seen")]
    start = 0
    for size in rng.integers(1, 25, size=40).tolist():
        values = []
        for r in records[start:start + size]:
            r = dict(r)
            kind = rng.random()
            if kind < 0.25:
                breakers[int(rng.integers(len(breakers)))](r)
            values.append(b"{cut" if 0.25 <= kind < 0.3 else orjson.dumps(r))
        start += size
        msgs = _messages(values)
        fast = score_messages(msgs, model, keep_records=True)
        slow = score_messages(msgs, _general(model), keep_records=True)
        assert _outputs(fast) == _outputs(slow) and fast.retained == slow.retained
        assert fast.rejected_reasons == slow.rejected_reasons


def test_a_batch_the_typed_path_mostly_refuses_goes_the_general_way_whole_and_it_sits_out_a_while(model):
    records, _ = FlowSimulator(seed=7).batch(20)
    for r in records[:6]:  # more than a quarter: a producer sending a field the schema does not name
        r["vlan"] = 7
    dirty = _messages([orjson.dumps(r) for r in records])
    clean = _messages([orjson.dumps(r) for r in FlowSimulator(seed=8).batch(20)[0]])
    took = []  # per batch: did the typed path take it?
    for batch in [dirty, clean, dirty, clean, clean, dirty] + [clean] * 5 + [dirty, clean, clean]:
        took.append(decode_batch(batch, model).records is None)
    # gave up: 1 batch out; gave up again: 2 out; again: 4 out; typed again (the pause back to 1)
    assert took == [False] * 10 + [True] + [False, False, True]
    assert _outputs(score_messages(dirty, model)) == _outputs(score_messages(dirty, _general(model)))
    assert _outputs(score_messages(clean, model)) == _outputs(score_messages(clean, _general(model)))


def test_an_empty_batch_gives_no_output(model):
    result = score_messages([], model, keep_records=True)
    assert result.n_scored == 0 and result.all_outputs() == [] and len(result.retained) == 0


@pytest.mark.parametrize("tail", [
    b', "note": "\xff"}',  # invalid UTF-8 in a field the schema does not name (msgspec would skip it unread)
    b', "label": 1e400}',  # a number orjson refuses, in a field the encoder does not read
    b', "label": "\xff"}',
    b', "note": ' + b"[" * 3000 + b"]" * 3000 + b"}",  # nested deeper than either decoder goes
])
def test_what_orjson_refuses_the_typed_path_refuses_too(model, tail):
    records, _ = FlowSimulator(seed=4, attacks=("synflood",), attack_fraction=0.5).batch(20)
    values = [orjson.dumps(r) for r in records]
    values[7] = values[7][:-1] + tail
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(values[7])
    msgs = _messages(values)
    assert 7 not in decode_batch(msgs, model).kept
    result = score_messages(msgs, model)
    assert _outputs(result) == _outputs(score_messages(msgs, _general(model)))
    assert result.rejected_reasons == ["not_json"] and result.n_scored == 19


def test_an_integer_id_beyond_orjsons_integers_takes_the_general_path(model):
    records, _ = FlowSimulator(seed=5).batch(5)
    values = [orjson.dumps(r) for r in records]
    values[2] = orjson.dumps({**records[2], "flow_id": 0}).replace(b'"flow_id":0', b'"flow_id":18446744073709551616')
    msgs = _messages(values)
    assert model.typed.decode(list(values)).refused == [2]
    ids = [orjson.loads(v)["id"] for v in score_messages(msgs, model).score_values]
    assert ids[2] == "live:0:2"  # orjson reads it as a float: no usable id, the Kafka position


@pytest.mark.parametrize("value", [b"{oops", b"", None, b"[1, 2]", b"3", b'{"a": 1}'])
def test_what_is_not_one_record_object_is_left_to_the_general_path(value):
    decoder = TypedDecoder(FlowSchema.load("flowsim"), "flow_id")
    good, _ = FlowSimulator(seed=3).batch(4)
    assert decoder.decode([orjson.dumps(g) for g in good]).refused == []
    part = decoder.decode([orjson.dumps(good[0]), value, orjson.dumps(good[1]), orjson.dumps(good[2])])
    assert part.refused == [1] and part.accepted == [0, 2, 3] and part.ids == ["sim-3-0", "sim-3-1", "sim-3-2"]
    assert part.columns["duration"].tolist() == [good[i]["duration"] for i in range(3)]


def test_columns_are_typed_for_the_encoder_and_any_field_name_works():
    schema = FlowSchema.from_dict({"name": "odd", "fields": [
        {"name": "bytes in", "kind": "numeric"}, {"name": "proto-name", "kind": "categorical"},
        {"name": "id", "kind": "key"}]})
    decoder = TypedDecoder(schema, "id")
    part = decoder.decode([b'{"bytes in": 3, "proto-name": "tcp", "id": "a"}',
                           b'{"bytes in": 2.5, "proto-name": "udp"}'])
    columns, ids = part.columns, part.ids
    assert columns["bytes in"].dtype == np.float64 and columns["bytes in"].tolist() == [3.0, 2.5]
    assert columns["proto-name"].tolist() == ["tcp", "udp"] and ids == ["a", None]
