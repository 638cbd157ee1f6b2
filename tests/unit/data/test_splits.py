import numpy as np
import pytest

from arnstream.data import paper_split
from arnstream.errors import DataError

Y = np.r_[np.zeros(10_000), np.ones(1_000)].astype(np.int8)


def test_sizes_follow_the_paper():
    s = paper_split(Y, seed=0)
    sizes = s.sizes(Y)
    assert sizes["train"] == {"normal": 8000, "anomalous": 0}
    assert sizes["test"] == {"normal": 1500, "anomalous": 375}  # 75% of the half drawn
    assert sizes["val"] == {"normal": 500, "anomalous": 125}
    assert len(s.weak) == 0 and len(s.contamination) == 0


def test_parts_are_disjoint():
    s = paper_split(Y, seed=1, contamination=0.05, weak=0.03)
    parts = [set(s.train), set(s.weak), set(s.val), set(s.test)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not parts[i] & parts[j]


def test_no_anomaly_in_training_unless_contamination_asks():
    assert Y[paper_split(Y, seed=2).train].sum() == 0
    s = paper_split(Y, seed=2, contamination=0.05)
    assert Y[s.train].sum() == len(s.contamination) == 400  # p * n_train_normals
    assert set(s.contamination) <= set(s.train)


def test_weak_labels_are_anomalies_outside_test_and_validation():
    s = paper_split(Y, seed=3, weak=0.01)
    assert len(s.weak) == 10 and Y[s.weak].all()


def test_seeded_and_shuffled():
    a, b = paper_split(Y, seed=4), paper_split(Y, seed=4)
    np.testing.assert_array_equal(a.test, b.test)
    assert not np.array_equal(a.test, paper_split(Y, seed=5).test)
    labels = Y[a.test]
    # anomalies spread through the test set, not stacked after the normals
    assert abs(np.flatnonzero(labels).mean() / len(labels) - 0.5) < 0.1


def test_impossible_contamination_is_refused():
    with pytest.raises(DataError, match="only 500"):
        paper_split(Y, seed=0, contamination=0.2)
