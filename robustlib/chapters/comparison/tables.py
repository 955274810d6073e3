"""The comparison chapter's literal tables: where each row comes from (:data:`ROWS`), the one recipe trained here
(:data:`RECIPES`), what each profile changes (:data:`PROFILES`), the part notebooks (:data:`PARTS`) and the planning
estimates (:data:`PLAN`). These are the one place to edit; ``config(..., overrides={row: {hp: value}})`` changes a
RECIPES row's hyperparameters from a notebook.
"""
from __future__ import annotations

PAPER = "comparison"
TABLE = "resnet18"
METRICS = ("clean", "pgd20", "pgd100", "gama100", "aa")
FD = "FD gradient regularization"

# The ten rows: the paper chapter whose public ``trained(settings, label, seed=...)`` gives the model (``label``: the
# row label in that chapter), the defence family, the model as the budget table names it, and how many seeds the
# chapter offers. AdvProp's two rows are one trained network evaluated through its main or its auxiliary BNs ("bn").
# ABNN's predictions depend on the batch, so it is evaluated at its chapter's evaluation batch ("own_batch": the
# spec's ``extra["eval_batch"]``), which keeps its numbers comparable with that chapter's.
ROWS = {
    "Normal": {"chapter": "nuat", "label": "Normal", "family": "no defence",
               "model": "ResNet-18, NuAT's block (extra ReLU)"},
    "PGD-AT": {"chapter": "nuat", "label": "PGD-AT", "family": "multi-step AT",
               "model": "ResNet-18, NuAT's block (extra ReLU)"},
    "TRADES": {"chapter": "nuat", "label": "TRADES", "family": "multi-step AT",
               "model": "ResNet-18, NuAT's block (extra ReLU)"},
    "FBF": {"chapter": "nuat", "label": "FBF", "family": "single-step AT",
            "model": "ResNet-18, NuAT's block (extra ReLU)"},
    "NuAT": {"chapter": "nuat", "label": "NuAT", "family": "single-step AT",
             "model": "ResNet-18, NuAT's block (extra ReLU)"},
    "NuAT-WA": {"chapter": "nuat", "label": "NuAT-WA", "family": "single-step AT",
                "model": "ResNet-18, NuAT's block (extra ReLU)"},
    "AdvProp": {"chapter": "advprop", "label": "AdvProp", "bn": "main", "family": "AT for clean accuracy",
                "model": "ResNet-18 with dual BNs, evaluated through the main BNs"},
    "AdvProp (aux BN)": {"chapter": "advprop", "label": "AdvProp", "bn": "aux", "family": "AT for clean accuracy",
                         "model": "ResNet-18 with dual BNs, evaluated through the auxiliary BNs"},
    "ABNN": {"chapter": "abnn", "label": "ABNN", "family": "no AT", "seeds": 1, "own_batch": True,
             "model": "ResNet-18 target + frozen torchvision-layout ResNet-18 substitute"},
    FD: {"chapter": "comparison", "label": FD, "family": "no AT", "model": "ResNet-18 (standard block)",
         "source": "this chapter (the gradreg chapter trains ResNeXt34-2x32)",
         "selection": "last epoch (as the gradreg chapter)"},
}
METHODS = tuple(ROWS)
CHAPTER_TITLES = {"nuat": "NuAT", "advprop": "AdvProp", "abnn": "ABNN", "comparison": "this"}

# The one model trained here: Finlay & Oberman's best ℓ∞ model on a ResNet-18, their optimisation recipe.
RECIPES = {
    FD: {"method": "fd_gradreg", "hp": {"lam": 1.0, "h": 0.1, "norm": "l1"}, "model": "resnet18", "epochs": 200,
         "batch": 128, "lr": 0.1, "schedule": {"name": "step_decay", "fractions": (0.3, 0.6, 0.8), "gamma": 0.2},
         "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4,
         "augment": {"crop_padding": 4, "fill": 128, "flip": True, "cutout": 16}, "amp": "off",
         "selection": "last epoch",
         "source": "Finlay & Oberman (2021): the journal's best ℓ∞ model, squared ℓ1 penalty with λ = 1 and h = 0.1; "
                   "their recipe (SGD 0.9, no Nesterov, weight decay 5e-4, batch 128, 200 epochs, lr 0.1 ÷5 at "
                   "epochs 60/120/160, crop with grey padding, flip, Cutout 16, strict fp32) on a CIFAR ResNet-18 "
                   "instead of their ResNeXt34-2x32"},
}

