"""The NuAT chapter — nuclear-norm adversarial training (Sriramanan et al., NeurIPS 2021) with every baseline of its
tables.

* :mod:`.recipes` — the literal tables a reader edits: ``RECIPES`` (one row per trained model, named by registered
  method and model, with the paper's hyperparameters and their source), ``ABLATIONS``, ``PROFILES``.
* :mod:`.core` — every recipe row as a :class:`robustlib.experiment.RunSpec` (``cfg.specs[key]``), trained by
  :func:`robustlib.experiment.train` with hold-out selection and evaluated by
  :func:`robustlib.experiment.evaluate_cached`; the public :func:`trained` for other chapters.
* :mod:`.chapter` — the chapter notebook's steps (plan, gather, WRN-34-10 and cross-dataset tables).
* :mod:`.figures` — confusion matrices, efficiency and training-curve figures, small demos.

Part notebooks train and evaluate rows (``PARTS``); the chapter notebook gathers them. Every run is selected on a
hold-out split of the training set (NuAT's I-FGSM-7; the Normal rows by clean accuracy; GAT by its own scripts' rule
on MNIST, I-FGSM-40, and ImageNet-100, PGD-20), never on test images.
"""
from .recipes import ABLATIONS, DATASETS, PROFILES, RECIPES
from .core import (ABLATION, METRICS, PAPER, PARTS, SELECT_ATTACKS, SHOW, T1, T2, T3, TABLE, Config, ablation,
                   config, evaluate, evaluate_rows, load_data, make_spec, normal_model, part_keys, recipe_method,
                   report, row_note, run_part, scaled_tau, schedule_of, selector, suite, train, trained)
from .chapter import (CLAIMS, claims, cost_table, cross_dataset_cifar, derived_costs, gather, imagenet100,
                      imagenet100_command, part_minutes, plan, planning, profile_table, recipe_table, wrn)
from .figures import (confusion, curves_frame, efficiency_frame, nuclear_demo, plot_confusion, plot_curves,
                      plot_efficiency, plot_holdout_all, schedule_table)

__all__ = ["ABLATIONS", "DATASETS", "PROFILES", "RECIPES", "ABLATION", "METRICS", "PAPER", "PARTS",
           "SELECT_ATTACKS", "SHOW", "T1", "T2", "T3", "TABLE", "Config", "ablation", "config", "evaluate",
           "evaluate_rows", "load_data", "make_spec", "normal_model", "part_keys", "recipe_method", "report",
           "row_note", "run_part", "scaled_tau", "schedule_of", "selector", "suite", "train", "trained", "CLAIMS",
           "claims", "cost_table", "cross_dataset_cifar", "derived_costs", "gather", "imagenet100",
           "imagenet100_command", "part_minutes", "plan", "planning", "profile_table", "recipe_table", "wrn", "confusion", "curves_frame",
           "efficiency_frame", "nuclear_demo", "plot_confusion", "plot_curves", "plot_efficiency",
           "plot_holdout_all", "schedule_table"]
