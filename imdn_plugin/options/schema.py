"""The option schema: every key of a BasicSR option file the pipelines or this plugin read.

:func:`parse` turns the option dict (as read, ``--force_yml`` applied, the
command's keys set) into one frozen :class:`Options` record, once, before any
work: unknown keys are refused with a "did you mean", every value is checked
against its rule (:mod:`.fields`), and the checks between keys (``gt_size``
against ``scale``, ``crop_border`` against ``gt_size``, wandb against
TensorBoard, fp16 against the device, ...) run.  Each refusal is one
:class:`~.fields.OptionError` line naming the key path, the value and what is
allowed.  BasicSR's pipelines keep receiving the plain dict; the plugin's
model, predictor and runtimes receive the records.

Types named in the file (``network_g``, ``pixel_opt``, metrics, datasets,
the model) are looked up in BasicSR's registries through a :class:`Registry`
given by the caller (:mod:`imdn_plugin.integration`); their keys are checked
against the constructor's parameters.  Files on disk are :mod:`.files`'s job.
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from ..machine import TRAIN_AMP
from .fields import (
    FILE,
    FOLDER,
    PATH,
    Bool,
    Check,
    Choice,
    Int,
    ListOf,
    Maybe,
    Num,
    OptionError,
    Rule,
    Text,
    is_int,
    is_number,
    join,
    mapping,
    rule_from_default,
    show,
    suggest,
    unknown_key,
)
from .inference import InferenceOptions

#: Longest experiment ``name`` in UTF-8 bytes: BasicSR adds up to 28 characters to it in
#: file names (``train_<name>_<time>.log``, ``<name>_archived_<time>_<n>``) and a
#: file system allows 255.
MAX_NAME_BYTES = 200
MAX_ITER = 10**9
MAX_SCALE = 16


class Registry(Protocol):
    """BasicSR's registries: ``names("ARCH")`` and ``get("ARCH", "IMDN")`` (KeyError if absent)."""

    def names(self, kind: str) -> Collection[str]: ...

    def get(self, kind: str, name: str) -> Any: ...


# ---------------------------------------------------------------------------- records
def _f(rule: Rule, default: Any = None, required: bool = False) -> Any:
    return field(default=default, metadata={"rule": rule, "required": required})


def build(cls: type, block: Any, where: str, complete: bool = True) -> Any:
    """``cls`` (a record) from ``block``: unknown keys refused, each value checked by its field's rule."""
    block = mapping(block, where)
    rules = {f.name: f for f in fields(cls) if "rule" in f.metadata}
    for key in block:
        if key not in rules:
            raise unknown_key(where, key, list(rules))
    values = {}
    for name, f in rules.items():
        if name in block:
            values[name] = f.metadata["rule"](block[name], join(where, name))
        elif f.metadata["required"] and complete:
            raise OptionError(join(where, name), message=f"{where}: missing key '{name}' ({f.metadata['rule'].need})")
    return cls(**values)


class Block(Rule):
    """A nested record."""

    def __init__(self, cls: type) -> None:
        self.cls, self.need = cls, "a mapping of options (key: value lines)"

    def __call__(self, value: Any, key: str) -> Any:
        return build(self.cls, value, key, complete=_kinds().complete)


@dataclass(frozen=True)
class Component:
    """A block naming a class or function (``type``) and its arguments: ``network_g``, ``pixel_opt``, a metric."""

    type: str
    args: dict = field(default_factory=dict)


#: Rules for arguments known by name, in any component (else the default value's type decides).
ARG_RULES: dict[str, Rule] = {
    # networks
    "num_in_ch": Int(1, 64), "num_out_ch": Int(1, 64), "num_feat": Int(1, 1024), "num_block": Int(1, 64),
    "upscale": Int(2, MAX_SCALE),
    # optimizers (torch.optim.Adam) and schedulers (basicsr.models.lr_scheduler)
    "lr": Num(0, 10, lo_open=True), "betas": ListOf(Num(0, 1, hi_open=True), length=2), "eps": Num(0, 1, lo_open=True),
    "weight_decay": Num(0, 10), "amsgrad": Bool(),
    "milestones": ListOf(Int(1, MAX_ITER, whole=True)), "gamma": Num(0, 10, lo_open=True),
    "restarts": ListOf(Int(0, MAX_ITER, whole=True)), "restart_weights": ListOf(Num(0, 10)),
    "periods": ListOf(Int(1, MAX_ITER, whole=True), min_len=1), "eta_min": Num(0, 10),
    # losses
    "loss_weight": Num(0, 1_000_000), "reduction": Choice("none", "mean", "sum"),
    # metrics
    "crop_border": Int(0, 4096), "input_order": Choice("HWC", "CHW"), "test_y_channel": Bool(),
    "better": Choice("higher", "lower"), "convert_to": Choice("y", "gray"),
}  # fmt: skip
_NOT_ARGS = {"self", "optimizer", "params", "img", "img2", "last_epoch"}


