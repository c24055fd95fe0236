"""Binary layers: drop-in replacements for ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d``.

Each keeps the real-valued *latent* weight ``W`` (clipped to [-1, 1], see
:func:`clip_latent_weights`) and computes with ``binarize(W)``. A layer with ``binary_input``
also binarizes its input through an :class:`InputBinarizer` (the paper's hidden layers); without
it the input stays real-valued (the paper's first layer). Forward::

    y = op(x_b, binarize(W)) * alpha + bias,    x_b = binarize(x - beta)  or  x

where ``op`` is ``F.linear`` or the convolution, ``alpha`` a learnable per-output-channel scale
(initialised to ``mean |W|`` of the FP32 filter) and ``beta`` a per-input-channel threshold.
Gradients flow to ``W``, ``x`` and ``beta`` through the straight-through estimator
(``1_{|.| <= 1}``, see :mod:`bnnc.quantizers`) and to ``alpha`` and ``bias`` as usual.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from bnnc.quantizers import approx_sign, binarize, binarize_clipped, ede_sign, stochastic_binarize


class InputBinarizer(nn.Module):
    """``x_b = binarize(x - beta)`` with one threshold ``beta`` per input channel.

    Without a threshold the output after a ReLU would be all +1; ``beta`` is calibrated on real
    inputs (:func:`bnnc.calibrate.calibrate_thresholds`) and then learned through the STE:
    ``dL/dbeta = -sum(dL/dx_b * 1_{|x - beta| <= 1})``. ``channel_dim`` is 1 for convolutions
    (N, C, ...) and -1 for linear layers (..., features). With ``stochastic`` the training-time
    forward uses :func:`bnnc.quantizers.stochastic_binarize`; evaluation is always deterministic.
    ``gradient`` picks the training-time gradient of the same sign (``hardtanh``, ``approxsign`` or ``ede``
    with ``sharpness`` as its ``t``): fine-tuning's choice, not stored, so the export never depends on it.
    """

    def __init__(
        self, channels: int, channel_dim: int, threshold: bool = True, stochastic: bool = False
    ) -> None:
        super().__init__()
        self.channels = channels
        self.channel_dim = channel_dim
        self.stochastic = stochastic
        self.gradient: str = "hardtanh"  # fine-tuning's choice of gradient (FinetuneConfig.ste); not stored
        self.sharpness = 0.1  # the error decay estimator's t (``gradient == "ede"``), set by fine-tuning each step
        self.beta: nn.Parameter | None
        if threshold:
            self.beta = nn.Parameter(torch.zeros(channels))
        else:
            self.register_parameter("beta", None)

    def shifted(self, x: torch.Tensor) -> torch.Tensor:
        """``x - beta``, beta broadcast along ``channel_dim``: the value whose sign is taken."""
        if self.beta is None:
            return x
        return x - channel_view(self.beta, x.dim(), self.channel_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.shifted(x)
        if self.stochastic and self.training:
            return stochastic_binarize(z)
        if self.gradient == "approxsign" and self.training:
            return approx_sign(z)
        if self.gradient == "ede" and self.training:
            return ede_sign(z, self.sharpness)
        return binarize(z)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, threshold={self.beta is not None}, stochastic={self.stochastic}"


def real_weights(w: torch.Tensor) -> torch.Tensor:
    """The latent weights scaled per output channel to the binary weights' magnitude, ``W_c / mean|W_c|``:
    what a layer trains with in the first step of two-step fine-tuning (binary activations, real
    weights; ReActNet), so that switching to ``binarize(W)`` keeps every output's scale."""
    norm = w.detach().abs().flatten(1).mean(1).clamp_min(torch.finfo(w.dtype).tiny)
    return w / channel_view(norm, w.dim(), 0)


def use_real_weights(model: nn.Module, on: bool) -> None:
    """Train every binary layer of ``model`` with :func:`real_weights` (``on``) or ``binarize(W)``; evaluation
    always uses the binary weights. Not saved with the model."""
    for module in model.modules():
        if isinstance(module, BinaryLayer):
            module.__dict__["real_weights"] = on


