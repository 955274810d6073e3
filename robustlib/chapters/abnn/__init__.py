"""Chapter: ABNN — adaptive batch-normalisation networks, robustness without adversarial training (Lo & Patel, AVSS
2024), reproduced and audited.

* :mod:`.recipes` — RECIPES (one row per trained model, named by registered method and model, with its source) and
  PROFILES (what smoke/cpu/quick/paper change) as literal tables; :func:`config` turns the rows into RunSpecs
  (``overrides={row: {key: value}}`` changes a row without editing robustlib).
* :mod:`.runs` — training through the experiment layer: the frozen substitute, :func:`train_row`, and the public
  :func:`trained` (the comparison chapter's entry point).
* :mod:`.audit` — one attack suite per model (cached beside the checkpoint), Table 1, the gradient-masking checks,
  the variants and cost tables; :mod:`.chapter` — CLAIMS checked on Table 1's rows and the conclusion they decide;
  :mod:`.figures` — their plots; :mod:`.video` — the UCF-101 experiment.

Notebooks: ``20_abnn`` (the chapter: evaluation, audit, cost, video), ``21_abnn__pgdat`` (PGD-AT, t_max = 5),
``22_abnn__train`` (substitute, No Defense, ABNN), ``23_abnn__variants`` (per-sample μ/σ, every BN).

Environment variables for readers who have what this project lacks: ``ROBUSTLIB_ABNN_SUBSTITUTE`` = a local
torchvision ImageNet ResNet-18 checkpoint (used instead of the Tiny-ImageNet pre-training); ``ROBUSTLIB_UCF101`` = a
folder of UCF-101 clips as npz shards (``train*.npz``/``test*.npz``; ``x`` uint8 N×(T·112)×112×3, HWC as every npz
shard, with the T frames stacked along the height; ``y`` labels) and ``ROBUSTLIB_KINETICS_R3D18`` = torchvision's
Kinetics-400 ``r3d_18`` checkpoint, for the UCF-101 experiment.
"""
from __future__ import annotations

from .audit import (AA_PART, ATTACK_LABELS, LINF_KEYS, TransferAttack, ViewAttack, accuracies, all_flags,
                    batch_size_sweep, cost_table, eps_sweep, evaluate, evaluate_models, headline, sanity_table,
                    scoring_note, suite, table1, variant_scores, variants_table, verdicts)
from .chapter import CLAIMS, claims, conclusion, row_flags
from .figures import plot_costs, plot_sanity, roa_examples
from .recipes import (ALPHA, CIFAR_ROWS, ENV_KINETICS, ENV_SUBSTITUTE, ENV_UCF101, EPS, NOTES, PAPER, PROFILES,
                      RECIPES, VARIANT_ROWS, Config, build_abnn, config, from_settings, make_spec, profile_table,
                      recipe_table, valid_overrides)
from .runs import (Substitute, load_data, parameters_table, record_substitute, record_training, records, report,
                   row_note, substitute, train_row, trained, training_curves)
from .video import VIDEO, reference_tables, video_config, video_experiment, video_missing

__all__ = [n for n in dir() if not n.startswith("_") and n != "annotations"]
