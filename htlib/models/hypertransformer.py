"""HyperTransformer: a transformer that writes the weights of a small CNN from a support set.

Paper, Sec. 3 ("HyperTransformer"): every support sample becomes a token (label embedding + local
features of its activations at the layer being generated + shared image features); each generated
layer has its own encoder that reads [weight placeholders ; sample tokens] and writes one weight
slice per placeholder. Layers are generated in order, and the support set is pushed through each
freshly generated layer to produce the activations that the next layer's tokens are built from.

Everything is batched over B episodes: transformers run on (B, T, width), feature extractors on
(B*S, C, H, W), and the target CNN with grouped convolutions (see ``cnn.py``). There is no Python
loop over episodes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from htlib.errors import ConfigError
from htlib.models.checks import check_query, check_support
from htlib.models.cnn import (
    BatchNormParams,
    CNNSpec,
    activation_fn,
    cnn_block,
    cnn_forward,
    expand_to_episodes,
)
from htlib.models.transformer import MultiHeadAttention, TransformerConfig, TransformerEncoder

# Which pooled outputs of a layer's local extractor make a token's local features (HTConfig).
LOCAL_FEATURES_FROM = ("last", "both")
# How the generator's own weights start (HTConfig.init): PyTorch's defaults (kaiming-uniform with
# fan-in biases), or the reference's TensorFlow defaults (glorot-uniform weights, zero biases).
INITS = ("torch", "glorot")
# A generated layer's local feature extractor (HTConfig.feature_extractors): "project" pads its 3x3
# convs ('same'); "reference" is the authors' ('valid' convs, a kernel shrunk to inputs smaller than
# 3x3 with stride 1, a conv skipped once the map is smaller than its kernel, the pooled output of
# every conv concatenated).
FEATURE_EXTRACTORS = ("project", "reference")


@dataclass
class HTConfig:
    """HyperTransformer settings; defaults are the reference Omniglot 1-shot script.

    ``activation`` is used by the transformers and the feature extractors; the target CNN's own
    nonlinearity is ``cnn.activation``. ``generate`` picks the generated layers: "all" (every conv
    layer and the logits layer), "logits" (logits layer only, the conv layers are ordinary trained
    weights) or an int k (the last k conv layers and the logits layer).
    ``ff_width_factor`` = 1.0 and ``attention_width_factor`` = 1.0 follow the reference Omniglot
    script (its miniImageNet script uses 0.5 for attention). Either feature size may be 0 to switch
    that extractor off (an ablation). ``local_features_from`` = "both" takes the pooled outputs of
    both convs of a layer's local extractor, concatenated, as the reference does (docs/paper.md,
    section 1.3), so a token carries ``2 * local_features`` local features; "last" (the default,
    a departure listed in docs/paper.md, section 6) takes the second conv's only.
    """

    label_dim: int = 32
    local_features: int = 8
    local_features_from: str = "last"
    shared_features: int = 32
    transformer_layers: int = 3
    heads: int = 2
    max_ways: int = 20
    attention_width_factor: float = 1.0
    ff_width_factor: float = 1.0
    activation: str = "relu"
    dropout: float = 0.0
    cnn: CNNSpec = field(default_factory=CNNSpec)
    generate: str | int = "all"
    # Two choices that make training leave its initial chance-level plateau within a few hundred
    # steps instead of thousands (measured in the README's "Departures" section):
    # the logits placeholder of class c IS the label embedding of class c (the reference learns a
    # separate vector per slot), and local/shared features are standardised (LayerNorm without
    # parameters) so that they are on the same scale as the N(0, 1) label embeddings.
    tie_logits_placeholders: bool = True
    normalize_features: bool = True
    # the transformers start with equal query and key projections (see TransformerConfig)
    match_query_key_init: bool = True
    # Reference choices that this project's defaults depart from (docs/paper.md, section 6), each
    # measured by the fidelity study: one label-embedding table per generated layer (the reference)
    # rather than one shared by all; glorot-uniform initialisation; BatchNorm epsilon 1e-3 (None:
    # the CNN spec's, PyTorch's 1e-5).
    label_embedding_per_layer: bool = False
    init: str = "torch"
    bn_eps: float | None = None
    feature_extractors: str = "project"

    def __post_init__(self) -> None:
        if isinstance(self.generate, str) and self.generate.isdigit():  # e.g. "2" from papermill
            self.generate = int(self.generate)
        self.generated_conv_layers()  # validates ``generate``
        activation_fn(self.activation)
        if self.local_features_from not in LOCAL_FEATURES_FROM:
            raise ConfigError(f"Unknown local_features_from {self.local_features_from!r}; "
                              f"choose one of {LOCAL_FEATURES_FROM}")
        if self.feature_extractors not in FEATURE_EXTRACTORS:
            raise ConfigError(f"Unknown feature_extractors {self.feature_extractors!r}; choose one of "
                              f"{FEATURE_EXTRACTORS}")
        if self.init not in INITS:
            raise ConfigError(f"Unknown init {self.init!r}; choose one of {INITS}")
        if self.bn_eps is not None:
            self.cnn = dataclasses.replace(self.cnn, bn_eps=self.bn_eps)  # checked there

    def generated_conv_layers(self) -> list[int]:
        """Indices of the conv layers whose weights are generated (the logits layer always is)."""
        n = self.cnn.num_conv_layers
        if self.generate == "all":
            return list(range(n))
        if self.generate == "logits":
            return []
        if isinstance(self.generate, int) and not isinstance(self.generate, bool) and 0 <= self.generate <= n:
            return list(range(n - self.generate, n))
        raise ConfigError(
            f"generate must be 'all', 'logits' or an int in [0, {n}], got {self.generate!r}."
        )

    @property
    def local_dim(self) -> int:
        """Local features in a token: one or both of the extractor's pooled conv outputs."""
        return self.local_features * (2 if self.local_features_from == "both" else 1)

    @property
    def sample_dim(self) -> int:
        """Width of a sample token before padding: label embedding + local + shared features."""
        return self.label_dim + self.local_dim + self.shared_features

    def token_width(self, slice_size: int, local_dim: int | None = None) -> int:
        """Transformer width of a layer, laid out as in the reference: the first ``label_dim``
        entries hold the label / placeholder embedding, the rest holds a sample's features or,
        at the output of a placeholder, its weight slice. ``local_dim``: the layer's own local
        features when they differ from ``self.local_dim`` (the reference extractors)."""
        local = self.local_dim if local_dim is None else local_dim
        return self.label_dim + max(local + self.shared_features, slice_size)


