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