def channel_view(v: torch.Tensor, ndim: int, channel_dim: int) -> torch.Tensor:
    """Reshape a per-channel vector to broadcast against an ``ndim`` tensor along ``channel_dim``."""
    shape = [1] * ndim
    shape[channel_dim] = -1
    return v.view(shape)


class BinaryLayer(nn.Module):
    """What every binary layer shares: latent weight, optional alpha, optional input binarizer."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    alpha: nn.Parameter | None
    input_binarizer: InputBinarizer | None

    def _init_binary(
        self, in_channels: int, out_channels: int, channel_dim: int, *,
        binary_input: bool, scale: bool, threshold: bool, stochastic: bool,
    ) -> None:
        if scale:
            self.alpha = nn.Parameter(torch.ones(out_channels))
        else:
            self.register_parameter("alpha", None)
        self.input_binarizer = (
            InputBinarizer(in_channels, channel_dim, threshold=threshold, stochastic=stochastic)
            if binary_input else None
        )

    @property
    def binary_input(self) -> bool:
        return self.input_binarizer is not None

    def binary_weight(self) -> torch.Tensor:
        """``binarize(W)``: the +-1 weights the layer computes with.

        Without gradients (evaluation, calibration) the result is kept until ``W`` changes (its
        version counter moves with every in-place update: optimizer steps, clipping, loading), so
        repeated inference doesn't binarize millions of weights on every call.
        """
        w = self.weight
        if self.training and self.__dict__.get("real_weights", False):
            return real_weights(w)
        if torch.is_grad_enabled() and w.requires_grad:
            clipped = self.training and self.__dict__.get("_clipped") == _version_key(w)  # untouched since the clip
            return binarize_clipped(w) if clipped else binarize(w)
        key = _version_key(w)
        cached = self.__dict__.get("_binary_weight_cache")
        if cached is None or cached[0] != key:
            cached = (key, binarize(w.detach()))
            self.__dict__["_binary_weight_cache"] = cached
        return cached[1]

    def _binarize_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.input_binarizer is None else self.input_binarizer(x)

    def _scale_and_bias(self, y: torch.Tensor, channel_dim: int) -> torch.Tensor:
        if self.alpha is not None:
            y = y * channel_view(self.alpha, y.dim(), channel_dim)
        if self.bias is not None:
            y = y + channel_view(self.bias, y.dim(), channel_dim)
        return y

    def _copy_from(self, module: nn.Module, scale: bool) -> None:
        """Take the FP32 module's weights as latent weights (clipped) and alpha = mean |W| per filter."""
        with torch.no_grad():
            self.weight.copy_(module.weight.clamp(-1, 1))
            if self.bias is not None:
                self.bias.copy_(module.bias)
            if scale and self.alpha is not None:
                self.alpha.copy_(module.weight.abs().flatten(1).mean(1))

    def binary_extra_repr(self) -> str:
        return f"binary_input={self.binary_input}, scale={self.alpha is not None}"


_Layer = TypeVar("_Layer", bound="BinaryLayer")


def outside_autocast(x: torch.Tensor) -> torch.autocast:
    """Binary layers compute in their own (float32) precision even under mixed-precision autocast:
    sums of +-1 products are exact in float32 but not in bfloat16 past 256, and a threshold
    compared with a rounded value flips bits. The FP32 parts of the model still run autocast."""
    return torch.autocast(x.device.type, enabled=False)


def _binary_options(binary_input: bool, scale: bool, threshold: bool, stochastic: bool) -> dict[str, Any]:
    return {"binary_input": binary_input, "scale": scale, "threshold": threshold, "stochastic": stochastic}


