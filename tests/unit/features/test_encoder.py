import json
import math

import numpy as np
import pytest

from arnstream.errors import RecordError, SchemaError
from arnstream.features import RecordEncoder
from arnstream.schema import FlowSchema

SCHEMA = FlowSchema.from_dict({
    "name": "t",
    "fields": [
        {"name": "id", "kind": "key"},
        {"name": "proto", "kind": "categorical"},
        {"name": "bytes", "kind": "numeric", "min": 0},
        {"name": "rate", "kind": "numeric", "min": 0, "max": 1},
        {"name": "label", "kind": "label"},
    ],
})
TRAIN = [
    {"id": 1, "proto": "tcp", "bytes": 100, "rate": 0.0},
    {"id": 2, "proto": "udp", "bytes": 300, "rate": 1.0},
    {"id": 3, "proto": "tcp", "bytes": 200, "rate": 0.5},
]


@pytest.fixture
def enc():
    return RecordEncoder(SCHEMA).fit(TRAIN)


def test_output_is_float32_minmax_and_one_hot_with_unknown_bucket(enc):
    X = enc.transform(TRAIN)
    assert X.dtype == np.float32
    assert enc.feature_names_ == ["proto=tcp", "proto=udp", "proto=<unknown>", "bytes", "rate"]
    np.testing.assert_allclose(X[:, 3], [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(X[:, :3].sum(axis=1), 1.0)


def test_scaling_is_fitted_on_training_data_only(enc):
    X = enc.transform([{"proto": "tcp", "bytes": 500, "rate": 0.5}])
    assert X[0, 3] == pytest.approx(2.0)  # beyond the training range: not refitted


def test_unknown_category_goes_to_the_unknown_bucket_not_an_error(enc):
    X = enc.transform([{"proto": "sctp", "bytes": 100, "rate": 0.1}])
    assert X[0, 2] == 1.0 and X[0, :2].sum() == 0.0


@pytest.mark.parametrize("record, field, reason", [
    ({"proto": "tcp", "rate": 0.1}, "bytes", "missing"),
    ({"proto": "tcp", "bytes": None, "rate": 0.1}, "bytes", "missing"),
    ({"bytes": 1, "rate": 0.1}, "proto", "missing"),
    ({"proto": "tcp", "bytes": "lots", "rate": 0.1}, "bytes", "not a number"),
    ({"proto": "tcp", "bytes": math.nan, "rate": 0.1}, "bytes", "NaN"),
    ({"proto": "tcp", "bytes": math.inf, "rate": 0.1}, "bytes", "infinite"),
    ({"proto": "tcp", "bytes": -5, "rate": 0.1}, "bytes", "below the minimum"),
    ({"proto": "tcp", "bytes": 5, "rate": 7}, "rate", "above the maximum"),
    ({"proto": ["tcp"], "bytes": 5, "rate": 0.1}, "proto", "expected a category"),
    ({"proto": "tcp", "bytes": 1e300, "rate": 0.1}, "bytes", "out of range"),  # absurd: the models overflow
])
def test_bad_record_raises_record_error_naming_field_and_row(enc, record, field, reason):
    with pytest.raises(RecordError) as err:
        enc.transform([TRAIN[0], record])
    assert err.value.field == field
    assert err.value.row == 1
    assert reason in str(err.value) and f"'{field}'" in str(err.value)


def test_batch_api_keeps_the_good_rows_and_reports_the_bad(enc):
    batch = [TRAIN[0], {"proto": "tcp", "bytes": "x", "rate": 0}, TRAIN[1], "not a dict", TRAIN[2]]
    out = enc.transform_batch(batch)
    assert out.rows.tolist() == [0, 2, 4]
    np.testing.assert_array_equal(out.X, enc.transform(TRAIN))
    assert [(r.row, r.field) for r in out.rejected] == [(1, "bytes"), (3, None)]
    assert "not an object" in out.rejected[1].reason


def test_an_absurd_value_is_refused_and_a_large_one_is_encoded(enc):
    """MAX_SCALED training ranges from the data is the edge: past it, float32 models overflow."""
    from arnstream.features.encoder import MAX_SCALED

    edge = 100 + MAX_SCALED * 200  # `bytes` trained on 100-300
    out = enc.transform_batch([{"proto": "tcp", "bytes": b, "rate": 0.1}
                               for b in (edge * 0.999, edge * 1.001, 1e308, 5e9)])
    assert out.rows.tolist() == [0, 3] and np.isfinite(out.X).all()
    assert out.X[1, 3] == pytest.approx((5e9 - 100) / 200)
    assert [(r.row, r.field) for r in out.rejected] == [(1, "bytes"), (2, "bytes")]
    assert "1e+308 is out of range" in out.rejected[1].reason


def test_columns_and_records_give_the_same_matrix(enc):
    columns = {k: np.asarray([r[k] for r in TRAIN], dtype=object) for k in ("proto", "bytes", "rate")}
    np.testing.assert_array_equal(enc.transform(columns), enc.transform(TRAIN))


def test_json_round_trip_reproduces_the_encoding(enc):
    restored = RecordEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    batch = TRAIN + [{"proto": "icmp", "bytes": 1000, "rate": 0.3}]
    np.testing.assert_array_equal(restored.transform(batch), enc.transform(batch))
    assert restored.feature_names_ == enc.feature_names_


def test_inverse_transform_decodes_back_to_record_fields(enc):
    decoded = enc.inverse_transform(enc.transform(TRAIN))
    assert [d["proto"] for d in decoded] == ["tcp", "udp", "tcp"]
    assert [round(d["bytes"]) for d in decoded] == [100, 300, 200]


LOG_SCHEMA = FlowSchema.from_dict({
    "name": "t-log",
    "fields": [{"name": "bytes", "kind": "numeric", "min": 0, "scale": "log"},
               {"name": "rate", "kind": "numeric"}],
})


def test_log_scaled_field_is_min_max_of_log1p_and_decodes_back():
    train = [{"bytes": b, "rate": 0.5} for b in (0, 9, 99, 999999)]
    enc = RecordEncoder(LOG_SCHEMA).fit(train)
    X = enc.transform(train + [{"bytes": 10**9, "rate": 0.5}])
    expected = np.log1p([0, 9, 99, 999999, 10**9]) / np.log1p(999999)
    np.testing.assert_allclose(X[:, 0], expected, rtol=1e-6)
    assert X[1, 0] > 0.15  # linear scaling would have put 9 bytes at 9e-6
    decoded = enc.inverse_transform(X)
    np.testing.assert_allclose([d["bytes"] for d in decoded], [0, 9, 99, 999999, 10**9], rtol=1e-4)
    restored = RecordEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    np.testing.assert_array_equal(restored.transform(train), enc.transform(train))


def test_unfitted_encoder_refuses_to_transform():
    with pytest.raises(SchemaError, match="not fitted"):
        RecordEncoder(SCHEMA).transform(TRAIN)


def test_malformed_state_is_refused(enc):
    state = enc.to_dict()
    del state["min"]["bytes"]
    with pytest.raises(SchemaError):
        RecordEncoder.from_dict(state)


def test_a_number_as_category_is_its_text_and_the_callers_column_is_left_as_given():
    enc = RecordEncoder(SCHEMA).fit([{"proto": 6, "bytes": 1, "rate": 0.1}, {"proto": "udp", "bytes": 2, "rate": 0.2}])
    assert enc.categories_["proto"] == ["6", "udp"]
    X = enc.transform([{"proto": "6", "bytes": 1, "rate": 0.1}, {"proto": 6, "bytes": 1, "rate": 0.1},
                       {"proto": 17, "bytes": 1, "rate": 0.1}])
    np.testing.assert_array_equal(X[0], X[1])  # 6 and "6" are the same category
    assert X[2, 2] == 1.0  # 17 was never seen: the unknown bucket
    proto = np.asarray([6, "udp"], dtype=object)
    enc.transform({"proto": proto, "bytes": np.asarray([1, 2]), "rate": np.asarray([0.1, 0.2])})
    assert proto[0] == 6  # not replaced by "6" in the caller's array
