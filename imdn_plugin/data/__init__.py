"""Datasets and data helpers that talk to BasicSR (import after ``imdn_plugin``)."""
from .anyscale_dataset import AnyScalePairedDataset

__all__ = ["AnyScalePairedDataset"]
