"""The fast CPU dropout (prvr.models.dropout): torch.nn.Dropout's distribution, seeded by torch."""
import pytest
import torch

from prvr.models.dropout import Dropout


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
