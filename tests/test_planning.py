import archs
import pytest
import torch
from torch import nn

from bnnc import zoo
from bnnc.errors import PlanError
from bnnc.planning import Plan, PlanRules, Precision, plan


class Reversed(nn.Module):
    """Registers its layers in the opposite order of execution."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(64, 10)
        self.middle = nn.Linear(64, 64)
        self.stem = nn.Linear(32, 64)
        self.unused = nn.Linear(64, 64)

    def forward(self, x):
        return self.head(torch.relu(self.middle(torch.relu(self.stem(x)))))


def _precisions(p: Plan) -> dict[str, str]:
    return {layer.name: layer.precision.value for layer in p.layers}


def test_a_branch_on_self_training_is_planned_as_inference_runs_it():
    """GoogLeNet's auxiliary head is called only while training: the layer feeding it is a hidden layer (the fx
    graph is traced in eval mode, as the sample runs), not a last one, and the head itself isn't reached."""
    p = plan(archs.AuxHeadMLP().train(), input_shape=(1, 28, 28))
    assert _precisions(p) == {"features.1": "weights", "features.4": "binary", "classifier": "fp32", "aux": "fp32",
                              "spare": "fp32"}
    assert "not reached" in p["aux"].reason


def test_default_plan_mlp_first_weights_hidden_binary_last_fp32():
    p = plan(zoo.MLP(), input_shape=(1, 28, 28))
    assert _precisions(p) == {"features.1": "weights", "features.4": "binary", "features.7": "binary",
                              "classifier": "fp32"}
    assert [layer.order for layer in p.layers] == [0, 1, 2, 3]
    assert p["features.4"].macs == 1024 * 1024


def test_first_and_last_follow_execution_not_registration():
    p = plan(Reversed(), input_shape=(32,))
    assert [layer.name for layer in p.layers] == ["stem", "middle", "head", "unused"]
    assert _precisions(p) == {"stem": "weights", "middle": "binary", "head": "fp32", "unused": "fp32"}
    assert p["unused"].order is None and "not reached" in p["unused"].reason


def test_input_shape_probed_when_not_given():
    p = plan(zoo.VGG())
    assert p.input_shape == (1, 28, 28) and p.input_shape_inferred


def test_unprobeable_model_asks_for_input_shape():
    model = zoo.VGG(image_size=40)  # 40x40 input: none of the probe sizes fit the classifier
    with pytest.raises(PlanError, match="--input-shape"):
        plan(model)
    assert plan(model, input_shape=(1, 40, 40)).input_shape == (1, 40, 40)


def test_wrong_input_shape_is_a_clear_error():
    with pytest.raises(PlanError, match=r"shape \(3, 28, 28\).*failed"):
        plan(zoo.MLP(), input_shape=(3, 28, 28))


def test_small_and_depthwise_layers_stay_fp32():
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),                # 432 weights: small
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(),    # depthwise
        nn.Conv2d(16, 8, 1), nn.ReLU(),                           # 128 weights: small
        nn.Conv2d(8, 64, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 10),
    )
    p = plan(model, input_shape=(3, 8, 8))
    assert _precisions(p) == {"0": "fp32", "2": "fp32", "4": "fp32", "6": "binary", "9": "fp32"}
    assert "depthwise" in p["2"].reason and "small" in p["4"].reason and "small" in p["0"].reason


def test_overrides_by_glob_and_first_last():
    rules = PlanRules(keep=("features.0",), binary=("classifier.*",), first=Precision.BINARY)
    p = plan(zoo.VGG(), rules)
    pr = _precisions(p)
    assert pr["features.0"] == "fp32" and "--keep" in p["features.0"].reason
    assert pr["classifier.7"] == "binary"  # --binary beats the last-layer default
    assert pr["classifier.1"] == "binary"
    p2 = plan(zoo.MLP(), PlanRules(first=Precision.FP32, last=Precision.WEIGHTS))
    assert _precisions(p2)["features.1"] == "fp32" and _precisions(p2)["classifier"] == "weights"


def test_glob_naming_a_parent_module_selects_its_layers():
    p = plan(zoo.ResNet(), PlanRules(keep=("layers.0",)))
    assert p["layers.0.conv1"].precision is Precision.FP32 and p["layers.0.conv2"].precision is Precision.FP32
    assert p["layers.1.conv1"].precision is Precision.BINARY


