"""The NuAT chapter's recipes and profiles as literal tables — the one place a reader edits.

* :data:`RECIPES`: one row per trained model of the paper's tables (CIFAR-10 ResNet-18, MNIST, WRN-34-10,
  ImageNet-100), keyed ``"<dataset>/<label>"``. ``method`` is a registered method (``METHODS.names()``) and ``hp``
  its keyword arguments; ``model`` a registered model (``MODELS.names()``) with ``model_kw``; ``epochs``, ``batch``,
  ``schedule`` (the learning-rate schedule as data, see :mod:`robustlib.schedules`), ``weight_decay``, ``ema`` (weight
  averages τ) and ``select`` (the hold-out selection rule) are the paper's. ``rows`` maps each table row the run
  gives to its model (``"model"``, or ``"emaK"``: the K-th weight average). ``source`` says where the recipe comes
  from. Optional: ``schedule_epochs`` (the schedule is written for that many epochs and stretched to ``epochs``),
  ``note``.
* :data:`ABLATIONS`: NuAT on MNIST with one detail of the authors' code switched off at a time.
* :data:`PROFILES`: what smoke / quick / paper change (sizes, widths, epochs, attack budgets).

Not in the tables, because they are rules: a shortened run of E epochs for a recipe of P epochs follows the recipe's
learning-rate schedule compressed P/E× (:class:`robustlib.schedules.Compressed`), gets ``epoch_scale = P/E`` when its
method takes one (λ ramps and switches then fall at the same fraction of training), and its weight averages keep the
recipe's horizon 1/(1 − τ) as a fraction of the run (:func:`robustlib.chapters.nuat.scaled_tau`).
"""
from __future__ import annotations

from ...threat import CIFAR10, MNIST

EPS, ALPHA = CIFAR10.eps, 4 / 255              # CIFAR-10 / ImageNet-100: ε = 8/255, NuAT's and GAT's Bernoulli ±4/255
M_EPS, M_ALPHA = MNIST.eps, 0.3                # MNIST: ε = 0.3, and GAT-MNIST.py's Bernoulli ±0.3

# The datasets: threat model, PGD step, augmentation, and the training images of the paper's split (the 1 000-image
# hold-out removed) for the weight-average horizons and the time model.
DATASETS = {
    "cifar10": {"eps": EPS, "pgd_step": CIFAR10.pgd_step, "augment": {"crop_padding": 4, "fill": 0, "flip": True},
                "n_full": 49_000, "data": "cifar10"},
    "wrn": {"eps": EPS, "pgd_step": CIFAR10.pgd_step, "augment": {"crop_padding": 4, "fill": 0, "flip": True},
            "n_full": 49_000, "data": "cifar10"},
    "mnist": {"eps": M_EPS, "pgd_step": MNIST.pgd_step, "augment": None, "n_full": 59_000, "data": "mnist"},
    "imagenet100": {"eps": EPS, "pgd_step": CIFAR10.pgd_step,
                    "augment": {"crop_padding": 16, "fill": 0, "flip": True}, "n_full": 126_000,
                    "data": "imagenet100"},
}

# Schedules (as data) that several rows share.
NUAT_STEP = {"name": "cyclic", "max_lr": 0.1, "up": 40, "down": 50, "freeze_at": 80, "drops": {86: 0.1, 91: 0.1}}
NUAT_WA_CYCLE = {"name": "cyclic", "max_lr": 0.1, "up": 25, "down": 75}
NUAT2_STEP = {"name": "cyclic", "max_lr": 0.1, "up": 20, "down": 20, "freeze_at": 35, "drops": {41: 0.1, 46: 0.1}}
FBF_CYCLE = {"name": "cyclic", "max_lr": 0.2, "up": 7.5, "down": 7.5, "freeze_at": 15}     # CyclicLR, peak at half
MNIST_STEPS = {"name": "piecewise", "lr": 0.01, "milestones": [12, 25, 37], "gamma": 0.2}

RN18 = {"model": "resnet18", "model_kw": {"extra_relu": True}, "weight_decay": 5e-4, "ema": (), "select": "ifgsm7"}
MNIST_CNN = {"model": "mnist_cnn", "model_kw": {}, "epochs": 50, "batch": 64, "schedule": MNIST_STEPS,
             "weight_decay": 5e-4, "ema": (), "select": "ifgsm7", "part": "mnist"}
WRN = {"model": "wrn34_10", "model_kw": {}, "weight_decay": 5e-4, "ema": (), "select": "ifgsm7", "part": "chapter"}
IN100 = {"model": "tv_resnet18", "model_kw": {"num_classes": 100}, "epochs": 120, "batch": 64, "weight_decay": 1e-4,
         "schedule": {"name": "piecewise", "lr": 0.1, "milestones": [60, 90], "gamma": 0.1}, "ema": (),
         "select": "ifgsm7", "part": "chapter"}

