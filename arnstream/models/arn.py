"""ARN: Adversarial Regularized Reconstruction (section III of the paper).

A probabilistic encoder q(z|x) and a generator g(z) rewrite each normal record x into a
close variant x~; the discriminator p(y|x) (y = 1: anomalous) learns real x as normal and
x~ as anomalous (eq. 2), while the generator tries to have x~ called normal, stays close to
x and keeps q(z|x) near N(0, I) (eq. 3). The trained discriminator is the detector.

Heads: ARN^N relaxes every output with a sigmoid; ARN^G samples each one-hot categorical
group with the straight-through Gumbel-softmax (temperature annealed), numerics as ARN^N.
Variants: objective="elbo" is ARN^GE (eq. 1 optimised jointly, not adversarially);
kl_weight=0 is ARN^X-KLD.

Labelled anomalies train the discriminator as eq. 4 says, and also a label head
(label_head.py), which score_mode="either" reads beside D and the reconstruction error.

Every normalisation is LayerNorm: per record, so a record's score never depends on the other
records in its batch (the public code's batch-statistics BatchNorm does; see docs/results.md).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .label_head import LabelHead, fit_label_head, label_scale
from .layers import PackedDropout, adam
from .torch_detector import TorchDetector
from .training import EpochRecord, StepContext

HEADS = ("numeric", "gumbel")
OUTPUTS = ("sigmoid", "clamp")
SCORE_MODES = ("discriminator", "combined", "either")
FIELD_KINDS = ("all", "categorical")  # which fields one-field-off negatives redraw
REFERENCE_ROWS = 20000  # training normals that scale the parts of the combined and either scores
# score_mode=either scales each part so that this quantile of training normals sits at 1: the
# parts' tails line up, so a threshold calibrated on the larger of the two asks each part to be
# about equally rare (the 99th: ~200 of the 20,000 rows, a stable estimate)
TAIL_QUANTILE = 0.99
OBJECTIVES = ("adversarial", "elbo")
KL_SCHEDULES = ("constant", "warmup", "decay")
KL_FORMS = ("gaussian", "public-code")
EMA_STARTS = ("init", "warmup", "half", "mean")  # what the averaged discriminator starts from


def _linear(n_in: int, n_out: int, spectral: bool) -> nn.Module:
    layer = nn.Linear(n_in, n_out)
    return nn.utils.parametrizations.spectral_norm(layer) if spectral else layer


def _discriminator_net(n_features: int, w: int, dropout: float, sn: bool) -> nn.Sequential:
    # activations work in place here and in the generator: each follows a Linear or a LayerNorm,
    # whose backward needs its input, not its output (same numbers, ~4% less time per step)
    return nn.Sequential(
        _linear(n_features, w, sn), nn.LayerNorm(w), nn.LeakyReLU(0.2, inplace=True),
        _linear(w, 2 * w, sn), nn.LayerNorm(2 * w), nn.LeakyReLU(0.2, inplace=True),
        _linear(2 * w, 4 * w, sn), nn.LayerNorm(4 * w), nn.LeakyReLU(0.2, inplace=True),
        _linear(4 * w, w, sn), nn.LayerNorm(w), nn.ReLU(inplace=True),
        _linear(w, w // 2, sn), nn.LayerNorm(w // 2), nn.ReLU(inplace=True), PackedDropout(dropout),
        _linear(w // 2, w // 4, sn), nn.ReLU(inplace=True), PackedDropout(dropout),
        _linear(w // 4, 1, sn),
    )


class DiscriminatorEnsemble(nn.Module):
    """K independently initialised discriminators; forward gives their logits, shape (K, n).

    Why: which cue a single D latches onto depends on its initialisation (on one split of
    KDDCUP99_Rev the same data gave AUC 0.84 or 0.98 by model seed alone); D's that fail
    differently average out.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([d(x) for d in self.members]).squeeze(-1)