class ComponentRule(Rule):
    """``type`` looked up in ``registry`` (kind ``kind``), the other keys checked against its signature.

    ``strict=False``: a callable taking ``**kwargs`` takes any further key (another
    package's network); ``extra`` are keys BasicSR itself reads besides the arguments.
    """

    def __init__(self, kind: str, what: str, get: Callable[[], _Kinds], strict: bool = False,
                 extra: dict[str, Rule] | None = None) -> None:  # fmt: skip
        self.kind, self.what, self._get, self.strict, self.extra = kind, what, get, strict, extra or {}
        self.need = f"a mapping with 'type' (the name of {what}) and its arguments"

    def __call__(self, value: Any, key: str) -> Component:
        block = mapping(value, key, self.need)
        if "type" not in block:
            raise OptionError(join(key, "type"), message=f"{key}: missing key 'type' (the name of {self.what})")
        kind = block["type"]
        if not isinstance(kind, str):
            raise OptionError(join(key, "type"), kind, f"must be the name of {self.what}")
        kinds = self._get()
        names = sorted(kinds.names(self.kind))
        if kind not in names:
            shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
            raise OptionError(
                join(key, "type"), kind,
                message=f"{key}:type: unknown {self.what.split(' ', 1)[1]} '{kind}'{suggest(kind, names)}; known: {shown}",
            )  # fmt: skip
        target = kinds.get(self.kind, kind)
        try:
            params = inspect.signature(target.__init__ if inspect.isclass(target) else target).parameters
        except (TypeError, ValueError):  # no signature to read: left to the constructor
            return Component(kind, {k: v for k, v in block.items() if k != "type"})
        var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        named = {
            n: p for n, p in params.items()
            if n not in _NOT_ARGS and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        }  # fmt: skip
        args: dict[str, Any] = {}
        for name, given in block.items():
            if name == "type":
                continue
            if name in self.extra:
                rule = self.extra[name]
            elif name in named:
                default = named[name].default
                rule = ARG_RULES.get(name) or rule_from_default(None if default is inspect.Parameter.empty else default)
            elif var_kw and not self.strict:
                rule = Rule()
            else:
                raise unknown_key(f"{key} ({kind})", name, ["type", *named, *self.extra])
            args[name] = rule(given, join(key, name))
        for name, p in named.items():
            if p.default is inspect.Parameter.empty and name not in block:
                raise OptionError(join(key, name), message=f"{key}: missing key '{name}' ({kind} needs it)")
        return Component(kind, args)


class _Kinds:
    """The registry plus the optimizer and scheduler names BasicSR 1.4.2's models accept."""

    def __init__(self, registry: Registry, complete: bool) -> None:
        self.registry, self.complete = registry, complete

    @staticmethod
    def _fixed(kind: str) -> dict[str, Any]:
        if kind == "OPTIMIZER":  # BaseModel.get_optimizer
            import torch

            return {"Adam": torch.optim.Adam}
        from basicsr.models import lr_scheduler  # BaseModel.setup_schedulers

        return {
            "MultiStepLR": lr_scheduler.MultiStepRestartLR,
            "MultiStepRestartLR": lr_scheduler.MultiStepRestartLR,
            "CosineAnnealingRestartLR": lr_scheduler.CosineAnnealingRestartLR,
        }

    def names(self, kind: str) -> Collection[str]:
        return self._fixed(kind) if kind in ("OPTIMIZER", "SCHEDULER") else self.registry.names(kind)

    def get(self, kind: str, name: str) -> Any:
        return self._fixed(kind)[name] if kind in ("OPTIMIZER", "SCHEDULER") else self.registry.get(kind, name)


