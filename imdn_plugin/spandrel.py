"""IMDN, IMDN_AS, IMDN_RTC and IMDN_RTE for spandrel (chaiNNer, traiNNer-redux, …).

    import spandrel
    import imdn_plugin.spandrel

    imdn_plugin.spandrel.install()
    model = spandrel.ModelLoader().load_from_file("IMDN_x4.pth")  # or .safetensors
    sr = model(image)  # 1×3×H×W in [0, 1] -> 1×3×4H×4W

:func:`install` adds four architectures to spandrel's ``MAIN_REGISTRY`` (or a
registry you pass). They recognise a state dict from its keys alone and read
width, blocks, channels and scale with :func:`imdn_plugin.archs.describe`;
the networks are this package's :class:`~imdn_plugin.archs.IMDN`,
:class:`~imdn_plugin.archs.IMDN_AS`, :class:`~imdn_plugin.archs.IMDN_RTC` and
:class:`~imdn_plugin.archs.IMDN_RTE`. Needs the extra: ``pip install "imdn-plugin[spandrel]"``.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

try:  # absolute imports: this module's own name does not shadow the real package
    from spandrel import (
        MAIN_REGISTRY,
        Architecture,
        ArchRegistry,
        ArchSupport,
        ImageModelDescriptor,
        ModelTiling,
        SizeRequirements,
    )
    from spandrel.util import KeyCondition
except ModuleNotFoundError as _exc:
    if _exc.name not in ("spandrel", "spandrel.util"):
        raise  # spandrel is there but one of its own dependencies is not: keep that message
    raise ImportError('imdn_plugin.spandrel needs spandrel: pip install "imdn-plugin[spandrel]"') from None

from .archs import describe
from .checkpoint import build_checked, check_tensors, extract_state_dict, load_into, split_param_groups
from .errors import CheckpointError

__all__ = ["ARCHITECTURES", "CCA_STATS_HALF_SAFE", "IMDNArch", "IMDN_ASArch", "IMDN_RTCArch", "IMDN_RTEArch", "install"]

logger = logging.getLogger(__name__)

#: Whether fp16/bf16 inference is offered (``supports_half``/``supports_bfloat16``):
#: every :class:`~imdn_plugin.archs.imdn_arch.CCALayer` takes its mean and variance
#: over H×W in float32 whatever the working dtype, so a half model keeps the range
#: and precision of its statistics on any image size (tests: tests/test_spandrel.py,
#: tests/archs/test_half_precision.py; figures: docs/precision-and-outputs.md).
CCA_STATS_HALF_SAFE = True

#: A BasicSR ``save_network_file`` .safetensors with EMA weights holds ``params``
#: unprefixed and the EMA under this prefix (see :func:`imdn_plugin.checkpoint.save_network_file`).
_EMA_GROUP = "params_ema"

_BLOCK_KEYS = ("IMDB1.c1.weight", "IMDB1.cca.conv_du.0.weight", "c.0.weight", "LR_conv.weight", "upsampler.0.weight")


def _network_state(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The network's tensors: ``module.`` stripped; of a flattened params/params_ema file, the EMA.

    Prefers ``params_ema`` as spandrel itself does for BasicSR ``.pth`` files,
    so the same training run loads the same weights from either format.
    """
    if any(k.startswith(_EMA_GROUP + ".") for k in state_dict):
        state_dict = split_param_groups(state_dict, ("params", _EMA_GROUP))
    return extract_state_dict(state_dict, param_key=_EMA_GROUP, source="spandrel state dict")


def _detect(state_dict: Mapping[str, Any], keys: KeyCondition, arch_type: str) -> bool:
    """``keys`` present (after :func:`_network_state`) and :func:`describe` agrees on the type."""
    try:
        state = _network_state(state_dict)
    except CheckpointError:  # not a dict of tensors
        return False
    if not keys(state):
        return False
    spec = describe(state)
    return spec is not None and spec.type == arch_type and spec.upscale >= 1


