"""Exceptions whose message is meant for the user, one line, naming the culprit.

The ``basicsr`` command prints these as ``basicsr: error: <message>`` without a
traceback; anything else is a bug and keeps its traceback.
"""


class PluginError(ValueError):
    """Base class of the plugin's user-facing errors."""


class ConfigError(PluginError):
    """An option file key or value is wrong (unknown key, impossible value, missing path)."""


class CheckpointError(PluginError):
    """A checkpoint file cannot be used (unreadable, unsafe, or for another network)."""


class ImageReadError(PluginError):
    """An image file cannot be read or decoded."""


class InferenceError(PluginError):
    """Running the network on one image gave no usable result (e.g. non-finite output)."""


class NonFiniteError(InferenceError):
    """A network output (or another tensor that must be finite) holds NaN or Inf."""


class ExperimentInUseError(PluginError):
    """An experiment or results folder is held by another running ``basicsr`` process."""
