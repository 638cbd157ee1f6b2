import numpy as np
import torch

from arnstream.models.label_head import LabelHead, fit_label_head, label_scale


def _two_clusters(n_normal=2000, n_labelled=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    normal = torch.rand(n_normal, 6, generator=g) * 0.6
    labelled = 0.8 + 0.05 * torch.rand(n_labelled, 6, generator=g)
    return normal, labelled


def test_a_few_labels_separate_from_thousands_of_normals():
    normal, labelled = _two_clusters()
    head = fit_label_head(normal, labelled, seed=0)
    fresh = 0.8 + 0.05 * torch.rand(50, 6, generator=torch.Generator().manual_seed(9))
    assert head(fresh).min() > head(normal).max()
    assert not any(p.requires_grad for p in head.parameters())


def test_the_scale_puts_the_boundary_at_one_and_the_labels_median_at_two():
    normal, labelled = _two_clusters()
    head = fit_label_head(normal, labelled, seed=0)
    centre, _, tail = label_scale(head, labelled)
    logits = head(labelled)
    assert np.isclose((0.0 - centre) / tail, 1.0)
    assert np.isclose((float(logits.median()) - centre) / tail, 2.0)


def test_fitting_is_seeded_and_leaves_the_callers_random_stream_alone():
    normal, labelled = _two_clusters()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = fit_label_head(normal, labelled, seed=1)
    assert torch.equal(torch.rand(3), expected)
    b = fit_label_head(normal, labelled, seed=1)
    assert torch.equal(a(normal[:20]), b(normal[:20]))
    assert isinstance(a, LabelHead)