FBF_SOURCE = "FBF's recipe (our choice)"
MNIST_SOURCE = ("GAT-MNIST.py's optimiser (50 epochs, batch 64, SGD lr 0.01, momentum 0.9, wd 5e-4) with lr ÷5 from "
                "epochs 12, 25 and 37 (≈ E/4, E/2, 3E/4, the drops the script's rule names; our choice — as written "
                "the script applies only the one after epoch 25)")
IN100_SOURCE = "GAT's ImageNet-100 recipe: 120 epochs, batch 64, lr 0.1 ÷10 from epochs 60 and 90, wd 1e-4"
RMGM_SOURCE = ("; loss CE(x_FGSM) + 0.2·‖f(x_FGSM) − f(x_RFGSM)‖² (form and λ our reading of Vivek et al. 2019); "
               "eval-mode BN in its two attacks (our choice)")
RMGM_NOTE = ("R-MGM's identity (Vivek, Baburaj & Babu, CVPR-W 2019) and hyperparameters are not published in our "
             "sources; form and λ = 0.2 are this project's choices")

RECIPES = {
    # ------------------------------------------------------------------ CIFAR-10, ResNet-18 (NuAT's block)
    "cifar10/Normal": {**RN18, "method": "standard", "hp": {}, "epochs": 100, "batch": 64, "schedule": NUAT_STEP,
                       "select": "clean", "part": "single",
                       "source": "NuAT's schedule and batch (our choice: differs from NuAT only in the loss)"},
    "cifar10/FGSM-AT": {**RN18, "method": "fgsm_at", "hp": {"eps": EPS}, "epochs": 15, "batch": 128,
                        "schedule": FBF_CYCLE, "part": "single",
                        "source": "FBF's recipe (15 epochs, batch 128, lr 0 → 0.2 → 0 with momentum cycling, "
                                  "train-mode BN in the attack; our choice)",
                        "note": "hold-out selection can keep an epoch from before catastrophic overfitting; the "
                                "paper's 0.00 presumably comes from a final model"},
    "cifar10/RFGSM-AT": {**RN18, "method": "rfgsm_at", "hp": {"eps": EPS}, "epochs": 15, "batch": 128,
                         "schedule": FBF_CYCLE, "part": "single",
                         "source": "FBF's recipe (our choice); R-FGSM with α = ε/2 (Tramèr et al.)"},
    "cifar10/FBF": {**RN18, "method": "fbf", "hp": {"eps": EPS}, "epochs": 15, "batch": 128, "schedule": FBF_CYCLE,
                    "part": "single",
                    "source": "Wong et al. (train_fgsm.py): 15 epochs, batch 128, CyclicLR 0 → 0.2 → 0 peaking at "
                              "half, momentum 0.9 → 0.8 → 0.9, α = 1.25ε, uniform start, train-mode BN in the attack"},
    "cifar10/R-MGM": {**RN18, "method": "rmgm", "hp": {"eps": EPS, "lam": 0.2}, "epochs": 15, "batch": 128,
                      "schedule": FBF_CYCLE, "part": "guided", "source": FBF_SOURCE + RMGM_SOURCE, "note": RMGM_NOTE},
    "cifar10/GAT": {**RN18, "method": "gat", "hp": {"eps": EPS, "alpha": ALPHA, "lam": 10.0, "mult": 4.0,
                                                    "mult_epoch": 86},
                    "epochs": 100, "batch": 64, "schedule": {"name": "piecewise", "lr": 0.1, "milestones": [71, 86]},
                    "ema": (0.9998,), "rows": {"GAT": "model", "GAT-WA": "ema0"}, "part": "guided",
                    "source": "GAT_cifar10.py: 100 epochs, batch 64, lr 0.1 ÷10 after epochs 70 and 85 (from 0-based "
                              "71 and 86), λ = 10 ×4 with the second drop (λ = 40 from epoch 86), the term in the "
                              "attack on odd iterations",
                    "note": "GAT and GAT-WA come from one run (the live model and its τ = 0.9998 average)"},
    "cifar10/NuAT": {**RN18, "method": "nuat", "hp": {"eps": EPS, "alpha": ALPHA, "lam_max": 4.5, "ramp_epochs": 90},
                     "epochs": 100, "batch": 64, "schedule": NUAT_STEP, "part": "nuat",
                     "source": "NuAT_cifar10.py: 100 epochs, batch 64, cyclic-step lr, λ 0 → 4.5 by epoch 90"},
    "cifar10/NuAT-WA": {**RN18, "method": "nuat_wa", "hp": {"eps": EPS, "alpha": ALPHA, "lam_max": 4.0, "epochs": 100},
                        "epochs": 100, "batch": 64, "schedule": NUAT_WA_CYCLE, "ema": (0.9998,),
                        "rows": {"NuAT-WA": "ema0"}, "part": "nuat",
                        "source": "NuAT_WA_cifar10.py: 100 epochs, batch 64, cyclic lr 25/75, λ 0 → 4, EMA τ = 0.9998"},
    "cifar10/ATF": {**RN18, "method": "free_at", "hp": {"eps": EPS, "replays": 8}, "epochs": 10, "batch": 128,
                    "schedule": {"name": "cyclic", "max_lr": 0.04, "up": 5, "down": 5, "freeze_at": 10},
                    "part": "trades_free",
                    "source": "locuslab train_free.py: m = 8 replays, 10 epochs, batch 128, lr 0 → 0.04 → 0 "
                              "(CyclicLR, momentum 0.9 → 0.8 → 0.9)",
                    "note": "ATF read as Free-AT (Shafahi et al., 2019); its identity in the paper is not confirmed"},
    "cifar10/PGD-AT": {**RN18, "method": "pgd_at", "hp": {"eps": EPS, "alpha": 2 / 255, "steps": 10}, "epochs": 200,
                       "batch": 128, "schedule": {"name": "piecewise", "lr": 0.1, "milestones": [100, 150]},
                       "part": "pgd_awp",
                       "source": "Rice et al.: PGD-10 (2/255), 200 epochs, batch 128, lr 0.1 ÷10 from 0-based epochs "
                                 "100 and 150, attack with train-mode BN (train_cifar.py)"},
    # TRADES' and AWP's scripts count epochs from 1 (``if epoch >= 75``): their 75/90/100 and 100/150 are 0-based
    # 74/89/99 and 99/149, and AWP's ``epoch >= awp_warmup`` (10) switches the perturbation on at 0-based epoch 9.
    "cifar10/TRADES": {**RN18, "method": "trades", "hp": {"eps": 0.031, "alpha": 0.007, "steps": 10, "beta": 6.0},
                       "epochs": 80, "batch": 128, "weight_decay": 2e-4,
                       "schedule": {"name": "piecewise", "lr": 0.1, "milestones": [74, 89, 99]}, "ema": (0.9998,),
                       "rows": {"TRADES": "model", "TRADES-WA": "ema0"}, "part": "trades_free",
                       "source": "train_trades_cifar10.py: ε = 0.031, 10 steps of 0.007, β = 6, 80 epochs, lr 0.1 ÷10 "
                                 "from its 1-based epoch 75 (0-based 74; the drops at 90 and 100 lie beyond 80 "
                                 "epochs), wd 2e-4",
                       "note": "TRADES and TRADES-WA come from one run (the live model and its τ = 0.9998 average)"},
    "cifar10/AWP": {**RN18, "method": "awp", "hp": {"eps": EPS, "alpha": 2 / 255, "steps": 10, "beta": 6.0,
                                                    "gamma": 0.005, "warmup_epochs": 9},
                    "epochs": 200, "batch": 128, "schedule": {"name": "piecewise", "lr": 0.1, "milestones": [99, 149]},
                    "part": "pgd_awp",
                    "source": "trades_AWP: 200 epochs, batch 128, lr 0.1 ÷10 from its 1-based epochs 100 and 150 "
                              "(0-based 99 and 149), β = 6, γ = 0.005, weight perturbation from its epoch 10 "
                              "(0-based 9)"},
    # ------------------------------------------------------------------ MNIST (GAT's MNIST code; NuAT's is unpublished)
    "mnist/Normal": {**MNIST_CNN, "method": "standard", "hp": {}, "select": "clean", "source": MNIST_SOURCE},
    "mnist/RFGSM-AT": {**MNIST_CNN, "method": "rfgsm_at", "hp": {"eps": M_EPS}, "source": MNIST_SOURCE},
    "mnist/FBF": {**MNIST_CNN, "method": "fbf", "hp": {"eps": M_EPS}, "source": MNIST_SOURCE + "; α = 1.25ε"},
    "mnist/R-MGM": {**MNIST_CNN, "method": "rmgm", "hp": {"eps": M_EPS, "lam": 0.2}, "source": MNIST_SOURCE + RMGM_SOURCE,
                    "note": RMGM_NOTE},
    # GAT-MNIST.py: lr ÷5 and λ ×3 when `epoch in [E/4, E/2, 3E/4]` at the end of an epoch; with E = 50 only
    # 25 == 2E/4 matches (12.5 and 37.5 are no integer epoch), so both act once, from epoch 26.
    "mnist/GAT": {**MNIST_CNN, "method": "gat", "hp": {"eps": M_EPS, "alpha": M_ALPHA, "lam": 15.0, "mult": 3.0,
                                                       "mult_epoch": 26, "alternate": False},
                  "schedule": {"name": "piecewise", "lr": 0.01, "milestones": [26], "gamma": 0.2}, "select": "ifgsm40",
                  "source": "GAT-MNIST.py: 50 epochs, batch 64, SGD lr 0.01 (momentum 0.9, wd 5e-4), λ = 15; after "
                            "epoch 25 lr ÷5 and λ ×3 (λ = 45 from epoch 26; the script's E/4 and 3E/4 drops never "
                            "fire at E = 50); the term in every attack iteration; α = ε = 0.3; selection by I-FGSM-40 "
                            "(40 steps of ε/40)"},
    "mnist/NuAT": {**MNIST_CNN, "method": "nuat", "hp": {"eps": M_EPS, "alpha": M_ALPHA, "lam_max": 4.5,
                                                         "ramp_epochs": 45},
                   "source": MNIST_SOURCE + "; λ 0 → 4.5 over 90 % of training, α = ε"},
    "mnist/NuAT-WA": {**MNIST_CNN, "method": "nuat_wa", "hp": {"eps": M_EPS, "alpha": M_ALPHA, "lam_max": 4.0,
                                                               "epochs": 50},
                      "ema": (0.9998,), "rows": {"NuAT-WA": "ema0"},
                      "source": MNIST_SOURCE + "; λ 0 → 4, EMA τ = 0.9998, α = ε"},
    "mnist/PGD-AT": {**MNIST_CNN, "method": "pgd_at", "hp": {"eps": M_EPS, "alpha": 0.01, "steps": 40},
                     "source": MNIST_SOURCE + "; PGD-40 with steps of 0.01 (Madry et al.'s MNIST attack), train-mode "
                                              "BN"},
    "mnist/TRADES": {**MNIST_CNN, "method": "trades", "hp": {"eps": M_EPS, "alpha": 0.01, "steps": 40, "beta": 1.0},
                     "source": MNIST_SOURCE + "; TRADES MNIST attack: 40 steps of 0.01, β = 1"},
    # ------------------------------------------------------------------ CIFAR-10, WideResNet-34-10
    "wrn/FBF": {**WRN, "method": "fbf", "hp": {"eps": EPS}, "epochs": 30, "batch": 128,
                "schedule": {"name": "cyclic", "max_lr": 0.2, "up": 15, "down": 15, "freeze_at": 30},
                "source": "Wong et al.'s train_fgsm.py at the table's 30 epochs"},
    # GAT at 85 epochs (no script; our scaling of GAT_cifar10.py): lr ÷10 after epochs 60 and 72 (70·0.85 ≈ 60,
    # 85·0.85 ≈ 72), i.e. from 0-based 61 and 73, and λ ×4 together with the second drop, as in the script
    "wrn/GAT": {**WRN, "method": "gat", "hp": {"eps": EPS, "alpha": ALPHA, "lam": 10.0, "mult": 4.0, "mult_epoch": 73},
                "epochs": 85, "batch": 64, "schedule": {"name": "piecewise", "lr": 0.1, "milestones": [61, 73]},
                "ema": (0.9998,), "rows": {"GAT": "model", "GAT-WA": "ema0"},
                "source": "GAT_cifar10.py scaled to the table's 85 epochs by us: lr ÷10 from 61 and 73, λ ×4 at 73"},
    "wrn/NuAT": {**WRN, "method": "nuat", "hp": {"eps": EPS, "alpha": ALPHA, "lam_max": 4.0, "ramp_epochs": 55},
                 "epochs": 55, "batch": 64, "schedule": NUAT2_STEP, "schedule_epochs": 55,
                 "source": "no script: NuAT2_WRN_cifar10.py's cyclic-step schedule and λ 0 → 4 at the table's 55 "
                           "epochs, one attack step"},
    "wrn/NuAT-H": {**WRN, "method": "nuat_h", "hp": {"eps": EPS, "alpha": ALPHA, "lam_max": 4.0, "epochs": 50,
                                                     "target_rate": 0.10},
                   "epochs": 50, "batch": 64, "schedule": NUAT2_STEP, "schedule_epochs": 55,
                   "source": "no script: NuAT2's schedule stretched to 50 epochs; our switching rule with a two-step "
                             "fraction of 0.10 (the table's 50₊₅)"},
    "wrn/NuAT-WA": {**WRN, "method": "nuat_wa", "hp": {"eps": EPS, "alpha": ALPHA, "lam_max": 4.0, "epochs": 50},
                    "epochs": 50, "batch": 64, "schedule": {"name": "cyclic", "max_lr": 0.1, "up": 12.5, "down": 37.5},
                    "ema": (0.9998,), "rows": {"NuAT-WA": "ema0"},
                    "source": "no script: NuAT_WA_cifar10.py's 25/75 cycle and λ 0 → 4 at the table's 50 epochs"},
    "wrn/NuAT-WA-H (25+2)": {**WRN, "method": "nuat_wa_h", "hp": {"eps": EPS, "alpha": ALPHA, "lam_max": 4.0,
                                                                  "epochs": 25, "target_rate": 0.08},
                             "epochs": 25, "batch": 64,
                             "schedule": {"name": "cyclic", "max_lr": 0.1, "up": 6.25, "down": 18.75},
                             "ema": (0.9998,), "rows": {"NuAT-WA-H (25+2)": "ema0"},
                             "source": "no script: NuAT-WA's cycle at 25 epochs; our switching rule at 0.08 (25₊₂)"},
    "wrn/NuAT-WA-H (60+6)": {**WRN, "method": "nuat_wa_h", "hp": {"eps": EPS, "alpha": ALPHA, "lam_max": 4.0,
                                                                  "epochs": 60, "target_rate": 0.10},
                             "epochs": 60, "batch": 64, "schedule": {"name": "cyclic", "max_lr": 0.1, "up": 15,
                                                                     "down": 45},
                             "ema": (0.9998,), "rows": {"NuAT-WA-H (60+6)": "ema0"},
                             "source": "no script: NuAT-WA's cycle at 60 epochs; our switching rule at 0.10 (60₊₆)"},
    "wrn/NuAT2": {**WRN, "method": "nuat2", "hp": {"eps": EPS, "alpha": ALPHA, "lam_max": 4.0, "epochs": 55},
                  "epochs": 55, "batch": 64, "schedule": NUAT2_STEP,
                  "source": "NuAT2_WRN_cifar10.py: 55 epochs, batch 64, lr up 20, down a nominal 20 frozen at 35, ÷10 "
                            "from 41 and 46, λ 0 → 4"},
    "wrn/NuAT2-WA": {**WRN, "method": "nuat2_wa", "hp": {"eps": EPS, "alpha": ALPHA, "lam_max": 4.0, "epochs": 80,
                                                         "attack_tau": 0.99},
                     "epochs": 80, "batch": 64, "schedule": {"name": "cyclic", "max_lr": 0.1, "up": 20, "down": 60},
                     "ema": (0.99, 0.9998), "rows": {"NuAT2-WA": "ema1"},
                     "source": "NuAT2-WA_WRN_cifar10.py: 80 epochs, cycle 20/60, step 1 on the τ = 0.99 average, "
                               "the τ = 0.9998 average reported"},
    "wrn/TRADES": {**WRN, "method": "trades", "hp": {"eps": 0.031, "alpha": 0.007, "steps": 10, "beta": 6.0},
                   "epochs": 110, "batch": 128, "schedule": {"name": "piecewise", "lr": 0.1, "milestones": [100, 105]},
                   "source": "Pang et al.'s Bag of Tricks: 110 epochs, lr 0.1 ÷10 at 100 and 105, wd 5e-4"},
    "wrn/PGD": {**WRN, "method": "pgd_at", "hp": {"eps": EPS, "alpha": 2 / 255, "steps": 10},
                "epochs": 200, "batch": 128, "schedule": {"name": "piecewise", "lr": 0.1, "milestones": [100, 150]},
                "source": "Rice et al.'s PGD-10 WRN-34-10: 200 epochs, lr 0.1 ÷10 at 100 and 150"},
    "wrn/AWP": {**WRN, "method": "awp", "hp": {"eps": EPS, "alpha": 2 / 255, "steps": 10, "beta": 6.0, "gamma": 0.005,
                                               "warmup_epochs": 9},
                "epochs": 200, "batch": 128, "schedule": {"name": "piecewise", "lr": 0.1, "milestones": [99, 149]},
                "source": "trades_AWP/train_trades_cifar.py: 200 epochs, lr ÷10 from its 1-based 100 and 150, β = 6, "
                          "γ = 0.005, warm-up 10 epochs"},
    # ------------------------------------------------------------------ ImageNet-100 (GAT's ImageNet-100 code)
    "imagenet100/Normal": {**IN100, "method": "standard", "hp": {}, "select": "clean", "source": IN100_SOURCE},
    "imagenet100/RFGSM-AT": {**IN100, "method": "rfgsm_at", "hp": {"eps": EPS}, "source": IN100_SOURCE},
    "imagenet100/FBF": {**IN100, "method": "fbf", "hp": {"eps": EPS}, "source": IN100_SOURCE},
    "imagenet100/R-MGM": {**IN100, "method": "rmgm", "hp": {"eps": EPS, "lam": 0.2}, "source": IN100_SOURCE},
    # GAT-ImageNet100.py: λ = 20, ×7 from epoch 90 (set at the start of the epoch, with the second lr drop), the
    # attack's reference softmax from an eval-mode forward, the term on odd iterations
    "imagenet100/GAT": {**IN100, "method": "gat", "hp": {"eps": EPS, "alpha": ALPHA, "lam": 20.0, "mult": 7.0,
                                                         "mult_epoch": 90, "ref_mode": "eval"},
                        "select": "pgd20",
                        "source": IN100_SOURCE + "; GAT-ImageNet100.py: λ = 20 ×7 from epoch 90, eval-mode reference, "
                                                 "selection by PGD-20 (2.5ε/20 steps)"},
    "imagenet100/NuAT": {**IN100, "method": "nuat", "hp": {"eps": EPS, "alpha": ALPHA, "lam_max": 4.5,
                                                           "ramp_epochs": 108}, "source": IN100_SOURCE},
    "imagenet100/NuAT-WA": {**IN100, "method": "nuat_wa", "hp": {"eps": EPS, "alpha": ALPHA, "lam_max": 4.0,
                                                                 "epochs": 120},
                            "ema": (0.9998,), "rows": {"NuAT-WA": "ema0"}, "source": IN100_SOURCE},
    "imagenet100/TRADES": {**IN100, "method": "trades", "hp": {"eps": 0.031, "alpha": 0.007, "steps": 10, "beta": 6.0},
                           "source": IN100_SOURCE},
    "imagenet100/PGD-AT": {**IN100, "method": "pgd_at", "hp": {"eps": EPS, "alpha": 2 / 255, "steps": 10},
                           "source": IN100_SOURCE},
}

