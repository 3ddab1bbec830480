"""Authors' optimiser (BertAdam), lr schedules, weight-decay groups and the early-stop rule."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from prvr.config import TrainConfig
from prvr.training.optim import (BertAdam, bert_warmup_linear, clips_inside, create_optimizer,
                                 create_scheduler, param_groups, warmup_linear)
from prvr.training.trainer import should_stop

# two tensors: `a` has a gradient far above the clip norm on step 1, `b` always below it
GRADS_A = [[3.0, 4.0], [-1.0, 2.0], [0.5, -0.5]]
GRADS_B = [[0.1, 0.2, -0.3], [0.05, 0.0, 0.1], [-0.2, 0.1, 0.0]]
LR, DECAY, CLIP = 0.1, 0.05, 1.0
FACTORS = [0.0, 0.5, 1.0]  # the authors' bert schedule starts at 0


def reference(p, grads, decay, clip_norms=None):
    """The update by hand: per-tensor clip (or the given global norms), m and v without bias
    correction, eps 1e-6, decay added to the Adam direction, lr * schedule factor."""
    p, m, v = np.array(p, dtype=np.float64), 0.0, 0.0
    for k, (g, f) in enumerate(zip(grads, FACTORS)):
        g = np.array(g)
        norm = np.sqrt((g ** 2).sum()) if clip_norms is None else clip_norms[k]
        g = g * min(1.0, CLIP / (norm + 1e-6))
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g ** 2
        p = p - LR * f * (m / (np.sqrt(v) + 1e-6) + decay * p)
    return p


def _make(a=(1.0, -2.0), b=(0.5, 0.0, -1.0)):
    a = nn.Parameter(torch.tensor(a, dtype=torch.float64))
    b = nn.Parameter(torch.tensor(b, dtype=torch.float64))
    opt = BertAdam([{"params": [a], "weight_decay": DECAY}, {"params": [b], "weight_decay": 0.0}],
                   lr=LR, max_grad_norm=CLIP)
    return a, b, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: FACTORS[min(k, 2)])


def _run_bert_adam(steps=3, start=0, made=None):
    a, b, opt, sched = made or _make()
    history = []
    for k in range(start, steps):
        a.grad = torch.tensor(GRADS_A[k], dtype=torch.float64)
        b.grad = torch.tensor(GRADS_B[k], dtype=torch.float64)
        opt.step()
        sched.step()
        history.append((a.detach().clone(), b.detach().clone()))
    return opt, sched, history


def test_bert_adam_first_three_updates_match_hand_maths():
    _, _, history = _run_bert_adam()
    (a1, b1), _, (a3, b3) = history
    # factor(0) = 0: the first update only fills m and v
    assert torch.equal(a1, torch.tensor([1.0, -2.0], dtype=torch.float64))
    np.testing.assert_allclose(a3.numpy(), reference([1.0, -2.0], GRADS_A, DECAY), rtol=1e-12)
    np.testing.assert_allclose(b3.numpy(), reference([0.5, 0.0, -1.0], GRADS_B, 0.0), rtol=1e-12)


def test_bert_adam_clips_each_tensor_not_the_global_norm():
    """A global clip would also shrink b's small gradients because of a's big one."""
    _, _, history = _run_bert_adam()
    b3 = history[-1][1].numpy()
    global_norms = [math.sqrt(sum(x * x for x in ga + gb)) for ga, gb in zip(GRADS_A, GRADS_B)]
    globally = reference([0.5, 0.0, -1.0], GRADS_B, 0.0, clip_norms=global_norms)
    assert not np.allclose(b3, globally, rtol=1e-6, atol=0)


def test_bert_adam_state_dict_resume_is_exact():
    """Two steps, save, rebuild from scratch, load, third step: same as three steps in one go."""
    _, _, full = _run_bert_adam()
    opt, sched, cut = _run_bert_adam(steps=2)
    saved = torch.load(_roundtrip(opt.state_dict(), sched.state_dict()), weights_only=False)
    assert set(saved[0]["state"][0]) == {"exp_avg", "exp_avg_sq"}
    made = _make(cut[-1][0].tolist(), cut[-1][1].tolist())
    made[2].load_state_dict(saved[0])
    made[3].load_state_dict(saved[1])
    _, _, resumed = _run_bert_adam(steps=3, start=2, made=made)
    assert all(torch.equal(x, y) for x, y in zip(resumed[-1], full[-1]))


def _roundtrip(*objects):
    import io
    buffer = io.BytesIO()
    torch.save(objects, buffer)
    buffer.seek(0)
    return buffer


def test_bert_schedule_matches_authors_warmup_linear():
    f = bert_warmup_linear(200, 0.01)  # warm-up over 2 steps
    assert [f(0), f(1), f(2)] == [0.0, 0.5, 1.0]
    assert f(3) == pytest.approx((1 - 0.015) / 0.99)
    assert f(200) == 0.0 and f(250) == 0.0
    no_warmup = bert_warmup_linear(100, 0.0)
    assert no_warmup(0) == 1.0 and no_warmup(50) == pytest.approx(0.5)


def test_shifted_schedule_is_one_step_earlier():
    f = warmup_linear(10, 0.2)  # warm-up over ceil(2) steps
    assert [f(0), f(1), f(2), f(6), f(10)] == [0.5, 1.0, 1.0, 0.5, 0.0]


@pytest.mark.parametrize("schedule,expected", [("bert", [0.0, 0.5, 1.0, (1 - 0.015) / 0.99]),
                                               ("shifted", [0.5, 1.0, 1.0, 197 / 198])])
def test_lambdalr_gives_factor_k_to_the_k_plus_first_step(schedule, expected):
    p = nn.Parameter(torch.zeros(2))
    cfg = TrainConfig(lr=2.0, warmup=0.01, schedule=schedule)
    opt = BertAdam([p], lr=2.0)
    sched = create_scheduler(cfg, opt, 200)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])  # what the coming step() will use
        p.grad = torch.ones(2)
        opt.step()
        sched.step()
    assert seen == pytest.approx([2.0 * e for e in expected])


class Toy(nn.Module):
    def __init__(self, exempt=True):
        super().__init__()
        self.proj = nn.Linear(3, 3)
        self.norm = nn.LayerNorm(3)
        self.token = nn.Parameter(torch.zeros(3))
        self.exempt = exempt

    def no_weight_decay(self):
        return {"norm.weight", "norm.bias"} if self.exempt else set()


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 3)


def _decay_of(optimizer, model, loss):
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    named = list(model.named_parameters()) + [(f"loss.{n}", p) for n, p in loss.named_parameters()]
    assert len(decay) == len(named)  # every parameter, the loss's included, exactly once
    return {n: decay[id(p)] for n, p in named}


def test_authors_decay_groups():
    model, loss = Toy(), Head()
    opt = create_optimizer(TrainConfig(weight_decay=0.05), model, loss)
    assert isinstance(opt, BertAdam) and clips_inside(TrainConfig())
    assert _decay_of(opt, model, loss) == {
        "proj.weight": 0.05, "proj.bias": 0.0, "norm.weight": 0.0, "norm.bias": 0.0, "token": 0.05,
        "loss.head.weight": 0.05, "loss.head.bias": 0.0}


def test_decay_groups_without_no_weight_decay_and_rule_all():
    model, loss = nn.Sequential(nn.Linear(2, 2)), Head()  # no no_weight_decay(): only biases exempt
    opt = create_optimizer(TrainConfig(weight_decay=0.05), model, loss)
    assert _decay_of(opt, model, loss) == {"0.weight": 0.05, "0.bias": 0.0,
                                           "loss.head.weight": 0.05, "loss.head.bias": 0.0}
    cfg = TrainConfig(weight_decay=0.05, weight_decay_groups="all", optimizer="adamw")
    model = Toy()
    opt = create_optimizer(cfg, model, loss)
    assert isinstance(opt, torch.optim.AdamW) and not clips_inside(cfg)
    assert len(opt.param_groups) == 1 and set(_decay_of(opt, model, loss).values()) == {0.05}


def test_param_groups_rejects_unknown_rule_and_names():
    with pytest.raises(ValueError, match="weight_decay_groups"):
        param_groups([], 0.1, "some")
    with pytest.raises(ValueError, match="norm.gamma"):
        param_groups(Toy().named_parameters(), 0.1, "authors", {"norm.gamma"})


def test_early_stop_runs_early_stop_plus_one_failing_epochs():
    """Best at epoch 0, never beaten: with early_stop=2 epochs 1, 2, 3 fail, then training stops."""
    assert not should_stop(2, 0, 2) and should_stop(3, 0, 2)
    assert not should_stop(5, -1, 2)  # no best yet (nothing evaluated)
    sumr, best, best_epoch, ran = [10.0, 9.0, 10.0, 8.0, 50.0, 60.0], -1.0, -1, []
    for epoch in range(len(sumr)):  # the trainer's loop, with the check before each epoch
        if should_stop(epoch - 1, best_epoch, 2):
            break
        ran.append(epoch)
        if sumr[epoch] > best:
            best, best_epoch = sumr[epoch], epoch
    assert ran == [0, 1, 2, 3]


def _clip_by_hand(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """The authors' per-tensor clip, a few lines on one separate tensor."""
    norm = float(torch.sqrt((grad.double() ** 2).sum()))
    return grad * min(1.0, max_norm / (norm + 1e-6))


