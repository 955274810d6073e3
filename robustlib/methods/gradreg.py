"""Finite-difference input-gradient regularisation (Finlay & Oberman, 2019). Filled in by its chapter."""
