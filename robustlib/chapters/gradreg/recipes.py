"""The gradreg chapter's literal tables: the authors' CIFAR-10 recipe, one row per trained model (RECIPES), which part
notebook trains which row (PARTS), and what each profile changes (PROFILES).

These tables are printed in the notebooks as the paper's hyperparameter table, feed every run's fingerprint, and are
the one place a reader edits (or overrides from a notebook: ``config(..., overrides={row: {hp: value}})``).
"""
from __future__ import annotations

import math

from ...distances import AttackBudget
from ...threat import CIFAR10

EPS_2, EPS_8 = 2 / 255, CIFAR10.eps       # the paper's reporting radii (ℓ∞, pixel units)

# Every CIFAR-10 model of the paper trains with one recipe (tulip cifar10/train.py and adversarial-training.py):
# SGD momentum 0.9 (no Nesterov), weight decay 5e-4 on every parameter, batch 128, 200 epochs, lr 0.1 ÷5 at epochs
# 60/120/160 (= 30/60/80 % of training, so a shortened run keeps the same shape), RandomCrop(32, pad 4, grey fill
# 128), flip, Cutout 16 filled with the patch's mean colour, inputs in [0, 1] without normalisation, drop_last.
TRAINING = {"epochs": 200, "batch": 128, "lr": 0.1,
            "schedule": {"name": "step_decay", "fractions": (0.3, 0.6, 0.8), "gamma": 0.2},
            "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4, "ema": (),
            "augment": {"crop_padding": 4, "fill": 128, "flip": True, "cutout": 16},
            "selection": "last epoch (the authors kept the lowest clean *test* error, best.pth.tar; we do not "
                         "select on the test set)",
            "source": "tulip cifar10/train.py (commit 92c83e7): --lr 0.1, --lr-schedule '60,120,160' ÷5, "
                      "--epochs 200, --batch-size 128, --decay 5e-4, --momentum 0.9, Cutout 16"}

