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


def test_assignment_parsing_reads_numbers_in_any_notation():
    assert parse_assignment("model.params.lr_d=1e-4") == ("model.params.lr_d", 1e-4)
    assert parse_assignment("runtime.device=cuda") == ("runtime.device", "cuda")
    with pytest.raises(ConfigError):
        parse_assignment("novalue")
