"""``IMDNModel``: BasicSR's ``SRModel`` with the plugin's inference and loading.

Training is ``SRModel``'s.  What changes, each in a narrow override:

* ``test``: images go through :func:`imdn_plugin.inference.build_predictor`
  (whole image, the paper's ACS for IMDN_AS, or memory-bounded tiles, chosen
  by the ``inference:`` block of the option file).
* ``load_network``: any accepted checkpoint form (``params``, ``params_ema``,
  bare state dict, ``module.`` prefixes), ``weights_only=True``, and an error
  that names the file's network when it does not fit ``network_g``.
* ``optimize_parameters``: options ``train: {channels_last, amp}`` and a stop on
  a non-finite loss before the weights are updated.
* ``model_to_device``: ``DistributedDataParallel`` also on CPU (gloo).
* ``save_network`` / ``save_training_state``: atomic writes (networks also as
  ``.safetensors`` with ``logger: {save_safetensors: true}``); the training state
  also carries the RNG states so a resumed run continues the same streams.
* ``nondist_validation``: with a TensorBoard logger (``logger: use_tb_logger``),
  the first image of each validation set is also written as a bicubic | output |
  ground truth crop (:func:`.progress.comparison_image`, tag
  ``val/<dataset name>/bicubic_output_gt``).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import torch
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from torch.nn.parallel import DataParallel, DistributedDataParallel

from ..checkpoint import (
    atomic_torch_save,
    load_into,
    load_state_dict,
    save_network_file,
)
from ..errors import PluginError
from ..inference.predictor import build_predictor
from ..machine import autocast_dtype
from ..options import options_of
from .exact_resume import rng_state, set_rng_state
from .progress import comparison_image, sample_tag
from .registries import BASICSR


class IMDNModel(SRModel):
    """SR model for IMDN / IMDN_AS (paper §3) with ACS (§3.3) and tiled testing."""

    def __init__(self, opt: dict) -> None:
        # The record the command parsed before any work (a dict built by hand: parsed here, once).
        self.options = options_of(opt, BASICSR)
        self.inference_opt = self.options.inference
        self._predictor = None
        self._tb_sample: tuple[Any, str, Any] | None = None  # (tb_logger, tag, step) while armed
        train = self.options.train
        self.channels_last = train.channels_last if train is not None else False
        amp = train.amp if train is not None else None
        self.amp_dtype = autocast_dtype(amp)
        self.save_safetensors = self.options.save_safetensors
        super().__init__(opt)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")

    # ------------------------------------------------------------------ inference
    def _inference_net(self) -> torch.nn.Module:
        net = self.net_g_ema if hasattr(self, "net_g_ema") else self.net_g
        return self.get_bare_model(net)

    def test(self) -> None:
        net = self._inference_net()
        was_training = net.training
        if self._predictor is None:
            self._predictor = build_predictor(net, self.inference_opt)
            said = f"inference path: {getattr(self._predictor, 'path', '?')}"
            if said != getattr(self, "_said_path", None):  # once per run, in BasicSR's log
                get_root_logger().info(said)
                self._said_path = said
        try:
            self.output = self._predictor(self.lq)
        finally:
            net.train(was_training)
        if self._tb_sample is not None:
            tb_logger, tag, step = self._tb_sample
            self._tb_sample = None  # the first image of the validation set only
            tb_logger.add_image(tag, comparison_image(self.lq, self.output, getattr(self, "gt", None)), step)

    def nondist_validation(self, dataloader: Any, current_iter: Any, tb_logger: Any, save_img: bool) -> None:
        """``SRModel``'s validation; with a TensorBoard logger, the first image's
        bicubic | output | ground truth crop also goes there (``test`` writes it)."""
        if tb_logger is not None and isinstance(current_iter, int):
            self._tb_sample = (tb_logger, sample_tag(dataloader.dataset.opt["name"]), current_iter)
        try:
            super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            self._tb_sample = None

    def optimize_parameters(self, current_iter: int) -> None:
        """``SRModel``'s step, plus channels_last, autocast (bf16/fp16 with a grad scaler),
        and a non-finite loss check made *before* the weights are touched."""
        self.optimizer_g.zero_grad(set_to_none=True)
        lq = self.lq.contiguous(memory_format=torch.channels_last) if self.channels_last else self.lq
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            self.output = self.net_g(lq)
        output = self.output.float()
        losses: OrderedDict[str, torch.Tensor] = OrderedDict()
        if self.cri_pix:
            losses["l_pix"] = self.cri_pix(output, self.gt)
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(output, self.gt)
            for name, value in (("l_percep", l_percep), ("l_style", l_style)):
                if value is not None:
                    losses[name] = value
        total = sum(losses.values())
        if not torch.isfinite(total):
            values = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
            raise PluginError(
                f"non-finite training loss {values} at iteration {current_iter}; stopped before updating the "
                "weights (the last saved checkpoint is intact; lower the learning rate or check the data)"
            )
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer_g)
        self.scaler.update()
        self.log_dict = self.reduce_loss_dict(losses)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
        self._predictor = None  # weights changed: rebuild before the next test

    def model_to_device(self, net: torch.nn.Module) -> torch.nn.Module:
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        return self._wrap_parallel(net.to(self.device))

    # ------------------------------------------------------------------ loading
    def load_network(self, net, load_path: str, strict: bool = True, param_key: str | None = "params") -> None:
        net = self.get_bare_model(net)
        state = load_state_dict(load_path, param_key)
        load_into(net, state, strict=strict, source=load_path)
        get_root_logger().info(f"Loading {type(net).__name__} model from {load_path} ({len(state)} tensors).")
        self._predictor = None

    def _wrap_parallel(self, net: torch.nn.Module) -> torch.nn.Module:
        if self.opt["dist"]:
            device_ids = [torch.cuda.current_device()] if self.device.type == "cuda" else None
            return DistributedDataParallel(
                net, device_ids=device_ids, find_unused_parameters=self.opt.get("find_unused_parameters", False)
            )
        if self.opt["num_gpu"] > 1:
            return DataParallel(net)
        return net

    # ------------------------------------------------------------------ saving
    @master_only
    def save_network(self, net, net_label: str, current_iter: int, param_key: Any = "params") -> None:
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        if len(nets) != len(keys):
            raise ValueError("save_network: one param_key per network is needed")
        save = {k: {n: t.detach().cpu() for n, t in self.get_bare_model(m).state_dict().items()} for m, k in zip(nets, keys, strict=False)}
        name = f"{net_label}_{'latest' if current_iter == -1 else current_iter}.pth"
        path = os.path.join(self.opt["path"]["models"], name)
        atomic_torch_save(save, path)  # the .pth stays: BasicSR's resume reads it
        if self.save_safetensors:  # for spandrel / traiNNer-redux style tools
            save_network_file(save, os.path.splitext(path)[0] + ".safetensors", overwrite=True)

    @master_only
    def save_training_state(self, epoch: int, current_iter: int) -> None:
        if current_iter == -1:
            return
        state = {
            "epoch": epoch,
            "iter": current_iter,
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "rng": rng_state(),
        }
        atomic_torch_save(state, os.path.join(self.opt["path"]["training_states"], f"{current_iter}.state"))

    def resume_training(self, resume_state: dict) -> None:
        super().resume_training(resume_state)
        if "rng" in resume_state:
            set_rng_state(resume_state["rng"])

