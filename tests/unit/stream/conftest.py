import dataclasses

import pytest

from arnstream.features import RecordEncoder
from arnstream.models import make_detector
from arnstream.models.serialization import LoadedArtifact
from arnstream.schema import FlowSchema
from arnstream.stream.scoring import ScoringModel
from arnstream.stream.simulator import FlowSimulator


@pytest.fixture(scope="module")
def trained_model() -> ScoringModel:
    """What serve scores with, around a small Isolation Forest on simulated flows (no GAN to train)."""
    records, _ = FlowSimulator(seed=0).batch(3000)
    enc = RecordEncoder(FlowSchema.load("flowsim")).fit(records)
    X = enc.transform(records)
    det = make_detector("iforest", seed=0, n_estimators=50).fit(X)
    det.calibrate(X, fpr=0.01)
    art = LoadedArtifact(det, enc.to_dict(), {"feature_profile": {"mean": X.mean(0).tolist(),
                                                                  "std": X.std(0).tolist()}})
    return ScoringModel.from_artifact("v0007", art)


@pytest.fixture
def model(trained_model) -> ScoringModel:
    """The same model with state of its own (the typed decoder's pauses): no test sees another's."""
    return dataclasses.replace(trained_model)
