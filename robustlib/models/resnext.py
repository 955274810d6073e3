"""ResNeXt34-2x32 of Finlay & Oberman (tulip) and its smooth-ReLU variant. Filled in by the gradient-regularisation chapter."""
