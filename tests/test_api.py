import importlib
import inspect

import bnnc


def test_public_api_names_are_the_functions_even_after_submodule_imports():
    for module in ("bnnc.io", "bnnc.planning", "bnnc.conversion", "bnnc.training", "bnnc.calibrate", "bnnc.data"):
        importlib.import_module(module)
    for name in ("load_model", "plan", "convert", "convert_file", "finetune", "calibrate_thresholds", "load_data"):
        assert inspect.isfunction(getattr(bnnc, name)), name
    for name in bnnc.__all__:
        obj = getattr(bnnc, name)
        assert callable(obj) or isinstance(obj, str), name  # every export resolves to the thing itself
        if name != "__version__":
            assert obj.__module__.startswith("bnnc"), name


def test_each_step_takes_data_held_in_memory(fp32_checkpoint, tmp_path):
    """A notebook's arrays and datasets go straight into every step, as the file holding them would."""
    import numpy as np
    import torch
    from torch.utils.data import TensorDataset

    from bnnc.training import FinetuneConfig
    from tests.conftest import learnable_npz

    d = dict(np.load(learnable_npz(tmp_path)))
    arrays = ((d["x_train"], d["y_train"]), (d["x_test"], d["y_test"]))
    datasets = tuple(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)) for x, y in arrays)
    converted = bnnc.convert_file(fp32_checkpoint("mlp"), tmp_path / "m.bnnc", data=arrays).output
    ft = bnnc.finetune(converted, datasets, FinetuneConfig(epochs=1), tmp_path / "ft.bnnc")
    assert ft.best_accuracy > 0.3  # the labels arrived with their samples (chance is 0.1)
    ex = bnnc.export_onnx(ft.output, tmp_path / "m.onnx", data=d)
    assert ex.parity[0].samples == len(d["x_test"]) and "the data given" in ex.parity[0].inputs
