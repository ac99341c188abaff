"""Estimators: real models behind small interfaces, their oracles, and optimisation-based fits."""