class BinaryLinear(BinaryLayer, nn.Linear):
    """``y = F.linear(x_b, binarize(W)) * alpha + bias`` (see the module docstring)."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, *,
        binary_input: bool = True, scale: bool = True, threshold: bool = True, stochastic: bool = False,
        device: Any = None, dtype: Any = None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_binary(in_features, out_features, -1, **_binary_options(binary_input, scale, threshold, stochastic))

    @classmethod
    def from_float(
        cls, module: nn.Linear, *, binary_input: bool, scale: bool = True,
        threshold: bool = True, stochastic: bool = False,
    ) -> BinaryLinear:
        """A binary copy of ``module``; ``module`` itself is left untouched."""
        new = cls(
            module.in_features, module.out_features, bias=module.bias is not None,
            device=module.weight.device, dtype=module.weight.dtype,
            **_binary_options(binary_input, scale, threshold, stochastic),
        )
        new._copy_from(module, scale)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with outside_autocast(x):
            y = F.linear(self._binarize_input(x.to(self.weight.dtype)), self.binary_weight())  # (..., out_features)
            return self._scale_and_bias(y, -1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.binary_extra_repr()}"


class _BinaryConvNd(BinaryLayer):
    """Shared forward of the binary convolutions: ``conv(x_b, binarize(W)) * alpha + bias``."""

    _conv_forward: Any

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
        dilation: Any = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *,
        binary_input: bool = True, scale: bool = True, threshold: bool = True, stochastic: bool = False,
        device: Any = None, dtype: Any = None,
    ) -> None:
        super().__init__(  # type: ignore[call-arg] - nn.ConvNd.__init__, next in the MRO
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device=device, dtype=dtype,
        )
        self._init_binary(in_channels, out_channels, 1, **_binary_options(binary_input, scale, threshold, stochastic))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with outside_autocast(x):
            y = self._conv_forward(self._binarize_input(x.to(self.weight.dtype)), self.binary_weight(), None)
            return self._scale_and_bias(y, 1)  # (N, C_out, ...)

    @classmethod
    def from_float(
        cls: type[_Layer], module: nn.Module, *, binary_input: bool, scale: bool = True,
        threshold: bool = True, stochastic: bool = False,
    ) -> _Layer:
        """A binary copy of the convolution ``module``; ``module`` itself is left untouched."""
        new = cls(  # type: ignore[call-arg]
            module.in_channels, module.out_channels, module.kernel_size,
            stride=module.stride, padding=module.padding, dilation=module.dilation,
            groups=module.groups, bias=module.bias is not None, padding_mode=module.padding_mode,
            device=module.weight.device, dtype=module.weight.dtype,
            **_binary_options(binary_input, scale, threshold, stochastic),
        )
        new._copy_from(module, scale)
        return new

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.binary_extra_repr()}"  # type: ignore[misc]


class BinaryConv1d(_BinaryConvNd, nn.Conv1d):
    """Binary ``nn.Conv1d`` (sequences, audio): ``conv1d(x_b, binarize(W)) * alpha + bias``."""


class BinaryConv2d(_BinaryConvNd, nn.Conv2d):
    """Binary ``nn.Conv2d``: ``conv2d(x_b, binarize(W)) * alpha + bias``."""


def set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at the qualified ``name`` (e.g. ``features.3``) by ``module``."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def binary_layers(model: nn.Module) -> list[tuple[str, BinaryLayer]]:
    """Every binary layer of ``model`` with its qualified name, in registration order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, BinaryLayer)]


@torch.no_grad()
def clip_latent_weights(model: nn.Module) -> None:
    """Clip every binary layer's latent weight to [-1, 1]; call after each optimizer step.

    Beyond +-1 the STE cancels the gradient, so an unclipped latent weight could grow without
    bound and never flip sign again (paper, section 1.3).
    """
    for _, layer in binary_layers(model):
        layer.weight.clamp_(-1, 1)
        layer.__dict__["_clipped"] = _version_key(layer.weight)  # binary_weight's gradient can skip the STE mask


def _version_key(w: torch.Tensor) -> tuple[Any, ...]:
    """Identifies ``w``'s values: its version counter moves with every in-place update (optimizer steps, clipping,
    loading), and a new tensor has another address."""
    return (w._version, w.data_ptr(), w.dtype, w.device)
