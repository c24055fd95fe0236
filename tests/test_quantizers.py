import pytest
import torch

from bnnc.quantizers import binarize, hard_sigmoid, ste_mask, stochastic_binarize

POINTS = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])


def test_binarize_forward_is_the_papers_sign_with_sign0_plus_one():
    assert binarize(POINTS).tolist() == [-1, -1, -1, 1, 1, 1, 1]


def test_binarize_ste_gradient_passes_inclusive_at_one_and_cancels_beyond():
    x = POINTS.clone().requires_grad_(True)
    binarize(x).backward(torch.full_like(x, 3.0))
    assert x.grad.tolist() == [0, 3, 3, 3, 3, 3, 0]


def test_binarize_keeps_dtype_and_shape():
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    y = binarize(x)
    assert y.dtype == torch.float64 and y.shape == x.shape


def test_hard_sigmoid_and_mask():
    assert hard_sigmoid(POINTS).tolist() == [0, 0, 0.25, 0.5, 0.75, 1, 1]
    assert ste_mask(POINTS).tolist() == [0, 1, 1, 1, 1, 1, 0]


@pytest.mark.parametrize("value", [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
def test_stochastic_mean_is_clipped_x(value):
    g = torch.Generator().manual_seed(0)
    draws = stochastic_binarize(torch.full((200_000,), value), generator=g)
    assert set(draws.unique().tolist()) <= {-1.0, 1.0}
    expected = max(-1.0, min(1.0, value))  # E[x_b] = 2 * hard_sigmoid(x) - 1
    assert abs(draws.mean().item() - expected) < 0.01


def test_stochastic_gradient_is_the_ste():
    x = POINTS.clone().requires_grad_(True)
    stochastic_binarize(x).sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 0]


def test_stochastic_is_seeded():
    x = torch.randn(1000)
    a = stochastic_binarize(x, generator=torch.Generator().manual_seed(1))
    b = stochastic_binarize(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_approx_sign_forward_is_binarize_and_its_gradient_is_bi_reals():
    from bnnc.quantizers import approx_sign

    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 1.5], requires_grad=True)
    y = approx_sign(x)
    assert torch.equal(y, binarize(x.detach()))
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0, 2.0, 1.5, 1.0, 0.0, 0.0]  # (2 - 2|x|) inside [-1, 1]


def test_the_error_decay_estimator_is_sign_forward_and_irnets_gradient_backward():
    from bnnc.quantizers import ede_grad, ede_sharpness, ede_sign

    assert [round(ede_sharpness(p), 6) for p in (-1.0, 0.0, 0.5, 1.0, 2.0)] == [0.1, 0.1, 1.0, 10.0, 10.0]
    x = torch.tensor([-3.0, -0.4, 0.0, 0.1, 0.4, 3.0])
    for t in (0.1, 1.0, 10.0):
        xg = x.clone().requires_grad_(True)
        y = ede_sign(xg, t)
        assert torch.equal(y, binarize(x))
        y.sum().backward()
        k = max(1 / t, 1.0)
        assert torch.allclose(xg.grad, k * t * (1 - torch.tanh(t * x) ** 2))  # d/dx k tanh(t x)
        assert torch.equal(xg.grad, ede_grad(x, t))
    wide, sharp = ede_grad(x, 0.1), ede_grad(x, 10.0)
    assert wide.min() > 0.9  # early: almost the identity's gradient, even at |x| = 3, where the box gives 0
    assert sharp[2] == 10.0 and sharp[[0, 5]].max() < 1e-6 and sharp[[1, 4]].max() < 0.02  # late: sign's spike


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_the_fast_sign_and_ste_kernels_equal_their_definitions(dtype):
    """sign_of and ste_gradient (the fused kernels fine-tuning runs) against the formulas, at the edges: exactly
    +-1 (clipped latent weights sit there), one ulp either side, +-0, NaN."""
    import math

    from bnnc.quantizers import sign_of, ste_gradient, ste_mask

    one = torch.tensor(1.0, dtype=dtype)
    edges = [torch.nextafter(one, one * 2), one, torch.nextafter(one, one * 0), torch.tensor(0.0, dtype=dtype)]
    edges = torch.stack([*edges, *[-e for e in edges], torch.tensor(math.nan, dtype=dtype)])
    x = torch.cat([edges, torch.randn(1000, generator=torch.Generator().manual_seed(0)).to(dtype) * 1.5])
    g = torch.randn(len(x), generator=torch.Generator().manual_seed(1)).to(dtype)
    assert torch.equal(sign_of(x), torch.where(x >= 0, 1.0, -1.0).to(dtype))
    assert sign_of(torch.tensor([-0.0], dtype=dtype)).item() == 1.0
    for strided in (x[:1000].reshape(40, 25).t(), x[:1000].reshape(10, 4, 5, 5).to(memory_format=torch.channels_last)):
        assert torch.equal(sign_of(strided), torch.where(strided >= 0, 1.0, -1.0).to(dtype))  # conv weights' layouts
    finite = ~torch.isnan(x)
    assert torch.equal(ste_gradient(g, x)[finite], (g * ste_mask(x))[finite])
