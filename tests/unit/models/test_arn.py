import hashlib
import json
import logging
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from arnstream.errors import ModelError
from arnstream.models import ARN, Detector, make_detector
from arnstream.models.arn import ARNModule, gaussian_kl, noisy_labels
from arnstream.models.training import StepContext

GROUPS = ((2, 5), (5, 7))


def module(head="gumbel"):
    torch.manual_seed(0)
    return ARNModule(9, GROUPS, head, latent_dim=4, hidden=8, d_width=16, dropout=0.0,
                     spectral_norm=False)


def test_shapes_of_encoder_generator_and_discriminator():
    m = module()
    x = torch.rand(5, 9)
    x_fake, mu, logvar = m(x, tau=0.5)
    assert x_fake.shape == (5, 9) and mu.shape == (5, 4) and logvar.shape == (5, 4)
    assert m.discriminate(x).shape == (5,)


def test_an_ensemble_scores_with_the_mean_logit_of_independent_discriminators():
    torch.manual_seed(0)
    m = ARNModule(9, GROUPS, "numeric", latent_dim=4, hidden=8, d_width=16, dropout=0.0,
                  spectral_norm=False, discriminators=3)
    x = torch.rand(5, 9)
    each = m.discriminate_each(x)
    assert each.shape == (3, 5)
    assert not torch.allclose(each[0], each[1])  # members are initialised independently
    torch.testing.assert_close(m.discriminate(x), each.mean(0))
    # each member learns from its own loss: a loss on one member reaches only its weights
    F.binary_cross_entropy_with_logits(each[1], torch.ones(5)).backward()
    grads = [sum(p.grad.abs().sum() for p in d.parameters() if p.grad is not None)
             for d in m.discriminator.members]
    assert grads[0] == 0 and grads[1] > 0 and grads[2] == 0


def test_gumbel_head_emits_hard_one_hot_groups_and_sigmoid_numerics():
    m = module("gumbel")
    x_fake, _, _ = m(torch.rand(64, 9), tau=0.5)
    for a, b in GROUPS:
        group = x_fake[:, a:b]
        assert torch.all((group == 0) | (group == 1))
        assert torch.all(group.sum(1) == 1)
    numeric = torch.cat([x_fake[:, :2], x_fake[:, 7:]], 1)
    assert torch.all((numeric > 0) & (numeric < 1))


def test_straight_through_gradient_reaches_the_categorical_logits():
    m = module("gumbel")
    x_fake, _, _ = m(torch.rand(16, 9), tau=0.5)
    weights = torch.randn(9)
    (x_fake * weights).sum().backward()
    grad = m.decoder[-1].weight.grad
    assert grad is not None and grad[2:7].abs().sum() > 0


def test_numeric_head_relaxes_everything_with_a_sigmoid():
    m = module("numeric")
    x_fake, _, _ = m(torch.rand(8, 9))
    assert torch.all((x_fake > 0) & (x_fake < 1))
    assert not torch.all((x_fake[:, 2:5] == 0) | (x_fake[:, 2:5] == 1))


def test_every_part_receives_gradients_in_a_training_step(synthetic_problem):
    p = synthetic_problem
    det = ARN(epochs=1, batch_size=256, device="cpu", lr_d=1e-3, lr_g=1e-3)
    det.fit(p["X_train"][:300], feature_groups=p["groups"])
    m = det.module_
    x = torch.as_tensor(p["X_train"][:64])
    x_fake, mu, logvar = m(x, 0.5)
    loss = F.binary_cross_entropy_with_logits(m.discriminate(x_fake), torch.zeros(64)) + gaussian_kl(mu, logvar)
    loss.backward()
    for part in (m.encoder, m.decoder, m.discriminator, m.to_mu, m.to_logvar):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_gaussian_kl_matches_the_closed_form():
    mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, -0.3]])
    var = logvar.exp()
    expected = (0.5 * (var + mu**2 - 1 - logvar)).mean()
    assert gaussian_kl(mu, logvar).item() == pytest.approx(expected.item())
    assert gaussian_kl(torch.zeros(3, 2), torch.zeros(3, 2)).item() == 0.0


