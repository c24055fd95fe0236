"""Faithful small definitions of the architecture families users bring (torchvision and timm), importable
as ``families:NAME`` for ``--arch``.

torchvision's C++ ops don't load beside the CPU torch wheel CI installs, and timm needs torchvision, so
the tests can't import them. These mirror their module types and structure — the same layer classes in
the same order and nesting, the same functional calls in ``forward`` (channel shuffle with ``x.size()``,
``chunk``/``cat``, in-place residual adds, ``Permute`` + ``LayerNorm`` + ``Linear`` on channels-last,
``nn.MultiheadAttention``, ``F.scaled_dot_product_attention``) — at small widths and depths. The same
pipeline was run on the real torchvision/timm models (README, "Architectures").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _cbn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU
         ) -> nn.Sequential:
    """torchvision's Conv2dNormActivation: conv (no bias) -> BatchNorm -> activation."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act(inplace=True) if act in (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU) else act())
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: pool -> fc1 (1x1 conv) -> act -> fc2 -> gate, times the input."""

    def __init__(self, channels: int, squeeze: int, act: type[nn.Module] = nn.ReLU,
                 gate: type[nn.Module] = nn.Sigmoid) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = act()
        self.scale_activation = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


# ----------------------------------------------------------------------------- ResNet-18/34


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision.models.ResNet with BasicBlocks (resnet18: depths 2,2,2,2; resnet34: 3,4,6,3)."""

    def __init__(self, depths: tuple[int, ...] = (2, 2, 2, 2), width: int = 16, num_classes: int = 10,
                 in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = width
        for i, depth in enumerate(depths):
            cout = width * 2**i
            blocks = [BasicBlock(cin if j == 0 else cout, cout, 2 if i and j == 0 else 1) for j in range(depth)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 10, width: int = 16) -> nn.Module:
    return ResNet((2, 2, 2, 2), width, num_classes)


def resnet34(num_classes: int = 10, width: int = 8) -> nn.Module:
    return ResNet((3, 4, 6, 3), width, num_classes)


# ----------------------------------------------------------------------------- VGG-11/16 with BatchNorm


class VGG(nn.Module):
    """torchvision.models.VGG(make_layers(cfg, batch_norm=True)): its 7x7 adaptive pool runs on a 1x1 map
    at 32x32 inputs, and its classifier is Linear-ReLU-Dropout twice, then the logits."""

    def __init__(self, cfg: tuple[int | str, ...], num_classes: int = 10, hidden: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.BatchNorm2d(int(v)), nn.ReLU(inplace=True)]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(cin * 49, hidden), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(0.5), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg11_bn(num_classes: int = 10, width: int = 16) -> nn.Module:
    w = width
    return VGG((w, "M", 2 * w, "M", 4 * w, 4 * w, "M", 8 * w, 8 * w, "M", 8 * w, 8 * w, "M"), num_classes)


def vgg16_bn(num_classes: int = 10, width: int = 16) -> nn.Module:
    w = width
    return VGG((w, w, "M", 2 * w, 2 * w, "M", 4 * w, 4 * w, 4 * w, "M", 8 * w, 8 * w, 8 * w, "M",
                8 * w, 8 * w, 8 * w, "M"), num_classes)


# ----------------------------------------------------------------------------- MobileNet-V2 / V3


class InvertedResidual(nn.Module):
    """MobileNet-V2's block: expand 1x1 -> depthwise 3x3 -> project 1x1 (linear), residual when shapes agree.
    With ``se``/``act`` it is MobileNet-V3's block (hardswish, squeeze-excitation with a hardsigmoid gate)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, act: type[nn.Module] = nn.ReLU6,
                 se: bool = False) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = [] if expand == 1 else [_cbn(cin, hidden, 1, act=act)]
        layers.append(_cbn(hidden, hidden, 3, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcitation(hidden, max(8, hidden // 4), nn.ReLU, nn.Hardsigmoid))
        layers.append(_cbn(hidden, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result += x
        return result


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        w = width
        cfg = [(1, 2 * w, 1, 1), (6, 3 * w, 2, 2), (6, 4 * w, 2, 2), (6, 8 * w, 2, 2), (6, 12 * w, 1, 1)]
        layers: list[nn.Module] = [_cbn(1, 4 * w, 3, 2, act=nn.ReLU6)]
        cin = 4 * w
        for t, c, n, s in cfg:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_cbn(cin, 40 * w, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(40 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class MobileNetV3(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        w = width
        cfg = [(2 * w, 1, 2, nn.ReLU, True), (3 * w, 2, 3, nn.ReLU, False), (3 * w, 1, 3, nn.ReLU, False),
               (5 * w, 2, 3, nn.Hardswish, True), (5 * w, 1, 3, nn.Hardswish, True), (6 * w, 1, 3, nn.Hardswish, True)]
        layers: list[nn.Module] = [_cbn(1, 2 * w, 3, 2, act=nn.Hardswish)]
        cin = 2 * w
        for c, s, e, act, se in cfg:
            layers.append(InvertedResidual(cin, c, s, e, act, se))
            cin = c
        layers.append(_cbn(cin, 6 * cin, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(6 * cin, 16 * w), nn.Hardswish(inplace=True), nn.Dropout(0.2),
                                        nn.Linear(16 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v2(num_classes: int = 10, width: int = 8) -> nn.Module:
    return MobileNetV2(num_classes, width)


def mobilenet_v3(num_classes: int = 10, width: int = 8) -> nn.Module:
    return MobileNetV3(num_classes, width)


# ----------------------------------------------------------------------------- ShuffleNet-V2


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    batchsize, num_channels, height, width = x.size()
    x = x.view(batchsize, groups, num_channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, num_channels, height, width)


class ShuffleUnit(nn.Module):
    """torchvision's shufflenetv2.InvertedResidual: split (or two branches), concat, channel shuffle."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        self.branch1 = nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
            nn.Conv2d(cin, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
        ) if stride > 1 else nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin if stride > 1 else half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, stride, 1, groups=half, bias=False), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width),
                                   nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = width
        for i, (repeats, cout) in enumerate(((2, 4 * width), (3, 8 * width))):
            units = [ShuffleUnit(cin if j == 0 else cout, cout, 2 if j == 0 else 1) for j in range(repeats)]
            setattr(self, f"stage{i + 2}", nn.Sequential(*units))
            cin = cout
        self.conv5 = nn.Sequential(nn.Conv2d(cin, 16 * width, 1, bias=False), nn.BatchNorm2d(16 * width),
                                   nn.ReLU(inplace=True))
        self.fc = nn.Linear(16 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.maxpool(self.conv1(x))))
        return self.fc(self.conv5(x).mean([2, 3]))