_CURRENT: list[_Kinds] = []


def _kinds() -> _Kinds:
    return _CURRENT[-1]


NETWORK = ComponentRule("ARCH", "a network", _kinds)
LOSS = ComponentRule("LOSS", "a loss", _kinds)
OPTIMIZER = ComponentRule("OPTIMIZER", "an optimizer", _kinds, strict=True)
SCHEDULER = ComponentRule("SCHEDULER", "a learning-rate scheduler", _kinds, strict=True)
METRIC = ComponentRule("METRIC", "a metric", _kinds, strict=True, extra={"better": ARG_RULES["better"]})


class MapOf(Rule):
    """A mapping of names to values each allowed by ``item``."""

    def __init__(self, item: Rule) -> None:
        self.item, self.need = item, f"a mapping of names to {item.need}"

    def __call__(self, value: Any, key: str) -> dict:
        return {k: self.item(v, join(key, k)) for k, v in mapping(value, key).items()}


WHOLE_FREQ = Int(1, MAX_ITER, whole=True)


@dataclass(frozen=True)
class IoBackend:
    type: str = _f(Choice("disk", "lmdb", "memcached"), "disk")
    readonly: bool = _f(Bool(), True)
    lock: bool = _f(Bool(), False)
    readahead: bool = _f(Bool(), False)
    map_size: int | None = _f(Maybe(Int(1)))
    server_list_cfg: str | None = _f(Maybe(PATH))
    client_cfg: str | None = _f(Maybe(PATH))
    sys_path: str | None = _f(Maybe(PATH))


def _template(value: Any, key: str) -> str:
    value = Text("a file name template with one '{}'")(value, key)
    try:
        ok = value.count("{}") == 1 and value.format("x") is not None
    except (IndexError, KeyError, ValueError):
        ok = False
    if not ok:
        raise OptionError(key, value, "must be a file name template with exactly one '{}' (e.g. '{}x4')")
    return value


def _scale_or_range(value: Any, key: str) -> Any:
    if is_number(value) and 1 <= value <= MAX_SCALE:
        return value
    if isinstance(value, list) and len(value) == 2 and all(is_number(v) for v in value) and 1 <= value[0] <= value[1] <= MAX_SCALE:
        return value
    raise OptionError(key, value, f"must be a number from 1 to {MAX_SCALE} or [min, max] with 1 <= min <= max <= {MAX_SCALE}")


@dataclass(frozen=True)
class DatasetOptions:
    """One entry of ``datasets:`` (``phase`` is the key: ``train``, ``val_1``, ``test_1``, ...)."""

    name: str = _f(Text("the dataset's name"), required=True)
    type: str = _f(Text("the name of a dataset class"), required=True)
    phase: str | None = _f(Maybe(Choice("train", "val", "test")))  # set by the command
    scale: Any = _f(Check("a number >= 1 or [min, max]", _scale_or_range))  # AnyScalePairedDataset; else from the top
    dataroot_gt: str | None = _f(Maybe(FOLDER))
    dataroot_lq: str | None = _f(Maybe(FOLDER))
    meta_info_file: str | None = _f(Maybe(FILE))
    filename_tmpl: str = _f(Check("a file name template with one '{}'", _template), "{}")
    io_backend: IoBackend = _f(Block(IoBackend))
    gt_size: int | None = _f(Int(1, 4096))
    use_hflip: bool = _f(Bool(), False)
    use_rot: bool = _f(Bool(), False)
    mean: list | None = _f(Maybe(ListOf(Num(), length=3)))
    std: list | None = _f(Maybe(ListOf(Num(0, lo_open=True), length=3)))
    color: str | None = _f(Maybe(Choice("y")))
    num_worker_per_gpu: int | None = _f(Int(0, 256))
    batch_size_per_gpu: int | None = _f(Int(1, 4096))
    dataset_enlarge_ratio: Any = _f(Num(0, 1_000_000, lo_open=True), 1)
    prefetch_mode: str | None = _f(Maybe(Choice("cpu", "cuda"), "the loader's own prefetch"))
    num_prefetch_queue: int = _f(Int(1, 1024), 1)
    pin_memory: bool = _f(Bool(), False)
    persistent_workers: bool = _f(Bool(), False)
    key: str = ""  # the phase key in ``datasets:``
    extra: dict = field(default_factory=dict)  # keys of a dataset class this schema does not know


