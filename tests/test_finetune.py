import json
import math
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from bnnc.checkpoint import save_checkpoint
from bnnc.conversion import convert_file
from bnnc.data import DataSplits, Preprocessing, load_data, sample_data_path
from bnnc.errors import BnncError
from bnnc.layers import binary_layers
from bnnc.loading import load_checkpoint
from bnnc.shift import ShiftBatchNorm
from bnnc.swap import ConvertOptions
from bnnc.training import EpochEnd, FinetuneConfig, Started, finetune, glorot_scale, lr_factor

REPO = Path(__file__).resolve().parent.parent
SAMPLE_MLP = REPO / "sample_models" / "mlp.pt"
SAMPLE_RESNET = REPO / "sample_models" / "resnet.pt"


@pytest.fixture(scope="module")
def subset() -> DataSplits:
    """2,000 training and 1,000 validation images of the bundled sample: seconds per epoch."""
    pre = Preprocessing.from_dict(load_checkpoint(SAMPLE_MLP).preprocessing)
    full = load_data(sample_data_path(), preprocessing=pre)
    g = torch.Generator().manual_seed(0)
    tr = torch.randperm(len(full.train), generator=g)[:2000]
    va = torch.randperm(len(full.val), generator=g)[:1000]
    return DataSplits(train=TensorDataset(*(t[tr] for t in full.train.tensors)),
                      val=TensorDataset(*(t[va] for t in full.val.tensors)),
                      preprocessing=pre, source="sample subset")


@pytest.fixture
def small_bnnc(tmp_path, fp32_checkpoint) -> Path:
    pre = load_checkpoint(SAMPLE_MLP).preprocessing
    return convert_file(fp32_checkpoint("mlp", preprocessing=pre), tmp_path / "small.bnnc").output


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.accuracy
def test_short_finetune_raises_accuracy_of_the_sample_mlp(tmp_path, subset):
    converted = convert_file(SAMPLE_MLP, tmp_path / "mlp.bnnc").output
    events = []
    result = finetune(converted, subset, FinetuneConfig(epochs=2), tmp_path / "ft.bnnc", on_event=events.append)
    started = next(e for e in events if isinstance(e, Started))
    assert started.fp32_accuracy > 0.8
    assert result.recalibrated_accuracy > result.converted_accuracy + 0.05  # BN re-estimation alone
    assert result.best_accuracy > result.recalibrated_accuracy + 0.02       # training
    assert [e.record.epoch for e in events if isinstance(e, EpochEnd)] == [1, 2]
    reloaded = load_checkpoint(result.output)
    assert reloaded.is_binarized and reloaded.binarized.finetune.best_epoch == result.best_epoch
    assert reloaded.metrics["val_accuracy"] == result.best_accuracy


@pytest.mark.accuracy
def test_the_default_recipe_beats_the_one_before_issue_19_on_the_sample_resnet(tmp_path, subset):
    """The recipe changes of issue 19 (latent weights at a share of their mean |W|, equalized per channel;
    batch 64; Adam at 2e-3) against the recipe before them, same seeds and epochs, on the sample ResNet (which
    gains most from them; the MLP nothing, README). Two epochs on this subset are chaotic — the last bits of a
    sum, which the thread count changes, flip signs — so the test compares the mean of three seeds. Measured
    (new/old, seeds 0-3): one thread 74.0/63.3%, 73.1/61.3%, 70.2/64.2%, 72.4/66.1%; two threads 67.4/65.9%,
    71.1/62.0%, 72.8/62.9%, 73.2/63.1%: the mean of seeds 0-2 is 6.8 to 9.5 pt apart; the test asks for 2."""
    converted = convert_file(SAMPLE_RESNET, tmp_path / "resnet.bnnc").output
    before = {"batch_size": 128, "lr": 1e-3, "latent_lr": 0.0, "equalize_latent": False}
    gaps = []
    for seed in range(3):
        old = finetune(converted, subset, FinetuneConfig(epochs=2, seed=seed, **before), tmp_path / f"old{seed}.bnnc")
        new = finetune(converted, subset, FinetuneConfig(epochs=2, seed=seed), tmp_path / f"new{seed}.bnnc")
        assert new.recalibrated_accuracy == old.recalibrated_accuracy  # the same start
        gaps.append(new.best_accuracy - old.best_accuracy)
    assert sum(gaps) / len(gaps) > 0.02, gaps  # one seed alone was 1.5 pt ahead (two threads, seed 0)


