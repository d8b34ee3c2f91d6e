"""htlib: a small PyTorch library behind the HyperTransformer notebooks.

Data flows one way: dataset -> episodes -> model (generate weights, run CNN)
-> loss/metrics -> results -> plots.

The public API most readers need is importable from here::

    from htlib import EpisodeSampler, HyperTransformer, HTConfig, CNNSpec, cnn_forward
"""

__version__ = "0.1.0"

from htlib.data import EpisodeSampler, load_split  # noqa: E402
from htlib.models import CNNSpec, HTConfig, HyperTransformer, cnn_forward  # noqa: E402

__all__ = ["CNNSpec", "EpisodeSampler", "HTConfig", "HyperTransformer", "cnn_forward", "load_split"]
