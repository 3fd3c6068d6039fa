"""MEDN's losses against hand-computed values (eq. 1, 5-8, 15, 16)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medn.config import LossConfig
from medn.losses import (
    au_loss,
    cosine,
    detach_parts,
    focal_loss,
    medn_loss,
    orthogonal_components,
    orthogonal_loss,
)
from medn.models import MednOutput


def test_focal_loss_equals_cross_entropy_at_gamma_0():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 5, generator=g)
    target = torch.randint(0, 5, (16,), generator=g)
    torch.testing.assert_close(focal_loss(logits, target, gamma=0.0),
                               F.cross_entropy(logits, target))
    # a tiny gamma is continuous with gamma = 0
    torch.testing.assert_close(focal_loss(logits, target, gamma=1e-9),
                               F.cross_entropy(logits, target))


def test_focal_loss_hand_computed_at_gamma_2():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])  # p = (1/4, 3/4)
    target = torch.tensor([1, 0])
    expected = (-(0.25 ** 2) * math.log(0.75) - (0.75 ** 2) * math.log(0.25)) / 2
    assert math.isclose(focal_loss(logits, target).item(), expected, rel_tol=1e-6)
    # easy samples are down-weighted compared with cross-entropy
    assert focal_loss(logits, target).item() < F.cross_entropy(logits, target).item()


def test_au_loss_sums_over_aus_and_averages_over_the_batch():
    logits = torch.zeros(4, 3)
    targets = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]]).float()
    assert math.isclose(au_loss(logits, targets).item(), 3 * math.log(2), rel_tol=1e-6)
    logits = torch.tensor([[2.0, -1.0]])
    targets = torch.tensor([[1.0, 1.0]])
    expected = math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))
    assert math.isclose(au_loss(logits, targets).item(), expected, rel_tol=1e-6)


def test_orthogonal_features_give_zero_loss():
    f_m = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    f_e = torch.tensor([[0.0, 3.0, 0.0], [1.0, 1.0, 0.0]])
    assert orthogonal_loss(f_m, f_e).item() == 0.0
    perp_m, perp_e = orthogonal_components(f_m, f_e)
    torch.testing.assert_close(perp_m, f_m / f_m.norm(dim=1, keepdim=True), rtol=1e-5, atol=1e-6)


def test_identical_features_give_zero_components_and_zero_loss():
    f = torch.tensor([[1.0, 2.0, -2.0]])
    perp_m, perp_e = orthogonal_components(f, f.clone())
    torch.testing.assert_close(perp_m, torch.zeros_like(f), atol=1e-6, rtol=0)
    torch.testing.assert_close(perp_e, torch.zeros_like(f), atol=1e-6, rtol=0)
    assert orthogonal_loss(f, f.clone()).item() < 1e-10


def test_orthogonal_loss_hand_computed_intermediate_case():
    # F_hat_m = (1, 0), F_hat_e = (1, 1)/sqrt2, alpha = 1/sqrt2
    # F_perp_m = (1/2, -1/2), F_perp_e = (0, 1/sqrt2), <.,.> = -1/(2 sqrt2), D = 2 -> 2 * 1/8
    f_m = torch.tensor([[3.0, 0.0], [1.0, 0.0]])
    f_e = torch.tensor([[1.0, 1.0], [0.0, 4.0]])  # second sample orthogonal: loss 0
    perp_m, perp_e = orthogonal_components(f_m, f_e, eps=1e-12)
    torch.testing.assert_close(perp_m[0], torch.tensor([0.5, -0.5]))
    torch.testing.assert_close(perp_e[0], torch.tensor([0.0, 1 / math.sqrt(2)]))
    assert math.isclose(orthogonal_loss(f_m, f_e, eps=1e-12).item(), (0.25 + 0.0) / 2,
                        rel_tol=1e-6)


def test_orthogonal_loss_scales_with_the_feature_dimension():
    # cosine c between the features: <F_perp_m, F_perp_e> = c^3 - c, loss = D (c^3 - c)^2
    c = 0.5
    for d in (2, 8):
        f_m = torch.zeros(1, d)
        f_e = torch.zeros(1, d)
        f_m[0, 0] = 1.0
        f_e[0, 0], f_e[0, 1] = c, math.sqrt(1 - c * c)
        expected = d * (c ** 3 - c) ** 2
        assert math.isclose(orthogonal_loss(f_m, f_e, eps=1e-12).item(), expected, rel_tol=1e-5)


def test_medn_loss_combines_the_parts_with_the_lambdas():
    g = torch.Generator().manual_seed(1)
    out = MednOutput(logits=torch.randn(6, 3, generator=g),
                     au_logits=torch.randn(6, 4, generator=g),
                     f_m=torch.randn(6, 8, generator=g), f_e=torch.randn(6, 8, generator=g))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    aus = (torch.rand(6, 4, generator=g) > 0.5).float()
    cfg = LossConfig(lambda_au=0.5, lambda_orth=2.0, focal_gamma=2.0)
    parts = medn_loss(out, labels, aus, cfg)
    torch.testing.assert_close(parts.cls, focal_loss(out.logits, labels, 2.0))
    torch.testing.assert_close(parts.au, au_loss(out.au_logits, aus))
    torch.testing.assert_close(parts.orth, orthogonal_loss(out.f_m, out.f_e, cfg.orth_eps))
    torch.testing.assert_close(parts.total, parts.cls + 0.5 * parts.au + 2.0 * parts.orth)
    no_orth = medn_loss(out, labels, aus, LossConfig(lambda_orth=0.0))
    torch.testing.assert_close(no_orth.total, no_orth.cls + no_orth.au)
    assert no_orth.orth.item() > 0  # still computed for logging
    logged = detach_parts(parts)
    assert set(logged) == {"loss", "loss_cls", "loss_au", "loss_orth", "abs_cos"}
    assert math.isclose(logged["loss"], parts.total.item(), rel_tol=1e-6)
    hat_m = out.f_m / out.f_m.norm(dim=1, keepdim=True)
    hat_e = out.f_e / out.f_e.norm(dim=1, keepdim=True)
    assert math.isclose(logged["abs_cos"], (hat_m * hat_e).sum(1).abs().mean().item(),
                        rel_tol=1e-5)
    assert not parts.abs_cos.requires_grad  # a measurement, never part of the gradient


def test_losses_are_float32_for_bf16_inputs():
    logits = torch.randn(4, 3).bfloat16()
    target = torch.tensor([0, 1, 2, 0])
    assert focal_loss(logits, target).dtype == torch.float32
    assert au_loss(logits, torch.ones(4, 3)).dtype == torch.float32
    assert orthogonal_loss(logits, logits.flip(0)).dtype == torch.float32


def _pair(c: float, d: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (1, d) features with cosine ``c`` and different norms."""
    f_m, f_e = torch.zeros(1, d), torch.zeros(1, d)
    f_m[0, 0] = 3.0
    f_e[0, 0], f_e[0, 1] = 2.0 * c, 2.0 * math.sqrt(1 - c * c)
    return f_m, f_e


