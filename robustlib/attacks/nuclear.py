"""Nuclear-norm and Frobenius-norm attacks of the NuAT chapter. Filled in by the NuAT chapter."""