# One row per trained model, keyed by its row label in the chapter's tables. "amp": "off" trains in fp32 with TF32 off
# (the penalties' finite differences need it), "auto" in bf16 autocast on GPUs. "evals": the norms of the minimum-
# distance evaluation (ℓ2 adds the L-bound, and the C-bound for smooth models); "ablation": the model's row in the
# journal's h-ablation (Table B.4).
RECIPES = {
    "Undefended": {
        "method": "standard", "hp": {}, "model": "resnext34_2x32", "amp": "auto", "evals": ("linf", "l2"),
        "ablation": None, "source": "tulip cifar10/train.py without a penalty; poster table 'Undefended' (2.06 h)"},
    "7-step AT": {
        "method": "pgd_at", "hp": {"eps": 0.0314, "alpha": 0.43 / math.sqrt(3072), "steps": 7, "start": None,
                                   "bn_mode": "train"},
        "model": "resnext34_2x32", "amp": "auto", "evals": ("linf", "l2"), "ablation": None,
        "source": "tulip cifar10/adversarial-training.py: 7 ℓ2-normalised sign steps of 0.43/√3072 ≈ 1.98/255 "
                  "from the clean image, projection to 0.0314; poster 'Madry et al (7-step AT)' (12.10 h)"},
    "DBP squared l1 lambda=1": {
        "method": "dbp_gradreg", "hp": {"lam": 1.0, "norm": "l1"}, "model": "resnext34_2x32", "amp": "off",
        "evals": ("linf",), "ablation": "DBP (exact gradient)",
        "source": "journal Tables 1 and B.4 'sq-ℓ1 DBP λ = 1': the exact penalty by double backpropagation"},
    "squared l1 lambda=0.1": {
        "method": "fd_gradreg", "hp": {"lam": 0.1, "h": 0.01, "norm": "l1"}, "model": "resnext34_2x32",
        "amp": "off", "evals": ("linf",), "ablation": None,
        "source": "tulip train.py --norm L1 --penalty 0.1 (h = 0.01, the code's default); poster table"},
    "squared l1 lambda=1": {
        "method": "fd_gradreg", "hp": {"lam": 1.0, "h": 0.1, "norm": "l1"}, "model": "resnext34_2x32",
        "amp": "off", "evals": ("linf",), "ablation": "h=0.1",
        "source": "tulip train.py --norm L1 --penalty 1; h = 0.1 as the journal states for its best ℓ∞ model "
                  "(poster row, = Table B.4 row h = 0.1)"},
    "squared l1 lambda=1, h=1": {
        "method": "fd_gradreg", "hp": {"lam": 1.0, "h": 1.0, "norm": "l1"}, "model": "resnext34_2x32",
        "amp": "off", "evals": ("linf",), "ablation": "h=1", "source": "journal Table B.4 (h-ablation), h = 1"},
    "squared l2 lambda=0.1": {
        "method": "fd_gradreg", "hp": {"lam": 0.1, "h": 0.01, "norm": "l2"}, "model": "resnext34_2x32",
        "amp": "off", "evals": ("linf", "l2"), "ablation": None,
        "source": "tulip cifar10/example.sh: --norm L2 --penalty 0.1; arXiv v1 Table 5.3"},
    "squared l2 lambda=1": {
        "method": "fd_gradreg", "hp": {"lam": 1.0, "h": 0.01, "norm": "l2"}, "model": "resnext34_2x32",
        "amp": "off", "evals": ("linf", "l2"), "ablation": None,
        "source": "tulip train.py --norm L2 --penalty 1; arXiv v1 Table 5.3"},
    "squared l1 lambda=1, h=0.01": {
        "method": "fd_gradreg", "hp": {"lam": 1.0, "h": 0.01, "norm": "l1"}, "model": "resnext34_2x32",
        "amp": "off", "evals": ("linf",), "ablation": "h=1e-2", "source": "journal Table B.4, h = 1e-2"},
    "Undefended (smooth)": {
        "method": "standard", "hp": {}, "model": "smooth_resnext34_2x32", "amp": "auto", "evals": ("l2",),
        "ablation": None, "source": "arXiv v1 Table 5.3: tulip's SmoothResNeXt34_2x32 (every ReLU smoothed)"},
    "squared l2 lambda=0.1 (smooth)": {
        "method": "fd_gradreg", "hp": {"lam": 0.1, "h": 0.01, "norm": "l2"}, "model": "smooth_resnext34_2x32",
        "amp": "off", "evals": ("l2",), "ablation": None,
        "source": "arXiv v1 Table 5.3 and the bound figure's 'defended' model (squared ℓ2, λ = 0.1, smooth ReLU)"},
    "squared l1 lambda=1, h=0.001": {
        "method": "fd_gradreg", "hp": {"lam": 1.0, "h": 1e-3, "norm": "l1"}, "model": "resnext34_2x32",
        "amp": "off", "evals": ("linf",), "ablation": "h=1e-3", "source": "journal Table B.4, h = 1e-3"},
    "squared l1 lambda=1, h=0.0001": {
        "method": "fd_gradreg", "hp": {"lam": 1.0, "h": 1e-4, "norm": "l1"}, "model": "resnext34_2x32",
        "amp": "off", "evals": ("linf",), "ablation": "h=1e-4", "source": "journal Table B.4, h = 1e-4"},
}

# Which notebook trains which row, sized so that every notebook of the quick profile fits 10 minutes on one H200;
# the chapter notebook (40_gradreg) trains the h = 1e-4 row and gathers the rest.
PARTS = {
    "baselines": ("Undefended", "7-step AT", "DBP squared l1 lambda=1"),
    "l1": ("squared l1 lambda=0.1", "squared l1 lambda=1", "squared l1 lambda=1, h=1"),
    "l2": ("squared l2 lambda=0.1", "squared l2 lambda=1", "squared l1 lambda=1, h=0.01"),
    "smooth": ("Undefended (smooth)", "squared l2 lambda=0.1 (smooth)", "squared l1 lambda=1, h=0.001"),
    "chapter": ("squared l1 lambda=1, h=0.0001",),
}
PART_NOTEBOOKS = {"baselines": "41_gradreg__baselines", "l1": "42_gradreg__l1", "l2": "43_gradreg__l2",
                  "smooth": "44_gradreg__smooth"}