def test_glob_matching_nothing_is_an_error():
    with pytest.raises(PlanError, match="'featurs.0' matches no"):
        plan(zoo.VGG(), PlanRules(keep=("featurs.0",)))


def test_conflicting_globs_are_an_error():
    with pytest.raises(PlanError, match="conflicting"):
        plan(zoo.VGG(), PlanRules(keep=("features.*",), binary=("features.3",)))


def test_unsupported_layer_types_stay_fp32_and_cant_be_forced():
    class MyLinear(nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2

    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), MyLinear(64, 64), nn.ReLU(), nn.Linear(64, 64),
                          nn.Unflatten(1, (1, 8, 8)), nn.ConvTranspose2d(1, 2, 2))
    p = plan(model, input_shape=(16,))
    assert p["2"].precision is Precision.FP32 and "no binary version of MyLinear" in p["2"].reason
    assert p["4"].precision is Precision.BINARY
    assert p["6"].precision is Precision.FP32  # the last layer executed, and a ConvTranspose2d
    with pytest.raises(PlanError, match="can't binarize"):
        plan(model, PlanRules(binary=("2",)), input_shape=(16,))


def test_model_without_layers_is_an_error():
    with pytest.raises(PlanError, match="no Linear or Conv"):
        plan(nn.Sequential(nn.ReLU()), input_shape=(4,))


def test_plan_round_trips_and_leaves_model_untouched():
    model = zoo.ResNet()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    p = plan(model)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])  # BN statistics untouched by the sample run
    assert Plan.from_dict(p.to_dict()) == p


def test_bad_rules():
    with pytest.raises(PlanError):
        PlanRules(min_params=-1)
    with pytest.raises(PlanError, match="--first"):
        PlanRules(first="half")  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="malformed"):
        Plan.from_dict({"layers": [{"name": "x"}]})


