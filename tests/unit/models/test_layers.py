import pytest
import torch
from torch import nn

from arnstream.models.layers import PackedDropout, adam, keep_mask


def test_keep_mask_drops_at_the_rate_asked_and_keeps_the_expectation():
    torch.manual_seed(0)
    mask = keep_mask(torch.Size([1000, 1001]), 0.2, torch.device("cpu"))  # odd count: the last draw is half used
    kept = mask > 0
    assert abs(kept.float().mean().item() - 0.8) < 0.002
    assert torch.allclose(mask[kept], torch.tensor(1 / 0.8), rtol=1e-4)
    assert abs(mask.mean().item() - 1.0) < 0.003


def test_keep_mask_is_uniform_over_positions():
    # each half of a 32-bit draw must be as random as the other: even and odd positions alike
    torch.manual_seed(1)
    kept = keep_mask(torch.Size([2_000_000]), 0.5, torch.device("cpu")) > 0
    assert abs(kept[0::2].float().mean().item() - 0.5) < 0.003
    assert abs(kept[1::2].float().mean().item() - 0.5) < 0.003


def test_packed_dropout_is_seeded_and_the_identity_in_eval():
    layer, x = PackedDropout(0.3), torch.randn(64, 16)
    torch.manual_seed(5)
    a = layer(x)
    torch.manual_seed(5)
    assert torch.equal(a, layer(x))
    assert not torch.equal(a, x)
    layer.eval()
    assert layer(x) is x
    assert PackedDropout(0.0)(x) is x


def test_packed_dropout_passes_gradients_through_the_kept_elements_only():
    x = torch.randn(32, 8, requires_grad=True)
    torch.manual_seed(2)
    y = PackedDropout(0.5)(x)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.allclose(x.grad[kept], torch.tensor(2.0))
    assert torch.all(x.grad[~kept] == 0)


def test_packed_dropout_refuses_a_probability_outside_0_1():
    with pytest.raises(ValueError, match="dropout"):
        PackedDropout(1.0)


def test_a_module_has_the_same_state_dict_with_either_dropout():
    ours = nn.Sequential(nn.Linear(4, 4), PackedDropout(0.2), nn.Linear(4, 1))
    torchs = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2), nn.Linear(4, 1))
    assert ours.state_dict().keys() == torchs.state_dict().keys()
    torchs.load_state_dict(ours.state_dict())


def test_fused_adam_takes_the_same_steps_as_torchs_default():
    torch.manual_seed(0)
    a = nn.Linear(8, 3)
    b = nn.Linear(8, 3)
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = adam(a.parameters(), 1e-2), torch.optim.Adam(b.parameters(), lr=1e-2)
    x = torch.randn(16, 8)
    for _ in range(20):
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    assert torch.allclose(a.weight, b.weight, atol=1e-6)
