"""Baselines of the NuAT tables (GAT, TRADES, AWP, Free-AT, ...). Filled in by the NuAT chapter."""
