"""Every step reports progress through one callback, ``on_event``, with typed events; the callbacks' old names
(and the old name of the CI limits) still work for one release, with a DeprecationWarning."""

import pytest
from conftest import PRE, learnable_npz

import bnnc
from bnnc.conversion import convert_file
from bnnc.events import Calibrating, MeasuringLayer, Stage, emitter
from bnnc.reporting import Limits


def test_convert_reports_calibration_and_each_layer_measured(tmp_path, fp32_checkpoint):
    data = learnable_npz(tmp_path, 512, 128)
    seen = []
    convert_file(fp32_checkpoint("mlp", preprocessing=PRE), tmp_path / "m.bnnc", data=data, measure_sensitivity=True,
                 on_event=seen.append)
    calibrating = [e for e in seen if isinstance(e, Calibrating)]
    assert calibrating and calibrating[-1].done == calibrating[-1].total and not calibrating[-1].batchnorm
    assert [e.name for e in seen if isinstance(e, MeasuringLayer)] == ["features.1", "features.4"]


def test_an_old_callback_name_still_works_and_warns(tmp_path, fp32_checkpoint):
    data = learnable_npz(tmp_path, 512, 128)
    batches, events = [], []
    with pytest.warns(DeprecationWarning, match=r"convert_file\(on_calibration=...\) is deprecated"):
        convert_file(fp32_checkpoint("mlp", preprocessing=PRE), tmp_path / "m.bnnc", data=data,
                     on_calibration=lambda done, total: batches.append((done, total)), on_event=events.append)
    assert batches and batches == [(e.done, e.total) for e in events if isinstance(e, Calibrating)]


def test_emitter_routes_events_to_the_old_callbacks_by_type():
    texts, seen = [], []
    with pytest.warns(DeprecationWarning):
        emit = emitter(seen.append, "report", on_progress=(texts.append, Stage, lambda e: (e.text,)))
    emit(Stage("latency"))
    emit(Calibrating(1, 2))
    assert texts == ["latency"] and seen == [Stage("latency"), Calibrating(1, 2)]


def test_the_ci_limits_old_name_is_a_deprecated_alias():
    with pytest.warns(DeprecationWarning, match="bnnc.Thresholds is now bnnc.Limits"):
        assert bnnc.Thresholds is Limits
    assert bnnc.Limits is Limits
