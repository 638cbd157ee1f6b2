"""Loaders on the shared public files: the counts of the paper's Table I."""

import pytest

from arnstream.data import load_dataset
from tests.conftest import require_file

pytestmark = pytest.mark.data


def test_kddcup99_counts(data_dir):
    require_file(data_dir, "kddcup99/kddcup.data_10_percent.gz")
    full = load_dataset("kddcup99", data_dir)
    assert (full.n_normal, full.n_anomalous) == (97_278, 396_743)
    assert load_dataset("kddcup99-rev", data_dir).n_anomalous == 8_752
    inv = load_dataset("kddcup99-inv", data_dir)
    assert (inv.n_normal, inv.n_anomalous) == (396_743, 97_278)


def test_bank_counts(data_dir):
    require_file(data_dir, "bank/bank-additional-full-nominal.arff.gz")
    ds = load_dataset("bank", data_dir)
    assert (ds.n_normal, ds.n_anomalous) == (36_548, 4_640)


def test_nsl_kdd_counts(data_dir):
    require_file(data_dir, "nsl-kdd/KDDTrain+_20Percent.txt.gz")
    require_file(data_dir, "nsl-kdd/KDDTest+.txt.gz")
    ds = load_dataset("nsl-kdd", data_dir)
    assert len(ds) == 25_192 + 22_544
    assert (ds.classes == "normal").sum() == ds.n_normal
    assert ds.n_normal - 9_711 == 13_449  # KDDTest+ has 9,711 normals; the 20% subset 13,449


def test_mnist_test_set(data_dir):
    require_file(data_dir, "mnist/t10k-images-idx3-ubyte.gz")
    ds = load_dataset("mnist", data_dir)
    assert len(ds) == 10_000 and ds.n_normal == 980 and len(ds.columns) == 784