# What each profile changes. None: the recipe's value. "model": keyword arguments of the ResNeXt (width, blocks);
# "linf"/"l2": the minimum-distance attack budgets; "fd_check_*": the FD-vs-exact agreement check; "cost_batches":
# batches timed per method by the cost measurement; "rows" (cpu only): the RECIPES rows trained (default: all);
# "row_epochs" (cpu only): epochs of a row that differ from the profile's "epochs".
PROFILES = {
    "smoke": {
        "n_train": 64, "n_test": 32, "model": {"width": 4, "blocks": (1, 1, 1)}, "epochs": 1, "batch": 32,
        "linf": AttackBudget("linf", eps_max=32 / 255, eps_cap=64 / 255, pgd_steps=2, bisect_steps=3,
                             anchors=(EPS_2, EPS_8), fab_iter=3, batch_size=500),
        "l2": AttackBudget("l2", eps_max=1.0, eps_cap=2.0, pgd_steps=2, bisect_steps=3, fab_iter=3, batch_size=500),
        "lanczos_iters": 4, "lanczos_tol": 1e-3, "eval_batch": 500, "fd_check_n": 4, "fd_check_h": (1.0, 1e-2, 1e-4),
        "cost_batches": 1},
    "quick": {
        "n_train": None, "n_test": 1000, "model": {}, "epochs": 4, "batch": None,
        "linf": AttackBudget("linf", eps_max=32 / 255, pgd_steps=10, bisect_steps=8, anchors=(EPS_2, EPS_8),
                             fab_iter=30, batch_size=1000),
        "l2": AttackBudget("l2", eps_max=1.0, pgd_steps=10, bisect_steps=8, fab_iter=30, batch_size=1000),
        "lanczos_iters": 50, "lanczos_tol": 1e-3, "eval_batch": 500, "fd_check_n": 100,
        "fd_check_h": (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6), "cost_batches": 5},
    # two CPU cores, each notebook ≤ 45 min (planned with CPU_SECONDS_PER_PASS below): the ResNeXt narrowed to width 8
    # with 3 BranchBlocks per stage, 3 epochs per row (the smooth-ReLU rows 1), only the rows the issue asks for
    # ("rows"), PGD-5 with 5 halvings and FAB-5 for the minimum distances, Lanczos ≤ 15 iterations
    "cpu": {
        "n_train": None, "n_test": 1000, "model": {"width": 8, "blocks": (3, 3, 3)}, "epochs": 3, "batch": 128,
        "row_epochs": {"Undefended (smooth)": 1, "squared l2 lambda=0.1 (smooth)": 1},
        "rows": ("Undefended", "7-step AT", "squared l1 lambda=0.1", "squared l1 lambda=1", "squared l2 lambda=0.1",
                 "Undefended (smooth)", "squared l2 lambda=0.1 (smooth)"),
        "linf": AttackBudget("linf", eps_max=32 / 255, pgd_steps=5, bisect_steps=5, anchors=(EPS_2, EPS_8),
                             fab_iter=5, batch_size=500),
        "l2": AttackBudget("l2", eps_max=1.0, pgd_steps=5, bisect_steps=5, fab_iter=5, batch_size=500),
        "lanczos_iters": 15, "lanczos_tol": 1e-3, "eval_batch": 500, "fd_check_n": 100,
        "fd_check_h": (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6), "cost_batches": 3},
    "paper": {
        "n_train": None, "n_test": 1000, "model": {}, "epochs": None, "batch": None,
        "linf": AttackBudget("linf", eps_max=32 / 255, pgd_steps=50, bisect_steps=10, anchors=(EPS_2, EPS_8),
                             fab_iter=100, fab_restarts=2, batch_size=1000),
        "l2": AttackBudget("l2", eps_max=1.0, pgd_steps=50, bisect_steps=10, fab_iter=100, fab_restarts=2,
                           batch_size=1000),
        "lanczos_iters": 50, "lanczos_tol": 1e-3, "eval_batch": 500, "fd_check_n": 200,
        "fd_check_h": (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6), "cost_batches": 20},
}
NOTES = {
    "smoke": "smoke profile: a width-4 ResNeXt with one block per stage, 64 training images, one epoch at batch 32, "
             "32 test images and cut attack budgets. The numbers only show that the pipeline runs.",
    "cpu": "cpu profile (two CPU cores, each notebook ≤ 45 minutes): the full CIFAR-10 training set (50 000 images) and "
           "the first 1 000 test images for everything; Finlay & Oberman's ResNeXt34-2x32 narrowed to width 8 with 3 "
           "BranchBlocks per stage (widths 8/16/32, 0.022 GMAC per image instead of 0.57; every quirk kept); "
           "{epochs} epochs per row instead of 200 (the same step schedule compressed: lr 0.1 ÷5 at 30/60/80 % of "
           "training), the two smooth-ReLU rows 1 epoch (the smooth ReLU is ≈ 2.5× slower per pass on a CPU); only "
           "the rows the issue asks for are trained: undefended, 7-step AT, squared ℓ1 λ = 0.1 and λ = 1, squared "
           "ℓ2 λ = 0.1, and the smooth undefended and smooth squared-ℓ2 λ = 0.1 models — the exact-penalty (DBP) "
           "row, squared ℓ2 λ = 1 and the h-ablation rows other than h = 0.1 are not trained (the cost table still "
           "times DBP on a few batches). Minimum distances: PGD-5 (instead of PGD-10/50) with 5 halvings of ε and "
           "FAB with 5 iterations (instead of 30/100), on all 1 000 test images; Lanczos ≤ 15 iterations (the paper: "
           "50). The undefended and AT models train in bf16 autocast with channels_last where the CPU computes bf16 "
           "natively, every penalty in strict fp32 (finite differences never in bf16). CPU scale: compare the "
           "differences between rows, not the absolute numbers.",
    "quick": "quick profile: {epochs} epochs per model instead of 200 (the same step schedule, compressed: lr 0.1 ÷5 at "
             "30/60/80 % of training), every model on the full training set; the h-ablation uses the same short "
             "schedule. Attack budgets are smaller than the paper profile's (stated in the configuration table).",
}