class ARNModule(nn.Module):
    """Encoder q(z|x), generator g(z) and discriminator D(x) -> logit of p(anomalous | x)."""

    def __init__(self, n_features: int, groups: tuple[tuple[int, int], ...], head: str,
                 latent_dim: int, hidden: int, d_width: int, dropout: float, spectral_norm: bool,
                 output: str = "sigmoid", discriminators: int = 1):
        super().__init__()
        h, w = hidden, d_width
        self.groups = groups
        self.head = head
        self.output = output
        numeric = np.ones(n_features, dtype=bool)
        for a, b in groups:
            numeric[a:b] = False
        self.register_buffer("numeric_mask", torch.as_tensor(numeric), persistent=False)
        self.encoder = nn.Sequential(
            nn.Linear(n_features, 2 * h), nn.LayerNorm(2 * h), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(2 * h, h), nn.LayerNorm(h), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(h, h),
        )
        self.to_mu = nn.Linear(h, latent_dim)
        self.to_logvar = nn.Linear(h, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, h), nn.ReLU(inplace=True),
            nn.Linear(h, 2 * h), nn.LayerNorm(2 * h), nn.ReLU(inplace=True), PackedDropout(dropout),
            nn.Linear(2 * h, n_features),
        )
        nets = [_discriminator_net(n_features, w, dropout, spectral_norm) for _ in range(discriminators)]
        self.discriminator = nets[0] if discriminators == 1 else DiscriminatorEnsemble(nets)
        self.label_head: LabelHead | None = None  # fitted after training when labelled anomalies were given

    def generator_parameters(self):
        for part in (self.encoder, self.to_mu, self.to_logvar, self.decoder):
            yield from part.parameters()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h).clamp(-12.0, 8.0)

    def squash(self, logits: torch.Tensor) -> torch.Tensor:
        """Numeric outputs in [0, 1]: a sigmoid, or a straight-through clamp.

        The clamp reaches exact 0 and 1 as real min-max-scaled data does (flags, zero
        counts), so the discriminator cannot tell generated rows by their softness alone;
        its backward pass is the identity, so no output gets stuck at a bound.
        """
        if self.output == "sigmoid":
            return torch.sigmoid(logits)
        return logits + (logits.clamp(0.0, 1.0) - logits).detach()

    def relax(self, logits: torch.Tensor, tau: float) -> torch.Tensor:
        """Decoder logits -> record-shaped x~ (squash; Gumbel-softmax per group for ARN^G)."""
        if self.head == "numeric" or not self.groups:
            return self.squash(logits)
        out = torch.where(self.numeric_mask, self.squash(logits), torch.zeros_like(logits))
        parts = [out]
        for a, b in self.groups:
            onehot = F.gumbel_softmax(logits[:, a:b], tau=tau, hard=True)
            parts.append(F.pad(onehot, (a, logits.shape[1] - b)))
        return torch.stack(parts).sum(0)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction through the posterior mean (no sampling)."""
        logits = self.decoder(self.encode(x)[0])
        out = self.squash(logits)
        if self.head == "gumbel":
            for a, b in self.groups:
                out = torch.cat([out[:, :a], torch.softmax(logits[:, a:b], 1), out[:, b:]], 1)
        return out

    def forward(self, x: torch.Tensor, tau: float = 1.0):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.relax(self.decoder(z), tau), mu, logvar

    def discriminate_each(self, x: torch.Tensor) -> torch.Tensor:
        """Every discriminator's logit, shape (K, n)."""
        return self.discriminator(x).reshape(-1, x.shape[0])  # shape[0], not len(): traceable

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """logit of p(anomalous | x): the mean logit of the discriminators."""
        return self.discriminate_each(x).mean(0)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) as in eq. 3, averaged over batch and latent dims."""
    return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).mean()


def public_code_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The expression the paper's public code uses instead (kept for fidelity runs only)."""
    return (0.5 * (-0.5 * logvar + torch.exp(0.5 * logvar) + mu.pow(2))).mean()


def noisy_labels(target: float, n: int, step: int, smooth: float, flip: float, decay: float,
                 device) -> torch.Tensor:
    """Soft labels in [0, s] (or [1 - s, 1]) with a fraction p flipped; s, p shrink by decay^step.

    This is the paper's schedule (section IV-E, public code): noisy labels early keep D from
    overpowering G, and the noise fades as training settles.
    """
    factor = decay ** step
    s, p = smooth * factor, flip * factor
    u = torch.rand(n, device=device) * s
    y = u if target == 0.0 else 1.0 - u
    n_flip = int(p * n)
    if n_flip:
        idx = torch.randperm(n, device=device)[:n_flip]
        y[idx] = 1.0 - y[idx]
    return y


