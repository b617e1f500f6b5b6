"""The float64 referee: when a float32 difference is the port's and when it is float32's (parity.checks.referee)."""

import numpy as np
import pytest
import torch

from jaxcnn import interchange
from parity.checks import check, convert, referee
from tests import helpers


def test_agreement_within_tolerance_passes_without_the_referee():
    assert referee.verdict(5e-6, 1.0, 1.0, 1e-5).criterion == referee.AGREEMENT


def test_flax_as_exact_as_torch_passes_through_the_referee():
    v = referee.verdict(3e-5, 2e-5, 1.2e-5, 1e-5)
    assert v.ok and v.criterion == referee.REFEREE


def test_flax_further_from_float64_than_twice_torch_fails():
    assert referee.verdict(3e-5, 3e-5, 1.2e-5, 1e-5).criterion == referee.FAILED


def test_combined_verdict_holds_only_when_every_tensor_holds():
    good, rescued, bad = (referee.verdict(1e-6, 1e-6, 1e-6, 1e-5), referee.verdict(3e-5, 2e-5, 2e-5, 1e-5),
                          referee.verdict(1e-3, 1e-3, 1e-7, 1e-5))
    assert referee.combine([good, good]).criterion == referee.AGREEMENT
    assert referee.combine([good, rescued]).criterion == referee.REFEREE
    combined = referee.combine([good, rescued, bad])
    assert not combined.ok and combined.flax_torch == 1e-3


def test_judge_measures_relative_to_the_reference_with_a_floor():
    exact = np.array([1.0, -2.0])
    v = referee.judge(exact + [0, 2e-6], exact + [1e-6, 0], exact, 1e-5, floor=4.0)
    assert v.flax_torch == pytest.approx(2e-6 / 4.0, rel=1e-6)
    assert v.flax_float64 == pytest.approx(2e-6 / 4.0, rel=1e-6)
    assert v.torch_float64 == pytest.approx(1e-6 / 4.0, rel=1e-6)


def _noisy_float32(module: torch.nn.Module, scale: float) -> None:
    """A torch whose float32 outputs carry relative noise `scale` (its float64 copy computes exactly)."""
    generator = torch.Generator().manual_seed(0)

    def hook(_m, _inputs, out):
        if out.dtype == torch.float32:
            return out * (1 + scale * torch.randn(out.shape, generator=generator))
        return out

    module.register_forward_hook(hook)


def test_referee_passes_an_exact_flax_beside_a_noisy_torch():
    """A device whose torch kernels round worse than the tolerance: Flax-vs-torch fails, Flax is exact."""
    module, model, variables, x = helpers.random_pair("mnist_cnn", batch=4)
    _noisy_float32(module, 1e-3)
    result = check.compare_outputs(module, model, variables, x)
    assert result.max_rel_diff > 1e-5
    assert result.ok and result.verdict.criterion == referee.REFEREE, result


def test_referee_still_fails_a_wrong_port_beside_a_noisy_torch(monkeypatch):
    """Without the (C,H,W) -> (H,W,C) permutation of the first Linear, Flax is far from float64 too."""
    module, model, _, x = helpers.random_pair("lenet5_mnist", batch=4)
    monkeypatch.setattr(interchange, "_after_flatten", lambda calls: {})
    variables = convert.torch_to_flax(module, model, x)
    _noisy_float32(module, 1e-4)
    result = check.compare_outputs(module, model, variables, x)
    assert result.verdict.criterion == referee.FAILED, result
    assert result.verdict.flax_float64 > 100 * result.verdict.torch_float64


def test_a_difference_within_the_float64_spread_passes_by_it_and_one_beyond_fails():
    spread = referee.verdict(4e-2, 4e-2, 2e-6, 1e-4, float64_spread=4e-2)
    assert spread.ok and spread.criterion == referee.SPREAD
    assert referee.verdict(4e-2, 4e-2, 2e-6, 1e-4, float64_spread=1e-2).criterion == referee.FAILED
    good = referee.verdict(1e-6, 1e-6, 1e-6, 1e-5)
    assert referee.combine([good, spread]).criterion == referee.SPREAD
    assert referee.combine([good, spread]).float64_spread == 4e-2


def _float64_gradient(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    module.zero_grad()
    module(torch.from_numpy(x)).sum().backward()
    return module[0].weight.grad.numpy().copy()


def _leaky_network(pre_activation: float) -> tuple[torch.nn.Module, np.ndarray]:
    """Linear -> LeakyReLU -> Linear in float64 whose first hidden unit sits at `pre_activation`."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LeakyReLU(0.01), torch.nn.Linear(3, 1)).double()
    x = np.random.default_rng(0).standard_normal((1, 4))
    with torch.no_grad():
        module[0].bias[0] -= float(module[0](torch.from_numpy(x))[0, 0]) - pre_activation
    return module, x


def test_the_spread_is_large_where_an_activation_sits_at_a_kink_and_float32_rounding_decides_its_side():
    module, x = _leaky_network(1e-9)
    exact = _float64_gradient(module, x)
    spreads = [referee.relative_difference(_float64_gradient(m, xs), exact) for m, xs in referee.stepped(module, x)]
    assert max(spreads) > 0.5  # one step crosses the kink: the unit's slope goes from 1 to 0.01


def test_the_spread_is_of_the_step_size_where_no_activation_is_near_a_kink():
    module, x = _leaky_network(0.5)
    exact = _float64_gradient(module, x)
    spreads = [referee.relative_difference(_float64_gradient(m, xs), exact) for m, xs in referee.stepped(module, x)]
    assert max(spreads) < 100 * referee.SPREAD_STEP


def test_where_float32_cannot_judge_the_port_is_judged_in_float64_by_the_conditioning_torch_shows():
    chaotic = referee.verdict(75.0, 11.0, 0.86, 1e-4, float64_spread=1.0)  # ghostnetv2's train gradients at 64px
    assert not chaotic.ok and referee.float32_cannot_judge(chaotic)
    proven = referee.proven_in_float64(chaotic, 3.4e-8)
    assert proven.criterion == referee.FLOAT64_PORT and proven.float64_port == 3.4e-8
    assert not referee.proven_in_float64(chaotic, 1e-3).ok  # a wrong port is wrong in float64 too
    well_conditioned = referee.verdict(1e-2, 1e-2, 1e-6, 1e-4)  # torch's float32 can judge: the port must pass it
    assert not referee.float32_cannot_judge(well_conditioned)
    assert not referee.proven_in_float64(well_conditioned, 0.0).ok
    # the allowance grows with the amplification float32 shows (2^-29: float64's rounding against float32's)
    assert referee.proven_in_float64(referee.verdict(1.0, 1.0, 1e-3, 1e-4), 1e-9).ok
    assert not referee.proven_in_float64(referee.verdict(1.0, 1.0, 1e-3, 1e-4), 1e-8).ok
    assert referee.combine([proven, referee.verdict(0, 0, 0, 1e-4)]).criterion == referee.FLOAT64_PORT
