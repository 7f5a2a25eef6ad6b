"""build_predictor: option problems surface as one-line ConfigErrors."""
from __future__ import annotations

import pytest

from imdn_plugin.archs import IMDN
from imdn_plugin.errors import ConfigError
from imdn_plugin.inference import InferenceOptions, build_predictor


def test_fp16_on_cpu_is_an_option_error() -> None:
    with pytest.raises(ConfigError, match="^inference: .*fp16"):
        build_predictor(IMDN(num_feat=16, num_block=1, upscale=2), InferenceOptions(precision="fp16"))
