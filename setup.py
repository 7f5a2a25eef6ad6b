"""imdn-plugin: IMDN / IMDN_AS for BasicSR."""
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PTH_NAME = "imdn_plugin_compat.pth"


class BuildPyWithPth(build_py):
    """Also place ``imdn_plugin_compat.pth`` at the root of site-packages.

    The .pth line installs an import alias (see ``imdn_plugin/_compat.py``) so
    that ``import basicsr`` works with current torchvision in any interpreter
    of the environment, without editing BasicSR's files.
    """

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, PTH_NAME)
        self.copy_file(os.path.join(HERE, PTH_NAME), target, preserve_mode=0)


def read_version():
    ns = {}
    with open(os.path.join(HERE, "imdn_plugin", "version.py"), encoding="utf-8") as f:
        exec(f.read(), ns)
    return ns["__version__"]


setup(
    name="imdn-plugin",
    version=read_version(),
    description="IMDN / IMDN_AS lightweight super-resolution networks as a BasicSR plugin",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["imdn_plugin", "imdn_plugin.*"]),
    # basicsr 1.4.2 does not build on 3.13+ (KeyError: '__version__' in its setup.py);
    # torchvision 0.29 needs 3.10+.
    python_requires=">=3.10,<3.13",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Image Processing",
    ],
    install_requires=[
        "basicsr==1.4.2",
        "torch>=2.0",
        "torchvision>=0.15",
        "opencv-python",
        "lmdb",
        "pyyaml",
        "tensorboard",
        "tqdm",
        "numpy",
        "safetensors",
    ],
    extras_require={
        # the optional integrations are tested too (their tests skip, with the reason, without them)
        "test": ["pytest", "onnx", "onnxruntime", "openvino", "spandrel>=0.4", "ruff==0.17.6"],
        # imdn_plugin.spandrel.install(): IMDN/IMDN_AS in spandrel (chaiNNer, traiNNer-redux, ...)
        "spandrel": ["spandrel>=0.4", "safetensors"],
        # basicsr export: onnxruntime checks every export against the torch forward
        "onnx": ["onnx", "onnxruntime"],
        # basicsr infer --backend openvino (the export needs onnx)
        "openvino": ["onnx", "openvino"],
    },
    entry_points={
        "console_scripts": ["basicsr = imdn_plugin.cli:main"],
        # Plugins for the `basicsr` command: each entry is a callable that
        # registers its classes into BasicSR's registries (idempotently).
        "basicsr.plugins": ["imdn = imdn_plugin.integration:register"],
    },
    cmdclass={"build_py": BuildPyWithPth},
    zip_safe=False,
)