# What each profile changes. Attack suite: PGD snapshots (metric → steps), GAMA-PGD steps, AutoAttack (version,
# attacks, APGD budget, Square queries). Checklist: ε grid (×1/255) and PGD steps of the ε sweep, PGD steps and
# restarts, Square queries, transfer steps, tolerance in points. FD recipe: model width, training images, epochs
# (RECIPES' when absent), batch, batches per epoch. "chapter_overrides": {row: overrides} passed to a chapter's
# trained() (the paper profile's ABNN chapter uses a ResNet-50 target; the comparison asks for its ResNet-18 form).
PROFILES = {
    "smoke": {"n_test": 32, "eval_batch": 32, "chapter_overrides": {},
              "pgd_record": {"pgd20": 2, "pgd100": 4}, "gama_steps": 4,
              "aa_version": "custom", "aa_attacks": ("apgd-ce", "square"), "aa_apgd_budget": (3, 1),
              "aa_square_queries": 5,
              "eps_grid": (8, 128), "eps_steps": 2, "sr_steps": (1, 2, 4), "restarts": 2, "square_queries": 5,
              "transfer_steps": 2, "tol": 1.0,
              "model": {"width": 8, "blocks": (1, 1, 1, 1)}, "n_train": 600, "epochs": {FD: 1}, "batch": 32,
              "max_batches": 4},
    "quick": {"n_test": 1000, "eval_batch": 1000, "chapter_overrides": {},
              "pgd_record": {"pgd20": 20, "pgd100": 100}, "gama_steps": 100,
              "aa_version": "standard", "aa_attacks": None, "aa_apgd_budget": None, "aa_square_queries": None,
              "eps_grid": (8, 16, 32, 64, 128), "eps_steps": 20, "sr_steps": (10, 20, 100), "restarts": 3,
              "square_queries": 5000, "transfer_steps": 20, "tol": 1.0,
              "model": {}, "n_train": None, "epochs": {FD: 4}, "batch": 128, "max_batches": None},
    "paper": {"n_test": 1000, "eval_batch": 1000,
              "chapter_overrides": {"ABNN": {"ABNN": {"target": "resnet18"}}},
              "pgd_record": {"pgd20": 20, "pgd100": 100}, "gama_steps": 100,
              "aa_version": "standard", "aa_attacks": None, "aa_apgd_budget": None, "aa_square_queries": None,
              "eps_grid": (8, 16, 32, 64, 128), "eps_steps": 50, "sr_steps": (10, 20, 100), "restarts": 5,
              "square_queries": 5000, "transfer_steps": 20, "tol": 1.0,
              "model": {}, "n_train": None, "epochs": {}, "batch": 128, "max_batches": None},
}
NOTES = {
    "smoke": "smoke profile: the paper chapters' tiny models (ResNet-18 of width 8, one block per stage), 32 test "
             "images, cut attack budgets (pgd20/pgd100 hold PGD-2/4, gama100 GAMA-PGD-4, aa APGD-CE (3 iterations) "
             "+ Square (5 queries)), a cut checklist (PGD-2 at ε = 8/255 and 128/255, PGD-1/2/4 with 2 restarts, "
             "PGD-2 transfer, Square with 5 queries), FD trained for 4 batches. The numbers only show that the "
             "pipeline runs; pass/fail in this profile means nothing.",
    "quick": "quick profile: every reused row keeps its chapter's quick budget (table 'budgets'); FD gradient "
             "regularization gets 4 epochs (the same total passes per sample, 20N, as the FBF row's 5 epochs at 4N; "
             "the gradreg chapter's quick budget is also 4 epochs); the checklist uses PGD-20 for the ε sweep and 3 "
             "restarts (paper profile: PGD-50, 5 restarts).",
    "paper": "paper profile: every reused row at its chapter's paper budget; FD gradient regularization with the "
             "authors' 200-epoch recipe; ABNN with a ResNet-18 target, trained by the ABNN chapter with its recipe "
             "(that chapter's own paper profile uses ResNet-50).",
}

# Part notebooks 9X_comparison__<part> and what each evaluates: (row, seed offset, "full" = the suite and the
# checklist | "suite" = the suite only). Balanced by the estimates of plan().
PARTS = {
    "fd": ((FD, 0, "full"), (FD, 1, "suite")),
    "baselines": (("Normal", 0, "full"), ("Normal", 1, "suite"), ("PGD-AT", 0, "full"), ("TRADES", 0, "full")),
    "single_step": (("FBF", 0, "full"), ("NuAT", 0, "full"), ("NuAT-WA", 0, "full")),
    "seed1": (("FBF", 1, "suite"), ("NuAT", 1, "suite")),
    "bn": (("AdvProp", 0, "full"), ("AdvProp (aux BN)", 0, "full"), ("AdvProp", 1, "suite"),
           ("AdvProp (aux BN)", 1, "suite"), ("ABNN", 0, "full")),
}
NOTEBOOKS = {"fd": "91_comparison__fd", "baselines": "92_comparison__baselines",
             "single_step": "93_comparison__single_step", "seed1": "94_comparison__seed1",
             "bn": "95_comparison__bn", None: "90_comparison"}
SPREAD_ROWS = ("Normal", "FBF", "NuAT", FD, "AdvProp", "AdvProp (aux BN)")

# Planning estimates for the quick profile on one H200 (seconds; not measurements — the first GPU run replaces them).
# Evaluation: the suite on 1 000 images of a robust ResNet-18 (AutoAttack standard ≈ 1.5 min) or of an undefended one
# (AutoAttack stops early); the checklist's extra attacks. Training: FD's seconds per network pass of one image in
# strict fp32 (≈ 28 s per 5N epoch of 50 000 images); second seeds of NuAT-chapter rows, which the NuAT chapter
# trains on request, at that chapter's own quick estimate of the same run.
PLAN = {"suite_robust": 100.0, "suite_plain": 25.0, "audit_robust": 60.0, "audit_plain": 30.0,
        "fd_seconds_per_pass": 28.0 / (5 * 50_000), "train_images": 50_000,
        "second_seed": {"Normal": 58.5, "FBF": 75.0, "NuAT": 175.5}, "startup": 30.0, "chapter": 60.0}
NOT_ROBUST = ("Normal", "AdvProp", "AdvProp (aux BN)")
