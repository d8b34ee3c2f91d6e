"""htlib: the library behind the HyperTransformer notebooks.

Data flows one way: a task (dataset, class split, episode shape) -> episodes -> a method's model
(the HyperTransformer writes a CNN per episode) -> training -> results -> prose and figures.

The notebooks import from the library's public surface, four places:

- ``htlib``: tasks and episodes, models and methods, configs, training and runs (below);
- ``htlib.experiments``: the sweep, the semi-supervised runs, the recipe and fidelity studies, the
  campaign;
- ``htlib.report`` and ``htlib.summaries``: tables and findings computed from results, and the prose
  written from them; ``htlib.plots``: the figures.

(``htlib.course`` is the coursework's: the exercises' checks.) Everything else is internal and may
change; the modules below say where each name lives.
"""

__version__ = "0.1.0"

# Deliberately not re-exported: the functions htlib.train.train and htlib.evaluate.evaluate, whose
# names would hide their modules.
from htlib.config import TrainConfig, check_notebook_parameters, checked_config  # noqa: E402
from htlib.data import ClassImages, EpisodeSampler, load_omniglot_arrays, load_split, to_float  # noqa: E402
from htlib.data.protocols import PROTOCOLS  # noqa: E402
from htlib.data.task import Task  # noqa: E402
from htlib.evaluate import mean_ci95, per_episode_accuracy  # noqa: E402
from htlib.methods import METHODS, Method, build_model, get_method, ht_method, method_label, methods_that, register  # noqa: E402,E501
from htlib.models import MAML, CNNSpec, HTConfig, HyperTransformer, ProtoNet  # noqa: E402
from htlib.models.cnn import cnn_block, cnn_features, cnn_forward  # noqa: E402
from htlib.profiles import RECOMMENDED_HT_OPTIONS, get_profile  # noqa: E402
from htlib.runs import RESULTS_ROOT, Run, make_run, relative_to_project, table_path  # noqa: E402
from htlib.schemas import read_table  # noqa: E402
from htlib.train import Trainer, load_or_train, load_trained  # noqa: E402
from htlib.utils import live, live_columns, resolve_device, seed_everything  # noqa: E402

__all__ = [
    "CNNSpec", "ClassImages", "EpisodeSampler", "HTConfig", "HyperTransformer", "MAML", "METHODS", "Method",
    "PROTOCOLS", "ProtoNet", "RECOMMENDED_HT_OPTIONS", "RESULTS_ROOT", "Run", "Task", "TrainConfig", "Trainer",
    "build_model", "check_notebook_parameters", "checked_config", "cnn_block", "cnn_features", "cnn_forward",
    "get_method", "get_profile", "ht_method", "live", "live_columns", "load_omniglot_arrays", "load_or_train",
    "load_split", "load_trained", "make_run", "mean_ci95", "method_label", "methods_that", "per_episode_accuracy",
    "read_table", "register", "relative_to_project", "resolve_device", "seed_everything", "table_path",
    "to_float",
]