# ---------------------------------------------------------------- feature extractors


def _conv(c_in: int, c_out: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1)


class SharedFeatures(nn.Module):
    """Image features shared by all generated layers (run once per episode on the raw images).

    4 conv layers of ``dim`` channels, 3x3 'same', stride 2 except the last, activation after each,
    no BatchNorm, then global average pooling (as in the reference '4-layer' extractor).
    """

    def __init__(self, in_channels: int, dim: int, activation: str, num_layers: int = 4) -> None:
        super().__init__()
        chans = [in_channels] + [dim] * num_layers
        strides = [2] * (num_layers - 1) + [1]
        self.convs = nn.ModuleList(_conv(a, b, s) for a, b, s in zip(chans, chans[1:], strides))
        self.act = activation_fn(activation)

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C_img, H, W) -> (N, dim)."""
        for conv in self.convs:
            x = self.act(conv(x))
        return x.mean(dim=(2, 3))


class ReferenceLocalFeatures(nn.Module):
    """The authors' local extractor: linear 'valid' 3x3 convs (stride 2, then 1) with a ReLU between,
    each conv's output averaged over space and concatenated. The logits layer's extractor has one
    conv; on an input smaller than 3x3 (its 1x1 maps) the kernel takes the input's size, stride 1.
    A conv that would not fit the map left by the one before is dropped (the reference stops
    there: its 3x3 layer gets one conv), so ``out_dim`` depends on the layer: 16, 16, 16, 8 and 8
    at 28x28 inputs with dim 8."""

    def __init__(self, in_channels: int, dim: int, activation: str, input_size: int, convs: int = 2) -> None:
        super().__init__()
        kernel, stride = (3, 2) if input_size >= 3 else (input_size, 1)
        self.convs = nn.ModuleList()
        size, c_in = input_size, in_channels
        for i in range(convs):
            step = stride if i < convs - 1 else 1
            if size < kernel:
                break
            self.convs.append(nn.Conv2d(c_in, dim, kernel, stride=step))
            size, c_in = (size - kernel) // step + 1, dim
        self.act = activation_fn(activation)
        self.out_dim = dim * len(self.convs)

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C_in, H, W) -> (N, out_dim)."""
        pooled = []
        for i, conv in enumerate(self.convs):
            x = conv(x if i == 0 else self.act(x))
            pooled.append(x.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=-1)