def test_a_stacked_qkv_is_clipped_per_projection_like_three_separate_linears():
    """The value block's gradient alone exceeds the clip norm (as at a TVR-shape batch: value 5.8,
    query and key 0.4): it alone is scaled, as the authors' separate query/key/value linears are;
    query and key keep their gradients. The stacked step equals three separate BertAdam tensors."""
    from prvr.models.attention import MultiHeadAttention
    from prvr.models.stacked import row_blocks

    torch.manual_seed(0)
    attention = MultiHeadAttention(hidden=4, heads=2, dropout=0.0)
    weight, bias = attention.qkv.weight, attention.qkv.bias
    assert row_blocks(weight) == row_blocks(bias) == 3
    grads = [torch.randn(4, 4) * 0.1, torch.randn(4, 4) * 0.1, torch.randn(4, 4) * 3.0]  # q, k, v
    assert all(float(g.norm()) < 1 for g in grads[:2]) and float(grads[2].norm()) > 1
    separate = [nn.Parameter(w.detach().clone()) for w in weight.detach().split(4)]
    opt_sep = BertAdam(separate, lr=LR, max_grad_norm=CLIP)
    opt_stacked = BertAdam([weight], lr=LR, max_grad_norm=CLIP)
    for p, g in zip(separate, grads):
        p.grad = g.clone()
    weight.grad = torch.cat(grads)
    opt_sep.step()
    opt_stacked.step()
    torch.testing.assert_close(weight.grad, torch.cat([_clip_by_hand(g, CLIP) for g in grads]), rtol=1e-6, atol=0)
    assert torch.equal(weight.grad[:8], torch.cat(grads[:2]))  # query and key untouched
    assert torch.equal(weight.detach(), torch.cat([p.detach() for p in separate]))  # bit for bit
    whole = _clip_by_hand(torch.cat(grads), CLIP)  # what one clip over the stacked tensor gave before
    assert not torch.allclose(whole[:8], weight.grad[:8])


def test_a_stacked_key_value_and_a_plain_linear_have_their_blocks():
    from prvr.models.parallel_gmm import WindowedLayer
    from prvr.models.stacked import row_blocks

    layer = WindowedLayer(8, 2, 0.0, 0.5)
    blocks = {name: row_blocks(p) for name, p in layer.named_parameters() if row_blocks(p) > 1}
    assert set(blocks.values()) <= {2, 3} and blocks  # q/k/v or k/v stacked, each marked
    assert row_blocks(nn.Linear(3, 6).weight) == 1
