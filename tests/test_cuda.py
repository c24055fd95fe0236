"""The same steps on a GPU: skipped cleanly where there is none (the CI machine has none)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import PRE, learnable_npz

from bnnc.conversion import convert_file
from bnnc.export import export_onnx
from bnnc.training import FinetuneConfig, finetune

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


@pytest.mark.parametrize("amp", [True, False])
def test_finetune_on_cuda_then_export_with_parity(amp: bool, tmp_path: Path, fp32_checkpoint):
    model = convert_file(fp32_checkpoint("cnn", preprocessing=PRE), tmp_path / "m.bnnc").output
    data = learnable_npz(tmp_path, 512, 128)
    tuned = finetune(model, data, FinetuneConfig(epochs=2, batch_size=64, device="cuda", amp=amp),
                     tmp_path / f"ft-{amp}.bnnc")
    assert tuned.best_accuracy > tuned.converted_accuracy
    parity = export_onnx(tuned.output, tmp_path / f"m-{amp}.onnx", data=data).parity[0]
    assert parity.argmax_agreement == 1.0 and parity.mismatched == parity.at_ties, parity