def test_paper_form_is_d_alpha2_one_minus_alpha2_squared_zero_when_collinear():
    d = 4
    for c in (0.0, 0.3, 1 / math.sqrt(3), 0.9, 1.0):
        f_m, f_e = _pair(c, d)
        expected = d * c ** 2 * (1 - c ** 2) ** 2
        assert math.isclose(orthogonal_loss(f_m, f_e, eps=1e-12, form="paper").item(), expected,
                            rel_tol=1e-4, abs_tol=1e-6)
    # collinear features are a minimum of eq. 8 as printed, exactly like orthogonal ones
    collinear = orthogonal_loss(*_pair(1.0, d), eps=1e-12, form="paper").item()
    assert collinear < 1e-6
    # and beyond |alpha| = 1/sqrt(3) its gradient pushes towards collinearity: the loss falls
    # as alpha grows from 0.8 to 0.95
    assert (orthogonal_loss(*_pair(0.95, d), eps=1e-12).item()
            < orthogonal_loss(*_pair(0.8, d), eps=1e-12).item())


def test_cosine_form_is_d_alpha2_and_grows_with_alignment():
    d = 4
    values = []
    for c in (0.0, 0.3, 0.9, 1.0):
        f_m, f_e = _pair(c, d)
        torch.testing.assert_close(cosine(f_m, f_e, eps=1e-12), torch.tensor([c]),
                                   rtol=1e-5, atol=1e-6)
        value = orthogonal_loss(f_m, f_e, eps=1e-12, form="cosine").item()
        assert math.isclose(value, d * c * c, rel_tol=1e-5, abs_tol=1e-7)
        values.append(value)
    assert values == sorted(values) and values[-1] > 3.9


def test_loss_config_chooses_the_form():
    g = torch.Generator().manual_seed(2)
    out = MednOutput(logits=torch.randn(4, 3, generator=g),
                     au_logits=torch.randn(4, 2, generator=g),
                     f_m=torch.randn(4, 8, generator=g), f_e=torch.randn(4, 8, generator=g))
    labels, aus = torch.tensor([0, 1, 2, 0]), torch.ones(4, 2)
    paper = medn_loss(out, labels, aus, LossConfig(orth_form="paper"))
    cos = medn_loss(out, labels, aus, LossConfig(orth_form="cosine"))
    torch.testing.assert_close(paper.orth, orthogonal_loss(out.f_m, out.f_e, form="paper"))
    torch.testing.assert_close(cos.orth, orthogonal_loss(out.f_m, out.f_e, form="cosine"))
    assert not torch.allclose(paper.orth, cos.orth)
