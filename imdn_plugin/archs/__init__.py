"""Network definitions (pure PyTorch) and their detection from state dicts."""
from .detect import NETWORKS, ArchSpec, build, describe, summarize
from .imdn_arch import IMDB, IMDN, IMDN_AS, CCALayer
from .imdn_arch import _IMDNBody as IMDNBase
from .imdn_rt_arch import IMDN_RTC, IMDN_RTE, RTCBlock, RTEBlock

__all__ = [
    "NETWORKS", "ArchSpec", "CCALayer", "IMDB", "IMDN", "IMDNBase", "IMDN_AS", "IMDN_RTC", "IMDN_RTE",
    "RTCBlock", "RTEBlock", "build", "describe", "summarize",
]  # fmt: skip
