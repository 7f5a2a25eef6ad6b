"""BasicSR integration: import fix, plugin discovery, idempotent registration."""
from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torchvision

REPO = Path(__file__).resolve().parents[2]


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)


@pytest.mark.slow
def test_basicsr_imports_after_the_plugin_without_pth() -> None:
    # -S skips every .pth file; site-packages is put back on sys.path by hand, so only
    # `import imdn_plugin` (from the repository root) can make `import basicsr` work.
    site_packages = str(Path(torchvision.__file__).resolve().parents[1])
    code = (
        f"import sys; sys.path.append({site_packages!r}); "
        "import imdn_plugin, basicsr; from basicsr.data.degradations import rgb_to_grayscale; print('ok')"
    )
    res = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=False, timeout=120, cwd=REPO
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-1500:]


def test_entry_point_group_lists_the_plugin() -> None:
    eps = {ep.name: ep.value for ep in entry_points(group="basicsr.plugins")}
    assert eps.get("imdn") == "imdn_plugin.integration:register"


def _pth_hook_installed() -> bool:
    """Whether ``imdn_plugin_compat.pth`` is in a site-packages folder of this interpreter.

    A regular install (``pip install .``, a wheel) puts it there; ``pip install -e .`` does not
    (an editable install does not run the package's build_py), so there a bare ``import basicsr``
    before ``import imdn_plugin`` fails with current torchvision (known, see docs/testing.md)."""
    import site

    folders = [*site.getsitepackages(), site.getusersitepackages()]
    return any((Path(f) / "imdn_plugin_compat.pth").is_file() for f in folders)


@pytest.mark.slow
@pytest.mark.skipif(not _pth_hook_installed(), reason="no imdn_plugin_compat.pth in site-packages: an editable "
                    "install (pip install -e) has no start-up hook; import imdn_plugin before basicsr there")  # fmt: skip
def test_fresh_interpreter_bare_import_basicsr_works_through_the_pth_hook() -> None:
    res = python("import basicsr, torchvision; from basicsr.data.degradations import rgb_to_grayscale; "
                 "print(basicsr.__version__)")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "1.4.2", res.stdout


@pytest.mark.slow
def test_fresh_interpreter_registers_idempotently() -> None:
    # One interpreter (imports cost ~10 s): registration by every path, twice.  `import imdn_plugin`
    # comes first, so this holds for regular and editable installs alike.
    code = """
import imdn_plugin
import basicsr, torchvision
print(basicsr.__version__, torchvision.__version__)
import importlib
imdn_plugin.register(); imdn_plugin.register()
from imdn_plugin.cli import load_plugins
load_plugins(); load_plugins()
import imdn_plugin.archs.imdn_arch as arch
importlib.reload(arch)  # a reloaded module re-registers the same names
imdn_plugin.register()
from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY, DATASET_REGISTRY
for name in ("IMDN", "IMDN_AS", "CCALayer"):
    assert name in ARCH_REGISTRY, name
assert "IMDNModel" in MODEL_REGISTRY and "AnyScalePairedDataset" in DATASET_REGISTRY
import basicsr.train
assert getattr(basicsr.train.load_resume_state, "_imdn_plugin_patch", False)
print("ok")
"""
    res = python(code)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("1.4.2") and res.stdout.strip().endswith("ok"), res.stdout


def test_a_different_class_under_the_same_name_is_refused() -> None:
    from basicsr.utils.registry import ARCH_REGISTRY

    import imdn_plugin
    from imdn_plugin.integration.registries import register_once as _register_once

    imdn_plugin.register()
    impostor = type("IMDN", (), {"__module__": "someone_else"})
    with pytest.raises(RuntimeError, match="already holds a different 'IMDN'"):
        _register_once(ARCH_REGISTRY, impostor)
