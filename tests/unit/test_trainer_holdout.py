"""How much of a training window is held out to calibrate the alert threshold."""

import pytest

from arnstream.models.base import MIN_EXCEEDANCES
from arnstream.trainer import HOLDOUT_MAX_SHARE, HOLDOUT_SHARE, holdout_share


@pytest.mark.parametrize("n", [40_000, 60_000, 99_000])
def test_a_window_too_small_for_its_rate_holds_out_enough_to_calibrate_on(n):
    share = holdout_share(n, 0.001)
    assert HOLDOUT_SHARE < share < HOLDOUT_MAX_SHARE
    assert n * share * 0.001 >= 1.1 * MIN_EXCEEDANCES - 1e-9  # ten above the threshold, a tenth to spare


def test_a_large_window_holds_out_a_tenth_and_a_small_one_at_most_a_third():
    assert holdout_share(1_000_000, 0.001) == HOLDOUT_SHARE
    assert holdout_share(200_000, 0.01) == HOLDOUT_SHARE
    assert holdout_share(3_000, 0.001) == HOLDOUT_MAX_SHARE


def test_training_on_a_small_window_calibrates_on_enough_held_out_records(tmp_path, caplog):
    from arnstream.config import load_config
    from arnstream.registry import Registry
    from arnstream.schema import FlowSchema
    from arnstream.stream.simulator import FlowSimulator
    from arnstream.trainer import train_on_records

    cfg = load_config(None, {}, {"model.name": "iforest", "training.target_fpr": 0.005})
    records, _ = FlowSimulator(seed=0).batch(12_000)
    result = train_on_records(records, FlowSchema.load("flowsim"), cfg, {"n_estimators": 20},
                              registry=Registry(tmp_path), source={"test": 1})
    # a tenth (1,200 records: 6 above a 0.5% threshold) would be too few; 18% is 11 above it
    assert 2_000 < result.n_holdout < 2_400 and result.n_train + result.n_holdout == 12_000
    assert "alert threshold" not in caplog.text


def test_a_versions_reference_keeps_as_many_as_it_may_spread_over_the_window():
    from arnstream.trainer import evenly

    kept = evenly(list(range(11_000)), 10_000)
    assert len(kept) == 10_000 and kept[0] == 0 and kept[-1] >= 10_998 and kept == sorted(set(kept))
    assert evenly(list(range(5)), 10) == [0, 1, 2, 3, 4]
