"""ABNN: adaptive batch-normalisation networks (Lo & Patel, AVSS 2024). Filled in by the ABNN chapter."""
