"""ROA, the rectangular occlusion attack (Wu et al., ICLR 2020; Lo & Patel). Filled in by the ABNN chapter."""
