"""Exceptions whose message is meant for the user, one line, naming the culprit.

The ``basicsr`` command prints these as ``basicsr: error: <message>`` without a
traceback; anything else is a bug and keeps its traceback.
"""


class PluginError(ValueError):
    """Base class of the plugin's user-facing errors.

    ``exit_code`` is what the ``basicsr`` command exits with: 2 for a refusal
    before any work (nothing written), 1 for a failure during the work
    (:class:`WorkFailedError`).  ``basicsr train``/``test`` turn any error raised
    after the run's folder was taken into 1 (see ``imdn_plugin.cli``).
    """

    exit_code: int = 2


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


class WorkFailedError(PluginError):
    """The work had started when this went wrong (a disk filled, an export failed): exit status 1."""

    exit_code = 1