def test_label_noise_starts_noisy_and_fades_with_the_schedule():
    torch.manual_seed(0)
    early = noisy_labels(0.0, 10000, step=0, smooth=0.3, flip=0.3, decay=0.99, device="cpu")
    late = noisy_labels(0.0, 10000, step=1000, smooth=0.3, flip=0.3, decay=0.99, device="cpu")
    assert (early > 0.5).mean(dtype=torch.float32).item() == pytest.approx(0.3, abs=0.01)  # flipped
    assert early[early < 0.5].max() <= 0.3 and early[early < 0.5].max() > 0.25
    assert late.max() < 1e-4  # the noise has decayed away
    ones = noisy_labels(1.0, 1000, step=0, smooth=0.3, flip=0.0, decay=0.99, device="cpu")
    assert ones.min() >= 0.7 and ones.max() <= 1.0


def test_temperature_and_kl_schedules():
    det = ARN(tau_start=1.0, tau_min=0.2, tau_decay=0.99, kl_weight=2.0, kl_decay=0.9)
    assert det.temperature(0) == 1.0 and det.temperature(10_000) == 0.2
    assert det.kl_beta(0) == 2.0 and det.kl_beta(50) < 0.02
    warm = ARN(kl_schedule="warmup", kl_weight=1.0, kl_decay=0.9)
    assert warm.kl_beta(0) == 0.0 and warm.kl_beta(100) == pytest.approx(1.0, abs=1e-4)


def test_the_averaged_discriminator_forgets_its_initial_weights():
    def weights(det: ARN, steps: int) -> np.ndarray:
        """What each step's weights (index 0: the initial ones) count in the average at the end."""
        rates = np.array([det.ema_rate(t) for t in range(steps)])
        keep_after = np.append(np.cumprod(rates[::-1])[::-1][1:], 1.0)  # product of the later rates
        return np.concatenate([[np.prod(rates)], (1 - rates) * keep_after])

    assert ARN().ema_start == "mean"
    mean = weights(ARN(ema_decay=0.999), 790)  # a short run (NSL-KDD's 60 epochs are ~1,140 steps)
    assert mean[0] == 0.0 and np.allclose(mean[1:], 1 / 790) and mean.sum() == pytest.approx(1.0)
    assert weights(ARN(ema_decay=0.999), 1500)[1] < weights(ARN(ema_decay=0.999), 1500)[-1]  # then it decays
    assert weights(ARN(ema_start="init"), 790)[0] == pytest.approx(0.999**790)  # 45% random weights: the flaw
    warm, half = weights(ARN(ema_start="warmup"), 790), weights(ARN(ema_start="half"), 790)
    assert max(warm[0], half[0]) < 1e-5 and warm[-1] > half[-1] > mean[-1]  # ever more on the last steps


def test_bad_hyper_parameters_are_named():
    with pytest.raises(ModelError, match="head"):
        ARN(head="softmax")
    with pytest.raises(ModelError, match="no parameter"):
        make_detector("arn-n", learning_rate=1)
    with pytest.raises(ModelError, match="discriminators"):
        ARN(discriminators=0)


def test_weak_labels_teach_the_discriminator_the_labelled_attack(synthetic_problem):
    """eq. 4: a few labelled anomalies of one attack raise its scores against normals."""
    p = synthetic_problem
    ds, split, enc = p["dataset"], p["split"], p["encoder"]
    from arnstream.features.columns import take

    test_classes = ds.classes[split.test]
    X_test = p["X_test"]
    attack_rows = ds.classes == "bruteforce"
    X_attack = enc.transform(take(ds.columns, np.flatnonzero(attack_rows)[:20]))
    X = np.concatenate([p["X_train"], X_attack])
    y = np.r_[np.zeros(len(p["X_train"])), np.ones(len(X_attack))]
    args = dict(epochs=6, batch_size=128, lr_d=1e-3, lr_g=1e-3, device="cpu", ema_decay=0.9, seed=1)
    mask = (test_classes == "normal") | (test_classes == "bruteforce")
    y_eval = (test_classes[mask] == "bruteforce").astype(int)
    plain = ARN(**args).fit(p["X_train"], feature_groups=p["groups"]).score(X_test[mask])
    weak = ARN(**args).fit(X, y, feature_groups=p["groups"]).score(X_test[mask])
    assert roc_auc_score(y_eval, weak) > max(0.97, roc_auc_score(y_eval, plain) - 0.01)