#: Dataset classes whose keys the schema knows; another package's take further keys.
KNOWN_DATASETS = ("PairedImageDataset", "AnyScalePairedDataset")


@dataclass(frozen=True)
class PathOptions:
    pretrain_network_g: str | None = _f(Maybe(FILE, "random weights"))
    param_key_g: str | None = _f(Maybe(Text("a checkpoint key such as params or params_ema"), "the file's only network"), "params")
    strict_load_g: bool = _f(Bool(), True)
    pretrain_network_d: str | None = _f(Maybe(FILE, "random weights"))
    param_key_d: str | None = _f(Maybe(Text("a checkpoint key"), "the file's only network"), "params")
    strict_load_d: bool = _f(Bool(), True)
    resume_state: str | None = _f(Maybe(FILE, "a fresh start"))
    ignore_resume_networks: list | None = _f(Maybe(ListOf(Text())))
    # set by the command from name: a value in the file is replaced
    experiments_root: str | None = _f(Maybe(PATH))
    results_root: str | None = _f(Maybe(PATH))
    models: str | None = _f(Maybe(PATH))
    training_states: str | None = _f(Maybe(PATH))
    log: str | None = _f(Maybe(PATH))
    visualization: str | None = _f(Maybe(PATH))


@dataclass(frozen=True)
class TrainOptions:
    optim_g: Component | None = _f(OPTIMIZER, required=True)
    optim_d: Component | None = _f(OPTIMIZER)
    scheduler: Component | None = _f(SCHEDULER, required=True)
    total_iter: int = _f(Int(1, MAX_ITER, whole=True), required=True)
    warmup_iter: int = _f(Int(-1, MAX_ITER, whole=True, why="-1: no warm-up"), -1)
    ema_decay: float = _f(Num(0, 1, hi_open=True), 0)
    pixel_opt: Component | None = _f(Maybe(LOSS))
    perceptual_opt: Component | None = _f(Maybe(LOSS))
    gan_opt: Component | None = _f(Maybe(LOSS))
    net_d_iters: int = _f(Int(1, MAX_ITER), 1)
    net_d_init_iters: int = _f(Int(0, MAX_ITER), 0)
    # imdn_plugin's IMDNModel
    channels_last: bool = _f(Bool(), False)
    amp: str | None = _f(Choice(*TRAIN_AMP))


@dataclass(frozen=True)
class ValOptions:
    val_freq: int | None = _f(WHOLE_FREQ)
    save_img: bool = _f(Bool(), False)
    suffix: str | None = _f(Maybe(Text("an image name suffix"), "the experiment name"))
    pbar: bool = _f(Bool(), False)
    metrics: dict | None = _f(Maybe(MapOf(METRIC)))


@dataclass(frozen=True)
class WandbOptions:
    project: str | None = _f(Maybe(Text("a wandb project name"), "no wandb"))
    entity: str | None = _f(Maybe(Text("a wandb entity")))
    resume_id: str | None = _f(Maybe(Text("a wandb run id")))


@dataclass(frozen=True)
class LoggerOptions:
    print_freq: int = _f(WHOLE_FREQ, required=True)
    save_checkpoint_freq: int = _f(WHOLE_FREQ, required=True)
    use_tb_logger: bool = _f(Bool(), required=True)
    wandb: WandbOptions | None = _f(Maybe(Block(WandbOptions)))
    save_safetensors: bool = _f(Bool(), False)  # imdn_plugin: networks also as .safetensors


@dataclass(frozen=True)
class DistParams:
    backend: str = _f(Choice("nccl", "gloo", "mpi"), "nccl")
    port: int = _f(Int(1, 65535), 29500)


def _name(value: Any, key: str) -> str:
    need = "a non-empty folder name (outputs go to experiments/<name>/)"
    if not isinstance(value, str) or not value.strip():
        raise OptionError(key, value, f"must be {need}")
    if value in (".", "..") or any(c in value for c in "/\\\0"):
        raise OptionError(
            key, value, message=f"name: {show(value)} must be a plain folder name (no '/' or '\\', not '.' or '..'): "
            "outputs go to experiments/<name>/ or results/<name>/",
        )  # fmt: skip
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise OptionError(key, value, f"must be {need} in valid UTF-8") from None
    if size > MAX_NAME_BYTES:
        raise OptionError(
            key, value, message=f"name: {size} bytes long; at most {MAX_NAME_BYTES} (BasicSR adds up to 28 characters "
            f"in file names and a file system allows 255), got {show(value)}",
        )  # fmt: skip
    return value