class _TwoStems(nn.Module):
    """Two convolutions read the input; two heads make the outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 8, 3, padding=1)
        self.b = nn.Conv2d(1, 8, 5, padding=2)
        self.mid = nn.Conv2d(16, 16, 3, padding=1)
        self.head1 = nn.Linear(16 * 8 * 8, 10)
        self.head2 = nn.Linear(16 * 8 * 8, 3)

    def forward(self, x):
        h = self.mid(torch.cat([self.a(x), self.b(x)], 1)).flatten(1)
        return self.head1(h), self.head2(h)


class _Untraceable(_TwoStems):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx can't trace it
            x = -x
        return super().forward(x)


def test_first_and_last_come_from_the_graph():
    p = plan(_TwoStems(), PlanRules(min_params=0, min_fan_in=0), input_shape=(1, 8, 8))
    precision = p.precisions()
    assert p.fallback is None
    assert precision["a"] is precision["b"] is Precision.WEIGHTS  # both read the real-valued input
    assert precision["mid"] is Precision.BINARY
    assert precision["head1"] is precision["head2"] is Precision.FP32  # both make outputs
    inputs = {layer.name: layer.inputs for layer in p.layers}
    assert inputs["a"] == inputs["b"] == ("input",)
    assert inputs["mid"] == ("a", "b") and inputs["head1"] == inputs["head2"] == ("mid",)


def test_an_untraceable_model_falls_back_to_execution_order_and_says_so():
    p = plan(_Untraceable(), PlanRules(min_params=0, min_fan_in=0), input_shape=(1, 8, 8))
    assert p.fallback is not None and "torch.fx can't trace" in p.fallback
    precision = p.precisions()
    assert precision["a"] is Precision.WEIGHTS and precision["head2"] is Precision.FP32
    assert Plan.from_dict(p.to_dict()) == p


# ----------------------------------------------------------------------------- roles read off the graph


def _reasons(p) -> dict[str, str]:
    return {layer.name: layer.reason for layer in p.layers if layer.precision is Precision.FP32}


def test_squeeze_excitation_gates_stay_fp32():
    import families

    p = plan(families.efficientnet_b0(), input_shape=(1, 28, 28))
    gates = [n for n, r in _reasons(p).items() if r.startswith("squeeze-excitation")]
    assert gates and all(n.endswith((".fc1", ".fc2")) for n in gates)
    blocks = sum(isinstance(m, families.SqueezeExcitation) for m in families.efficientnet_b0().modules())
    assert len(gates) == 2 * blocks
    # the classifiers of MobileNet-V3 run once per sample too, but gate nothing
    v3 = plan(families.mobilenet_v3(), input_shape=(1, 28, 28))
    assert v3["classifier.0"].precision is Precision.BINARY and v3["classifier.3"].reason.startswith("last layer")


def test_self_gating_is_not_squeeze_excitation():
    class SiLUByHand(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(128, 128), nn.Linear(128, 128), nn.Linear(128, 4)

        def forward(self, x):
            h = self.b(torch.relu(self.a(x)))
            return self.c(h * torch.sigmoid(h))  # x * sigmoid(x) of its own output: an activation, not a gate

    assert plan(SiLUByHand(), input_shape=(128,))["b"].precision is Precision.BINARY


def test_a_layer_scale_parameter_is_not_a_gate():
    class LayerScale(nn.Module):  # ConvNeXt's block ends in gamma * pwconv2(x): a parameter, not an activation
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(128, 128), nn.Linear(128, 128), nn.Linear(128, 4)
            self.gamma = nn.Parameter(torch.full((128,), 1e-6))

        def forward(self, x):
            h = torch.relu(self.a(x))
            return self.c(h + self.gamma * self.b(h))

    assert plan(LayerScale(), input_shape=(128,))["b"].precision is Precision.BINARY


def test_attention_projections_stay_fp32_and_the_mlp_binarizes():
    import families

    reasons = _reasons(plan(families.timm_vit(), input_shape=(1, 28, 28)))
    attention = sorted(n for n, r in reasons.items() if r.startswith("attention"))
    assert attention == ["blocks.0.attn.proj", "blocks.0.attn.qkv", "blocks.1.attn.proj", "blocks.1.attn.qkv"]
    p = plan(families.TimmViT(dim=64), input_shape=(1, 28, 28))  # wide enough for its MLP (fan-in 64, 256)
    assert p["blocks.0.mlp.fc1"].precision is Precision.BINARY and p["blocks.1.mlp.fc2"].precision is Precision.BINARY


def test_narrow_hidden_layers_stay_fp32_and_overrides_are_warned_about():
    import families

    model = families.mobilenet_v2()
    p = plan(model, input_shape=(1, 28, 28))
    narrow = {n for n, r in _reasons(p).items() if r.startswith("narrow")}
    fan_ins = {n: m.weight[0].numel() for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert narrow and all(fan_ins[n] < 64 for n in narrow)
    assert all(fan_ins[layer.name] >= 64 for layer in p.layers if layer.precision is Precision.BINARY)
    projections = sorted(layer.name for layer in p.layers if layer.precision is Precision.BINARY
                         and layer.name.endswith(".block.2.0"))  # the 1x1 after the depthwise block.1.0
    assert projections
    assert p.warnings == (next(w for w in p.warnings if w.startswith(f"{len(projections)} binarized convs read a "
                                                                      "depthwise conv's output")),)
    assert not plan(model, PlanRules(keep=tuple(projections)), input_shape=(1, 28, 28)).warnings
    forced = plan(model, PlanRules(binary=sorted(narrow)[:2], keep=tuple(projections)), input_shape=(1, 28, 28))
    assert len(forced.warnings) == 1 and "2 layers binarized by an override" in forced.warnings[0]
    assert "(narrow)" in forced.warnings[0]
    assert Plan.from_dict(forced.to_dict()).warnings == forced.warnings
    nothing = plan(model, PlanRules(keep=("*",)), input_shape=(1, 28, 28))
    assert nothing.warnings == ("no layer is binarized: the converted model is the FP32 one (see each layer's reason)",)


class _TraceFailsWithoutMessage(nn.Module):
    """Runs eagerly; under torch.fx its forward raises an exception with no message at all."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(64, 128), nn.Linear(128, 128), nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.fx.Proxy):
            raise NotImplementedError()
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def test_a_trace_failing_without_a_message_falls_back_to_execution_order():
    p = plan(_TraceFailsWithoutMessage(), input_shape=(64,))
    assert p.fallback == "torch.fx can't trace the model (NotImplementedError)"
    assert [la.precision for la in p.layers] == [Precision.WEIGHTS, Precision.BINARY, Precision.FP32]