def test_history_file_and_latent_weights_clipped(tmp_path, subset, small_bnnc):
    config = FinetuneConfig(epochs=2, lr=0.5, latent_lr=0.0)  # the latent weights at lr 0.5 too
    result = finetune(small_bnnc, subset, config, tmp_path / "o.bnnc")
    history = json.loads(result.history_path.read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    for key in ("train_loss", "train_accuracy", "val_accuracy", "lr", "flip_share", "seconds", "samples_per_s"):
        assert key in history["epochs"][0]
    assert history["epochs"][0]["flip_share"] > 0  # lr 0.5 flips signs
    assert history["epochs"][1]["lr"] < history["epochs"][0]["lr"]  # cosine
    model = load_checkpoint(result.output).model
    peaks = [float(layer.weight.detach().abs().max()) for _, layer in binary_layers(model)]
    assert max(peaks) == 1.0  # reached the clip, and
    assert all(p <= 1.0 for p in peaks)  # none beyond it


def test_same_seed_same_weights(tmp_path, subset, small_bnnc):
    cfg = FinetuneConfig(epochs=1, stochastic=True)
    a = finetune(small_bnnc, subset, cfg, tmp_path / "a.bnnc").output
    b = finetune(small_bnnc, subset, cfg, tmp_path / "b.bnnc").output
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


class _Interrupt(Exception):
    pass


def test_resume_equals_uninterrupted_run(tmp_path, subset, small_bnnc):
    cfg = FinetuneConfig(epochs=3, optimizer="adamax")
    full = finetune(small_bnnc, subset, cfg, tmp_path / "full.bnnc")

    def stop_after_first(event):
        if isinstance(event, EpochEnd) and event.record.epoch == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        finetune(small_bnnc, subset, cfg, tmp_path / "cut.bnnc", on_event=stop_after_first)
    assert (tmp_path / "cut.bnnc.state").is_file()
    events = []
    resumed = finetune(small_bnnc, subset, cfg, tmp_path / "cut.bnnc", resume=True, on_event=events.append)
    assert next(e for e in events if isinstance(e, Started)).start_epoch == 2
    assert [r.epoch for r in resumed.history] == [1, 2, 3]
    assert resumed.best_epoch == full.best_epoch and resumed.best_accuracy == full.best_accuracy
    state_full = torch.load(tmp_path / "full.bnnc.state", weights_only=True)["model"]
    state_cut = torch.load(tmp_path / "cut.bnnc.state", weights_only=True)["model"]
    assert all(torch.equal(state_full[k], state_cut[k]) for k in state_full)


def test_resume_refuses_changed_settings_and_missing_state(tmp_path, subset, small_bnnc):
    with pytest.raises(BnncError, match="nothing to resume"):
        finetune(small_bnnc, subset, FinetuneConfig(epochs=1), tmp_path / "r.bnnc", resume=True)
    finetune(small_bnnc, subset, FinetuneConfig(epochs=1), tmp_path / "r.bnnc")
    with pytest.raises(BnncError, match="lr"):
        finetune(small_bnnc, subset, FinetuneConfig(epochs=2, lr=0.1), tmp_path / "r.bnnc", resume=True)
    other = DataSplits(train=TensorDataset(*(t[:1500] for t in subset.train.tensors)), val=subset.val,
                       preprocessing=subset.preprocessing, source="fewer samples")
    with pytest.raises(BnncError, match="other data or another teacher"):
        finetune(small_bnnc, other, FinetuneConfig(epochs=2), tmp_path / "r.bnnc", resume=True)
    more = finetune(small_bnnc, subset, FinetuneConfig(epochs=2), tmp_path / "r.bnnc", resume=True)
    assert [r.epoch for r in more.history] == [1, 2]


@pytest.mark.parametrize("config", [
    FinetuneConfig(epochs=1, optimizer="shift-adamax", shift_bn=True),
    FinetuneConfig(epochs=1, glorot_lr=True, schedule="step", distill=False, recalibrate=False),
])
def test_paper_options_train_and_persist(tmp_path, subset, small_bnnc, config):
    result = finetune(small_bnnc, subset, config, tmp_path / "p.bnnc")
    model = load_checkpoint(result.output).model
    assert any(isinstance(m, ShiftBatchNorm) for m in model.modules()) == config.shift_bn
    assert result.recalibrated_accuracy is None or config.recalibrate


def test_refusals(tmp_path, subset, small_bnnc, fp32_checkpoint):
    with pytest.raises(BnncError, match="FP32 model"):
        finetune(fp32_checkpoint("mlp", name="fp.pt"), subset, FinetuneConfig(epochs=1), tmp_path / "x.bnnc")
    (tmp_path / "exists.bnnc").write_bytes(b"keep")
    with pytest.raises(BnncError, match="already exists"):
        finetune(small_bnnc, subset, FinetuneConfig(epochs=1), tmp_path / "exists.bnnc")
    assert (tmp_path / "exists.bnnc").read_bytes() == b"keep"
    moved = tmp_path / "moved"
    moved.mkdir()
    lone = moved / "small.bnnc"
    lone.write_bytes(small_bnnc.read_bytes())
    (tmp_path / "mlp.pt").unlink()  # the teacher is gone
    with pytest.raises(BnncError, match="--no-distill"):
        finetune(lone, subset, FinetuneConfig(epochs=1), tmp_path / "y.bnnc")
    for bad in (dict(epochs=0), dict(batch_size=0), dict(lr=-1.0), dict(optimizer="sgd"), dict(distill_weight=2.0)):
        with pytest.raises(BnncError):
            FinetuneConfig(**bad)


def test_schedules_and_glorot():
    assert lr_factor("cosine", 0, 10) == 1 and lr_factor("cosine", 10, 10) == pytest.approx(0)
    assert [lr_factor("linear", s, 4) for s in range(5)] == pytest.approx([1, 0.75, 0.5, 0.25, 0])
    assert lr_factor("cosine", 1, 4) > lr_factor("linear", 1, 4)
    assert lr_factor("cosine", 3, 4) < lr_factor("linear", 3, 4)
    assert lr_factor("step", 6, 10) == pytest.approx(0.1) and lr_factor("step", 8, 10) == pytest.approx(0.01)
    assert lr_factor("constant", 9, 10) == 1
    layer = torch.nn.Linear(100, 50)
    assert glorot_scale(layer) == pytest.approx(1 / (1.5 / 150) ** 0.5)


def test_latent_weights_step_a_share_of_their_own_mean_magnitude(small_bnnc, subset):
    """latent_lr: Adam's first step moves every weight by its group's learning rate, so each binary layer's
    weights move by latent_lr * their mean |W|, whatever the global rate; 0 gives them the global rate."""
    from bnnc.training import make_optimizer

    model = load_checkpoint(small_bnnc).model.eval()  # BatchNorm by running statistics: every weight has a gradient
    layers = [layer for _, layer in binary_layers(model)]
    layers[0].weight.data.mul_(4)  # layers of different scales
    before = [layer.weight.detach().clone() for layer in layers]
    optimizer = make_optimizer(model, FinetuneConfig(lr=1e-3, latent_lr=0.05))
    x, y = subset.train.tensors[0][:64], subset.train.tensors[1][:64]
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    for layer, w0 in zip(layers, before, strict=True):
        moved = (layer.weight.detach() - w0).abs()
        step = 0.05 * float(w0.abs().mean())
        clear = layer.weight.grad.abs() > 1e-5  # Adam's first step is lr * g / (|g| + eps): lr where g >> eps
        assert clear.any() and torch.allclose(moved[clear], torch.full_like(moved[clear], step), rtol=1e-3)
    assert optimizer.param_groups[-1]["lr"] == 1e-3  # everything else: the global rate
    assert {g["lr"] for g in make_optimizer(model, FinetuneConfig(lr=1e-3, latent_lr=0.0)).param_groups} == {1e-3}
    layers[1].weight.data.zero_()  # no scale to take a share of: the global rate
    assert make_optimizer(model, FinetuneConfig(lr=1e-3)).param_groups[1]["lr"] == 1e-3
    glorot = make_optimizer(model, FinetuneConfig(lr=1e-3, latent_lr=0.05, glorot_lr=True)).param_groups[0]["lr"]
    assert glorot == pytest.approx(0.05 * float(layers[0].weight.detach().abs().mean()) * glorot_scale(layers[0]))
    with pytest.raises(BnncError, match="latent learning rate"):
        FinetuneConfig(latent_lr=-0.1)


def test_a_second_writer_of_the_same_output_stops_with_one_error(tmp_path, subset, small_bnnc):
    """Another bnnc holding the output's lock (as a concurrent `bnnc finetune -o same` does) stops this one."""
    import fcntl
    import os

    out = tmp_path / "same.bnnc"
    fd = os.open(tmp_path / ".same.bnnc.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(BnncError, match="another bnnc is writing"):
            finetune(small_bnnc, subset, FinetuneConfig(epochs=1), out)
    finally:
        os.close(fd)
    assert not out.exists()
    finetune(small_bnnc, subset, FinetuneConfig(epochs=1), out)  # the lock released: it runs
    assert out.exists() and not (tmp_path / ".same.bnnc.lock").exists()


# ----------------------------------------------------------------------------- the recipe's switches


def test_warm_up_ramps_the_learning_rate_linearly_then_follows_the_schedule():
    assert lr_factor("constant", 0, 100, warmup=0.1) == pytest.approx(0.1)
    assert lr_factor("constant", 4, 100, warmup=0.1) == pytest.approx(0.5)
    assert lr_factor("constant", 9, 100, warmup=0.1) == 1
    assert lr_factor("cosine", 50, 100, warmup=0.1) == lr_factor("cosine", 50, 100) == pytest.approx(0.5)
    with pytest.raises(BnncError, match="warm-up"):
        FinetuneConfig(warmup=1.0)


def test_the_gradient_switch_changes_the_activations_gradient_only_in_training(small_bnnc):
    from bnnc.layers import InputBinarizer

    model = load_checkpoint(small_bnnc).model
    binarizer = next(m for m in model.modules() if isinstance(m, InputBinarizer))
    x = torch.tensor([[0.0, 0.5, 1.5] * (binarizer.channels // 3) + [0.0] * (binarizer.channels % 3)],
                     requires_grad=True)
    grads = {}
    for gradient in ("hardtanh", "approxsign", "ede"):
        binarizer.gradient, binarizer.sharpness = gradient, 1.0
        binarizer.beta.data.zero_()
        x.grad = None
        binarizer.train()(x).sum().backward()
        grads[gradient] = [round(g, 4) for g in x.grad[0, :3].tolist()]
    assert grads == {"hardtanh": [1.0, 1.0, 0.0], "approxsign": [2.0, 1.0, 0.0],
                     "ede": [1.0, 0.7864, 0.1807]}  # 1 - tanh(x)^2 at t = 1
    binarizer.eval()
    assert torch.equal(binarizer(x), torch.where(x >= 0, 1.0, -1.0))


def test_the_error_decay_estimator_sharpens_over_the_whole_run(tmp_path, subset, small_bnnc, monkeypatch):
    """--ste ede: every training step's activations take EDE's gradient, its t rising from 0.1 at the first step
    to 10 at the last, across epochs; the default never calls it."""
    import bnnc.layers

    seen: list[float] = []
    real = bnnc.layers.ede_sign
    monkeypatch.setattr(bnnc.layers, "ede_sign", lambda x, t: seen.append(t) or real(x, t))
    finetune(small_bnnc, subset, FinetuneConfig(epochs=1, distill=False), tmp_path / "h.bnnc")
    assert seen == []
    finetune(small_bnnc, subset, FinetuneConfig(epochs=2, ste="ede", distill=False), tmp_path / "e.bnnc")
    binarizers = sum(isinstance(m, bnnc.layers.InputBinarizer) for m in load_checkpoint(small_bnnc).model.modules())
    steps = seen[::binarizers]
    assert len(seen) == len(steps) * binarizers and len(steps) == 2 * math.ceil(len(subset.train) / 64)
    assert steps[0] == pytest.approx(0.1) and steps[-1] == pytest.approx(10 * 100 ** (-1 / len(steps)))
    assert all(a < b for a, b in zip(steps, steps[1:], strict=False))


def test_real_weights_keep_the_binary_weights_scale_and_never_reach_evaluation(small_bnnc):
    from bnnc.layers import BinaryLayer, use_real_weights

    model = load_checkpoint(small_bnnc).model
    layer = next(m for m in model.modules() if isinstance(m, BinaryLayer))
    use_real_weights(model, True)
    layer.train()
    w = layer.binary_weight()
    assert not torch.equal(w.abs(), torch.ones_like(w))                  # real values
    assert torch.allclose(w.abs().mean(1), torch.ones(w.shape[0]))        # mean |w| 1 per channel, as +-1 has
    assert torch.equal(torch.sign(w), torch.where(layer.weight >= 0, 1.0, -1.0) * (layer.weight != 0))
    layer.eval()
    assert torch.equal(layer.binary_weight().abs(), torch.ones_like(w))  # evaluation: binary
    use_real_weights(model, False)
    layer.train()
    assert torch.equal(layer.binary_weight().abs(), torch.ones_like(w))


def test_batchnorm_reestimation_changes_running_statistics_and_nothing_else(small_bnnc, subset):
    from bnnc.calibrate import reestimate_batchnorm

    model = load_checkpoint(small_bnnc).model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert reestimate_batchnorm(model, subset.train, 2) == 512
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed)
    assert not model.training and not any(m.training for m in model.modules())  # modes as they were


def test_two_step_trains_real_weights_first_and_ships_only_binary_epochs(tmp_path, subset, small_bnnc):
    events = []
    result = finetune(small_bnnc, subset, FinetuneConfig(epochs=2, two_step=True, distill=False),
                      tmp_path / "t.bnnc", on_event=events.append)
    ends = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.best for e in ends] == [False, True] and result.best_epoch == 2  # epoch 1 trained real weights
    calibrations = [i for i, e in enumerate(events) if type(e).__name__ == "Calibrating"]
    first_end = events.index(ends[0])
    assert any(i > first_end for i in calibrations)  # BN and thresholds re-estimated when weights turn binary
    model = load_checkpoint(result.output).model
    assert all(not m.__dict__.get("real_weights", False) for m in model.modules())


def test_bop_flips_do_not_depend_on_the_gradients_scale_and_need_evidence_first():
    """m / sqrt(v) over the same window is dimensionless and bounded by sqrt(1 - (1 - gamma)^t): the same
    gradients at any scale flip the same weights, and none flips before about tau^2 / gamma steps."""
    from bnnc.training.bop import bop_step

    gamma, tau = 0.01, 0.3  # sqrt(1 - 0.99^t) > 0.3 from t = 10 on
    seen = []
    for scale in (1e-9, 1.0, 1e6):
        g = torch.Generator().manual_seed(0)
        w = torch.nn.Parameter(torch.rand(5000, generator=g) - 0.5)
        w0, state, group = w.detach().clone(), defaultdict(dict), {"params": [w], "lr": gamma, "threshold": tau}
        history = []
        for _ in range(30):
            w.grad = (torch.randn(5000, generator=g) + 2 * torch.sign(w0)) * scale  # most pushed across zero
            bop_step(group, state)
            assert w.grad is None  # consumed: the optimizer around it skips the binary weights
            history.append((w.detach() != w0).clone())
        assert not any(h.any() for h in history[:9]) and history[-1].float().mean() > 0.5
        assert torch.equal(w.detach().abs(), w0.abs())  # flips only
        seen.append(torch.stack(history))
    assert torch.equal(seen[0], seen[1]) and torch.equal(seen[1], seen[2])


def test_bop_flips_a_weight_whose_gradient_pushes_it_across_zero():
    from bnnc.training.bop import bop_flips

    w = torch.tensor([0.3, -0.3, 0.0, 0.3, -0.7])
    m = torch.tensor([0.5, 0.5, 0.5, 0.05, -0.5])
    flips = bop_flips(w, m, torch.ones(5), threshold=0.1)
    # descent lowers +0.3 (g > 0): flip; raises nothing for -0.3 (g > 0 pushes it further down); 0 counts as +1;
    # a push of 0.05 stays under the threshold; -0.7 with g < 0 is pushed up across zero
    assert flips.tolist() == [True, False, True, False, True]


def test_bop_flips_binary_weights_after_tau_squared_over_gamma_steps_and_adam_steps_the_rest(small_bnnc, subset):
    """With --bop the binary weights change only by sign flips, keep their magnitudes, and flip only where the
    gradient has pushed long enough; every other parameter still learns with Adam."""
    from bnnc.training import make_optimizer

    model = load_checkpoint(small_bnnc).model.eval()  # running statistics: the same gradient every step
    layers = [layer for _, layer in binary_layers(model)]
    before = [layer.weight.detach().clone() for layer in layers]
    others = {n: p.detach().clone() for n, p in model.named_parameters() if not n.endswith(".weight")
              or not any(p is layer.weight for layer in layers)}
    gamma, tau = 0.01, 0.3  # a constant gradient reaches tau after log(1 - tau^2) / log(1 - gamma) = 9.4 steps
    optimizer = make_optimizer(model, FinetuneConfig(bop=True, bop_gamma=gamma, bop_threshold=tau))
    assert [g.get("bop", False) for g in optimizer.param_groups] == [True, False]
    x, y = subset.train.tensors[0][:64], subset.train.tensors[1][:64]
    grads = None
    for step in range(1, 11):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        if grads is None:
            grads = [layer.weight.grad.clone() for layer in layers]
        optimizer.step()
        flipped = sum(int(((layer.weight >= 0) != (w0 >= 0)).sum()) for layer, w0 in zip(layers, before, strict=True))
        if step <= 9:
            assert flipped == 0, step
    assert flipped > 0
    for layer, w0, g in zip(layers, before, grads, strict=True):
        w = layer.weight.detach()
        assert torch.equal(w.abs(), w0.abs())  # flips only: no latent weight moves
        changed = (w >= 0) != (w0 >= 0)
        assert (torch.where(w0 >= 0, 1.0, -1.0)[changed] * g[changed] > 0).all()  # each pushed across zero
    assert any(not torch.equal(p.detach(), others[n]) for n, p in model.named_parameters() if n in others)


def test_bop_finetunes_resumes_and_refuses_what_it_cannot_do(tmp_path, subset, small_bnnc):
    cfg = FinetuneConfig(epochs=2, bop=True)
    result = finetune(small_bnnc, subset, cfg, tmp_path / "b.bnnc")
    assert all(r.flip_share > 0 for r in result.history)

    def stop_after_first(event):
        if isinstance(event, EpochEnd) and event.record.epoch == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        finetune(small_bnnc, subset, cfg, tmp_path / "cut.bnnc", on_event=stop_after_first)
    finetune(small_bnnc, subset, cfg, tmp_path / "cut.bnnc", resume=True)  # Bop's averages restored
    full, cut = (torch.load(tmp_path / f"{n}.bnnc.state", weights_only=True)["model"] for n in ("b", "cut"))
    assert all(torch.equal(full[k], cut[k]) for k in full)
    model = load_checkpoint(result.output).model
    start = load_checkpoint(small_bnnc).model
    for (_, a), (_, b) in zip(binary_layers(model), binary_layers(start), strict=True):
        assert torch.equal(a.weight.abs(), b.weight.abs())  # the latent magnitudes never learned
    for bad, message in [({"bop": True, "two_step": True}, "choose one"),
                         ({"bop": True, "glorot_lr": True}, "choose one"), ({"bop_gamma": 0.0}, "gamma"),
                         ({"bop_threshold": 1.0}, "threshold"), ({"bop_threshold": float("nan")}, "threshold")]:
        with pytest.raises(BnncError, match=message):
            FinetuneConfig(**bad)


def test_fine_tuning_never_ships_a_model_worse_than_its_start(tmp_path, subset, monkeypatch):
    """Recalibration that lowers validation accuracy is undone, and the start competes with the epochs: with both
    made harmful here, the output is the converted model itself, as best epoch 0."""
    from dataclasses import replace

    from bnnc.evaluation import evaluate
    from bnnc.training import loop

    converted = convert_file(SAMPLE_MLP, tmp_path / "mlp.bnnc", data=subset).output  # thresholds calibrated

    def harmful_calibration(model, *args, **kwargs):
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.fill_(100.0)

    def harmful_epoch(trainer, model, splits, *args, **kwargs):
        record = real_epoch(trainer, model, splits, *args, **kwargs)
        with torch.no_grad():
            model.get_submodule("classifier").weight.neg_()
        return replace(record, val_accuracy=evaluate(model, splits.val, torch.device("cpu"))[0])

    real_epoch = loop._train_epoch
    monkeypatch.setattr(loop, "calibrate_on", harmful_calibration)
    monkeypatch.setattr(loop, "_train_epoch", harmful_epoch)
    result = finetune(converted, subset, FinetuneConfig(epochs=2, two_step=False), tmp_path / "ft.bnnc")
    assert result.recalibrated_accuracy < result.converted_accuracy - 0.2
    assert max(r.val_accuracy for r in result.history) < result.converted_accuracy
    assert (result.best_epoch, result.best_accuracy) == (0, result.converted_accuracy)
    start, shipped = _weights(converted), _weights(result.output)
    assert start.keys() == shipped.keys() and all(torch.equal(start[k], shipped[k]) for k in start)
    assert json.loads(result.history_path.read_text())["best_epoch"] == 0


def _rescaled_channels(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The same function with each hidden Linear's output channels scaled by 1/4..4 and its BatchNorm's running
    statistics with them: a per-channel weight scale the BatchNorm makes arbitrary, as training leaves it."""
    g = torch.Generator().manual_seed(seed)
    modules = list(model.features)
    with torch.no_grad():
        for linear, bn in zip(modules, modules[1:], strict=False):
            if isinstance(linear, torch.nn.Linear) and isinstance(bn, torch.nn.BatchNorm1d):
                k = torch.exp((torch.rand(linear.out_features, generator=g) * 2 - 1) * math.log(4))
                linear.weight.mul_(k[:, None])
                bn.running_mean.mul_(k)
                bn.running_var.mul_(k * k)
    return model


def test_equalized_latent_weights_keep_the_signs_and_make_every_channel_as_easy_to_flip(small_bnnc):
    from bnnc.training import equalize_latent

    model = load_checkpoint(small_bnnc).model
    layer = binary_layers(model)[1][1]
    layer.weight.data[:3] *= torch.tensor([0.1, 10.0, 0.0])[:, None]  # channels of other scales, one all zero
    signs = [(lay.weight >= 0).clone() for _, lay in binary_layers(model)]
    layer_mean = float(layer.weight.detach().abs().mean())
    equalize_latent(model)
    assert all(torch.equal(lay.weight >= 0, s) for (_, lay), s in zip(binary_layers(model), signs, strict=True))
    per_channel = layer.weight.abs().mean(1)
    assert torch.allclose(per_channel[per_channel > 0], torch.full_like(per_channel[per_channel > 0], layer_mean),
                          rtol=1e-5)
    assert int((per_channel == 0).sum()) == 1


def test_fine_tuning_with_equalized_latent_weights_is_blind_to_a_per_channel_weight_scale(tmp_path, subset,
                                                                                            fp32_checkpoint):
    """Two FP32 models that compute the same function, one with its hidden channels' weights rescaled (and the
    BatchNorm statistics with them), fine-tune to the same binary weights; without equalizing, the rescaled
    channels' latent weights flip at other rates and the runs part."""
    src = fp32_checkpoint("mlp", preprocessing=load_checkpoint(SAMPLE_MLP).preprocessing)
    loaded = load_checkpoint(src)
    save_checkpoint(tmp_path / "rescaled.pt", state_dict=_rescaled_channels(loaded.model).state_dict(),
                    arch=loaded.arch, arch_kwargs=loaded.arch_kwargs, preprocessing=loaded.preprocessing)

    def binary_weights(fp32: Path, equalize: bool) -> torch.Tensor:
        converted = convert_file(fp32, tmp_path / f"{fp32.stem}-{equalize}.bnnc",  # alpha: learnt at an absolute
                                 options=ConvertOptions(scale=False)).output  # rate, so not blind to the scale
        out = finetune(converted, subset, FinetuneConfig(epochs=1, equalize_latent=equalize),
                       tmp_path / f"{fp32.stem}-{equalize}.ft.bnnc").output
        return torch.cat([lay.weight.flatten() >= 0 for _, lay in binary_layers(load_checkpoint(out).model)])

    def parted(equalize: bool) -> float:
        a, b = binary_weights(src, equalize), binary_weights(tmp_path / "rescaled.pt", equalize)
        return float((a != b).float().mean())

    assert parted(True) < 0.01    # 0.25% here: BatchNorm's eps and rounding, not the scale
    assert parted(False) > 0.03   # 6.9% here
