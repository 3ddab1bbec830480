"""The fast CPU dropout (prvr.models.dropout): torch.nn.Dropout's distribution, seeded by torch."""
import numpy as np
import pytest
import torch

from prvr.models.dropout import Dropout, keep_flags, keep_mask, keep_threshold, mask_dtype


def test_keeps_one_minus_p_and_scales_the_kept_values():
    torch.manual_seed(0)
    x = torch.ones(200_000, dtype=torch.float64)
    y = Dropout(0.2).train()(x)
    kept = y != 0
    assert abs(kept.double().mean().item() - 0.8) < 0.005  # 5 sigma of a binomial(200k, .8) is 0.0045
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1.25)) and y.dtype == torch.float64
    assert abs(y.mean().item() - 1.0) < 0.01  # expectation kept


def test_seeded_by_torch_and_identity_in_eval():
    drop = Dropout(0.3).train()
    x = torch.randn(4, 50)
    torch.manual_seed(5)
    a = drop(x)
    torch.manual_seed(5)
    b = drop(x)
    assert torch.equal(a, b) and not torch.equal(a, drop(x))  # the next draw differs
    assert drop.eval()(x) is x and Dropout(0.0).train()(x) is x


def test_gradient_is_the_mask_and_bad_p_is_rejected():
    x = torch.randn(3, 40, requires_grad=True)
    y = Dropout(0.5).train()(x)
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() * 2.0)
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_take_the_same_mask_scaled_in_float32(dtype):
    """A bfloat16 input (autocast training) gets the float32 input's mask, its kept values scaled in
    float32 and rounded once: 1 / (1 - 0.1) is not exact in bfloat16, so scaling there would bias."""
    x = torch.randn(50_000)
    drop = Dropout(0.1).train()
    torch.manual_seed(3)
    full = drop(x)
    torch.manual_seed(3)
    half = drop(x.to(dtype))
    assert half.dtype == dtype
    assert torch.equal(half != 0, full != 0)  # the same mask from the same torch seed
    assert torch.equal(half, (x.to(dtype).float() / 0.9).to(dtype) * (full != 0))


def _reference_mask(n: int, p: float, seed: int) -> torch.Tensor:
    """The mask before 2026-12-07: numpy's float32 uniforms compared with p in torch, then scaled."""
    uniform = np.random.default_rng(seed).random(n, dtype=np.float32)
    return torch.from_numpy(uniform).ge_(p).mul_(1.0 / (1.0 - p))


@pytest.mark.parametrize("p", [0.2, 0.1, 0.5, 0.3, 1 / 3, 3355443.5 / 2**24, 2**-24, 1 - 2**-23])
@pytest.mark.parametrize("n", [1, 2, 7, 10_001])
def test_integer_mask_is_the_float_uniforms_mask_bit_for_bit(p, n):
    """keep_flags compares raw 32-bit words with threshold << 8: the same mask as numpy's float32 draw
    >= p (the draw takes the words in the same order, low half of each 64-bit word first), including
    odd lengths, a p between two float32 uniforms and thresholds at the ends of the range."""
    for seed in (0, 12345, 2**61 + 7):
        reference = _reference_mask(n, p, seed)
        assert torch.equal(torch.from_numpy(keep_flags(n, p, seed)), reference != 0)
        torch.manual_seed(seed % 1000)
        drawn = int(torch.randint(2**62, (1,)))
        torch.manual_seed(seed % 1000)
        assert torch.equal(keep_mask(torch.Size([n]), p, torch.float32), _reference_mask(n, p, drawn))
    assert keep_threshold(p) == int(np.ceil(np.float32(p) * np.float64(2**24)))


def test_threshold_follows_torchs_float32_comparison():
    for p in (0.2, 0.7, 1e-9, 0.999999):
        k = keep_threshold(p)
        below, at = torch.tensor([(k - 1) * 2.0**-24, k * 2.0**-24]).float().ge(p).tolist()
        assert at and (k == 0 or not below)


@pytest.mark.parametrize("p,expected", [(0.2, torch.bfloat16), (0.5, torch.bfloat16), (0.1, torch.float32),
                                        (0.3, torch.float32), (1 / 3, torch.bfloat16)])
def test_half_mask_only_where_the_kept_value_is_exact(p, expected):
    assert mask_dtype(p, torch.bfloat16) == expected
    assert mask_dtype(p, torch.float32) == torch.float32 and mask_dtype(p, torch.float64) == torch.float64


@pytest.mark.parametrize("p", [0.2, 0.1])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_input_output_and_gradient_equal_the_float32_mask_path(p, dtype):
    """Whichever dtype the mask takes, output and gradient are the float32 mask path's to the bit
    (x * mask in float32, rounded once to the half type)."""
    x = torch.randn(3, 4097).to(dtype).requires_grad_()
    grad = torch.randn(3, 4097).to(dtype)
    torch.manual_seed(11)
    y = Dropout(p).train()(x)
    y.backward(grad)
    torch.manual_seed(11)
    mask = keep_mask(x.shape, p, torch.float32)
    assert torch.equal(y, (x.detach() * mask).to(dtype))
    assert torch.equal(x.grad, (grad.float() * mask).to(dtype))
