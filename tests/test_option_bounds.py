"""Every numeric bound of the option checks: at the bound, one below, one above.

Through the same ``validate`` as tests/options/test_schema.py (the real start-up checks with
BasicSR's registries)."""
from __future__ import annotations

from typing import Any

import pytest

from imdn_plugin.errors import ConfigError
from tests.options.test_schema import BASE, TRAIN, _set, validate


def _check(base: dict, edit, ok: bool, message: str) -> None:
    if ok:
        validate(base, edit)
    else:
        with pytest.raises(ConfigError) as err:
            validate(base, edit)
        text = str(err.value)
        # the schema's wording may change; the key path and the refused value may not
        key, _, value = message.partition("|")
        assert key in text and value in text and "\n" not in text, text


@pytest.mark.parametrize("upscale, ok", [(1, False), (2, True), (3, True), (0, False), (-2, False), (2.0, False), (True, False)])
def test_upscale_bound(upscale: Any, ok: bool) -> None:
    """IMDN's upscale is an integer >= 2 (x1 has no pixel shuffle to learn): refused with the options,
    before the constructor."""
    edit = lambda o: (o["network_g"].update(upscale=upscale), o.update(scale=upscale if ok else 2))
    _check(BASE, edit, ok, f"network_g:upscale|{str(upscale).lower() if isinstance(upscale, bool) else upscale}")


@pytest.mark.parametrize("value, ok", [(0, False), (1, True), (2, True), (-1, False)])
@pytest.mark.parametrize("key", ["num_feat", "num_block", "num_in_ch", "num_out_ch"])
def test_positive_network_sizes(key: str, value: int, ok: bool) -> None:
    net = {"type": "IMDN_AS", "num_feat": 16, "num_block": 1, key: 16 * value if key == "num_feat" else value}
    _check({**BASE, "scale": 1}, _set("network_g", net), ok,
           f"network_g:{key}|{net[key]}")  # fmt: skip


@pytest.mark.parametrize("num_gpu, ok", [(-1, False), (0, True), (1, False)])
def test_num_gpu_bound_on_a_machine_without_gpus(monkeypatch, num_gpu: int, ok: bool) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    message = f"num_gpu|{num_gpu}"
    _check(BASE, _set("num_gpu", num_gpu), ok, message)


@pytest.mark.parametrize("batch, ok", [(0, False), (1, True), (2, True)])
def test_batch_size_bound(batch: int, ok: bool) -> None:
    _check(TRAIN, _set("datasets", "train", "batch_size_per_gpu", batch), ok,
           f"datasets:train:batch_size_per_gpu|{batch}")  # fmt: skip


@pytest.mark.parametrize("workers, ok", [(-1, False), (0, True), (1, True)])
def test_worker_count_bound(workers: int, ok: bool) -> None:
    _check(TRAIN, _set("datasets", "train", "num_worker_per_gpu", workers), ok,
           f"datasets:train:num_worker_per_gpu|{workers}")  # fmt: skip


@pytest.mark.parametrize("scale, ok", [(0, False), (-1, False), (4, True)])
def test_scale_must_be_positive(scale: int, ok: bool) -> None:
    _check(BASE, _set("scale", scale), ok, f"scale|{scale}")
