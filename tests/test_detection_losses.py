"""FocalLoss with class-index targets: values and gradients against torchvision's."""

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from cvkit.models.losses.detection import FocalLoss, sigmoid_focal_loss_labels


def random_problem(n=40, k=6, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=dtype) * 6  # tails well past +-10
    extremes = torch.tensor([-40.0, -20.0, 0.0, 20.0, 40.0, 90.0], dtype=dtype)[:k]
    logits[0, : len(extremes)] = extremes
    labels = torch.randint(-1, k, (n,), generator=g)
    labels[:2] = torch.tensor([-1, 3])  # an all-negative row and a positive one, for sure
    weights = torch.rand(n, generator=g, dtype=dtype)
    weights[2] = 0.0  # a dropped row
    return logits, labels, weights


def reference(logits, labels, weights, alpha, gamma):
    one_hot = torch.zeros_like(logits)
    rows = labels >= 0
    one_hot[rows, labels[rows]] = 1.0
    per_element = sigmoid_focal_loss(logits, one_hot, alpha, gamma, reduction="none")
    return (per_element * weights[:, None]).sum()


@pytest.mark.parametrize(
    "alpha,gamma", [(0.25, 2.0), (-1.0, 2.0), (0.5, 0.0), (0.75, 1.0), (0.25, 1.5)]
)
def test_values_and_gradients_match_torchvision(alpha, gamma):
    logits, labels, weights = random_problem()
    x = logits.clone().requires_grad_(True)
    got = sigmoid_focal_loss_labels(x, labels, weights, alpha, gamma)
    (got_grad,) = torch.autograd.grad(got * 3.0, x)  # a non-unit upstream gradient
    y = logits.clone().requires_grad_(True)
    want = reference(y, labels, weights, alpha, gamma)
    (want_grad,) = torch.autograd.grad(want * 3.0, y)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 1.5)])
def test_gradcheck_float64(alpha, gamma):
    logits, labels, weights = random_problem(n=12, k=4, seed=1)
    logits = (logits / 3).requires_grad_(True)  # moderate logits: finite differences stay exact

    def fn(x):
        return sigmoid_focal_loss_labels(x, labels, weights, alpha, gamma)

    assert torch.autograd.gradcheck(fn, (logits,))


def test_float32_module_matches_one_hot_forward():
    logits, labels, _ = random_problem(n=500, k=20, dtype=torch.float32, seed=2)
    loss = FocalLoss(weight=2.0)
    one_hot = torch.zeros_like(logits)
    one_hot[labels >= 0, labels[labels >= 0]] = 1.0
    got = loss.forward_labels(logits, labels)
    torch.testing.assert_close(got, loss(logits, one_hot), rtol=1e-5, atol=1e-4)


def test_no_positives_no_grad_and_half_precision():
    logits, _, weights = random_problem(n=30, k=5, dtype=torch.float32, seed=3)
    labels = torch.full((30,), -1)
    with torch.no_grad():  # the loss alone, even for logits that require grad
        got = sigmoid_focal_loss_labels(logits.requires_grad_(True), labels, weights)
    assert not got.requires_grad
    torch.testing.assert_close(got, reference(logits, labels, weights, 0.25, 2.0))
    half = logits.detach().bfloat16().requires_grad_(True)
    loss = sigmoid_focal_loss_labels(half, labels, weights.bfloat16())
    loss.backward()
    assert loss.dtype == torch.bfloat16 and half.grad.dtype == torch.bfloat16


def test_shape_errors():
    with pytest.raises(ValueError, match=r"logits must be \[N, K\] and labels \[N\]"):
        sigmoid_focal_loss_labels(torch.zeros(4, 3), torch.zeros(5, dtype=torch.int64))