def test_generator_returns_variants_that_decode_back_to_records(synthetic_problem):
    p = synthetic_problem
    det = ARN(head="gumbel", epochs=2, batch_size=256, device="cpu", lr_g=1e-3).fit(
        p["X_train"][:1000], feature_groups=p["groups"])
    variants = det.generate(p["X_train"][:10], seed=0)
    assert variants.shape == (10, p["X_train"].shape[1])
    records = p["encoder"].inverse_transform(variants)
    assert set(records[0]) == {f.name for f in p["encoder"].schema.feature_fields}
    assert records[0]["service"] in p["encoder"].categories_["service"] + ["<unknown>"]
    np.testing.assert_array_equal(det.generate(p["X_train"][:10], seed=0), variants)


def test_labelled_validation_selects_a_checkpoint_only_when_asked(synthetic_problem):
    p = synthetic_problem
    args = dict(epochs=3, batch_size=256, device="cpu", lr_d=1e-3, lr_g=1e-3)
    X_val, y_val = p["X_test"][:400], p["y_test"][:400]
    free = ARN(**args).fit(p["X_train"], feature_groups=p["groups"], X_val=X_val[y_val == 0])
    assert "val_auc" not in free.history_[0] and "val_p_real" in free.history_[0]
    assert free.selected_epoch_ == 3
    chosen = ARN(**args).fit(p["X_train"], feature_groups=p["groups"], X_val=X_val, y_val=y_val)
    aucs = [h["val_auc"] for h in chosen.history_]
    assert chosen.selected_epoch_ == int(np.argmax(aucs)) + 1


def _configured_arn(**kw) -> ARN:
    det = ARN(device="cpu", **kw)
    det._start_training(9, GROUPS)
    return det


def _near_zero_rows(n: int) -> torch.Tensor:
    """Real rows near 0 with each one-hot group at its first category: a redrawn value almost
    surely differs."""
    x = torch.rand(n, 9) * 0.1
    for a, b in GROUPS:
        x[:, a:b] = F.one_hot(torch.zeros(n, dtype=torch.long), b - a).float()
    return x


def test_box_negatives_fill_the_widened_box_with_valid_one_hot_groups():
    torch.manual_seed(0)
    det = _configured_arn(box_margin=0.5)
    box = det._box_samples(2000, "cpu")
    numeric = torch.cat([box[:, :2], box[:, 7:]], 1)
    assert numeric.min() >= -0.5 and numeric.max() <= 1.5
    assert numeric.min() < -0.4 and numeric.max() > 1.4
    for a, b in GROUPS:
        assert torch.all(box[:, a:b].sum(1) == 1) and torch.all((box[:, a:b] == 0) | (box[:, a:b] == 1))


def test_mixed_negatives_take_whole_fields_from_other_real_rows():
    torch.manual_seed(0)
    det = _configured_arn(mix_fields=0.5)
    x = torch.rand(64, 9)
    for a, b in GROUPS:
        x[:, a:b] = F.one_hot(torch.randint(0, b - a, (64,)), b - a).float()
    mixed = det._mixed_samples(x, 32)
    assert mixed.shape == (32, 9)
    for a, b in GROUPS:  # a one-hot group moves as a block: still one-hot
        assert torch.all(mixed[:, a:b].sum(1) == 1)
    changed = (mixed != x[:32]).any(0)
    assert changed.any()  # some fields come from donors...
    for j in range(9):  # ...and every value is some real row's value of that column
        assert torch.isin(mixed[:, j], x[:, j]).all()


