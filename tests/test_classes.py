"""Reading outputs as classes: one logit a class, and one output alone as the classes 0 and 1."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bnnc.classes import class_logits, classes_of, predictions
from bnnc.training import distillation_loss


def test_one_logit_is_two_classes() -> None:
    z = torch.tensor([[-2.0], [0.0], [0.5], [3.0]])
    y = torch.tensor([0, 1, 1, 0])
    assert predictions(z).tolist() == [0, 0, 1, 1]  # a tie (0) is class 0, as argmax([0, 0]) is
    assert predictions(z.numpy()).tolist() == [0, 0, 1, 1]
    assert predictions(class_logits(z)).tolist() == [0, 0, 1, 1]
    # the softmax cross-entropy of [0, z] is the binary cross-entropy with logits
    assert torch.allclose(F.cross_entropy(class_logits(z), y), F.binary_cross_entropy_with_logits(z[:, 0], y.float()))
    # distillation matches sigmoid(z / T): zero for the same logit, positive for another
    assert float(distillation_loss(z, z, 2.0)) == 0.0 and float(distillation_loss(z, -z, 2.0)) > 0
    assert classes_of(1) == 2 and classes_of(10) == 10


def test_many_logits_are_read_as_they_are() -> None:
    out = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    assert class_logits(out) is out
    assert predictions(out).tolist() == [1, 0] and predictions(out.numpy()).tolist() == [1, 0]
    assert predictions(np.zeros((2, 2))).dtype.kind == "i"
