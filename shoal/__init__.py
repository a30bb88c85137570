"""shoal: train, compress and serve deep-learning models on dense, sparse and text features.

The public API fits on one page::

    import shoal
    cfg = shoal.load_config("configs/criteo.yaml")
    run = shoal.train(cfg, home="shoal-runs")          # a RunRecord: run_id, metrics, summary
    bundle = shoal.load(run.run_id, home="shoal-runs")  # model + encoder + metadata
    shoal.evaluate_file(run.run_id, "test.tsv", home="shoal-runs")
"""

from shoal.bundle import Bundle, load_bundle
from shoal.config import ConfigError, RunConfig, load_config
from shoal.data.readers import BadInputError
from shoal.runs import evaluate_file, load, resume, train

__all__ = [
    "BadInputError",
    "Bundle",
    "ConfigError",
    "RunConfig",
    "evaluate_file",
    "load",
    "load_bundle",
    "load_config",
    "resume",
    "train",
]
__version__ = "0.1.0"
