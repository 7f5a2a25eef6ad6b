"""Executed from ``imdn_plugin_compat.pth`` at interpreter start.

It must stay import-light: it only installs the torchvision alias finder of
:mod:`imdn_plugin._compat` so that a plain ``import basicsr`` works in any
script, not only after ``import imdn_plugin``.
"""
from imdn_plugin._compat import install_torchvision_alias

install_torchvision_alias()