# NuAT on MNIST (the mnist/NuAT recipe) with one of the authors' details switched off at a time: variant →
# (registered method, its hyperparameters); None = the mnist/NuAT row itself (reused, not trained again).
M_NUAT = RECIPES["mnist/NuAT"]["hp"]
ABLATIONS = {
    "NuAT (code form)": None,
    "no alternation": ("nuat", {**M_NUAT, "alternate": False}),
    "no λ ramp": ("nuat", {**M_NUAT, "ramp": False}),
    "joint BN (one 2B forward)": ("nuat", {**M_NUAT, "separate_bn": False}),
    "Frobenius instead of nuclear": ("nuat", {**M_NUAT, "norm": "fro"}),
    "textbook (all four)": ("nuat_textbook", {**M_NUAT}),
    "NuAT-H (our switching rule)": ("nuat_h", {"eps": M_EPS, "alpha": M_ALPHA, "lam_max": 4.5, "epochs": 45,
                                               "target_rate": 0.1}),
}

# What each profile changes; everything else comes from RECIPES. ``epochs``: per row key, else per dataset, else the
# recipe's. ``hp``: hyperparameters changed per row. ``pgd_record``: which PGD iterations fill the pgd20/pgd100/
# pgd500 columns (snapshots of one run). ``aa``: (version, attacks, APGD budget (iterations, restarts));
# ``aa_targets``: target classes of APGD-T/FAB-T in a custom run; ``aa_n``: AutoAttack on the first aa_n test images.
# ``wrn_mode``: "cost" measures each WRN recipe's passes and seconds on ``wrn_cost_batches`` batches; "train" trains.
PROFILES = {
    "smoke": {"n_train": {"cifar10": 600, "mnist": 600}, "n_test": {"cifar10": 32, "mnist": 32},
              "holdout": {"cifar10": 5, "mnist": 5},
              "models": {"cifar10": {"width": 8, "blocks": (1, 1, 1, 1)}, "mnist": {"width": 8, "hidden": 64},
                         "wrn": {"depth": 10, "widen": 1}, "imagenet100": {}},
              "epochs": {"cifar10": 1, "mnist": 1}, "max_batches": 4,
              "hp": {"cifar10/PGD-AT": {"steps": 3}, "cifar10/TRADES": {"steps": 3}, "cifar10/AWP": {"steps": 3},
                     "mnist/PGD-AT": {"steps": 3}, "mnist/TRADES": {"steps": 3}, "cifar10/ATF": {"replays": 4}},
              "pgd_record": {"pgd20": 3, "pgd100": 6, "pgd500": 10}, "pgd_record_wrn": {"pgd100": 6},
              "gama_steps": 5, "aa": ("custom", ("apgd-ce",), (10, 1)), "aa_targets": None, "aa_n": None,
              "eval_batch": 32,
              "ablation": ("NuAT (code form)", "textbook (all four)", "NuAT-H (our switching rule)"),
              "wrn_mode": "cost", "wrn_cost_batches": 1, "wrn_cost_batch": 16, "confusion_n": 32,
              "confusion_steps": (1, 10)},
    "quick": {"n_train": {"cifar10": None, "mnist": None}, "n_test": {"cifar10": 1000, "mnist": 1000},
              "holdout": {"cifar10": 100, "mnist": 100},
              "models": {"cifar10": {}, "mnist": {}, "wrn": {}, "imagenet100": {}},
              "epochs": {"cifar10/Normal": 5, "cifar10/FGSM-AT": 5, "cifar10/RFGSM-AT": 5, "cifar10/FBF": 5,
                         "cifar10/R-MGM": 4, "cifar10/GAT": 4, "cifar10/NuAT": 5, "cifar10/NuAT-WA": 5,
                         "cifar10/ATF": 1, "cifar10/PGD-AT": 2, "cifar10/TRADES": 2, "cifar10/AWP": 2,
                         "mnist/Normal": 1, "mnist/RFGSM-AT": 2, "mnist/FBF": 2, "mnist/R-MGM": 2, "mnist/GAT": 2,
                         "mnist/NuAT": 2, "mnist/NuAT-WA": 2, "mnist/TRADES": 1, "mnist/PGD-AT": 1},
              "max_batches": None, "hp": {},
              "pgd_record": {"pgd20": 20, "pgd100": 100, "pgd500": 500}, "pgd_record_wrn": {"pgd100": 100},
              "gama_steps": 100, "aa": ("standard", None, None), "aa_targets": None, "aa_n": None, "eval_batch": 1000,
              "ablation": tuple(ABLATIONS), "wrn_mode": "cost", "wrn_cost_batches": 3, "wrn_cost_batch": None, "confusion_n": 1000,
              "confusion_steps": (1, 10)},
    # two CPU cores, each notebook ≤ 45 min (planned from the seconds per pass measured on the project's CPUs): the
    # paper's ResNet-18 at width 16 (bf16 + channels_last where the CPU computes bf16 natively), 2–8 epochs by row,
    # PGD-AT with its 10 steps (the cost claim needs them), TRADES and AWP with 5; MNIST on the first 20 000 training
    # images; PGD-50 for the PGD-500 column, GAMA-PGD-50, AutoAttack's two APGD attacks (APGD-T on 3 target classes)
    # on the first 500 test images
    "cpu": {"n_train": {"cifar10": None, "mnist": 20_000}, "n_test": {"cifar10": 1000, "mnist": 1000},
            "holdout": {"cifar10": 100, "mnist": 100},
            "models": {"cifar10": {"width": 16}, "mnist": {}, "wrn": {}, "imagenet100": {}},
            "epochs": {"cifar10/Normal": 8, "cifar10/FGSM-AT": 4, "cifar10/RFGSM-AT": 4, "cifar10/FBF": 4,
                       "cifar10/R-MGM": 3, "cifar10/GAT": 3, "cifar10/NuAT": 4, "cifar10/NuAT-WA": 4,
                       "cifar10/ATF": 2, "cifar10/PGD-AT": 2, "cifar10/TRADES": 2, "cifar10/AWP": 2,
                       "mnist": 2, "mnist/Normal": 1, "mnist/PGD-AT": 1, "mnist/TRADES": 1},
            "max_batches": None,
            "hp": {"cifar10/TRADES": {"steps": 5}, "cifar10/AWP": {"steps": 5},
                   "mnist/PGD-AT": {"steps": 10, "alpha": 0.04}, "mnist/TRADES": {"steps": 10, "alpha": 0.04}},
            "pgd_record": {"pgd20": 20, "pgd500": 50}, "pgd_record_wrn": {"pgd100": 50},
            "gama_steps": 50, "aa": ("custom", ("apgd-ce", "apgd-t"), (100, 1)), "aa_targets": 3, "aa_n": 500,
            "eval_batch": 500,
            "ablation": ("NuAT (code form)", "no alternation", "Frobenius instead of nuclear", "textbook (all four)"),
            "wrn_mode": "cost", "wrn_cost_batches": 1, "wrn_cost_batch": 16, "confusion_n": 1000,
            "confusion_steps": (1, 10)},
    "paper": {"n_train": {"cifar10": None, "mnist": None}, "n_test": {"cifar10": 1000, "mnist": 10000},
              "holdout": {"cifar10": 100, "mnist": 100},
              "models": {"cifar10": {}, "mnist": {}, "wrn": {}, "imagenet100": {}},
              "epochs": {}, "max_batches": None, "hp": {},
              "pgd_record": {"pgd20": 20, "pgd100": 100, "pgd500": 500}, "pgd_record_wrn": {"pgd100": 100},
              "gama_steps": 100, "aa": ("standard", None, None), "aa_targets": None, "aa_n": None, "eval_batch": 1000,
              "ablation": tuple(ABLATIONS), "wrn_mode": "train", "wrn_cost_batches": 3, "wrn_cost_batch": None,
              "confusion_n": 1000, "confusion_steps": (1, 10)},
}

