"""levi_core: the science of levi-bench, in JAX/Flax.

Models, methods, training, metrics, costs and datasets. This package never imports `bench`:
the harness asks it to train or evaluate a method on a dataset with a config
(`levi_core.api.train_and_evaluate`) and gets back metrics and stored predictions.
"""

__version__ = "0.1.0"
