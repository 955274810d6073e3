"""AdvProp: auxiliary BatchNorm for adversarial examples (Xie et al., CVPR 2020). Filled in by the AdvProp chapter."""
