"""robustlib: the library behind the book *Efficient adversarial robustness, reproduced*.

Data (:mod:`robustlib.data`), models (:mod:`robustlib.models`), attacks (:mod:`robustlib.attacks`), training
methods (:mod:`robustlib.methods`), one :class:`~robustlib.training.Trainer`, one evaluator
(:func:`~robustlib.evaluation.evaluate`) and one :class:`~robustlib.cost.CostMeter`, shared by every chapter.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .attacks import ATTACKS, FGSM, GAMAPGD, PGD, AutoAttack, build_attack, ifgsm
from .cost import CostMeter
from .data import DATASETS, ArrayDataset, Augment, BatchIterator, holdout_split, load_dataset
from .errors import (CheckpointMismatchError, ConfigError, CorruptFileError, DatasetNotFoundError,
                     NonFiniteLossError, NotEnoughDataError, RobustlibError, UnknownNameError)
from .evaluation import EvalResult, evaluate
from .methods import METHODS, Method, build_method
from .models import MODELS, build_model
from .training import Selector, TrainConfig, Trainer, TrainResult, train

__all__ = [
    "__version__", "ATTACKS", "FGSM", "GAMAPGD", "PGD", "AutoAttack", "build_attack", "ifgsm", "CostMeter",
    "DATASETS", "ArrayDataset", "Augment", "BatchIterator", "holdout_split", "load_dataset",
    "CheckpointMismatchError", "ConfigError", "CorruptFileError", "DatasetNotFoundError", "NonFiniteLossError",
    "NotEnoughDataError", "RobustlibError", "UnknownNameError", "EvalResult", "evaluate", "METHODS", "Method",
    "build_method", "MODELS", "build_model", "Selector", "TrainConfig", "Trainer", "TrainResult", "train",
]
