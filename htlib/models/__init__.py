"""Models: the target CNN run on given weights, the transformer encoder, the HyperTransformer."""

from htlib.models.cnn import (
    BatchNormParams,
    CNNSpec,
    cnn_block,
    cnn_features,
    cnn_forward,
    expand_to_episodes,
    linear_logits,
)
from htlib.models.hypertransformer import HTConfig, HyperTransformer, LayerGenerator
from htlib.models.maml import MAML
from htlib.models.protonet import ProtoNet
from htlib.models.transformer import TransformerConfig, TransformerEncoder

__all__ = [
    "BatchNormParams",
    "CNNSpec",
    "HTConfig",
    "HyperTransformer",
    "LayerGenerator",
    "MAML",
    "ProtoNet",
    "TransformerConfig",
    "TransformerEncoder",
    "cnn_block",
    "cnn_features",
    "cnn_forward",
    "expand_to_episodes",
    "linear_logits",
]
