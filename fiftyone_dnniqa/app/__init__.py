"""The FiftyOne App faces: operators, panels and plots over the library, plugin
registration and installation, and the delegated operations of sharded runs."""

from .plugin import PLUGIN_NAME, install_plugin, manifest, register

__all__ = ["PLUGIN_NAME", "install_plugin", "manifest", "register"]