class LocalFeatures(nn.Module):
    """Per-layer features of the activations at a generated layer's input.

    conv 3x3 stride 2 -> activation -> conv 3x3 stride 1, globally averaged. The output is kept
    linear, like the reference's default (its "use_nonlinear_feature" flag is off). With ``both``
    the first conv's output, averaged before its activation, comes first, as the reference
    concatenates the pooled output of every extractor layer (docs/paper.md, section 1.3).
    """

    def __init__(self, in_channels: int, dim: int, activation: str, both: bool = False) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, dim, stride=2)
        self.conv2 = _conv(dim, dim, stride=1)
        self.act = activation_fn(activation)
        self.both = both

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C_in, H, W) -> (N, dim), or (N, 2 * dim) with ``both``."""
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # Under CPU bf16 autocast, oneDNN's weight gradient of these strided convs on the 1x1
            # maps before the logits layer is now and then not finite (a few % of calls on 2 threads,
            # tests/test_speed.py); the convs are tiny, so they run in fp32.
            with torch.autocast("cpu", enabled=False):
                return self._features(x.float())
        return self._features(x)

    def _features(self, x: Tensor) -> Tensor:
        first = self.conv1(x)
        last = self.conv2(self.act(first)).mean(dim=(2, 3))
        return torch.cat([first.mean(dim=(2, 3)), last], dim=-1) if self.both else last


# ---------------------------------------------------------------- one layer's generator


class LayerGenerator(nn.Module):
    """Writes the weights of one CNN layer: tokens -> encoder -> one slice per placeholder.

    ``num_slots`` placeholders: one per output channel of a conv layer ("output" allocation, each
    slice = the k*k*C_in weights of one output channel) or one per class slot of the logits layer
    (each slice = C weights + 1 bias). The first ``slice_size`` outputs at a placeholder position
    are its weights (cutting rather than projecting, as in the reference code).
    """

    def __init__(self, cfg: HTConfig, in_channels: int, num_slots: int, slice_size: int,
                 own_placeholders: bool = True, input_size: int = 3, is_logits: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.slice_size = slice_size
        if not cfg.local_features:
            self.local = None
        elif cfg.feature_extractors == "reference":
            self.local = ReferenceLocalFeatures(in_channels, cfg.local_features, cfg.activation, input_size,
                                                convs=1 if is_logits else 2)
        else:
            self.local = LocalFeatures(in_channels, cfg.local_features, cfg.activation,
                                       cfg.local_features_from == "both")
        self.width = cfg.token_width(slice_size, getattr(self.local, "out_dim", None))
        # N(0, 1) as in the reference; None when the caller supplies them (tied logits placeholders).
        self.placeholders = nn.Parameter(torch.randn(num_slots, cfg.label_dim)) if own_placeholders else None
        attn_width = cfg.heads * math.ceil(cfg.attention_width_factor * self.width / cfg.heads)
        self.transformer = TransformerEncoder(
            TransformerConfig(
                width=self.width,
                heads=cfg.heads,
                layers=cfg.transformer_layers,
                attention_width=attn_width,
                ff_width=max(1, round(cfg.ff_width_factor * self.width)),
                activation=cfg.activation,
                dropout=cfg.dropout,
                match_query_key_init=cfg.match_query_key_init,
            )
        )

    def tokens(
        self, acts: Tensor, label_emb: Tensor, shared: Tensor | None, placeholders: Tensor
    ) -> Tensor:
        """The encoder's input (B, P+S, width): P placeholder tokens, then S sample tokens.

        Sample token = [label embedding | local features | shared features | zeros];
        placeholder token = [placeholder embedding | zeros].
        """
        b, s = acts.shape[:2]
        parts = [label_emb]
        if self.local is not None:
            local = self.local(acts.flatten(0, 1)).reshape(b, s, -1)  # (B, S, local)
            parts.append(F.layer_norm(local, local.shape[-1:]) if self.cfg.normalize_features else local)
        if shared is not None:
            parts.append(shared)
        samples = torch.cat(parts, dim=-1)  # (B, S, d + local + shared)
        samples = F.pad(samples, (0, self.width - samples.shape[-1]))  # (B, S, width)
        holders = F.pad(placeholders, (0, self.width - placeholders.shape[-1]))
        holders = holders.unsqueeze(0).expand(b, -1, -1)  # (B, P, width)
        return torch.cat([holders, samples], dim=1)

    def forward(
        self, acts: Tensor, label_emb: Tensor, shared: Tensor | None, num_slots: int,
        placeholders: Tensor | None = None, return_attention: bool = True,
    ) -> tuple[Tensor, list[Tensor] | None]:
        """acts: (B, S, C_in, H, W) support activations at this layer's input; label_emb (B, S, d);
        shared (B, S, shared) or None; placeholders (P, d) to use instead of the layer's own.
        Returns slices (B, num_slots, slice_size) and the encoder's attention maps, a list of
        (B, heads, P+S, P+S) with the P placeholders first (None without ``return_attention``)."""
        holders = self.placeholders[:num_slots] if placeholders is None else placeholders
        tokens = self.tokens(acts, label_emb, shared, holders)
        out, maps = (self.transformer(tokens, return_attention=True) if return_attention
                     else (self.transformer(tokens), None))
        d = self.cfg.label_dim  # the weights are read after the embedding part, as in the reference
        return out[:, :num_slots, d : d + self.slice_size], maps


# ---------------------------------------------------------------- the HyperTransformer


def glorot_init(model: nn.Module) -> None:
    """The reference's initialisation (TensorFlow's defaults): glorot-uniform weights and zero biases
    for every dense and conv layer of the generator; then query = key again where the config asks."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            module.tie_query_key()


