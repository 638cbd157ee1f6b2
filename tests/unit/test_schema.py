import pytest

from arnstream.errors import SchemaError
from arnstream.schema import FlowSchema


def test_kdd99_schema_declares_all_41_features_with_their_kinds():
    s = FlowSchema.load("kdd99")
    assert len(s.feature_fields) == 41
    assert s.categorical == ("protocol_type", "service", "flag")
    assert len(s.numeric) == 38
    assert s.of_kind("label").name == "label"
    assert s.field("serror_rate").max == 1.0
    assert s.field("src_bytes").scale == "log" and s.field("serror_rate").scale == "linear"


def test_schema_round_trips_through_its_dict_form():
    s = FlowSchema.load("flowsim")
    assert FlowSchema.from_dict(s.to_dict()) == s


@pytest.mark.parametrize("data, needle", [
    ({"name": "x", "fields": [{"name": "a", "kind": "numbr"}]}, "'a'"),
    ({"name": "x", "fields": [{"name": "a", "kind": "numeric", "colour": 1}]}, "colour"),
    ({"name": "x", "fields": [{"name": "a", "kind": "numeric"}, {"name": "a", "kind": "numeric"}]}, "duplicate"),
    ({"name": "x", "fields": [{"name": "a", "kind": "key"}]}, "no numeric or categorical"),
    ({"name": "x", "fields": [{"name": "a", "kind": "numeric", "scale": "cubic"}]}, "scale 'cubic'"),
    ({"name": "x", "fields": [{"name": "a", "kind": "categorical", "scale": "log"}]}, "numeric fields only"),
])
def test_bad_schema_errors_name_the_problem(data, needle):
    with pytest.raises(SchemaError, match=needle):
        FlowSchema.from_dict(data)


def test_unknown_schema_name_lists_the_known_ones():
    with pytest.raises(SchemaError, match="kdd99"):
        FlowSchema.load("no-such-schema")