class _IMDNFamilyArch(Architecture[Any]):
    """Detection and loading shared by the networks."""

    arch_type: str

    def __init__(self, *required_keys: str) -> None:
        keys = KeyCondition.has_all(*required_keys)
        super().__init__(id=self.arch_type, detect=lambda state: _detect(state, keys, self.arch_type))

    def load(self, state_dict: dict[str, Any]) -> ImageModelDescriptor[Any]:
        state = _network_state(state_dict)
        spec = describe(state)
        if spec is None or spec.type != self.arch_type:
            raise CheckpointError(f"spandrel state dict: not an {self.arch_type} state dict ({spec or 'unrecognised'})")
        source = f"spandrel {self.arch_type} state dict"
        check_tensors(state, source)  # dtypes and strides, then the shapes on a meta network: before allocating
        model = build_checked(spec, state, source)
        load_into(model, state, strict=True, source=source)
        return ImageModelDescriptor(
            model,
            state,
            architecture=self,
            # spandrel's convention: same-size output is "Restoration"; IMDN_AS refines an
            # image already upscaled (e.g. bicubic) to the target size.
            purpose="SR" if spec.scale > 1 else "Restoration",
            tags=[f"{spec.num_feat}nf", f"{spec.num_block}nb"],
            supports_half=CCA_STATS_HALF_SAFE,
            supports_bfloat16=CCA_STATS_HALF_SAFE,
            scale=spec.scale,
            input_channels=spec.num_in_ch,
            output_channels=spec.num_out_ch,
            size_requirements=SizeRequirements(multiple_of=model.size_multiple),
            # Every CCA uses whole-image statistics: independent tiles drift from a
            # whole-image pass (imdn_plugin's own tiling gathers global statistics).
            tiling=ModelTiling.DISCOURAGED,
        )


class IMDNArch(_IMDNFamilyArch):
    """IMDN (×2/×3/×4, any integer scale): ``fea_conv.weight`` plus the IMDB keys."""

    arch_type = "IMDN"

    def __init__(self) -> None:
        super().__init__("fea_conv.weight", *_BLOCK_KEYS)


class IMDN_ASArch(_IMDNFamilyArch):
    """IMDN_AS (size-preserving, two stride-2 convs in front): ``fea_conv.0.weight``."""

    arch_type = "IMDN_AS"

    def __init__(self) -> None:
        super().__init__("fea_conv.0.weight", *_BLOCK_KEYS)


class IMDN_RTCArch(_IMDNFamilyArch):
    """IMDN_RTC (authors' AI in RTC 2019 release): ``model.0``, ``model.1.sub.N.c1..c5``, ``model.2``."""

    arch_type = "IMDN_RTC"

    def __init__(self) -> None:
        super().__init__("model.0.weight", "model.1.sub.0.c1.weight", "model.1.sub.0.c5.weight", "model.2.weight")


class IMDN_RTEArch(_IMDNFamilyArch):
    """IMDN_RTE (authors' AI in RTE 2020 release): ``fea_conv.0/2``, ``block1.c1..c7``, ``upsampler.0``."""

    arch_type = "IMDN_RTE"

    def __init__(self) -> None:
        super().__init__(
            "fea_conv.0.weight", "fea_conv.2.weight", "block1.c1.weight", "block1.c7.weight", "LR_conv.weight",
            "upsampler.0.weight",
        )  # fmt: skip


#: The architectures :func:`install` registers.
ARCHITECTURES: tuple[_IMDNFamilyArch, ...] = (IMDNArch(), IMDN_ASArch(), IMDN_RTCArch(), IMDN_RTEArch())


def install(registry: ArchRegistry | None = None) -> None:
    """Register IMDN, IMDN_AS, IMDN_RTC and IMDN_RTE with spandrel's ``MAIN_REGISTRY`` (or ``registry``); idempotent.

    An architecture id that the registry already holds is left as it is (logged
    when it is not this module's).
    """
    registry = MAIN_REGISTRY if registry is None else registry
    for arch in ARCHITECTURES:
        held = registry.get(arch.id)
        if held is not None and held.architecture is not arch:
            logger.warning("spandrel registry already has an architecture %r (%s); keeping it", arch.id, type(held.architecture).__name__)
    added = registry.add(*(ArchSupport.from_architecture(a) for a in ARCHITECTURES), ignore_duplicates=True)
    if added:
        logger.debug("registered with spandrel: %s", ", ".join(a.architecture.id for a in added))
