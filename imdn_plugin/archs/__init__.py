"""Network definitions (pure PyTorch)."""
from .imdn_arch import IMDB, IMDN, IMDN_AS, CCALayer
from .imdn_arch import _IMDNBody as IMDNBase

__all__ = ["CCALayer", "IMDB", "IMDN", "IMDNBase", "IMDN_AS"]
