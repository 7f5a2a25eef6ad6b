"""Network definitions (pure PyTorch)."""
from .imdn_arch import IMDB, IMDN, IMDN_AS, CCALayer

__all__ = ["CCALayer", "IMDB", "IMDN", "IMDN_AS"]