# The time model's seconds per network pass N on one H200 (ResNeXt34-2x32, batch 128): estimates, not measured in
# this project. bf16 for the undefended and AT models, strict fp32 (no TF32) for the penalties; the smooth ReLU
# costs ~20 % more, and double backprop's passes ~2.25× more (N under-weights its second-order pass, which runs
# BatchNorm's slow double-backward kernels). Evaluation: seconds per 1 000 images and norm, Lanczos per 1 000 images.
SECONDS_PER_PASS = {"bf16": 4e-5, "fp32": 1e-4}
SLOWER_PASSES = {"smooth_resnext34_2x32": 1.2, "dbp_gradreg": 2.25}
EVAL_SECONDS = {"norm": 15.0, "lanczos": 20.0, "notebook": 20.0, "chapter": 110.0}
# The same time model for the cpu profile (two cores of the project's AMD EPYC, width-8 ResNeXt with 3-3-3 blocks,
# batch 128): the project's measurement of a width-16 CIFAR ResNet-18 (≈ 6e-4 s per pass per image in bf16, ≈ 1.2e-3
# in fp32), which has 1.6× this model's MACs (0.035 vs 0.022 GMAC) — kept as is, to cover the per-layer overhead of
# the narrow, deeper network. A timing of a few batches of each method (niced, beside a concurrent training run on the
# same two cores, so slower than an idle machine: 2.7e-3 s per pass per image for 7-step AT in bf16, 3.3e-3 for the
# FD penalty in fp32) put the smooth ReLU at 2–3× the ReLU's time per pass (CPU_SLOWER_PASSES: 2.5). Evaluation on
# 1 000 images: one norm's PGD-5 (≤ 8 probes) + FAB-5 ≈ 150 passes in fp32 (≈ 180 s); the smooth rows' Lanczos (15
# Hessian-vector iterations ≈ 75 passes, × the smooth factor in the plan) ≈ 90 s; 20 s of start-up per notebook; in
# the chapter notebook 300 s for reopening, the FD-vs-exact check, the cost measurement, PGD-10 of three models and
# the figures.
CPU_SECONDS_PER_PASS = {"bf16": 6e-4, "fp32": 1.2e-3}
CPU_SLOWER_PASSES = {"smooth_resnext34_2x32": 2.5, "dbp_gradreg": 2.25}
CPU_EVAL_SECONDS = {"norm": 180.0, "lanczos": 90.0, "notebook": 20.0, "chapter": 300.0}