def test_one_field_off_negatives_change_exactly_one_field_of_a_real_row():
    torch.manual_seed(0)
    det = _configured_arn(field_kinds="all")
    x = _near_zero_rows(400)
    odd = det._one_field_off(x, 300, det._redraw_fields)
    assert odd.shape == (300, 9)
    fields = [[0], [1], [2, 3, 4], [5, 6], [7], [8]]
    changed = torch.stack([(odd[:, f] != x[:300, f]).any(1) for f in fields], 1)
    assert torch.all(changed.sum(1) <= 1)  # never more than one field per row
    assert changed.sum() > 250  # a one-hot group may draw its own category again
    assert changed.any(0).all()  # every field gets picked
    for a, b in GROUPS:
        assert torch.all(odd[:, a:b].sum(1) == 1)


def test_negative_shares_above_one_reuse_the_batch_rows():
    torch.manual_seed(0)
    det = _configured_arn(field_kinds="all")
    x = _near_zero_rows(100)
    odd = det._one_field_off(x, 250, det._redraw_fields)  # a share of 2.5
    assert odd.shape == (250, 9)
    base = torch.cat([x, x, x[:50]])
    fields = [[0], [1], [2, 3, 4], [5, 6], [7], [8]]
    changed = torch.stack([(odd[:, f] != base[:, f]).any(1) for f in fields], 1)
    assert torch.all(changed.sum(1) <= 1)  # row i is a copy of batch row i % 100, one field off
    assert det._mixed_samples(x, 250).shape == (250, 9)
    with pytest.raises(ModelError, match="field_negatives"):
        ARN(field_negatives=-0.1)


def test_an_artifact_from_before_the_ensemble_loads_as_it_was_trained(synthetic_problem, tmp_path):
    p = synthetic_problem
    det = ARN(epochs=1, batch_size=256, device="cpu", discriminators=1, d_width=128, field_negatives=0.0)
    det.fit(p["X_train"][:300], feature_groups=p["groups"])
    det.save(tmp_path / "m")
    # what an artifact saved before the parameter existed looks like (checksums re-made)
    envelope = tmp_path / "m" / "detector.json"
    data = json.loads(envelope.read_text())
    del data["params"]["discriminators"], data["params"]["field_negatives"], data["params"]["ema_start"]
    envelope.write_text(json.dumps(data))
    sums_path = tmp_path / "m" / "checksums.json"
    sums = json.loads(sums_path.read_text())
    sums["detector.json"] = hashlib.sha256(envelope.read_bytes()).hexdigest()
    sums_path.write_text(json.dumps(sums))
    loaded = Detector.load(tmp_path / "m")
    assert loaded.discriminators == 1 and loaded.field_negatives == 0.0 and loaded.ema_start == "init"
    np.testing.assert_allclose(loaded.score(p["X_test"][:50]), det.score(p["X_test"][:50]), atol=1e-6)


def test_one_field_off_negatives_can_redraw_categorical_fields_only():
    torch.manual_seed(0)
    det = _configured_arn(field_kinds="categorical")
    x = _near_zero_rows(400)
    odd = det._one_field_off(x, 400, det._redraw_fields)
    numeric = [0, 1, 7, 8]
    assert torch.equal(odd[:, numeric], x[:, numeric])
    assert (odd[:, 2:7] != x[:, 2:7]).any(1).sum() > 200  # both groups redrawn, some to other categories
    with pytest.raises(ModelError, match="field_kinds"):
        ARN(field_kinds="numeric")


def test_categorical_field_negatives_are_skipped_when_there_is_no_categorical_field():
    det = ARN(device="cpu", field_negatives=0.25, field_kinds="categorical")
    det._start_training(9, ())
    assert det._redraw_fields[0] == det._redraw_fields[1]
    losses = det.training_step(torch.rand(64, 9), StepContext())
    assert torch.isfinite(losses["loss_d"])