def _num_gpu(value: Any, key: str) -> Any:
    if value == "auto" and isinstance(value, str):
        return value
    if not (is_int(value) and 0 <= value <= 1024):
        raise OptionError(key, value, "must be auto or an integer >= 0 (0 = CPU)")
    return value


def _scale(value: Any, key: str) -> Any:
    if value is None:
        raise OptionError(key, value, f"must be the SR factor, a number from 1 to {MAX_SCALE} (or leave the key out)")
    return Num(1, MAX_SCALE)(value, key)


_ANY = Rule()
_PROB, _RANGE = Num(0, 1), ListOf(Num(), length=2)


@dataclass(frozen=True)
class Options:
    """A whole option file, parsed once (see the module docstring)."""

    name: str | None = _f(Check("a plain folder name", _name), required=True)
    model_type: str | None = _f(Text("the name of a model"), required=True)
    scale: Any = _f(Check(f"a number from 1 to {MAX_SCALE}", _scale))
    num_gpu: Any = _f(Check("auto or an integer >= 0", _num_gpu), "auto")
    manual_seed: int | None = _f(Maybe(Int(0, 2**31 - 1), "a random seed"))
    datasets: tuple = _f(Check("a mapping of phase (train, val_<n>, test_<n>) to dataset options", lambda v, k: v),
                         required=True)  # checked by _datasets
    network_g: Component | None = _f(NETWORK, required=True)
    network_d: Component | None = _f(NETWORK)
    path: PathOptions = _f(Maybe(Block(PathOptions)))
    train: TrainOptions | None = _f(Maybe(Block(TrainOptions)))
    val: ValOptions | None = _f(Maybe(Block(ValOptions)))
    logger: LoggerOptions | None = _f(Maybe(Block(LoggerOptions)))
    dist_params: DistParams | None = _f(Maybe(Block(DistParams)))
    find_unused_parameters: bool = _f(Bool(), False)
    inference: InferenceOptions = _f(Check("the inference: block (below)", lambda v, k: v))  # InferenceOptions
    # set by the command: a value in the file is replaced
    is_train: bool | None = _f(Maybe(Bool()))
    dist: bool | None = _f(Maybe(Bool()))
    auto_resume: bool | None = _f(Maybe(Bool()))
    rank: Any = _f(_ANY)
    world_size: Any = _f(_ANY)
    root_path: Any = _f(_ANY)
    # basicsr/models/realesrgan_model.py, realesrnet_model.py: on-the-fly degradation
    queue_size: Any = _f(Int(1, 100_000))
    high_order_degradation: Any = _f(Bool())
    gt_size: Any = _f(Int(1, 4096))
    gt_usm: Any = _f(Bool())
    l1_gt_usm: Any = _f(Bool())
    percep_gt_usm: Any = _f(Bool())
    gan_gt_usm: Any = _f(Bool())
    resize_prob: Any = _f(ListOf(_PROB, length=3))
    resize_prob2: Any = _f(ListOf(_PROB, length=3))
    resize_range: Any = _f(_RANGE)
    resize_range2: Any = _f(_RANGE)
    gaussian_noise_prob: Any = _f(_PROB)
    gaussian_noise_prob2: Any = _f(_PROB)
    noise_range: Any = _f(_RANGE)
    noise_range2: Any = _f(_RANGE)
    poisson_scale_range: Any = _f(_RANGE)
    poisson_scale_range2: Any = _f(_RANGE)
    gray_noise_prob: Any = _f(_PROB)
    gray_noise_prob2: Any = _f(_PROB)
    jpeg_range: Any = _f(_RANGE)
    jpeg_range2: Any = _f(_RANGE)
    second_blur_prob: Any = _f(_PROB)

    @property
    def save_safetensors(self) -> bool:
        """``logger: save_safetensors``: every saved network also as ``.safetensors``."""
        return bool(self.logger and self.logger.save_safetensors)


