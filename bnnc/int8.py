"""8-bit layers: the layers a plan keeps real-valued, at 8 bits instead of 32 (``int8`` precision).

FINN and Larq Compute Engine users keep the first and last layers at 8 bits rather than FP32. An
int8 layer stores int8 weights, symmetric per output channel in [-63, 63] (7 bits of range, as ONNX
Runtime's ``reduce_range``: see :data:`bnnc.quantizers.INT8_MAX`), and quantizes its input to uint8
with one static scale and zero point, calibrated on real inputs
(:func:`bnnc.calibrate.calibrate_thresholds`). Forward::

    y = (q(x) - z) . w_q * (s_x * s_w) + bias,    q(x) = clamp(round(x / s_x) + z, 0, 255)

Training runs it fake-quantized with the straight-through estimator (:mod:`bnnc.quantizers`), so
fine-tuning learns weights that survive the rounding; evaluation computes the integer sum exactly
(in float64) and scales it in float32, which is what the exported ``MatMulInteger``/``QLinearConv``
graph computes — the same predictions, not approximately the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from bnnc.errors import BnncError
from bnnc.layers import channel_view, outside_autocast
from bnnc.quantizers import UINT8_MAX, fake_quantize_uint8, int8_weights, quantize_uint8


class Int8Layer(nn.Module):
    """What the 8-bit layers share: a latent float weight and the input's calibrated scale and zero point."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    input_scale: torch.Tensor       # () float32; 0 until calibrated
    input_zero_point: torch.Tensor  # () float32, an integer in [0, 255]
    channel_dim: int
    _op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # the linear map: F.linear or the convolution

    def _init_int8(self) -> None:
        self.register_buffer("input_scale", torch.zeros((), device=self.weight.device))
        self.register_buffer("input_zero_point", torch.zeros((), device=self.weight.device))

    @property
    def calibrated(self) -> bool:
        return bool(self.input_scale > 0)

    @torch.no_grad()
    def set_input_range(self, low: float, high: float) -> None:
        """Scale and zero point covering [low, high] (widened to hold 0 exactly: zero padding stays exact)."""
        low, high = min(float(low), 0.0), max(float(high), 0.0)
        scale = (high - low) / UINT8_MAX if high > low else 1.0
        self.input_scale.fill_(scale)
        self.input_zero_point.fill_(min(max(round(-low / float(self.input_scale)), 0), UINT8_MAX))

    def quantized_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w_q, s_w)``: int8 weights (float integers) and their per-output-channel scales."""
        return int8_weights(self.weight)

    def output_scale(self) -> torch.Tensor:
        """``s_x * s_w`` per output channel, in float32: what multiplies the integer sum."""
        return (self.input_scale.float() * self.quantized_weight()[1].float()).detach()

    def integer_input(self, x: torch.Tensor) -> torch.Tensor:
        """``q(x) - z``: the input as the integer kernel sees it (float integers in [-255, 255])."""
        return quantize_uint8(x, self.input_scale, self.input_zero_point) - self.input_zero_point

    def integer_sum(self, x: torch.Tensor) -> torch.Tensor:
        """The exact integer accumulator ``(q(x) - z) . w_q`` as float64 (no rounding below 2**53)."""
        w_q, _ = self.quantized_weight()
        return self._op(self.integer_input(x).double(), w_q.detach().double())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with outside_autocast(x):
            x = x.to(self.weight.dtype)
            if not self.calibrated:
                if not self.training:
                    raise BnncError("an int8 layer has no calibrated input range",
                                    "convert with --data, or fine-tune (it calibrates before training)")
                self.set_input_range(float(x.detach().min()), float(x.detach().max()))
            if self.training:
                w_q, s_w = self.quantized_weight()
                w = w_q * channel_view(s_w, w_q.dim(), 0)
                y = self._op(fake_quantize_uint8(x, self.input_scale, self.input_zero_point), w)
                y = y.to(x.dtype)
            else:
                scale = channel_view(self.output_scale(), x.dim(), self.channel_dim)  # float32 (float64 in a
                y = (self.integer_sum(x).to(torch.float32) * scale).to(x.dtype)   # float64 copy of the model)
            if self.bias is not None:
                y = y + channel_view(self.bias, y.dim(), self.channel_dim)
            return y

    def int8_extra_repr(self) -> str:
        return f"int8, input_scale={float(self.input_scale):.4g}, zero_point={int(self.input_zero_point)}"


_Layer = TypeVar("_Layer", bound=Int8Layer)


class Int8Linear(Int8Layer, nn.Linear):
    """8-bit ``nn.Linear``: ``(q(x) - z) . w_q * (s_x * s_w) + bias``."""

    channel_dim = -1

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_int8()

    def _op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.linear(x, w)

    @classmethod
    def from_float(cls, module: nn.Linear) -> Int8Linear:
        new = cls(module.in_features, module.out_features, bias=module.bias is not None,
                  device=module.weight.device, dtype=module.weight.dtype)
        new.load_state_dict(module.state_dict(), strict=False)
        return new

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.int8_extra_repr()}"


class _Int8ConvNd(Int8Layer):
    channel_dim = 1
    _conv_forward: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_int8()

    def _op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, w, None)

    @classmethod
    def from_float(cls: type[_Layer], module: nn.Module) -> _Layer:
        new = cls(  # type: ignore[call-arg]
            module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
            padding=module.padding, dilation=module.dilation, groups=module.groups,
            bias=module.bias is not None, padding_mode=module.padding_mode,
            device=module.weight.device, dtype=module.weight.dtype,
        )
        new.load_state_dict(module.state_dict(), strict=False)
        return new

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.int8_extra_repr()}"  # type: ignore[misc]


class Int8Conv1d(_Int8ConvNd, nn.Conv1d):
    """8-bit ``nn.Conv1d``."""


class Int8Conv2d(_Int8ConvNd, nn.Conv2d):
    """8-bit ``nn.Conv2d``."""


INT8_COUNTERPART: dict[type[nn.Module], type[Int8Layer]] = {
    nn.Linear: Int8Linear, nn.Conv1d: Int8Conv1d, nn.Conv2d: Int8Conv2d,
}


def int8_layers(model: nn.Module) -> list[tuple[str, Int8Layer]]:
    """Every 8-bit layer of ``model`` with its qualified name, in registration order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, Int8Layer)]
