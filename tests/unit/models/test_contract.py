"""One contract suite for every detector preset (river's `checks` habit)."""

import json
import logging

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from arnstream.errors import ArtifactError, ModelError
from arnstream.models import PRESETS, Detector, detector_class, make_detector

PRESET_NAMES = list(PRESETS)


def fast(name: str, **extra) -> Detector:
    cls = detector_class(PRESETS[name][0])
    return make_detector(name, **{**cls._unit_test_params(), **extra})


@pytest.fixture(scope="module")
def fitted(synthetic_problem):
    p = synthetic_problem
    return {name: fast(name).fit(p["X_train"], feature_groups=p["groups"]) for name in PRESET_NAMES}


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_constructor_stores_hyper_parameters_under_their_names(name):
    det = make_detector(name)
    params = det.get_params()
    assert set(params) == set(type(det).param_names())
    assert type(det)(**params).get_params() == params


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_scores_one_finite_value_per_row_and_beats_an_auc_floor(name, fitted, synthetic_problem):
    scores = fitted[name].score(synthetic_problem["X_test"])
    assert scores.shape == (len(synthetic_problem["X_test"]),)
    assert np.isfinite(scores).all()
    assert roc_auc_score(synthetic_problem["y_test"], scores) > 0.8


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_a_records_score_does_not_depend_on_its_batch(name, fitted, synthetic_problem):
    X = synthetic_problem["X_test"][:300]
    det = fitted[name]
    whole = det.score(X)
    perm = np.random.default_rng(3).permutation(len(X))
    shuffled = det.score(X[perm])
    alone = np.array([det.score(X[i : i + 1])[0] for i in range(40)])
    np.testing.assert_allclose(shuffled, whole[perm], atol=1e-5)
    np.testing.assert_allclose(alone, whole[:40], atol=1e-5)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_the_serving_scorer_gives_the_same_scores_as_score(name, fitted, synthetic_problem, caplog):
    # serve scores with it (traced TorchScript for torch models): no number may move
    X = synthetic_problem["X_test"][:300]
    det = fitted[name]
    with caplog.at_level(logging.WARNING):
        serving = det.serving_scorer()
    assert "cannot trace" not in caplog.text  # a torch model serves from its graph, not eagerly
    np.testing.assert_allclose(serving(X), det.score(X), rtol=1e-6, atol=1e-6)
    many = np.tile(X, (9, 1))  # 2,700 rows: the graph scores them in chunks of SCORE_BATCH
    np.testing.assert_allclose(serving(many), det.score(many), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(serving(X[:1]), det.score(X[:1]), rtol=1e-6, atol=1e-6)
    assert serving(X[:0]).shape == (0,)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_fit_and_score_do_not_mutate_their_input(name, synthetic_problem):
    X = synthetic_problem["X_train"][:500].copy()
    before = X.copy()
    det = fast(name, **({"epochs": 1} if "epochs" in detector_class(PRESETS[name][0]).param_names() else {}))
    det.fit(X, feature_groups=synthetic_problem["groups"])
    det.score(X)
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_same_seed_gives_the_same_scores(name, synthetic_problem):
    X, groups = synthetic_problem["X_train"][:600], synthetic_problem["groups"]
    extra = {"epochs": 2} if "epochs" in detector_class(PRESETS[name][0]).param_names() else {}
    a = fast(name, seed=7, **extra).fit(X, feature_groups=groups).score(X)
    b = fast(name, seed=7, **extra).fit(X, feature_groups=groups).score(X)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_save_load_gives_the_same_scores(name, fitted, synthetic_problem, tmp_path):
    det = fitted[name]
    det.calibrate(synthetic_problem["X_train"][:1000], fpr=0.01)
    det.save(tmp_path / "m", encoder_state=synthetic_problem["encoder"].to_dict(), metadata={"run": 1})
    loaded = Detector.load(tmp_path / "m")
    X = synthetic_problem["X_test"]
    np.testing.assert_allclose(loaded.score(X), det.score(X), atol=1e-6)
    assert loaded.threshold_ == det.threshold_
    assert loaded.get_params() == det.get_params()


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_unfitted_use_is_refused(name, synthetic_problem):
    with pytest.raises(ModelError, match="not fitted"):
        make_detector(name).score(synthetic_problem["X_test"])


def test_wrong_width_and_non_finite_input_are_refused(fitted, synthetic_problem):
    det = fitted["iforest"]
    with pytest.raises(ModelError, match="features"):
        det.score(synthetic_problem["X_test"][:, :-1])
    bad = synthetic_problem["X_test"][:5].copy()
    bad[2, 1] = np.nan
    with pytest.raises(ModelError, match="row 2"):
        det.score(bad)


def test_threshold_is_calibrated_to_the_target_false_positive_rate(fitted, synthetic_problem):
    det = fitted["ae"]
    normals = synthetic_problem["X_train"]
    det.calibrate(normals, fpr=0.05)
    assert det.predict(normals).mean() == pytest.approx(0.05, abs=0.01)


def test_a_threshold_too_few_normals_can_place_is_said_in_the_log(fitted, synthetic_problem, caplog):
    det = fitted["ae"]
    normals = synthetic_problem["X_train"]
    assert len(normals) * 0.05 >= 10
    with caplog.at_level("WARNING", logger="arnstream.models.base"):
        det.calibrate(normals, fpr=0.05)
        assert not caplog.records
        det.calibrate(normals[:100], fpr=0.05)  # 5 normal records expected above it
    assert len(caplog.records) == 1 and "set on 100 normal records" in caplog.records[0].getMessage()
    assert "training.target_fpr" in caplog.records[0].getMessage()


@pytest.mark.parametrize("target", ["weights.safetensors", "detector.json"])
def test_a_tampered_artifact_is_refused(fitted, tmp_path, target):
    fitted["arn-n"].save(tmp_path / "m")
    path = tmp_path / "m" / target
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        Detector.load(tmp_path / "m")


def test_artifact_envelope_carries_what_serving_needs(fitted, synthetic_problem, tmp_path):
    det = fitted["arn-g"]
    det.calibrate(synthetic_problem["X_train"][:500])
    det.save(tmp_path / "m", encoder_state=synthetic_problem["encoder"].to_dict(), metadata={"data": "x"})
    env = json.loads((tmp_path / "m" / "detector.json").read_text())
    assert env["detector"] == "arn" and env["params"]["head"] == "gumbel"
    assert env["encoder"]["schema"]["name"] == "flowsim"
    assert env["threshold"] is not None and "torch" in env["versions"]
    assert env["feature_groups"] == [list(g) for g in synthetic_problem["groups"]]
    assert not any(p.suffix in (".pkl", ".pt") for p in (tmp_path / "m").iterdir())
