import pytest

from arnstream.config import load_config, parse_assignment
from arnstream.errors import ConfigError


def test_defaults_file_loads():
    cfg = load_config()
    assert cfg.runtime.threads == 2 and cfg.model.name == "arn-n"


def test_environment_then_flags_override_the_file():
    cfg = load_config(env={"ARNSTREAM_RUNTIME__THREADS": "2", "ARNSTREAM_DATA_DIR": "/data"},
                      overrides={"runtime.threads": 3, "model.params": {"lr_d": 1e-4}})
    assert cfg.runtime.threads == 3 and cfg.data.dir == "/data" and cfg.model.params == {"lr_d": 1e-4}


def test_unknown_key_is_named(tmp_path):
    (tmp_path / "c.yaml").write_text("runtime:\n  thread: 2\n")
    with pytest.raises(ConfigError, match="runtime.thread"):
        load_config(tmp_path / "c.yaml")


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="training.epochs.*expected int"):
        load_config(overrides={"training.epochs": "many"})


@pytest.mark.parametrize("key, value, words", [
    ("serve.batch_size", 0, "at least 1"), ("training.target_fpr", 2.0, "between 0 and 1"),
    ("training.target_fpr", 0.0, "between 0 and 1"), ("retrain.gate_fraction", 1.5, "between 0 and 1"),
    ("kafka.linger_ms", -1, "at least 0"), ("serve.output_timeout_s", 0.0, "above 0"),
    ("retrain.after_labels", 0, "at least 1"), ("retrain.min_alert_recall", 1.2, "between 0 and 1"),
    ("serve.max_record_bytes", 100, "at least 1024"),
])
def test_a_value_out_of_its_range_is_named(key, value, words):
    with pytest.raises(ConfigError, match=f"{key}.*{words}"):
        load_config(overrides={key: value})


def test_the_edges_of_the_ranges_and_null_are_accepted():
    cfg = load_config(overrides={"kafka.linger_ms": 0, "serve.top_features": 0, "retrain.every_s": None,
                                 "retrain.after_labels": None, "retrain.min_alert_recall": 1.0,
                                 "retrain.max_new_alert_rate": 0.0, "serve.poll_timeout_ms": 0})
    assert cfg.kafka.linger_ms == 0 and cfg.retrain.every_s is None


def test_assignment_parsing_reads_numbers_in_any_notation():
    assert parse_assignment("model.params.lr_d=1e-4") == ("model.params.lr_d", 1e-4)
    assert parse_assignment("runtime.device=cuda") == ("runtime.device", "cuda")
    with pytest.raises(ConfigError):
        parse_assignment("novalue")
