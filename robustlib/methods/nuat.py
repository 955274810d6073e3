"""NuAT: nuclear-norm adversarial training (Sriramanan et al., NeurIPS 2021). Filled in by the NuAT chapter."""