def _cycled(x: torch.Tensor, k: int) -> torch.Tensor:
    """The batch's first k rows; past its end, the batch again (negative shares above 1)."""
    if k <= len(x):
        return x[:k]
    return x.repeat(-(-k // len(x)), 1)[:k]


class ARN(TorchDetector):
    name = "arn"
    shape_params = ("head", "latent_dim", "hidden", "d_width", "spectral_norm", "discriminators")

    def __init__(
        self,
        head: str = "numeric",
        objective: str = "adversarial",
        latent_dim: int = 16,
        hidden: int = 32,
        d_width: int = 64,
        dropout: float = 0.2,
        spectral_norm: bool = False,
        discriminators: int = 4,
        member_bagging: bool = False,
        output: str = "sigmoid",
        d_noise: float = 0.0,
        box_negatives: float = 0.25,
        box_margin: float = 0.5,
        mix_negatives: float = 0.0,
        mix_fields: float = 0.5,
        field_negatives: float = 0.25,
        field_margin: float = 0.0,
        field_kinds: str = "categorical",
        numeric_negatives: float = 0.0,
        score_mode: str = "discriminator",
        epochs: int = 30,
        batch_size: int = 1024,
        lr_d: float = 1e-5,
        lr_g: float = 1e-4,
        adv_weight: float = 0.01,
        rec_weight: float = 1.0,
        kl_weight: float = 1.0,
        kl_form: str = "gaussian",
        kl_schedule: str = "decay",
        kl_decay: float = 0.998,
        label_smooth: float = 0.3,
        label_flip: float = 0.3,
        label_decay: float = 0.998,
        tau_start: float = 1.0,
        tau_min: float = 0.2,
        tau_decay: float = 0.999,
        ema_decay: float = 0.999,
        ema_start: str = "mean",
        weak_weight: float = 1.0,
        seed: int = 0,
        device: str = "auto",
    ):
        self.head = head
        self.objective = objective
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.d_width = d_width
        self.dropout = dropout
        self.spectral_norm = spectral_norm
        self.discriminators = discriminators
        self.member_bagging = member_bagging
        self.output = output
        self.d_noise = d_noise
        self.box_negatives = box_negatives
        self.box_margin = box_margin
        self.mix_negatives = mix_negatives
        self.mix_fields = mix_fields
        self.field_negatives = field_negatives
        self.field_margin = field_margin
        self.field_kinds = field_kinds
        self.numeric_negatives = numeric_negatives
        self.score_mode = score_mode
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr_d = lr_d
        self.lr_g = lr_g
        self.adv_weight = adv_weight
        self.rec_weight = rec_weight
        self.kl_weight = kl_weight
        self.kl_form = kl_form
        self.kl_schedule = kl_schedule
        self.kl_decay = kl_decay
        self.label_smooth = label_smooth
        self.label_flip = label_flip
        self.label_decay = label_decay
        self.tau_start = tau_start
        self.tau_min = tau_min
        self.tau_decay = tau_decay
        self.ema_decay = ema_decay
        self.ema_start = ema_start
        self.weak_weight = weak_weight
        self.seed = seed
        self.device = device
        for name, value, allowed in (("head", head, HEADS), ("objective", objective, OBJECTIVES),
                                     ("kl_schedule", kl_schedule, KL_SCHEDULES),
                                     ("kl_form", kl_form, KL_FORMS), ("output", output, OUTPUTS),
                                     ("score_mode", score_mode, SCORE_MODES),
                                     ("field_kinds", field_kinds, FIELD_KINDS),
                                     ("ema_start", ema_start, EMA_STARTS)):
            if value not in allowed:
                raise ModelError(f"ARN {name} '{value}' is not one of {allowed}")
        if not (isinstance(discriminators, int) and discriminators >= 1):
            raise ModelError(f"ARN discriminators must be a positive integer, got {discriminators!r}")
        if not 0.0 <= dropout < 1.0:
            raise ModelError(f"ARN dropout must be in [0, 1), got {dropout!r}")
        for name in ("box_negatives", "mix_negatives", "field_negatives", "numeric_negatives"):
            if not getattr(self, name) >= 0.0:  # a share of the batch; above 1 the batch's rows repeat
                raise ModelError(f"ARN {name} must be a share >= 0 of the batch, got {getattr(self, name)!r}")

    @classmethod
    def params_from_artifact(cls, params):
        # artifacts saved before the ensemble and the one-field-off negatives (2026-11-29)
        # were trained with one discriminator and without those negatives; those before
        # 2026-11-30 averaged D from its initial weights
        return {"discriminators": 1, "field_negatives": 0.0, "ema_start": "init", **params}

    @classmethod
    def _unit_test_params(cls):
        return {"epochs": 4, "batch_size": 128, "lr_d": 1e-3, "lr_g": 1e-3, "device": "cpu",
                "ema_decay": 0.9, "box_negatives": 1.0}

    # ------------------------------------------------------------- schedules
    def temperature(self, step: int) -> float:
        return max(self.tau_min, self.tau_start * self.tau_decay ** step)

    def kl_beta(self, step: int) -> float:
        if self.kl_schedule == "decay":
            return self.kl_weight * self.kl_decay ** step
        if self.kl_schedule == "warmup":
            return self.kl_weight * (1.0 - self.kl_decay ** step)
        return self.kl_weight

    # ------------------------------------------------------------ TorchDetector
    def build_module(self, n_features: int) -> ARNModule:
        groups = tuple(getattr(self, "feature_groups_", ()))
        return ARNModule(n_features, groups, self.head, self.latent_dim, self.hidden,
                         self.d_width, self.dropout, self.spectral_norm, self.output,
                         self.discriminators)

    def configure(self, module: ARNModule) -> None:
        self._kl = gaussian_kl if self.kl_form == "gaussian" else public_code_kl
        if self.objective == "elbo":
            self._opt_joint = adam(module.parameters(), self.lr_g)
        else:
            self._opt_d = adam(module.discriminator.parameters(), self.lr_d)
            self._opt_g = adam(module.generator_parameters(), self.lr_g)
        self._d_params = list(module.discriminator.parameters())
        self._ema = [p.detach().clone() for p in self._d_params] if self.ema_decay > 0 else None
        self._best = None
        # field index of each column: a numeric column is a field, a one-hot group is one
        field_of = np.arange(self.n_features_in_)
        for i, (a, b) in enumerate(self.feature_groups_):
            field_of[a:b] = self.n_features_in_ + i
        _, field_of = np.unique(field_of, return_inverse=True)
        self._field_of = torch.as_tensor(field_of, device=self.device_)
        # fields one-field-off negatives may redraw, as a range of field indices (one-hot
        # groups got the largest ones above); empty for field_kinds=categorical without groups
        n_fields, n_groups = int(field_of.max()) + 1, len(self.feature_groups_)
        first = n_fields - n_groups if self.field_kinds == "categorical" else 0
        self._redraw_fields = (first, n_fields)
        self._numeric_fields = (0, n_fields - n_groups)

    def step_extra(self, X, y) -> dict:
        if y is None or not (y == 1).any():
            return {}
        return {"anomalies": torch.as_tensor(X[y == 1], device=self.device_)}

    def _noisy(self, target: float, n: int, step: int) -> torch.Tensor:
        return noisy_labels(target, n, step, self.label_smooth, self.label_flip,
                            self.label_decay, self.device_)

    def training_step(self, x: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        m: ARNModule = self.module_
        step, n = ctx.step, x.shape[0]
        anomalies = ctx.extra.get("anomalies")
        if anomalies is not None:
            # eq. 4: a few labelled anomalies ride along in every batch
            k = min(len(anomalies), max(1, n // 8))
            pick = torch.randint(len(anomalies), (k,), generator=ctx.generator).to(x.device)
            x_a = anomalies.index_select(0, pick)
            gen_in = torch.cat([x, x_a])
        else:
            x_a, gen_in = None, x
        x_fake, mu, logvar = m(gen_in, self.temperature(step))
        rec = F.mse_loss(x_fake[:n], x)
        kl = self._kl(mu, logvar)
        beta = self.kl_beta(step)

        # D sees: real normals -> 0, every generated variant -> 1, labelled anomalies -> 1
        targets = [self._noisy(0.0, n, step), self._noisy(1.0, len(gen_in), step)]
        d_inputs = [x, x_fake if self.objective == "elbo" else x_fake.detach()]

        def anomalous(rows: torch.Tensor) -> None:  # labels drawn right away: the RNG order is part of a seed
            d_inputs.append(rows)
            targets.append(self._noisy(1.0, len(rows), step))

        if self.box_negatives > 0:
            anomalous(self._box_samples(int(self.box_negatives * n), x.device))
        if self.mix_negatives > 0:
            anomalous(self._mixed_samples(x, int(self.mix_negatives * n)))
        for share, fields in ((self.field_negatives, self._redraw_fields),
                              (self.numeric_negatives, self._numeric_fields)):
            if share > 0 and fields[0] < fields[1]:
                anomalous(self._one_field_off(x, int(share * n), fields))
        if x_a is not None:
            anomalous(x_a)
        # each discriminator learns on its own (the ensemble is averaged only when scoring)
        d_logits = m.discriminate_each(self._instance_noise(torch.cat(d_inputs)))
        d_targets = torch.cat(targets).expand_as(d_logits)
        loss_d = F.binary_cross_entropy_with_logits(d_logits, d_targets, reduction="none")
        if x_a is not None:
            weights = torch.ones_like(loss_d)
            weights[:, -len(x_a):] = self.weak_weight
            loss_d = loss_d * weights
        if self.member_bagging:
            # online bagging (Oza & Russell, 2001): each member weighs each row by its own
            # Poisson(1) draw, a bootstrap resample per step, so members err less alike
            loss_d = loss_d * torch.poisson(torch.ones_like(loss_d))
        loss_d = loss_d.mean()  # Adam normalises each member's gradient: the 1/K does not slow it

        if self.objective == "elbo":
            # ARN^GE: one objective, all parameters together (no adversary)
            loss = loss_d + self.rec_weight * rec + beta * kl
            self._opt_joint.zero_grad(set_to_none=True)
            loss.backward()
            self._opt_joint.step()
            self._update_ema(step)
            return {"loss_d": loss_d, "rec": rec, "kl": kl}

        self._opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self._opt_d.step()
        self._update_ema(step)

        # G step: variants (of normals and of labelled anomalies) should be called normal
        for p in self._d_params:
            p.requires_grad_(False)
        fake_logits = m.discriminate_each(self._instance_noise(x_fake))
        adv = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        for p in self._d_params:
            p.requires_grad_(True)
        loss_g = self.adv_weight * adv + self.rec_weight * rec + beta * kl
        self._opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self._opt_g.step()
        return {"loss_d": loss_d, "loss_g": loss_g, "adv": adv, "rec": rec, "kl": kl}

    def _box_samples(self, k: int, device, margin: float | None = None) -> torch.Tensor:
        """Uniform points in the training box widened by box_margin, with valid one-hot
        groups: far-off rows D must call anomalous, so that it cannot extrapolate
        'more extreme than the generator's variants' into 'more normal than normal'."""
        d, margin = self.n_features_in_, self.box_margin if margin is None else margin
        x = torch.rand(k, d, device=device) * (1 + 2 * margin) - margin
        for a, b in self.feature_groups_:
            pick = torch.randint(a, b, (k,), device=device)
            x[:, a:b] = 0.0
            x[torch.arange(k, device=device), pick] = 1.0
        return x

    def _mixed_samples(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Real rows with a random `mix_fields` share of their fields taken from other rows:
        plausible values in implausible combinations, inside the data's box, where box
        negatives say nothing."""
        base = _cycled(x, k)
        donor = _cycled(x[torch.randperm(len(x), device=x.device)], k)
        n_fields = int(self._field_of.max()) + 1
        take = torch.rand(k, n_fields, device=x.device) < self.mix_fields
        return torch.where(take[:, self._field_of], donor, base)

    def _one_field_off(self, x: torch.Tensor, k: int, fields: tuple[int, int]) -> torch.Tensor:
        """Real rows with one field, of the `fields` range, replaced by a random draw (a one-hot
        group: a uniform category; a numeric column: a uniform value in the training range
        widened by field_margin): D must learn, field by field, which values normal
        traffic never takes (a rare service or flag), where the generator's variants and
        the box's far-off points teach it nothing."""
        pick = torch.randint(*fields, (k, 1), device=x.device)
        values = self._box_samples(k, x.device, self.field_margin)
        return torch.where(self._field_of == pick, values, _cycled(x, k))

    def _instance_noise(self, x: torch.Tensor) -> torch.Tensor:
        """Gaussian noise on what D sees in training (never when scoring): blurs the fine
        texture that tells generated rows from real ones without telling anomalies apart."""
        return x + self.d_noise * torch.randn_like(x) if self.d_noise > 0 else x

    def ema_rate(self, step: int) -> float:
        """The averaged discriminator's decay at a step (it scores; training never reads it).

        `init` (before 2026-11-30) seeds the average with the random initial weights and decays
        at a constant rate: they still made up 0.999^steps of it at the end, 32% after NSL-KDD's
        ~1,140 steps. The others forget them at once and differ in how much the late steps
        count until ema_decay takes over: `mean` all steps alike, `half` in proportion to the
        step, `warmup` (TensorFlow's ExponentialMovingAverage num_updates rule) mostly the
        last tenth. docs/results.md, "The averaged discriminator"."""
        if self.ema_start == "warmup":
            return min(self.ema_decay, (1.0 + step) / (10.0 + step))
        if self.ema_start == "half":  # weights that grow linearly with the step (most from the last half)
            return min(self.ema_decay, (1.0 + step) / (3.0 + step))
        if self.ema_start == "mean":  # the plain mean of every step's weights until the decay takes over
            return min(self.ema_decay, step / (1.0 + step))
        return self.ema_decay

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        if self._ema is None:
            return
        torch._foreach_lerp_(self._ema, [p.detach() for p in self._d_params], 1.0 - self.ema_rate(step))

    def _swap_ema(self) -> None:
        """Exchange live and averaged discriminator weights (score with the average)."""
        if self._ema is None:
            return
        with torch.no_grad():
            for p, e in zip(self._d_params, self._ema):
                tmp = p.detach().clone()
                p.copy_(e)
                e.copy_(tmp)

    @torch.no_grad()
    def epoch_evaluation(self, epoch: int) -> dict[str, float]:
        """Label-free signals on validation normals; AUC only if labels were passed explicitly."""
        if self._X_val is None:
            return {}
        m: ARNModule = self.module_
        m.eval()
        self._swap_ema()
        x = self._X_val
        p_all = torch.sigmoid(m.discriminate(x))
        labelled = self._y_val is not None and len(np.unique(self._y_val)) == 2
        if labelled:  # the label-free signals stay on normals, as they would be without labels
            normal = torch.as_tensor(self._y_val == 0, device=x.device)
            x, p_real = x[normal], p_all[normal]
        else:
            p_real = p_all
        x_fake, _, _ = m(x, self.tau_min)
        p_fake = torch.sigmoid(m.discriminate(x_fake))
        out = {"val_p_real": float(p_real.mean()), "val_p_fake": float(p_fake.mean()),
               "val_rec": float(F.mse_loss(x_fake, x))}
        if labelled:
            from sklearn.metrics import roc_auc_score

            out["val_auc"] = float(roc_auc_score(self._y_val, p_all.cpu().numpy()))
        self._swap_ema()
        m.train()
        return out

    def after_epoch(self, record: EpochRecord):
        auc = record.evaluation.get("val_auc")
        if auc is not None and (self._best is None or auc > self._best[0]):
            self._swap_ema()
            self._best = (auc, record.epoch, {k: v.detach().clone() for k, v in self.module_.state_dict().items()})
            self._swap_ema()
        return None

    def _fit(self, X, y, X_val, y_val) -> None:
        if getattr(self, "module_", None) is not None:
            self.module_.label_head = None  # a warm start's labels are not this fit's
        super()._fit(X, y, X_val, y_val)
        if self._best is not None:
            # labelled validation was passed explicitly: keep the best epoch's weights
            self.module_.load_state_dict(self._best[2])
            self.selected_epoch_ = self._best[1]
        else:
            self._swap_ema()  # the averaged discriminator is the detector
            self.selected_epoch_ = len(self.history_)
        self._ema = self._best = None
        self._opt_d = self._opt_g = self._opt_joint = None
        normal = X if y is None else X[y != 1]
        ref = normal[np.random.default_rng(self.seed).permutation(len(normal))[:REFERENCE_ROWS]]
        self._fit_reference(ref)
        if y is not None and (y == 1).any():
            anomalies = torch.as_tensor(X[y == 1], device=self.device_)
            head = fit_label_head(torch.as_tensor(normal, device=self.device_), anomalies, self.seed)
            self.module_.label_head = head
            self.reference_ = np.vstack([self.reference_, label_scale(head, anomalies)])

    @torch.no_grad()
    def _components(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """logit p(anomaly | x) and log reconstruction error, row by row."""
        m: ARNModule = self.module_
        logit = m.discriminate(x)
        rec = (m.reconstruct(x) - x).pow(2).mean(1)
        return logit, torch.log(rec + 1e-8)

    def _component_arrays(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = self._map_batches(self._components, X)
        return tuple(torch.cat([p[k] for p in parts]).float().cpu().numpy() for k in range(2))

    def components(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the discriminators' mean logit and the log reconstruction error (the two
        parts of score_mode=combined), to see which part of the model finds what."""
        self._check_fitted()
        return self._component_arrays(self._check_matrix(X, "X", n_features=self.n_features_in_))

    def _fit_reference(self, ref: np.ndarray) -> None:
        """Per component on training normals: median, IQR (score_mode=combined) and the
        distance from the median to the TAIL_QUANTILE (score_mode=either)."""
        stats = []
        for v in self._component_arrays(ref):
            q1, med, q3, tail = np.quantile(v.astype(np.float64), [0.25, 0.5, 0.75, TAIL_QUANTILE])
            stats.append([med, max(q3 - q1, 1e-6), max(tail - med, 1e-6)])
        self.reference_ = np.asarray(stats, dtype=np.float64)

    def alternative_scores(self, X) -> dict[str, np.ndarray]:
        """Every scoring of this model (SCORE_MODES): D alone, and D with the reconstruction error."""
        current = self.score_mode
        out = {}
        try:
            for mode in SCORE_MODES:
                self.score_mode = mode
                out[mode] = self.score(X)
        finally:
            self.score_mode = current
        return out

    def score_batch(self, batch: torch.Tensor) -> torch.Tensor:
        if self.score_mode == "discriminator":
            return torch.sigmoid(self.module_.discriminate(batch))
        logit, log_rec = self._components(batch)
        # plain floats: constants of the model, which tracing for serving bakes in without a warning
        (d_median, d_iqr, d_tail), (rec_median, rec_iqr, rec_tail) = self.reference_[:2].tolist()
        if self.score_mode == "combined":  # the sum of both parts' robust z-scores against training normals
            return (logit - d_median) / d_iqr + (log_rec - rec_median) / rec_iqr
        if np.isnan(d_tail):
            raise ModelError("score_mode 'either' needs a model trained since it exists (2026-11-30); "
                             "this one keeps no tail scale: retrain it, or score with 'combined'")
        # either: the larger part, each scaled to its tail. A sum dilutes a part that alone
        # separates (a retrained D on the attack its labels taught) with the other's noise
        score = torch.maximum((logit - d_median) / d_tail, (log_rec - rec_median) / rec_tail)
        head = self.module_.label_head
        if head is None:
            return score
        w_median, _, w_tail = self.reference_[2].tolist()
        return torch.maximum(score, (head(batch) - w_median) / w_tail)

    # ---------------------------------------------------------------- generator
    @torch.no_grad()
    def generate(self, X: np.ndarray, seed: int = 0) -> np.ndarray:
        """Generated anomalous variants x~ of the rows of X (same encoding as X)."""
        self._check_fitted()
        X = self._check_matrix(X, "X", n_features=self.n_features_in_)
        torch.manual_seed(seed)
        self.module_.eval()
        x = torch.as_tensor(X, device=self.device_)
        x_fake, _, _ = self.module_(x, self.tau_min)
        return x_fake.cpu().numpy()

    def _get_state(self):
        arrays, meta = super()._get_state()
        meta["selected_epoch"] = getattr(self, "selected_epoch_", None)
        meta["reference"] = self.reference_.tolist()
        return arrays, meta

    def _set_state(self, arrays, meta) -> None:
        prefix = "label_head."
        super()._set_state({k: v for k, v in arrays.items() if not k.startswith(prefix)}, meta)
        head = {k[len(prefix):]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith(prefix)}
        if head:
            self.module_.label_head = LabelHead(self.n_features_in_, len(head["0.weight"])).to(self.device_)
            self.module_.label_head.load_state_dict(head)
            self.module_.label_head.requires_grad_(False)
            self.module_.eval()
        self.selected_epoch_ = meta.get("selected_epoch")
        reference = np.asarray(meta["reference"], dtype=np.float64)
        if reference.shape == (2, 2):  # saved before score_mode=either: no tail scale
            reference = np.c_[reference, np.full(2, np.nan)]
        self.reference_ = reference
