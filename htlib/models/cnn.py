"""The target CNN of the HyperTransformer, run functionally on GIVEN weights.

The HyperTransformer writes the weights of a small 4-layer CNN for every episode (paper, Sec. 3).
Because the weights differ from episode to episode, the CNN is not an ``nn.Module`` with its own
parameters but a function of (images, weights). A whole batch of B episodes runs at once:

* conv weights carry a leading episode dim, ``(B, C_out, C_in, k, k)``;
* images are laid out as ``(M, B*C, H, W)`` ("grouped layout"), so one grouped convolution with
  ``groups=B`` applies episode b's kernels to episode b's images only;
* BatchNorm with ``training=True`` on the grouped layout normalises each of the B*C channels over
  that episode's M images and spatial positions, i.e. statistics are per episode, exactly as if the
  episodes were run one by one.

Block order follows the reference code: conv (no bias) -> activation -> 2x2 max-pool -> BatchNorm.
BatchNorm scale/shift are ordinary learned parameters (not generated) and BN always uses the
statistics of the batch it is given, also at evaluation time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from htlib.errors import ConfigError

BN_EPS = 1e-5
LEAKY_RELU_SLOPE = 0.1  # the reference code's "lrelu"


def activation_fn(name: str):
    """Return the element-wise nonlinearity called ``name`` ("relu" or "leaky_relu")."""
    if name == "relu":
        return F.relu
    if name == "leaky_relu":
        return lambda x: F.leaky_relu(x, LEAKY_RELU_SLOPE)
    raise ConfigError(f"Unknown activation {name!r}; expected 'relu' or 'leaky_relu'.")


@dataclass
class CNNSpec:
    """Shape of the target CNN: ``num_conv_layers`` blocks of C channels, then a logits layer.

    Defaults are the Omniglot reference setting (28x28x1 images, C = 8).
    """

    image_channels: int = 1
    image_size: int = 28
    channels: int = 8
    num_conv_layers: int = 4
    kernel_size: int = 3
    activation: str = "relu"
    # BatchNorm's epsilon: PyTorch's 1e-5 here; the reference (TensorFlow's default) uses 1e-3.
    bn_eps: float = BN_EPS

    def __post_init__(self) -> None:
        activation_fn(self.activation)  # fail early on a typo
        if not (isinstance(self.bn_eps, (int, float)) and not isinstance(self.bn_eps, bool) and self.bn_eps > 0):
            raise ConfigError(f"bn_eps must be a number > 0, got {self.bn_eps!r}.")
        if self.kernel_size % 2 != 1:
            raise ConfigError(f"kernel_size must be odd for 'same' padding, got {self.kernel_size}.")
        if self.image_size < 2**self.num_conv_layers:
            raise ConfigError(
                f"image_size {self.image_size} is too small for {self.num_conv_layers} "
                f"2x2 poolings; need at least {2 ** self.num_conv_layers}."
            )

    def in_channels(self, layer: int) -> int:
        """Input channels of conv layer ``layer`` (image channels for layer 0)."""
        return self.image_channels if layer == 0 else self.channels

    def out_channels(self, layer: int) -> int:
        """Output channels of conv layer ``layer`` (always C)."""
        return self.channels

    @property
    def feature_dim(self) -> int:
        """Size of the features after global average pooling (= C)."""
        return self.channels

    def conv_shape(self, layer: int) -> tuple[int, int, int, int]:
        """Weight shape of conv layer ``layer`` for one episode: (C_out, C_in, k, k)."""
        k = self.kernel_size
        return (self.out_channels(layer), self.in_channels(layer), k, k)

    def conv_slice_size(self, layer: int) -> int:
        """Weights per output channel of conv layer ``layer``: k*k*C_in ("output" allocation)."""
        return self.kernel_size**2 * self.in_channels(layer)

    @property
    def logits_slice_size(self) -> int:
        """Weights per class of the logits layer: C weights + 1 bias."""
        return self.feature_dim + 1

    def spatial_sizes(self) -> list[int]:
        """Spatial size at the input of each conv layer and after the last one.

        28 -> 14 -> 7 -> 3 -> 1 and 84 -> 42 -> 21 -> 10 -> 5 (floor pooling).
        """
        sizes = [self.image_size]
        for _ in range(self.num_conv_layers):
            sizes.append(sizes[-1] // 2)
        return sizes


class BatchNormParams(nn.Module):
    """Learned (not generated) BatchNorm scale and shift, one pair of (C,) vectors per conv layer.

    Indexing gives ``(scale, shift)`` so an instance can be passed as ``bn_params`` directly.
    """

    def __init__(self, spec: CNNSpec) -> None:
        super().__init__()
        n = spec.num_conv_layers
        self.scale = nn.ParameterList([nn.Parameter(torch.ones(spec.channels)) for _ in range(n)])
        self.shift = nn.ParameterList([nn.Parameter(torch.zeros(spec.channels)) for _ in range(n)])

    def __len__(self) -> int:
        return len(self.scale)

    def __getitem__(self, layer: int) -> tuple[Tensor, Tensor]:
        return self.scale[layer], self.shift[layer]


# ---------------------------------------------------------------- layout helpers


def to_grouped(x: Tensor) -> Tensor:
    """(B, M, C, H, W) -> (M, B*C, H, W): episodes side by side along channels."""
    b, m, c, h, w = x.shape
    return x.transpose(0, 1).reshape(m, b * c, h, w)


def from_grouped(x: Tensor, num_episodes: int) -> Tensor:
    """(M, B*C, H, W) -> (B, M, C, H, W), inverse of :func:`to_grouped`."""
    m, bc, h, w = x.shape
    return x.reshape(m, num_episodes, bc // num_episodes, h, w).transpose(0, 1)


# ---------------------------------------------------------------- functional CNN


def grouped_block(x: Tensor, weight: Tensor, scale: Tensor, shift: Tensor, activation: str,
                  eps: float = BN_EPS) -> Tensor:
    """One CNN block on the grouped layout: conv -> activation -> 2x2 max-pool -> BatchNorm.

    x: (M, B*C_in, H, W); weight: (B, C_out, C_in, k, k); scale, shift: (C_out,) shared by all
    episodes. Returns (M, B*C_out, H//2, W//2).
    """
    b, c_out, c_in, k, _ = weight.shape
    # channels_last makes oneDNN's grouped conv and max-pool several times faster on CPU.
    x = x.contiguous(memory_format=torch.channels_last)
    x = F.conv2d(x, weight.reshape(b * c_out, c_in, k, k), padding=k // 2, groups=b)
    x = x.contiguous(memory_format=torch.channels_last)
    # Pooling before the (monotone) activation gives the same values as act -> pool, on 4x fewer
    # elements.
    x = activation_fn(activation)(F.max_pool2d(x, kernel_size=2, stride=2))
    # training=True: always normalise with this batch's statistics, per (episode, channel).
    return F.batch_norm(x, None, None, scale.repeat(b), shift.repeat(b), training=True, eps=eps)


def cnn_block(x: Tensor, weight: Tensor, scale: Tensor, shift: Tensor, activation: str,
              eps: float = BN_EPS) -> Tensor:
    """One CNN block in the episode layout: (B, M, C_in, H, W) -> (B, M, C_out, H//2, W//2).

    Used by the HyperTransformer to push the support set through a freshly generated layer.
    """
    b = x.shape[0]
    return from_grouped(grouped_block(to_grouped(x), weight, scale, shift, activation, eps), b)


def cnn_features(images: Tensor, weights: dict[str, Tensor], bn_params: Sequence, spec: CNNSpec) -> Tensor:
    """Run all conv blocks and global average pooling: (B, M, C_img, H, W) -> (B, M, C)."""
    b = images.shape[0]
    x = to_grouped(images)  # (M, B*C_img, H, W)
    for layer in range(spec.num_conv_layers):
        scale, shift = bn_params[layer]
        x = grouped_block(x, weights[f"conv{layer}"], scale, shift, spec.activation, spec.bn_eps)
    feats = x.mean(dim=(2, 3))  # (M, B*C)
    return feats.reshape(feats.shape[0], b, -1).transpose(0, 1)  # (B, M, C)


def linear_logits(features: Tensor, logits_weight: Tensor) -> Tensor:
    """Apply per-episode logits weights: features (B, M, C), weight (B, N, C+1) -> (B, M, N).

    Row c of the weight is class c's C weights followed by its bias.
    """
    w, bias = logits_weight[..., :-1], logits_weight[..., -1]  # (B, N, C), (B, N)
    return torch.einsum("bmc,bnc->bmn", features, w) + bias.unsqueeze(1)


def cnn_forward(images: Tensor, weights: dict[str, Tensor], bn_params: Sequence, spec: CNNSpec) -> Tensor:
    """Classify images with per-episode weights: (B, M, C_img, H, W) -> logits (B, M, N).

    ``weights`` holds "conv0".."conv{L-1}" of shape (B, C_out, C_in, k, k) and "logits" of shape
    (B, N, C+1); ``bn_params[l]`` is the (scale, shift) pair of layer l, each (C,).
    """
    return linear_logits(cnn_features(images, weights, bn_params, spec), weights["logits"])


def expand_to_episodes(param: Tensor, num_episodes: int) -> Tensor:
    """View a shared (non-generated) weight as a per-episode one without copying: (...) -> (B, ...)."""
    return param.unsqueeze(0).expand(num_episodes, *param.shape)
