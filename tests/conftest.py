import os
from pathlib import Path

import numpy as np
import pytest
import torch

from arnstream.config import REPO_ROOT

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared public datasets (ARNSTREAM_DATA_DIR, default ../shared/data)."""
    return Path(os.environ.get("ARNSTREAM_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def require_file(data_dir: Path, rel: str) -> Path:
    """Tests that need a shared file fail, loudly, naming it: nothing is skipped silently."""
    path = data_dir / rel
    if not path.is_file():
        pytest.fail(f"shared data file missing: {path} (set ARNSTREAM_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def synthetic_problem():
    """Encoded synthetic flows: train normals, a shuffled test set and the encoder."""
    from arnstream.data import paper_split, synthetic_flows
    from arnstream.features import RecordEncoder
    from arnstream.features.columns import take

    ds = synthetic_flows(n_normal=4000, n_anomalous=400, seed=1)
    split = paper_split(ds.y, seed=0)
    enc = RecordEncoder(ds.schema).fit(take(ds.columns, split.train))
    X_train = enc.transform(take(ds.columns, split.train))
    X_test = enc.transform(take(ds.columns, split.test))
    groups = [(g.start, g.stop) for g in enc.categorical_groups_]
    return {"X_train": X_train, "X_test": X_test, "y_test": ds.y[split.test], "groups": groups,
            "encoder": enc, "dataset": ds, "split": split}


@pytest.fixture
def rng():
    return np.random.default_rng(0)