#: Top-level keys another plugin's model reads; it adds them here in its ``register``.
EXTRA_TOP_LEVEL_KEYS: set[str] = set()
_COMMON = ("name, model_type, scale, num_gpu, manual_seed, datasets, network_g, network_d, path, train, val, logger, "
           "dist_params, inference")  # fmt: skip


# ---------------------------------------------------------------------------- the parse
def parse(opt: Mapping[str, Any], registry: Registry, *, complete: bool = True, cuda: bool | None = None) -> Options:
    """The :class:`Options` of ``opt``, every key checked; :class:`OptionError` on the first problem.

    ``complete=False`` parses what a model built from a partial dict reads (no
    required top-level keys, no dataset rules).  ``cuda``: whether the run has a
    CUDA device (default: ``num_gpu`` and ``torch.cuda.is_available()``).
    """
    opt = mapping(opt, "", "a mapping of options (key: value lines) at the top")
    known = [f.name for f in fields(Options)]
    for key in opt:
        if key not in known and key not in EXTRA_TOP_LEVEL_KEYS:
            raise OptionError(
                str(key), key, message=f"unknown top-level key '{key}'{suggest(key, known)}; common keys: {_COMMON}"
            )
    _CURRENT.append(_Kinds(registry, complete))
    try:
        values = {k: v for k, v in opt.items() if k not in ("datasets", "inference") and k not in EXTRA_TOP_LEVEL_KEYS}
        top = build(Options, {**values}, "", complete=False)
        if complete:
            for key in ("name", "model_type", "datasets", "network_g"):
                if key not in opt:
                    raise OptionError(key, message=f"missing top-level key '{key}'")
        models = sorted(registry.names("MODEL"))
        if top.model_type is not None and top.model_type not in models:
            raise OptionError(
                "model_type", top.model_type,
                message=f"model_type: unknown model '{top.model_type}'{suggest(top.model_type, models)}; "
                f"registered: {', '.join(models)}",
            )  # fmt: skip
        is_train = top.is_train
        datasets = _datasets(opt.get("datasets"), is_train, top, registry) if complete or "datasets" in opt else ()
        inference = InferenceOptions.from_dict(opt.get("inference"))
        parsed = _replace(top, datasets=datasets, inference=inference, path=top.path or PathOptions())
        _between_keys(parsed, registry, complete, cuda)
        val = opt.get("val")
        if is_train is False and complete and isinstance(val, Mapping) and "save_img" not in val:
            raise OptionError("val:save_img", message="val: missing key 'save_img' (BasicSR's test pipeline reads it)")
        return parsed
    finally:
        _CURRENT.pop()