def shufflenet_v2(num_classes: int = 10, width: int = 12) -> nn.Module:
    return ShuffleNetV2(num_classes, width)


# ----------------------------------------------------------------------------- EfficientNet-B0


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth: identity at inference."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class MBConv(nn.Module):
    """EfficientNet's block: expand 1x1 (SiLU) -> depthwise -> squeeze-excitation (SiLU, sigmoid) -> project."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, kernel: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = [] if expand == 1 else [_cbn(cin, hidden, 1, act=nn.SiLU)]
        layers += [_cbn(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU),
                   SqueezeExcitation(hidden, max(1, cin // 4), nn.SiLU, nn.Sigmoid), _cbn(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += x
        return result


class EfficientNet(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        w = width
        cfg = [(1, 2 * w, 1, 3), (6, 3 * w, 2, 3), (6, 5 * w, 2, 5), (6, 5 * w, 1, 5), (6, 10 * w, 2, 3)]
        stages: list[nn.Module] = [_cbn(1, 4 * w, 3, 2, act=nn.SiLU)]
        cin = 4 * w
        for expand, cout, stride, kernel in cfg:
            stages.append(nn.Sequential(MBConv(cin, cout, stride, expand, kernel)))
            cin = cout
        stages.append(_cbn(cin, 4 * cin, 1, act=nn.SiLU))
        self.features = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2, inplace=True), nn.Linear(4 * cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def efficientnet_b0(num_classes: int = 10, width: int = 8) -> nn.Module:
    return EfficientNet(num_classes, width)


# ----------------------------------------------------------------------------- RegNet (Y: grouped + SE)


class ResBottleneckBlock(nn.Module):
    """torchvision's RegNet block: 1x1 -> grouped 3x3 -> squeeze-excitation -> 1x1, projected shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, group_width: int) -> None:
        super().__init__()
        self.proj = _cbn(cin, cout, 1, stride, act=None) if cin != cout or stride != 1 else None
        self.f = nn.Sequential()
        self.f.add_module("a", _cbn(cin, cout, 1))
        self.f.add_module("b", _cbn(cout, cout, 3, stride, groups=cout // group_width))
        self.f.add_module("se", SqueezeExcitation(cout, max(1, cin // 4), nn.ReLU, nn.Sigmoid))
        self.f.add_module("c", _cbn(cout, cout, 1, act=None))
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x) + self.f(x) if self.proj is not None else x + self.f(x)
        return self.activation(x)


class RegNet(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.stem = _cbn(1, width, 3, 2)
        blocks, cin = [], width
        for i, (depth, cout) in enumerate(((1, 2 * width), (2, 4 * width), (2, 8 * width))):
            blocks.append((f"block{i + 1}", nn.Sequential(*[ResBottleneckBlock(cin if j == 0 else cout, cout,
                                                                               2 if j == 0 else 1, 8)
                                                            for j in range(depth)])))
            cin = cout
        self.trunk_output = nn.Sequential()
        for name, block in blocks:
            self.trunk_output.add_module(name, block)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.trunk_output(self.stem(x)))
        return self.fc(x.flatten(start_dim=1))


def regnet_y(num_classes: int = 10, width: int = 16) -> nn.Module:
    return RegNet(num_classes, width)


# ----------------------------------------------------------------------------- ConvNeXt


class Permute(nn.Module):
    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    """depthwise 7x7 -> channels-last LayerNorm -> Linear 4x -> GELU -> Linear -> layer scale + residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim), Permute([0, 2, 3, 1]), nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), Permute([0, 3, 1, 2]))
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * 0.1)
        self.stochastic_depth = StochasticDepth(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.stochastic_depth(self.layer_scale * self.block(x))
        result += x
        return result


class ConvNeXt(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        dims = [width, 2 * width, 4 * width]
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(1, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))]
        for i, dim in enumerate(dims):
            layers.append(nn.Sequential(CNBlock(dim), CNBlock(dim)))
            if i + 1 < len(dims):
                layers.append(nn.Sequential(LayerNorm2d(dim, eps=1e-6), nn.Conv2d(dim, dims[i + 1], 2, 2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1),
                                        nn.Linear(dims[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def convnext(num_classes: int = 10, width: int = 16) -> nn.Module:
    return ConvNeXt(num_classes, width)


# ----------------------------------------------------------------------------- ViT (torchvision and timm)


class MLPBlock(nn.Sequential):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim), nn.Dropout(0.0))


class EncoderBlock(nn.Module):
    """torchvision's ViT block: LayerNorm -> nn.MultiheadAttention -> residual; LayerNorm -> MLP -> residual."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = self.dropout(y) + x
        return x + self.mlp(self.ln_2(x))


class VisionTransformer(nn.Module):
    """torchvision.models.VisionTransformer: conv patch embedding, class token, position embedding."""

    def __init__(self, num_classes: int = 10, image_size: int = 28, patch: int = 7, dim: int = 32, depth: int = 2,
                 heads: int = 2) -> None:
        super().__init__()
        self.patch_size, self.hidden_dim = patch, dim
        self.conv_proj = nn.Conv2d(1, dim, patch, patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        n = (image_size // patch) ** 2 + 1
        self.pos_embedding = nn.Parameter(torch.empty(1, n, dim).normal_(std=0.02))
        self.layers = nn.Sequential(*[EncoderBlock(dim, heads, 4 * dim) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.heads = nn.Sequential()
        self.heads.add_module("head", nn.Linear(dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = self.conv_proj(x).reshape(n, self.hidden_dim, -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = self.ln(self.layers(x + self.pos_embedding))
        return self.heads(x[:, 0])


class Attention(nn.Module):
    """timm's Attention: one qkv Linear, F.scaled_dot_product_attention, a proj Linear."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_mask=attn_mask)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimmViT(nn.Module):
    """timm's VisionTransformer: its ``forward(x, attn_mask=None)`` takes an optional argument."""

    def __init__(self, num_classes: int = 10, image_size: int = 28, patch: int = 7, dim: int = 32, depth: int = 2,
                 heads: int = 2) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (image_size // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x, attn_mask=attn_mask)
        return self.head(self.norm(x)[:, 0])


def vit(num_classes: int = 10) -> nn.Module:
    return VisionTransformer(num_classes)


def timm_vit(num_classes: int = 10) -> nn.Module:
    return TimmViT(num_classes)


# ----------------------------------------------------------------------------- MLP-Mixer (timm)


class MixerBlock(nn.Module):
    """Token mixing (an MLP on the transposed tokens), then channel mixing, each with LayerNorm and a residual."""

    def __init__(self, dim: int, tokens: int) -> None:
        super().__init__()
        self.norm1, self.mlp_tokens = nn.LayerNorm(dim, eps=1e-6), Mlp(tokens, 2 * tokens)
        self.norm2, self.mlp_channels = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.mlp_channels(self.norm2(x))


class MlpMixer(nn.Module):
    def __init__(self, num_classes: int = 10, image_size: int = 28, patch: int = 4, dim: int = 32, depth: int = 2
                 ) -> None:
        super().__init__()
        self.stem = PatchEmbed(patch, dim)
        self.blocks = nn.Sequential(*[MixerBlock(dim, (image_size // patch) ** 2) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(self.stem(x))).mean(dim=1))


def mixer(num_classes: int = 10) -> nn.Module:
    return MlpMixer(num_classes)


FAMILIES: dict[str, int] = {
    "resnet18": 28, "resnet34": 28, "vgg11_bn": 32, "vgg16_bn": 32, "mobilenet_v2": 28, "mobilenet_v3": 28,
    "shufflenet_v2": 28, "efficientnet_b0": 28, "regnet_y": 28, "convnext": 32, "vit": 28, "timm_vit": 28,
    "mixer": 28,
}
"""Every family and the input side it runs at (VGG's five pools and ConvNeXt's strides need 32)."""