class HyperTransformer(nn.Module):
    """Generates a CNN per episode from its support set and classifies the queries with it."""

    def __init__(self, cfg: HTConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or HTConfig()
        spec = cfg.cnn
        # last row: "unlabelled"; one table for all generated layers, or (the reference) one each
        self.label_embedding = None if cfg.label_embedding_per_layer else nn.Embedding(cfg.max_ways + 1, cfg.label_dim)
        self.shared = (
            SharedFeatures(spec.image_channels, cfg.shared_features, cfg.activation)
            if cfg.shared_features
            else None
        )
        self.bn = BatchNormParams(spec)
        gen_layers = set(cfg.generated_conv_layers())
        self.generators = nn.ModuleDict()
        self.conv_weights = nn.ParameterDict()
        for layer in range(spec.num_conv_layers):
            name = f"conv{layer}"
            if layer in gen_layers:
                self.generators[name] = LayerGenerator(
                    cfg, spec.in_channels(layer), spec.out_channels(layer), spec.conv_slice_size(layer),
                    input_size=spec.spatial_sizes()[layer],
                )
            else:
                w = torch.empty(spec.conv_shape(layer))
                nn.init.kaiming_normal_(w, nonlinearity="relu")
                self.conv_weights[name] = nn.Parameter(w)
        self.generators["logits"] = LayerGenerator(
            cfg, spec.feature_dim, cfg.max_ways, spec.logits_slice_size,
            own_placeholders=not cfg.tie_logits_placeholders, input_size=spec.spatial_sizes()[-1], is_logits=True,
        )
        if cfg.label_embedding_per_layer:
            for generator in self.generators.values():
                generator.label_embedding = nn.Embedding(cfg.max_ways + 1, cfg.label_dim)
        if cfg.init == "glorot":
            glorot_init(self)

    def label_table(self, layer: str) -> nn.Embedding:
        """The label embeddings the generator of `layer` reads (and, tied, its logits placeholders)."""
        return self.generators[layer].label_embedding if self.cfg.label_embedding_per_layer else self.label_embedding

    # ------------------------------------------------------------ input checks

    def _check_inputs(self, images: Tensor, labels: Tensor, num_classes: int) -> None:
        check_support(self.cfg.cnn, images, labels, num_classes, self.cfg.max_ways)

    # ------------------------------------------------------------ generation

    def generate_weights(
        self,
        support_images: Tensor,
        support_labels: Tensor,
        num_classes: int,
        return_attention: bool = False,
    ) -> dict[str, Tensor] | tuple[dict[str, Tensor], dict[str, list[Tensor]]]:
        """Write the CNN weights of each episode, layer by layer (paper, Sec. 3).

        support_images (B, S, C_img, H, W); support_labels (B, S), -1 marks an unlabelled sample.
        Returns {"conv0": (B, C, C_img, k, k), ..., "logits": (B, num_classes, C+1)} and, with
        ``return_attention``, {layer name: list over encoder layers of (B, heads, T, T)} for the
        generated layers (tokens ordered [placeholders ; support samples]).
        """
        self._check_inputs(support_images, support_labels, num_classes)
        return self._generate(support_images, support_labels, num_classes, return_attention)

    def _generate(
        self, support_images: Tensor, support_labels: Tensor, num_classes: int, return_attention: bool
    ) -> dict[str, Tensor] | tuple[dict[str, Tensor], dict[str, list[Tensor]]]:
        """:meth:`generate_weights` without the input checks."""
        cfg, spec = self.cfg, self.cfg.cnn
        b, s = support_labels.shape
        slots = torch.where(support_labels < 0, cfg.max_ways, support_labels)
        shared_emb = None if cfg.label_embedding_per_layer else self.label_embedding(slots)  # (B, S, d)
        def label_emb(layer: str) -> Tensor:
            return shared_emb if shared_emb is not None else self.label_table(layer)(slots)
        shared = None
        if self.shared is not None:
            shared = self.shared(support_images.flatten(0, 1)).reshape(b, s, -1)  # (B, S, shared)
            if cfg.normalize_features:
                shared = F.layer_norm(shared, shared.shape[-1:])

        weights: dict[str, Tensor] = {}
        maps: dict[str, list[Tensor]] = {}
        acts = support_images  # (B, S, C_in, H, W): support activations at the current layer
        for layer in range(spec.num_conv_layers):
            name = f"conv{layer}"
            if name in self.generators:
                slices, maps[name] = self.generators[name](acts, label_emb(name), shared, spec.out_channels(layer),
                                                           return_attention=return_attention)
                weights[name] = slices.reshape(b, *spec.conv_shape(layer))  # (B, C_out, C_in, k, k)
            else:
                weights[name] = expand_to_episodes(self.conv_weights[name], b)
            scale, shift = self.bn[layer]
            acts = cnn_block(acts, weights[name], scale, shift, spec.activation, spec.bn_eps)
        tied = self.label_table("logits").weight[:num_classes] if cfg.tie_logits_placeholders else None
        weights["logits"], maps["logits"] = self.generators["logits"](acts, label_emb("logits"), shared, num_classes,
                                                                      tied, return_attention)
        return (weights, maps) if return_attention else weights

    def forward(
        self, support_images: Tensor, support_labels: Tensor, query_images: Tensor, num_classes: int
    ) -> Tensor:
        """Generate each episode's CNN and classify its queries: returns logits (B, Q, num_classes)."""
        self._check_inputs(support_images, support_labels, num_classes)
        check_query(support_images, query_images)
        weights = self._generate(support_images, support_labels, num_classes, return_attention=False)
        return cnn_forward(query_images, weights, self.bn, self.cfg.cnn)

    # ------------------------------------------------------------ bookkeeping

    def parameter_counts(self, num_classes: int | None = None) -> dict[str, int]:
        """Trainable parameters of the HyperTransformer and weights it generates per episode.

        "generated_per_episode" counts the generated conv weights plus num_classes*(C+1) logits
        weights (num_classes defaults to max_ways). BatchNorm parameters are trained, not generated.
        """
        spec = self.cfg.cnn
        n = self.cfg.max_ways if num_classes is None else num_classes
        generated = sum(math.prod(spec.conv_shape(layer)) for layer in self.cfg.generated_conv_layers())
        generated += n * spec.logits_slice_size
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"trainable": trainable, "generated_per_episode": generated}
