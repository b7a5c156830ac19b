from .linear_head import GlobalAveragePool, LinearHead

__all__ = ["GlobalAveragePool", "LinearHead"]
