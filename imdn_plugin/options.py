"""Reading and checking BasicSR option files, before any work starts.

Option files are data, never code: :func:`load_option_file` reads them with
:class:`OptionLoader`, a ``yaml.SafeLoader`` that keeps BasicSR's conventions
(``!!float 2e-4``, key order) and refuses every tag that would build a Python
object, and duplicate keys.  :func:`apply_overrides` applies ``--force_yml
key:path=value`` entries, each value parsed as YAML data (BasicSR passes list
values to ``eval`` and the assignment to ``exec``).

BasicSR passes ``network_g`` straight to the class (a typo becomes a
``TypeError`` deep in a traceback), indexes keys that may be absent, and finds
a missing dataset folder only when the dataset is built.  :func:`validate_options`
rejects such files up front with one line that names the key, the value and
the valid choices.  No BasicSR import.
"""
from __future__ import annotations

import difflib
import inspect
import os
from collections import OrderedDict
from collections.abc import Collection, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, Callable, Optional, Union

import yaml

from .errors import ConfigError

# ---------------------------------------------------------------------------- reading option files
_MERGE_TAG = "tag:yaml.org,2002:merge"


class OptionLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` for option files: ordered mappings, no duplicate keys, no object tags.

    Mappings become ``OrderedDict`` (as with BasicSR's ``ordered_yaml``); the
    standard tags (``!!float 2e-4``, ``!!str``, ...) work; any other tag
    (``!!python/object/apply:...``, ``!custom``) is refused with its position.
    """


def _construct_mapping(loader: OptionLoader, node: yaml.Node) -> "OrderedDict[Any, Any]":
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(None, None, f"expected a mapping, found {node.id}", node.start_mark)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue  # '<<: *base' then explicit keys that override it is YAML, not a duplicate
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key must be a plain value, found {type(key).__name__}", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
        seen.add(key)
    loader.flatten_mapping(node)
    return OrderedDict(loader.construct_pairs(node, deep=True))


def _refuse_tag(loader: OptionLoader, node: yaml.Node) -> None:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    raise yaml.constructor.ConstructorError(
        None, None, f"tag '{tag}' refused: option files are data, tags that build Python objects are not allowed",
        node.start_mark,
    )  # fmt: skip


OptionLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
OptionLoader.add_constructor(None, _refuse_tag)  # every tag without a constructor of its own


def _flat(text: Any) -> str:
    return " ".join(str(text).split())


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML ``text`` with :class:`OptionLoader`; errors become one line ``source:line:column: ...``."""
    try:
        return yaml.load(text, Loader=OptionLoader)  # OptionLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = _flat(exc.problem or exc.context or "invalid YAML")
        kind = "" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax error: "
        context = f" ({_flat(exc.context)})" if exc.context and exc.problem and kind else ""
        raise ConfigError(f"{where}: {kind}{problem}{context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: YAML error: {_flat(exc)}") from None


def load_option_file(path: Union[str, "os.PathLike[str]"]) -> "OrderedDict[str, Any]":
    """Read a BasicSR option file as data (see :class:`OptionLoader`); one-line errors."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"-opt: option file not found: {path} (cwd: {os.getcwd()})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read option file ({exc.strerror or exc})") from None
    opt = parse_yaml(text, str(path))
    if opt is None:
        raise ConfigError(f"{path}: option file is empty")
    if not isinstance(opt, Mapping):
        raise ConfigError(f"{path}: expected a mapping of options (key: value lines) at the top, found a {_yaml_kind(opt)}")
    return opt


def _yaml_kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


def apply_overrides(opt: MutableMapping[str, Any], entries: Sequence[str]) -> None:
    """Apply ``--force_yml`` entries ``key:sub:key=value`` to ``opt`` in place.

    The key path must exist in the file (BasicSR: "do not support creating new
    keys"); the value is YAML data (``0.5``, ``true``, ``~``, ``[1, 2]``,
    ``!!float 2e-4``; ``none`` is also ``None`` as in BasicSR), never evaluated.
    """
    for entry in entries:
        if entry.count("=") != 1:
            raise ConfigError(
                f"--force_yml {entry!r}: expected KEY:PATH=VALUE with exactly one '=' "
                "(e.g. path:pretrain_network_g=weights.pth)"
            )
        keys_text, value_text = (part.strip() for part in entry.split("="))
        keys = keys_text.split(":")
        if not all(keys):
            raise ConfigError(f"--force_yml {entry!r}: empty key in '{keys_text}' (keys are joined by ':')")
        try:
            value = None if value_text.lower() == "none" else parse_yaml(value_text, "value")
        except ConfigError as exc:
            hint = "" if "refused" in str(exc) else (
                f"; to pass it as a string, quote it: {keys_text}=\"'{value_text.replace(chr(39), chr(39) * 2)}'\""
            )  # fmt: skip
            raise ConfigError(f"--force_yml {entry!r}: {exc}{hint}") from None
        node: Any = opt
        for depth, key in enumerate(keys):
            here = ":".join(keys[:depth]) or "the top level"
            if not isinstance(node, MutableMapping):
                raise ConfigError(f"--force_yml {entry!r}: {here} is {node!r}, not a mapping of keys")
            if key not in node:
                valid = [str(k) for k in node]
                raise ConfigError(
                    f"--force_yml {entry!r}: unknown key path '{keys_text}': no key '{key}' under {here}"
                    f"{_suggest(key, valid)} (--force_yml only replaces keys the option file has)"
                )
            if depth == len(keys) - 1:
                node[key] = value
            else:
                node = node[key]


# ---------------------------------------------------------------------------- checks
def _suggest(key: str, valid: Collection[str]) -> str:
    close = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_keys(section: str, given: Mapping[str, Any], valid: list[str]) -> None:
    """Raise :class:`ConfigError` for the first key of ``given`` not in ``valid``."""
    for key in given:
        if key not in valid:
            raise ConfigError(
                f"{section}: unknown key '{key}'{_suggest(str(key), valid)}; valid keys: {', '.join(valid)}"
            )


#: Top-level keys BasicSR 1.4.2 reads (its pipelines, models and Real-ESRGAN's
#: models), the ones the command sets itself, and the plugin's ``inference``.
#: Another plugin whose model reads a key of its own adds it here in its ``register``.
KNOWN_TOP_LEVEL_KEYS: set[str] = {
    # basicsr/train.py, test.py, utils/options.py, models/base_model.py, sr_model.py, srgan_model.py, ...
    "name", "model_type", "scale", "num_gpu", "manual_seed", "datasets", "network_g", "network_d", "path",
    "train", "val", "logger", "dist_params", "find_unused_parameters",
    # set by the command (parse_options / train_pipeline); a value in the file is replaced
    "is_train", "dist", "rank", "world_size", "auto_resume", "root_path",
    # basicsr/models/realesrgan_model.py, realesrnet_model.py: on-the-fly degradation
    "queue_size", "high_order_degradation", "gt_size", "gt_usm", "l1_gt_usm", "percep_gt_usm", "gan_gt_usm",
    "resize_prob", "resize_range", "gaussian_noise_prob", "noise_range", "poisson_scale_range", "gray_noise_prob",
    "jpeg_range", "second_blur_prob", "resize_prob2", "resize_range2", "gaussian_noise_prob2", "noise_range2",
    "poisson_scale_range2", "gray_noise_prob2", "jpeg_range2",
    # imdn_plugin
    "inference",
}  # fmt: skip
_COMMON_TOP_LEVEL = (
    "name, model_type, scale, num_gpu, manual_seed, datasets, network_g, network_d, path, train, val, logger, "
    "dist_params, inference"
)


def check_top_level_keys(opt: Mapping[Any, Any]) -> None:
    """Every top-level key is one BasicSR (or a registered plugin) reads."""
    for key in opt:
        if key not in KNOWN_TOP_LEVEL_KEYS:
            raise ConfigError(
                f"unknown top-level key '{key}'{_suggest(str(key), sorted(KNOWN_TOP_LEVEL_KEYS))}; "
                f"common keys: {_COMMON_TOP_LEVEL}"
            )


def check_name(opt: Mapping[str, Any]) -> None:
    """``name`` becomes ``experiments/<name>/`` or ``results/<name>/``: a plain folder name."""
    name = opt.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"name: must be a non-empty folder name (outputs go to experiments/<name>/), got {name!r}")
    if name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ConfigError(
            f"name: {name!r} must be a plain folder name (no '/' or '\\', not '.' or '..'): "
            "outputs go to experiments/<name>/ or results/<name>/"
        )


def _require(section: str, block: Any, keys: Sequence[str], why: str) -> None:
    if block is None:
        raise ConfigError(f"missing '{section}' block with {', '.join(keys)} ({why})")
    if not isinstance(block, Mapping):
        raise ConfigError(f"{section}: expected a mapping of options, got {block!r}")
    for key in keys:
        if key not in block:
            raise ConfigError(f"{section}: missing key '{key}' ({why})")


def check_structure(opt: Mapping[str, Any], registry_names: Optional[Callable[[str], Collection[str]]] = None) -> None:
    """The keys BasicSR's pipelines index without a default, with the right shapes.

    Mode-specific keys (``train``/``logger`` for training, ``val:save_img`` for
    testing) are checked when ``opt['is_train']`` is set, as the command does.
    """
    for key in ("name", "model_type", "datasets", "network_g"):
        if key not in opt:
            raise ConfigError(f"missing top-level key '{key}'")
    check_name(opt)
    model_type = opt["model_type"]
    if not isinstance(model_type, str):
        raise ConfigError(f"model_type: must be the name of a model, got {model_type!r}")
    if registry_names is not None:
        models = sorted(registry_names("MODEL"))
        if model_type not in models:
            raise ConfigError(
                f"model_type: unknown model '{model_type}'{_suggest(model_type, models)}; registered: {', '.join(models)}"
            )
    for key in ("path", "train", "val", "logger", "dist_params"):
        if opt.get(key) is not None and not isinstance(opt[key], Mapping):
            raise ConfigError(f"{key}: expected a mapping of options, got {opt[key]!r}")
    for key, value in (opt.get("path") or {}).items():
        if ("resume_state" in str(key) or "pretrain_network" in str(key)) and not isinstance(value, (str, type(None))):
            raise ConfigError(f"path:{key}: must be a file path or ~, got {value!r}")
    seed = opt.get("manual_seed")
    if seed is not None and not _int(seed):
        raise ConfigError(f"manual_seed: must be an integer, got {seed!r}")
    check_num_gpu(opt)
    is_train = opt.get("is_train")
    check_datasets(opt["datasets"], is_train, registry_names)
    if is_train is True:
        _require("train", opt.get("train"), ("total_iter",), "BasicSR's training loop reads it")
        _require("logger", opt.get("logger"), ("print_freq", "save_checkpoint_freq", "use_tb_logger"),
                 "BasicSR's training loop reads it")  # fmt: skip
        if opt.get("val") is not None:
            _require("val", opt["val"], ("val_freq",), "validation runs every val_freq iterations")
    elif is_train is False:
        _require("val", opt.get("val"), ("save_img",), "BasicSR's test pipeline reads it")


def check_num_gpu(opt: Mapping[str, Any]) -> None:
    """``num_gpu``: ``auto`` (the default: all visible GPUs) or an integer up to the visible count."""
    num_gpu = opt.get("num_gpu", "auto")
    if num_gpu == "auto":
        return
    if not (_int(num_gpu) and num_gpu >= 0):
        raise ConfigError(f"num_gpu: must be auto or an integer >= 0 (0 = CPU), got {num_gpu!r}")
    import torch

    visible = torch.cuda.device_count()
    if num_gpu > visible:
        raise ConfigError(
            f"num_gpu: {num_gpu} GPUs asked for but {visible} visible "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use num_gpu: auto, or 0 for the CPU"
        )


def check_datasets(
    datasets: Any, is_train: Optional[bool], registry_names: Optional[Callable[[str], Collection[str]]] = None
) -> None:
    """Phase keys BasicSR accepts, ``name``/``type`` of each dataset, loader keys of the training set."""
    if not isinstance(datasets, Mapping) or not datasets:
        raise ConfigError(f"datasets: expected a mapping of phase: dataset options (e.g. train, val, test_1), got {datasets!r}")
    known = sorted(registry_names("DATASET")) if registry_names is not None else None
    for key, dataset in datasets.items():
        if not isinstance(key, str):
            raise ConfigError(f"datasets: phase key must be a string, got {key!r}")
        phase = key.split("_")[0]
        if is_train is True and not (key == "train" or phase == "val"):
            raise ConfigError(f"datasets:{key}: unknown phase for training; use 'train' and 'val' or 'val_<n>'")
        if is_train is False and phase not in ("train", "val", "test"):
            raise ConfigError(f"datasets:{key}: unknown phase; use 'test_<n>' (or 'val_<n>')")
        if not isinstance(dataset, Mapping):
            raise ConfigError(f"datasets:{key}: expected a mapping of dataset options, got {dataset!r}")
        for required in ("name", "type"):
            if required not in dataset:
                raise ConfigError(f"datasets:{key}: missing key '{required}'")
        for path_key in ("dataroot_gt", "dataroot_lq", "meta_info_file"):
            if not isinstance(dataset.get(path_key), (str, type(None))):
                raise ConfigError(f"datasets:{key}:{path_key}: must be a path or ~, got {dataset[path_key]!r}")
        kind = dataset["type"]
        if known is not None and kind not in known:
            raise ConfigError(
                f"datasets:{key}:type: unknown dataset '{kind}'{_suggest(str(kind), known)}; registered: {', '.join(known)}"
            )
        workers = dataset.get("num_worker_per_gpu")
        if phase == "train":
            _require(f"datasets:{key}", dataset, ("batch_size_per_gpu", "num_worker_per_gpu"), "the training loader reads it")
            if not _positive_int(dataset["batch_size_per_gpu"]):
                raise ConfigError(
                    f"datasets:{key}:batch_size_per_gpu: must be a positive integer, got {dataset['batch_size_per_gpu']!r}"
                )
            if not (_int(workers) and workers >= 0):
                raise ConfigError(f"datasets:{key}:num_worker_per_gpu: must be an integer >= 0, got {workers!r}")
        if dataset.get("persistent_workers"):
            if phase != "train":
                raise ConfigError(
                    f"datasets:{key}:persistent_workers: true needs loader workers, but BasicSR loads "
                    f"{phase} sets in the main process (num_workers=0); remove it"
                )
            if workers == 0:
                raise ConfigError(
                    f"datasets:{key}:persistent_workers: true needs loader workers, "
                    "but num_worker_per_gpu is 0; set num_worker_per_gpu >= 1 or persistent_workers: false"
                )


def check_network_opt(
    net_opt: Mapping[str, Any],
    lookup: Callable[[str], type],
    section: str = "network_g",
    names: Optional[Collection[str]] = None,
) -> None:
    """Check ``network_g`` keys against the constructor of the class it names.

    Only classes whose constructor has no ``**kwargs`` can be checked; others
    (some of BasicSR's own) are left to BasicSR.  A class with a
    ``num_feat_multiple`` attribute (IMDN, IMDN_AS) needs ``num_feat`` to be a
    multiple of it.
    """
    if not isinstance(net_opt, Mapping) or "type" not in net_opt:
        raise ConfigError(f"{section}: needs a 'type' key naming the network (e.g. IMDN or IMDN_AS)")
    try:
        cls = lookup(net_opt["type"])
    except KeyError:
        hint = _suggest(str(net_opt["type"]), names) if names else ""
        raise ConfigError(f"{section}: unknown network type '{net_opt['type']}'{hint}") from None
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n in params if n != "self"]
    check_keys(f"{section} ({net_opt['type']})", {k: v for k, v in net_opt.items() if k != "type"}, valid)
    for name, value in net_opt.items():
        if name in ("num_in_ch", "num_out_ch", "num_feat", "num_block") and not _positive_int(value):
            raise ConfigError(f"{section}: {name} must be a positive integer, got {value!r}")
        if name == "upscale" and not (_positive_int(value) and value >= 2):
            raise ConfigError(f"{section}: upscale must be an integer >= 2, got {value!r}")
    multiple = getattr(cls, "num_feat_multiple", None)
    num_feat = _network_args(cls, net_opt).get("num_feat")
    if multiple and _positive_int(num_feat) and num_feat % multiple:
        raise ConfigError(
            f"{section}: num_feat must be a multiple of {multiple} for {net_opt['type']} "
            f"(each IMDB distils num_feat/4 channels 4 times and CCA reduces them by 16, paper §3.1-3.2), "
            f"got {num_feat}"
        )


def _network_args(cls: type, net_opt: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments ``net_opt`` gives ``cls``, defaults filled in."""
    params = inspect.signature(cls.__init__).parameters
    args = {n: p.default for n, p in params.items() if n != "self" and p.default is not inspect.Parameter.empty}
    args.update((k, v) for k, v in net_opt.items() if k != "type")
    return args


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _int(value) and value > 0


def check_dataset_paths(opt: Mapping[str, Any]) -> None:
    """Every ``dataroot_*`` / ``meta_info_file`` of every dataset must exist now (``~`` expanded)."""
    for phase, dataset in (opt.get("datasets") or {}).items():
        if not isinstance(dataset, Mapping):
            raise ConfigError(f"datasets:{phase}: expected a mapping of dataset options, got {dataset!r}")
        backend = (dataset.get("io_backend") or {}).get("type", "disk")
        for key in ("dataroot_gt", "dataroot_lq", "meta_info_file"):
            given = dataset.get(key)
            if given is None:
                continue
            path = os.path.expanduser(str(given))
            if not os.path.exists(path):
                raise ConfigError(f"datasets:{phase}:{key}: path does not exist: {given} (cwd: {os.getcwd()})")
            if backend == "lmdb" and key.startswith("dataroot"):
                if not os.path.isfile(os.path.join(path, "data.mdb")):
                    raise ConfigError(f"datasets:{phase}:{key}: not an LMDB (no data.mdb): {given}")
                if not os.path.isfile(os.path.join(path, "meta_info.txt")):
                    raise ConfigError(f"datasets:{phase}:{key}: LMDB has no meta_info.txt: {given}")
                check_lmdb_readable(f"datasets:{phase}:{key}", path)


def check_lmdb_readable(where: str, path: str) -> None:
    """``data.mdb`` is whole and holds every ``meta_info.txt`` key (:func:`imdn_plugin.data.lmdb.check_lmdb_keys`).

    A truncated ``data.mdb`` would otherwise kill training with SIGBUS and no
    message, and a missing key stop it only when a batch needs that key.
    """
    import lmdb

    from .data.lmdb import check_lmdb_keys

    try:
        check_lmdb_keys(path)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except lmdb.Error as exc:  # py-lmdb opens a path once per process: an earlier run here holds it open
        if "already open" not in str(exc):
            raise ConfigError(f"{where}: {path}: not a readable LMDB ({exc})") from None


def check_scale(opt: Mapping[str, Any]) -> None:
    scale = opt.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0):
        raise ConfigError(f"scale: must be a positive number, got {scale!r}")


def check_network_scale(opt: Mapping[str, Any], lookup_arch: Callable[[str], type]) -> None:
    """``scale`` must be the factor of a fixed-scale network (IMDN's ``upscale``; default 4)."""
    net_opt, scale = opt["network_g"], opt.get("scale")
    if scale is None or net_opt.get("type") != "IMDN":
        return
    upscale = _network_args(lookup_arch("IMDN"), net_opt).get("upscale")
    if scale != upscale:
        raise ConfigError(
            f"scale: {scale!r} but network_g (IMDN) upscales x{upscale}; set scale: {upscale} or network_g:upscale: {scale}"
        )


def check_pretrained(opt: Mapping[str, Any], lookup_arch: Callable[[str], type]) -> None:
    """``path:pretrain_network_g`` exists and, for a strict load into IMDN/IMDN_AS, fits ``network_g``.

    The file's network is read off its tensor shapes
    (:func:`imdn_plugin.checkpoint.describe`); files it does not recognise are
    left to the load.  ``strict_load_g: false`` (a warm start, e.g. ×4 from ×2)
    skips the comparison.
    """
    path_opt = opt.get("path") or {}
    pretrain = path_opt.get("pretrain_network_g")
    if pretrain is None:
        return
    file = os.path.expanduser(str(pretrain))
    if not os.path.isfile(file):
        raise ConfigError(f"path:pretrain_network_g: file does not exist: {pretrain} (cwd: {os.getcwd()})")
    net_opt = opt["network_g"]
    kind = net_opt.get("type")
    if kind not in ("IMDN", "IMDN_AS") or not path_opt.get("strict_load_g", True):
        return
    from .checkpoint import ArchSpec, describe, load_state_dict

    found = describe(load_state_dict(file, path_opt.get("param_key_g", "params")))
    if found is None:
        return
    args = _network_args(lookup_arch(kind), net_opt)
    wanted = ArchSpec(
        kind, args["num_in_ch"], args["num_out_ch"], args["num_feat"], args["num_block"],
        args.get("upscale", 4) if kind == "IMDN" else 4,
    )  # fmt: skip
    if found != wanted:
        raise ConfigError(
            f"path:pretrain_network_g: {pretrain}: checkpoint is {found} but network_g is {wanted}; "
            "make network_g match, or set path:strict_load_g: false to load only the tensors that fit (a warm start)"
        )


#: The ``train:`` keys of the plugin's own (beside BasicSR's) and their values.
from .machine import TRAIN_AMP  # noqa: E402  (the precision words live in machine.py)


def train_options(opt: Mapping[str, Any]) -> tuple[bool, Optional[str]]:
    """``(channels_last, amp)`` of the ``train:`` block (``IMDNModel``'s own keys), checked.

    ``amp: fp16`` needs CUDA: ``num_gpu: 0`` (or no CUDA device) is refused.
    """
    train = opt.get("train") or {}
    if not isinstance(train, Mapping):
        raise ConfigError(f"train: expected a mapping of options, got {train!r}")
    channels_last = train.get("channels_last", False)
    if channels_last not in (True, False):
        raise ConfigError(f"train:channels_last: must be true or false, got {channels_last!r}")
    amp = train.get("amp")
    if amp not in TRAIN_AMP:
        raise ConfigError(f"train:amp: must be ~, bf16 or fp16, got {amp!r}")
    if amp == "fp16" and opt.get("is_train", True) and not _cuda_in_use(opt):
        raise ConfigError("train:amp: fp16 needs a CUDA device (use bf16 or ~ on the CPU)")
    return channels_last, amp


def save_safetensors_option(opt: Mapping[str, Any]) -> bool:
    """``logger: {save_safetensors: true}``: every saved network also as ``.safetensors`` (checked)."""
    value = (opt.get("logger") or {}).get("save_safetensors", False)
    if value not in (True, False):
        raise ConfigError(f"logger:save_safetensors: must be true or false, got {value!r}")
    return value


def _cuda_in_use(opt: Mapping[str, Any]) -> bool:
    import torch

    num_gpu = opt.get("num_gpu", "auto")
    return bool(num_gpu) and torch.cuda.is_available()


def validate_options(
    opt: Mapping[str, Any],
    lookup_arch: Callable[[str], type],
    check_inference: Optional[Callable[[Any], Any]] = None,
    *,
    registry_names: Optional[Callable[[str], Collection[str]]] = None,
    check_paths: bool = True,
) -> None:
    """Run every start-up check on a BasicSR option dict (as read, ``--force_yml`` applied).

    ``registry_names("MODEL" | "DATASET" | "ARCH")`` lists BasicSR's registered
    names (unknown ``model_type`` / dataset ``type`` are then refused);
    ``check_paths=False`` skips the checks of files on disk (dataset folders,
    ``pretrain_network_g``).
    """
    check_top_level_keys(opt)
    check_structure(opt, registry_names)
    check_scale(opt)
    arch_names = registry_names("ARCH") if registry_names is not None else None
    for key in ("network_g", "network_d"):
        if key in opt:
            check_network_opt(opt[key], lookup_arch, key, arch_names)
    check_network_scale(opt, lookup_arch)
    if check_inference is not None:
        check_inference(opt.get("inference"))
    if "train" in opt:
        train_options(opt)
    if isinstance(opt.get("logger"), Mapping):
        save_safetensors_option(opt)
    if check_paths:
        check_dataset_paths(opt)
        check_pretrained(opt, lookup_arch)