# The planning rule (one H200, bf16; rough, to be replaced by measured seconds): seconds per network pass N of one
# training image, by (model, batch size) — 3 s per pass per CIFAR-10 epoch of 49 000 images at batch 128 (a
# standard 2N epoch then takes 6 s; the project's rule is 8–15 s per standard epoch with data loading), ×1.3 at
# batch 64; 0.8 s per pass per MNIST epoch. Evaluation of one model on 1 000 images: 90 s (CIFAR-10; 30 s for an
# undefended one, which AutoAttack breaks at once), 20 s (MNIST), 10 s for an ablation variant (PGD and GAMA only).
SECONDS_PER_PASS = {("resnet18", 128): 3.0 / 49_000, ("resnet18", 64): 1.3 * 3.0 / 49_000,
                    ("mnist_cnn", 64): 0.8 / 59_000}
EVAL_SECONDS = {"cifar10": 90.0, "cifar10/undefended": 30.0, "mnist": 20.0, "ablation": 10.0}
# The same rule for the cpu profile (two cores, width-16 ResNet-18, bf16 + channels_last), from this project's
# measurements: a standard 2N epoch of 49 000 images at batch 128 takes ≈ 50 s (0.5 ms per pass per image; training
# attacks run in fp32 and the hold-out selection adds ≈ 10 %: 0.6 ms), ×1.3 at batch 64; the MNIST CNN ≈ 0.6 ms.
# Evaluation of one CIFAR-10 row: PGD-50 and GAMA-PGD-50 on 1 000 images (≈ 2 s per step per 1 000 images, fp32)
# plus APGD-CE + APGD-T(3) on 500 (≈ 4 min on a robust model).
CPU_SECONDS_PER_PASS = {("resnet18", 128): 6e-4, ("resnet18", 64): 1.3 * 6e-4, ("mnist_cnn", 64): 6e-4}
CPU_EVAL_SECONDS = {"cifar10": 420.0, "cifar10/undefended": 120.0, "mnist": 120.0, "ablation": 60.0}
UNDEFENDED = ("Normal", "FGSM-AT")