def _replace(record: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(record, **changes)


def _datasets(block: Any, is_train: bool | None, top: Options, registry: Registry) -> tuple:
    if not isinstance(block, Mapping) or not block:
        raise OptionError(
            "datasets", block, "must be a non-empty mapping of phase: dataset options (e.g. train, val, test_1)"
        )
    known = sorted(registry.names("DATASET"))
    out = []
    for key, entry in block.items():
        where = f"datasets:{key}"
        if not isinstance(key, str):
            raise OptionError(where, key, message=f"datasets: phase key must be a string, got {show(key)}")
        phase = key.split("_")[0]
        if is_train is True and not (key == "train" or phase == "val"):
            raise OptionError(where, key, message=f"{where}: unknown phase for training; use 'train' and 'val' or 'val_<n>'")
        if is_train is False and phase not in ("train", "val", "test"):
            raise OptionError(where, key, message=f"{where}: unknown phase; use 'test_<n>' (or 'val_<n>')")
        entry = mapping(entry, where, "a mapping of dataset options")
        kind = entry.get("type")
        if "type" in entry and not isinstance(kind, str):
            raise OptionError(f"{where}:type", kind, "must be the name of a dataset class")
        if isinstance(kind, str) and kind not in known:
            raise OptionError(
                f"{where}:type", kind,
                message=f"{where}:type: unknown dataset '{kind}'{suggest(kind, known)}; registered: {', '.join(known)}",
            )  # fmt: skip
        names = {f.name for f in fields(DatasetOptions) if "rule" in f.metadata}
        extra = {k: v for k, v in entry.items() if k not in names} if kind not in KNOWN_DATASETS else {}
        ds = build(DatasetOptions, {k: v for k, v in entry.items() if k not in extra}, where)
        out.append(_dataset_rules(_replace(ds, key=key, extra=extra), phase, top))
    return tuple(out)


def _missing(where: str, key: str, why: str) -> OptionError:
    return OptionError(f"{where}:{key}", message=f"{where}: missing key '{key}' ({why})")


def _dataset_rules(ds: DatasetOptions, phase: str, top: Options) -> DatasetOptions:
    where = f"datasets:{ds.key}"
    paired, anyscale = ds.type == "PairedImageDataset", ds.type == "AnyScalePairedDataset"
    if phase == "train":
        for key in ("batch_size_per_gpu", "num_worker_per_gpu"):
            if getattr(ds, key) is None:
                raise _missing(where, key, "the training loader reads it")
        if (paired or anyscale) and ds.gt_size is None:
            raise _missing(where, "gt_size", "the size of the training patches")
    if paired or anyscale:
        if ds.dataroot_gt is None:
            raise _missing(where, "dataroot_gt", "the ground-truth images")
    if paired:
        if ds.dataroot_lq is None:
            raise _missing(where, "dataroot_lq", "the low-resolution images")
        if ds.io_backend is None:
            raise _missing(where, "io_backend", "PairedImageDataset reads it, e.g. io_backend: {type: disk}")
        scale = top.scale if top.scale is not None else ds.scale
        if scale is None:
            raise OptionError("scale", message=f"missing top-level key 'scale' (the SR factor; {where} ({ds.type}) reads it)")
        if not (is_int(scale) or (isinstance(scale, float) and scale.is_integer())):
            raise OptionError("scale", scale, f"must be an integer for {ds.type} (LR and GT sizes differ by it)")
        if phase == "train" and ds.gt_size is not None and ds.gt_size % int(scale):
            raise OptionError(f"{where}:gt_size", ds.gt_size, f"must be a multiple of scale ({int(scale)})")
    if anyscale and phase == "train" and ds.gt_size is not None and ds.gt_size % 4:
        raise OptionError(f"{where}:gt_size", ds.gt_size, "must be a multiple of 4 for IMDN_AS (two stride-2 convolutions)")
    if ds.persistent_workers:
        if phase != "train":
            raise OptionError(
                f"{where}:persistent_workers", True,
                message=f"{where}:persistent_workers: true needs loader workers, but BasicSR loads {phase} sets in the "
                "main process (num_workers=0); remove it",
            )  # fmt: skip
        if ds.num_worker_per_gpu == 0:
            raise OptionError(
                f"{where}:persistent_workers", True,
                message=f"{where}:persistent_workers: true needs loader workers, but num_worker_per_gpu is 0; set "
                "num_worker_per_gpu >= 1 or persistent_workers: false",
            )  # fmt: skip
    if phase == "train" and ds.prefetch_mode == "cuda" and not ds.pin_memory:
        raise OptionError(f"{where}:prefetch_mode", "cuda", "needs pin_memory: true (BasicSR's CUDA prefetcher)")
    return ds


def _cuda(top: Options) -> bool:
    import torch

    return top.num_gpu != 0 and torch.cuda.is_available()


def _between_keys(o: Options, registry: Registry, complete: bool, cuda: bool | None) -> None:
    """Checks between keys, each naming the key to change."""
    use_cuda = _cuda(o) if cuda is None else cuda
    if is_int(o.num_gpu) and o.num_gpu > 0:
        import torch

        visible = torch.cuda.device_count()
        if o.num_gpu > visible:
            raise OptionError(
                "num_gpu", o.num_gpu,
                message=f"num_gpu: {o.num_gpu} GPUs asked for but {visible} visible (CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use num_gpu: auto, or 0 for the CPU",
            )  # fmt: skip
    if o.network_g is not None:
        _network_rules(o.network_g, "network_g", registry)
        if o.network_g.type == "IMDN" and o.scale is not None:
            upscale = _network_args(registry.get("ARCH", "IMDN"), o.network_g).get("upscale")
            if o.scale != upscale:
                raise OptionError(
                    "scale", o.scale,
                    message=f"scale: {show(o.scale)} but network_g (IMDN) upscales x{upscale}; set scale: {upscale} or "
                    f"network_g:upscale: {show(o.scale)}",
                )  # fmt: skip
    o.inference.check_device("cuda" if use_cuda else "cpu")
    if o.train is not None and o.train.amp == "fp16" and o.is_train is not False and not use_cuda:
        raise OptionError("train:amp", "fp16", "must be ~ or bf16 on the CPU: fp16 needs a CUDA device")
    if o.is_train is True and complete:
        if o.train is None:
            raise OptionError("train", message="missing 'train' block with total_iter, optim_g, scheduler, pixel_opt "
                              "(BasicSR's training loop reads it)")  # fmt: skip
        if o.train.pixel_opt is None and o.train.perceptual_opt is None:
            raise OptionError("train:pixel_opt", message="train: missing key 'pixel_opt' (a loss, e.g. {type: L1Loss})")
        _scheduler_rules(o.train)
        if o.logger is None:
            raise OptionError("logger", message="missing 'logger' block with print_freq, save_checkpoint_freq, "
                              "use_tb_logger (BasicSR's training loop reads it)")  # fmt: skip
        if o.val is not None and o.val.val_freq is None:
            raise OptionError("val:val_freq", message="val: missing key 'val_freq' (validation runs every val_freq iterations)")
        _logger_rules(o)
    if o.is_train is False and complete:
        if o.val is None:
            raise OptionError("val", message="missing 'val' block with save_img (BasicSR's test pipeline reads it)")


def _scheduler_rules(train: TrainOptions) -> None:
    sched = train.scheduler
    if sched is None:
        return
    args = sched.args
    if sched.type in ("MultiStepLR", "MultiStepRestartLR"):
        restarts, weights = args.get("restarts", [0]), args.get("restart_weights", [1])
        if len(restarts) != len(weights):
            raise OptionError("train:scheduler:restart_weights", weights, f"must have one weight per restart ({len(restarts)})")
    if sched.type == "CosineAnnealingRestartLR":
        periods, weights = args.get("periods", []), args.get("restart_weights", [1])
        if len(periods) != len(weights):
            raise OptionError("train:scheduler:restart_weights", weights, f"must have one weight per period ({len(periods)})")


def _logger_rules(o: Options) -> None:
    import importlib.util

    log = o.logger
    assert log is not None and o.name is not None
    debug = "debug" in o.name  # BasicSR leaves loggers out of debug runs
    if log.wandb is not None and log.wandb.project is not None and not debug:
        if not log.use_tb_logger:
            raise OptionError(
                "logger:use_tb_logger", log.use_tb_logger,
                "must be true with logger:wandb:project set (BasicSR logs to wandb through TensorBoard); "
                "set it, or wandb:project: ~",
            )  # fmt: skip
        if importlib.util.find_spec("wandb") is None:
            raise OptionError("logger:wandb:project", log.wandb.project, "needs the wandb package (pip install wandb), or ~")
    if log.use_tb_logger and not debug and importlib.util.find_spec("tensorboard") is None:
        raise OptionError("logger:use_tb_logger", True, "needs the tensorboard package (pip install tensorboard), or false")


def _network_args(cls: Any, net: Component) -> dict[str, Any]:
    """The constructor arguments ``net`` gives ``cls``, defaults filled in."""
    params = inspect.signature(cls.__init__).parameters
    args = {n: p.default for n, p in params.items() if n != "self" and p.default is not inspect.Parameter.empty}
    args.update(net.args)
    return args


def _network_rules(net: Component, where: str, registry: Registry) -> None:
    """A network with ``num_feat_multiple`` (IMDN, IMDN_AS) needs ``num_feat`` to be a multiple of it."""
    cls = registry.get("ARCH", net.type)
    multiple = getattr(cls, "num_feat_multiple", None)
    if not multiple or not inspect.isclass(cls):
        return
    num_feat = _network_args(cls, net).get("num_feat")
    if is_int(num_feat) and num_feat % multiple:
        raise OptionError(
            f"{where}:num_feat", num_feat,
            message=f"{where}: num_feat must be a multiple of {multiple} for {net.type} (each IMDB distils num_feat/4 "
            f"channels 4 times and CCA reduces them by 16, paper §3.1-3.2), got {num_feat}",
        )  # fmt: skip


def network_args(net: Component, registry: Registry) -> dict[str, Any]:
    """``network_g``'s constructor arguments with the class's defaults filled in."""
    return _network_args(registry.get("ARCH", net.type), net)
