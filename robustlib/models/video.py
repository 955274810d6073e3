"""3D (video) ResNets for ABNN's UCF-101 experiment. Filled in by the ABNN chapter."""
