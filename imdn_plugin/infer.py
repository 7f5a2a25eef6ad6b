"""Old home of ``basicsr infer`` and ``Upscaler``; see :mod:`imdn_plugin.cli.infer` and
:mod:`imdn_plugin.upscaler`."""
from .cli.infer import build_parser, list_inputs, main, plan_outputs, process  # noqa: F401
from .upscaler import Upscaler  # noqa: F401
