"""The comparison chapter's literal tables: where each row comes from (:data:`ROWS`), the one recipe trained here
(:data:`RECIPES`), what each profile changes (:data:`PROFILES`, :data:`NOTES`), the part notebooks (:data:`PARTS`), the
planning estimates (:data:`PLAN` for one H200, :data:`CPU_PLAN` for two CPU cores) and the claims checked on the rows
(:data:`CLAIMS`). These are the one place to edit; ``config(..., overrides={row: {hp: value}})`` changes a RECIPES
row's hyperparameters from a notebook.
"""
from __future__ import annotations

from ...claims import Claim

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
# attacks, APGD budget, Square queries) and "aa_n": AutoAttack on the first aa_n of the n_test images (None: on all of
# them), with its own interval. Checklist: ε grid (×1/255) and PGD steps of the ε sweep, PGD steps and
# restarts, Square queries, transfer steps, tolerance in points. FD recipe: model width, training images, epochs
# (RECIPES' when absent), batch, batches per epoch. "chapter_overrides": {row: overrides} passed to a chapter's
# trained() (the paper profile's ABNN chapter uses a ResNet-50 target; the comparison asks for its ResNet-18 form).
PROFILES = {
    "smoke": {"n_test": 32, "eval_batch": 32, "chapter_overrides": {},
              "pgd_record": {"pgd20": 2, "pgd100": 4}, "gama_steps": 4,
              "aa_version": "custom", "aa_attacks": ("apgd-ce", "square"), "aa_apgd_budget": (3, 1),
              "aa_square_queries": 5, "aa_n": None,
              "eps_grid": (8, 128), "eps_steps": 2, "sr_steps": (1, 2, 4), "restarts": 2, "square_queries": 5,
              "transfer_steps": 2, "tol": 1.0,
              "model": {"width": 8, "blocks": (1, 1, 1, 1)}, "n_train": 600, "epochs": {FD: 1}, "batch": 32,
              "max_batches": 4},
    # two CPU cores, each part notebook ≤ 45 min by CPU_PLAN (about 3.3 h for the chapter): every reused row at its
    # chapter's cpu budget, the suite and the checklist on the first 500 test images with 50-step PGD and GAMA-PGD,
    # AutoAttack standard (unchanged) on the first 100 of them (≈ 4 s per image of a robust model: on 200 images
    # the parts would not fit), the checklist's budgets cut (PGD-10 ε sweep, PGD-
    # 5/10/20 with 2 restarts, PGD-10 transfer, Square with 100 queries; tolerance 1.5 points, 1.0 × √(1000/500)),
    # FD on a width-16 ResNet-18 for 2 epochs (strict fp32)
    "cpu": {"n_test": 500, "eval_batch": 500, "chapter_overrides": {},
            "pgd_record": {"pgd20": 20, "pgd100": 50}, "gama_steps": 50,
            "aa_version": "standard", "aa_attacks": None, "aa_apgd_budget": None, "aa_square_queries": None,
            "aa_n": 100,
            "eps_grid": (8, 16, 32, 64, 128), "eps_steps": 10, "sr_steps": (5, 10, 20), "restarts": 2,
            "square_queries": 100, "transfer_steps": 10, "tol": 1.5,
            "model": {"width": 16}, "n_train": None, "epochs": {FD: 2}, "batch": 128, "max_batches": None},
    "quick": {"n_test": 1000, "eval_batch": 1000, "chapter_overrides": {},
              "pgd_record": {"pgd20": 20, "pgd100": 100}, "gama_steps": 100,
              "aa_version": "standard", "aa_attacks": None, "aa_apgd_budget": None, "aa_square_queries": None,
              "aa_n": None,
              "eps_grid": (8, 16, 32, 64, 128), "eps_steps": 20, "sr_steps": (10, 20, 100), "restarts": 3,
              "square_queries": 5000, "transfer_steps": 20, "tol": 1.0,
              "model": {}, "n_train": None, "epochs": {FD: 4}, "batch": 128, "max_batches": None},
    "paper": {"n_test": 1000, "eval_batch": 1000,
              "chapter_overrides": {"ABNN": {"ABNN": {"target": "resnet18"}}},
              "pgd_record": {"pgd20": 20, "pgd100": 100}, "gama_steps": 100,
              "aa_version": "standard", "aa_attacks": None, "aa_apgd_budget": None, "aa_square_queries": None,
              "aa_n": None,
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
    "cpu": "cpu profile (two CPU cores, each part notebook ≤ 45 minutes by the chapter's cpu time model): every "
           "reused row as its chapter's cpu profile trained it (the NuAT rows: NuAT's ResNet-18 at width 16, 2–8 "
           "epochs; AdvProp: its width-16 ResNet-18, one epoch; ABNN: its width-16 ResNet-18 target, 15 epochs), "
           "and the NuAT chapter trains Normal (8 epochs), FBF and NuAT (4 each) a second time with seed + 1. FD "
           "gradient regularization is trained here on a width-16 ResNet-18 for 2 epochs (of the recipe's 200, "
           "schedule compressed; 10N per sample in all, strict fp32). Evaluation on the first 500 test images "
           "instead of 1 000: the pgd100 column holds PGD-50 (the same run's snapshot after 50 steps; pgd20 is "
           "PGD-20) and gama100 holds GAMA-PGD-50. AutoAttack is the unchanged standard version (APGD-CE, APGD-T "
           "and FAB-T with 9 target classes, Square with 5 000 queries), on the first 100 of those test images "
           "only (about 4 s per image of a robust model on two cores: 100 images is what the parts hold), with its "
           "own 95 % interval (about ±9 points): the aa column, the Pareto front and every AutoAttack claim rest "
           "on those 100 images. The checklist runs on the 500 images with cut budgets: the "
           "ε sweep with PGD-10 instead of PGD-20; PGD-5/10/20 (one run) and PGD-20 × 2 restarts instead of "
           "PGD-10/20/100 and PGD-100 × 3; the transfer attack with PGD-10 instead of PGD-20; Square with 100 "
           "queries instead of 5 000 (AutoAttack's own Square, with 5 000 queries, still runs on its 100 images, "
           "and check 4 fails when it beats the gradient attacks there), against min(PGD-50, GAMA-PGD-50); a "
           "tolerance of 1.5 points instead of 1.0 (1.0 × √(1000/500): a random start's jitter grows on fewer "
           "images). CPU scale: compare the differences between rows, not the absolute numbers.",
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

# The same for the cpu profile on two CPU cores of the project's machine (seconds). Measured there (width-16 ResNet-18;
# training in bf16 + channels_last, attacks in fp32): PGD costs ≈ 2 ms per image per step (PGD-20 on 1 000 images ≈
# 37–40 s); AutoAttack's APGD-CE + APGD-T (3 targets) on 500 images of a robust model ≈ 4 min, i.e. ≈ 2.5 ms per image
# per APGD iteration with the planned accuracies below; a standard 2N epoch of 49 000 images at batch 128 ≈ 50 s (6e-4 s
# per pass per image), strict fp32 ≈ 2× (FD: 1.2e-3 s, ≈ 5 min per 5N epoch of 50 000 images). Assumed, not measured:
# one forward pass ≈ 1 ms per image ("forward_s": Square's queries and clean scoring; the AdvProp chapter measured
# ≈ 1 s per 1 000 forward passes), a FAB-T iteration = one APGD iteration + one forward pass, and the ABNN row 1.25× any
# other ("slower": its substitute network, at a sixteenth of the target's FLOPs, and adaptive BNs). AutoAttack
# standard attacks the clean-correct images with APGD-CE (100 iterations) and the images still robust with APGD-T and
# FAB-T (9 targets × 100 iterations each) and Square (5 000 queries): planned at "robust" accuracies (clean 65 %,
# AutoAttack 35 %) for every row but the "undefended" ones (clean 90 %, AutoAttack 0 %), which the performance notes'
# AutoAttack pass counts (≈ 2 900 forwards and 800 backwards per image at 35 %) agree with. Checklist: ε sweep and
# steps/restarts at the PGD step cost, the transfer attack on its source, Square's queries on the images it does not
# break ("square": every clean-correct image of a robust row, 5 % of an undefended one's). Second seeds of the NuAT
# rows: the NuAT chapter's own cpu estimate of the same run (its CPU_SECONDS_PER_PASS × derived N × 49 000 images ×
# epochs: Normal 8 epochs of 2N at batch 64, FBF 4 of 4N at 128, NuAT 4 of 7N at 64). "startup": a notebook's
# imports, data and models; "fd_demo": part 1's demonstration run (≤ 50 batches of FD, then PGD-20); "chapter": the
# chapter notebook's own work beyond gathering.
CPU_PLAN = {"pgd_step_s": 2.0e-3, "aa_step_s": 2.5e-3, "forward_s": 1.0e-3,
            "robust": {"clean": 0.65, "aa": 0.35, "square": 0.65},
            "undefended": {"clean": 0.90, "aa": 0.0, "square": 0.05},
            "undefended_rows": ("Normal", "AdvProp"), "slower": {"ABNN": 1.25},
            "fd_seconds_per_pass": 1.2e-3, "train_images": 50_000,
            "second_seed": {"Normal": 611.0, "FBF": 469.4, "NuAT": 1069.3},
            "startup": 60.0, "fd_demo": 60.0, "chapter": 120.0}
# AutoAttack standard as pyautoattack sets it (Croce & Hein 2020): attacks in order, iterations (queries for Square),
# target classes.
AA_STANDARD = {"apgd-ce": (100, 1), "apgd-t": (100, 9), "fab-t": (100, 9), "square": (5000, 1)}
PART_LIMIT_MIN = {"cpu": 45.0, "quick": 10.0}   # each part notebook's budget by the time model, in minutes

# The chapter's claims: the cross-paper statements its rows can test, each on the first seed's rows (per-image flags,
# so two rows are compared with a paired interval over the same test images: AutoAttack's images, the first aa_n),
# or on measured passes per sample per epoch (a count: no interval). See robustlib.claims.
CLAIMS = [
    Claim("nuat_vs_fbf", "Single-step NuAT is at least as robust as single-step FBF under AutoAttack (at most 2 points "
          "below)", "greater", "aa", "NuAT", "FBF", margin=-2.0, paper="NuAT 49.24 % vs FBF 43.12 % (AA v1)",
          source="NuAT table 1"),
    Claim("nuat_matches_pgdat", "NuAT matches 10-step PGD-AT under AutoAttack (within 2 points)", "within", "aa",
          "NuAT", "PGD-AT", margin=2.0, paper="NuAT 49.24 % vs PGD-AT 48.75 % (AA v1)", source="NuAT table 1"),
    Claim("nuat_cost", "…at a fraction of PGD-AT's passes (measured passes per sample per epoch, at most 0.4×)",
          "cost_ratio_at_most", "passes", "NuAT", "PGD-AT", value=0.4, paper="7N vs 22N per sample per epoch",
          source="NuAT table 1 (# AT steps), §7"),
    Claim("fd_beats_normal", "FD gradient regularization (no AT) is more robust than the undefended Normal model under "
          "AutoAttack", "greater", "aa", FD, "Normal", paper="error at 8/255: 58.69 % vs 100 % (own attack suite, "
          "ResNeXt34-2x32)", source="Finlay & Oberman, poster table (CIFAR-10)"),
    Claim("pgdat_beats_fd", "…but adversarial training stays more robust: PGD-AT beats FD gradient regularization "
          "under AutoAttack", "greater", "aa", "PGD-AT", FD, paper="error at 8/255: 7-step AT 46.02 % vs FD 58.69 %",
          source="Finlay & Oberman, poster table (CIFAR-10)"),
    Claim("fd_cost", "FD gradient regularization costs a quarter of PGD-AT's passes or less (measured, at most 0.25×)",
          "cost_ratio_at_most", "passes", FD, "PGD-AT", value=0.25,
          paper="5N (FD) vs 22N (10-step PGD-AT) per sample",
          source="finlay_oberman.md §2 (5N); NuAT table 1 (PGD-AT's 10 steps)"),
    Claim("advprop_not_robust", "AdvProp's deployed network (main BNs) is not robust: AutoAttack accuracy below 5 %",
          "below", "aa", "AdvProp", value=5.0, paper="no robustness claim: the auxiliary BNs are dropped at test time",
          source="Xie et al. (2020), abstract; advprop.md §2"),
    Claim("abnn_beats_normal", "ABNN (no AT) is more robust than the undefended Normal model under AutoAttack (ABNN at "
          "batch size 1)", "greater", "aa", "ABNN", "Normal", paper="PGD: 31.5 % vs 0.0 % (settings not stated)",
          source="ABNN slides, Table 1; abnn.md §6"),
    Claim("abnn_below_pgdat", "ABNN is less robust than PGD-AT under AutoAttack", "less", "aa", "ABNN", "PGD-AT",
          paper="PGD: 31.5 % vs 51.6 %", source="ABNN slides, Table 1"),
]
