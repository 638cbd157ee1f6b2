import orjson
import pytest

from arnstream.errors import RecordError
from arnstream.feedback import make_label, parse_label, read_label_csv


def test_a_label_round_trips_through_its_json():
    label = make_label("rec-1", "anomaly", "ana", at=1700000000.5, note="C2 beacon")
    assert parse_label(label.to_json()) == label
    assert label.is_anomaly


@pytest.mark.parametrize("value, field, words", [
    (b"", None, "empty"),
    (b"{not json", None, "not valid JSON"),
    (b"[1]", None, "JSON object"),
    (orjson.dumps({"label": "anomaly", "analyst": "a", "at": 1}), "record_id", "missing"),
    (orjson.dumps({"record_id": "r", "label": "maybe", "analyst": "a", "at": 1}), "label", "'anomaly' or 'normal'"),
    (orjson.dumps({"record_id": "r", "label": ["anomaly"], "analyst": "a", "at": 1}), "label", "'anomaly' or"),
    (orjson.dumps({"record_id": "r", "label": {}, "analyst": "a", "at": 1}), "label", "'anomaly' or"),
    (orjson.dumps({"record_id": "r", "label": "normal", "at": 1}), "analyst", "missing"),
    (orjson.dumps({"record_id": "r", "label": "normal", "analyst": "a", "at": "yesterday"}), "at", "epoch"),
    (orjson.dumps({"record_id": "r", "label": "normal", "analyst": "a", "at": 1, "score": 3}), "score", "unknown"),
])
def test_a_bad_label_is_rejected_naming_the_field(value, field, words):
    with pytest.raises(RecordError) as err:
        parse_label(value)
    assert err.value.field == field
    assert words in str(err.value)


def test_labels_from_csv_take_the_callers_analyst_and_time_when_missing(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("record_id,label,note\nr1,anomaly,scan\nr2,normal,\n")
    labels = read_label_csv(path, analyst="ana")
    assert [(x.record_id, x.label, x.analyst, x.note) for x in labels] == [
        ("r1", "anomaly", "ana", "scan"), ("r2", "normal", "ana", None)]
    assert all(x.at > 1.6e9 for x in labels)


def test_a_bad_csv_row_names_its_line_and_nothing_is_returned(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("record_id,label\nr1,anomaly\nr2,attack\n")
    with pytest.raises(RecordError, match="line 3"):
        read_label_csv(path, analyst="ana")
    path.write_text("id,label\nr1,anomaly\n")
    with pytest.raises(RecordError, match="record_id"):
        read_label_csv(path, analyst="ana")