NOTES = {
    "smoke": "smoke profile: tiny networks (ResNet-18 of width 8 with one block per stage, MNIST CNN of width 8), 600 "
             "training images, 4 batches per epoch, one epoch per run, 32 test images, PGD-3/6/10 in the "
             "pgd20/pgd100/pgd500 columns, GAMA-PGD-5, 3 attack steps in PGD-AT/TRADES/AWP, AutoAttack reduced to "
             "APGD-CE (10 iterations, one restart), Free-AT with 4 replays. Its numbers only show that the pipeline "
             "runs.",
    "cpu": "cpu profile (two CPU cores): full CIFAR-10 training set, NuAT's ResNet-18 at width 16, 2–8 epochs per row "
           "(table below: run epochs vs the recipe's) with each recipe's learning-rate and λ curves compressed in time; "
           "PGD-AT keeps its 10 attack steps, TRADES and AWP train with 5; MNIST on the first 20 000 training images "
           "(PGD-AT and TRADES: 10 steps of 0.04). Attacks: the pgd500 column holds PGD-50 (a snapshot of the PGD-20 "
           "run continued to 50 steps), gama100 holds GAMA-PGD-50, and aa holds AutoAttack's APGD-CE + APGD-T (3 "
           "target classes, 100 iterations, one restart) on the first 500 test images — FAB-T and Square, which "
           "rarely change a number on a model without gradient masking, are left out for time. CPU scale: compare the "
           "differences between rows, not the absolute numbers.",
    "quick": "quick profile: full training sets, paper architectures, shortened schedules (table below: run epochs vs "
             "the recipe's epochs). Each shortened run follows its recipe's learning-rate and λ curves compressed in "
             "time, and its weight averages use the recipe's horizon scaled to the run. Multi-step methods get 1–2 "
             "epochs, so they are far from converged; WRN-34-10 rows are not trained (cost per sample only); "
             "ImageNet-100 only with the data and in the paper profile.",
    "all": ["CIFAR-10 accuracies are measured on the first 1 000 test images (all that is available losslessly); the "
            "paper used all 10 000, so each of our numbers carries a ±3-point 95 % interval.",
            "AutoAttack here is today's 'standard' version ('AA (v2)'); the ResNet-18 and cross-dataset tables of the "
            "paper used the original suite ('AA (v1)').",
            "All ResNet-18 rows use NuAT's ResNet-18 block (an extra ReLU before the residual addition, "
            "val-iisc/NuAT issue #4), so every row of table 1 shares one architecture."],
}