def test_numeric_negatives_redraw_one_numeric_field_and_leave_categories_alone():
    torch.manual_seed(0)
    det = _configured_arn(numeric_negatives=0.25)
    x = _near_zero_rows(400)
    odd = det._one_field_off(x, 400, det._numeric_fields)
    assert torch.equal(odd[:, 2:7], x[:, 2:7])
    changed = (odd != x)[:, [0, 1, 7, 8]]
    assert torch.all(changed.sum(1) == 1) and changed.any(0).all()
    losses = det.training_step(x[:128], StepContext())  # both kinds of negatives in one D step
    assert torch.isfinite(losses["loss_d"])


def test_components_are_the_parts_of_the_combined_score(synthetic_problem):
    p = synthetic_problem
    det = ARN(epochs=1, batch_size=256, device="cpu").fit(p["X_train"][:500], feature_groups=p["groups"])
    logit, log_rec = det.components(p["X_test"][:40])
    assert logit.shape == log_rec.shape == (40,)
    np.testing.assert_allclose(torch.sigmoid(torch.as_tensor(logit)).numpy(), det.score(p["X_test"][:40]), atol=1e-6)
    # per part on training normals: median, IQR, and the distance from the median to the 99th percentile
    (dm, ds, dt), (rm, rs, rt) = det.reference_
    alternatives = det.alternative_scores(p["X_test"][:40])
    np.testing.assert_allclose(alternatives["combined"], (logit - dm) / ds + (log_rec - rm) / rs, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(alternatives["either"], np.maximum((logit - dm) / dt, (log_rec - rm) / rt),
                               rtol=1e-4, atol=1e-4)
    train_logit, train_rec = det.components(p["X_train"][:500])  # the tail scale: 1% of them above 1
    assert abs(((train_logit - dm) / dt > 1).mean() - 0.01) < 0.005
    assert abs(((train_rec - rm) / rt > 1).mean() - 0.01) < 0.005


def test_a_model_saved_before_the_either_score_says_so_and_still_scores_combined(synthetic_problem):
    p = synthetic_problem
    det = ARN(epochs=1, batch_size=256, device="cpu", score_mode="combined").fit(
        p["X_train"][:500], feature_groups=p["groups"])
    X = p["X_test"][:40]
    before = det.score(X)
    arrays, meta = det._get_state()
    meta["reference"] = [row[:2] for row in meta["reference"]]  # what artifacts kept until then
    det._set_state(arrays, meta)
    np.testing.assert_allclose(det.score(X), before, rtol=1e-6)
    det.score_mode = "either"
    with pytest.raises(ModelError, match="retrain it"):
        det.score(X)


@pytest.mark.parametrize("mode", ["combined", "either"])
def test_the_scores_with_the_reconstruction_are_batch_invariant_and_survive_save_and_load(
        synthetic_problem, tmp_path, caplog, mode):
    p = synthetic_problem
    det = ARN(epochs=1, batch_size=256, device="cpu", score_mode=mode).fit(
        p["X_train"][:600], feature_groups=p["groups"])
    X = p["X_test"][:300]
    whole = det.score(X)
    perm = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(det.score(X[perm]), whole[perm], atol=1e-5)
    np.testing.assert_allclose(np.concatenate([det.score(X[i:i + 1]) for i in range(20)]), whole[:20], atol=1e-5)
    det.save(tmp_path / "m")
    np.testing.assert_allclose(Detector.load(tmp_path / "m").score(X), whole, atol=1e-6)
    # what serve scores with (the alerting scores): the traced graph, same numbers, no tracer warning
    with warnings.catch_warnings(record=True) as seen, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        serving = det.serving_scorer()
    assert "cannot trace" not in caplog.text and not [w for w in seen if w.category is torch.jit.TracerWarning]
    np.testing.assert_allclose(serving(X), whole, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bagging", [False, True])
def test_member_bagging_gives_each_discriminator_its_own_resample(bagging):
    det = ARN(discriminators=2, member_bagging=bagging, dropout=0.0, box_negatives=0.0, field_negatives=0.0,
              lr_d=1e-3, device="cpu", seed=0)
    det._start_training(9, GROUPS)
    first, second = det.module_.discriminator.members
    second.load_state_dict(first.state_dict())  # two identical members
    torch.manual_seed(0)
    det.training_step(torch.rand(64, 9), StepContext())
    same = all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    assert same is not bagging  # identical data keeps them identical; a resample each sets them apart


@pytest.fixture(scope="module")
def beacon_problem():
    """Normals, 10 labelled beacons (inside normal ranges: unsupervised ARN misses them), and
    fresh normals and beacons to score."""
    from arnstream.data.synthetic import synthetic_flows
    from arnstream.features import RecordEncoder
    from arnstream.features.columns import take

    ds = synthetic_flows(n_normal=5000, n_anomalous=210, attacks=("beacon",), seed=3)
    normal, beacon = np.flatnonzero(ds.y == 0), np.flatnonzero(ds.y == 1)
    enc = RecordEncoder(ds.schema).fit(take(ds.columns, normal[:3000]))
    X = {name: enc.transform(take(ds.columns, rows)) for name, rows in
         (("normal", normal[:3000]), ("fresh", normal[3000:]), ("labelled", beacon[:10]), ("beacons", beacon[10:]))}
    y = np.r_[np.zeros(3000), np.ones(10)].astype(int)
    det = ARN(epochs=2, batch_size=256, device="cpu", score_mode="either", seed=0).fit(
        np.vstack([X["normal"], X["labelled"]]), y, feature_groups=[(g.start, g.stop) for g in enc.categorical_groups_])
    return det, X


def _recall_at_fresh_tail(det, X) -> float:
    threshold = np.quantile(det.score(X["fresh"]), 0.995)
    return float((det.score(X["beacons"]) > threshold).mean())


def test_labelled_anomalies_get_a_score_part_that_alerts_where_the_discriminator_cannot(beacon_problem):
    det, X = beacon_problem
    head = det.module_.label_head
    assert head is not None and det.reference_.shape == (3, 3)
    x = torch.as_tensor(X["beacons"][:30])
    (dm, _, dt), (rm, _, rt), (wm, _, wt) = det.reference_
    logit, log_rec = det.components(X["beacons"][:30])
    expected = np.maximum.reduce([(logit - dm) / dt, (log_rec - rm) / rt, (head(x).numpy() - wm) / wt])
    np.testing.assert_allclose(det.score(X["beacons"][:30]), expected, rtol=1e-4, atol=1e-4)
    with_head = _recall_at_fresh_tail(det, X)
    det.module_.label_head = None  # the discriminator and the reconstruction alone
    try:
        without = _recall_at_fresh_tail(det, X)
    finally:
        det.module_.label_head = head
    assert with_head >= 0.9 and without <= 0.2, (with_head, without)


def test_the_label_head_is_saved_traced_for_serving_and_dropped_by_a_fit_without_labels(beacon_problem):
    det, X = beacon_problem
    rows = np.vstack([X["fresh"][:50], X["beacons"][:50]])
    before = det.score(rows)
    np.testing.assert_allclose(det.serving_scorer()(rows), before, rtol=1e-5, atol=1e-5)
    clone = ARN(**det.get_params())
    clone.n_features_in_, clone.feature_groups_ = det.n_features_in_, det.feature_groups_
    clone._set_state(*det._get_state())
    np.testing.assert_allclose(clone.score(rows), before, rtol=1e-6)
    clone.warm_start, clone.epochs = True, 1
    clone.fit(X["normal"], feature_groups=det.feature_groups_)  # retraining without labels
    assert clone.module_.label_head is None and clone.reference_.shape == (2, 3)
