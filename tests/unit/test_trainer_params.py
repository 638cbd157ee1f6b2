"""Which constructor parameters `train`, the demo and retraining give a detector."""

import pytest

from arnstream.config import load_config
from arnstream.errors import ConfigError
from arnstream.trainer import alerting_params, detector_params


def test_models_trained_to_alert_score_with_training_score_mode_and_evaluate_keeps_the_paper_score():
    cfg = load_config(None, {}, {})
    assert alerting_params(cfg)["score_mode"] == cfg.training.score_mode == "either"
    assert "score_mode" not in detector_params(cfg)  # evaluate: ARN's own default, D alone
    chosen = load_config(None, {}, {"training.score_mode": "discriminator"})
    assert alerting_params(chosen)["score_mode"] == "discriminator"
    explicit = load_config(None, {}, {"training.score_mode": "combined",
                                       "model.params": {"score_mode": "discriminator"}})
    assert alerting_params(explicit)["score_mode"] == "discriminator"  # model.params wins


def test_a_model_without_score_modes_gets_none_and_a_bad_mode_names_the_key():
    assert "score_mode" not in alerting_params(load_config(None, {}, {"model.name": "iforest"}))
    with pytest.raises(ConfigError, match="training.score_mode"):
        alerting_params(load_config(None, {}, {"training.score_mode": "loudest"}))
    with pytest.raises(ConfigError, match="training.score_mode"):  # even where the model has no modes
        alerting_params(load_config(None, {}, {"model.name": "iforest", "training.score_mode": "loudest"}))


def test_models_trained_to_alert_get_the_serving_discriminator_width_and_evaluate_keeps_the_papers():
    cfg = load_config(None, {}, {})
    assert alerting_params(cfg)["d_width"] == cfg.training.discriminator_width == 32
    assert "d_width" not in detector_params(cfg)  # evaluate: ARN's own 64, as in the paper
    assert alerting_params(load_config(None, {}, {"training.discriminator_width": 48}))["d_width"] == 48
    explicit = load_config(None, {}, {"model.params": {"d_width": 16}})
    assert alerting_params(explicit)["d_width"] == 16  # model.params wins
    assert "d_width" not in alerting_params(load_config(None, {}, {"training.discriminator_width": None}))
    assert "d_width" not in alerting_params(load_config(None, {}, {"model.name": "ae"}))  # no discriminator


def test_a_discriminator_too_narrow_to_build_names_the_key():
    with pytest.raises(ConfigError, match="training.discriminator_width"):
        load_config(None, {}, {"training.discriminator_width": 2})
