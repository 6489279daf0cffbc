"""`import ryu...` served by os-ken, so that apps written for Ryu load unchanged.

install() puts an import hook in front of sys.meta_path: `ryu` and every `ryu.X.Y` is the
very module `os_ken.X.Y` (the same object, so classes, events and CONF are shared with
os-ken apps). The few names os-ken renamed are given their Ryu spelling as well
(RyuApp, RyuException).

A Ryu module that os-ken no longer ships (for example ryu.app.wsgi or ryu.app.ofctl_rest)
fails with a ModuleNotFoundError that names it and says where it still exists.
"""

import importlib
import importlib.abc
import importlib.util
import sys

RYU = "ryu"
OS_KEN = "os_ken"

# module (os-ken name) -> {Ryu name: os-ken name}
RENAMED = {
    "os_ken.base.app_manager": {"RyuApp": "OSKenApp"},
    "os_ken.exception": {"RyuException": "OSKenException"},
}


class MissingRyuModule(ModuleNotFoundError):
    """A `ryu.` module that has no os-ken counterpart."""


def _os_ken_name(fullname):
    return OS_KEN + fullname[len(RYU):]


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass                      # already executed under its os-ken name


class RyuAliasFinder(importlib.abc.MetaPathFinder):
    """Finds `ryu` and `ryu.*` as the os-ken modules of the same path."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != RYU and not fullname.startswith(RYU + "."):
            return None
        own = _os_ken_name(fullname)
        try:
            found = importlib.util.find_spec(own)
        except ModuleNotFoundError:
            found = None
        if found is None:
            from tenantnet.controller.runner import os_ken_version
            raise MissingRyuModule(
                f"{fullname}: this Ryu module does not exist in os-ken {os_ken_version()} "
                f"(no {own}); os-ken dropped it. Run this app under Ryu itself (for "
                "example the csle-ryu-fork package's ryu-manager), or do without it",
                name=fullname)
        spec = importlib.util.spec_from_loader(fullname, _AliasLoader(own),
                                               is_package=found.submodule_search_locations
                                               is not None)
        if found.submodule_search_locations is not None:
            spec.submodule_search_locations = list(found.submodule_search_locations)
        return spec


def install():
    """Serve `ryu` from os-ken in this process (idempotent). Returns False when a real
    Ryu is already imported or importable here: then it is left alone."""
    if any(isinstance(f, RyuAliasFinder) for f in sys.meta_path):
        return True
    mod = sys.modules.get(RYU)
    if mod is not None and not getattr(mod, "__name__", "").startswith(OS_KEN):
        return False
    if mod is None and importlib.util.find_spec(RYU) is not None:
        return False
    for target, names in RENAMED.items():
        # `from ryu.base import app_manager` finds os_ken.base's attribute without
        # importing through the hook: give the Ryu spellings up front.
        module = importlib.import_module(target)
        for ryu_name, own in names.items():
            if not hasattr(module, ryu_name):
                setattr(module, ryu_name, getattr(module, own))
    sys.meta_path.insert(0, RyuAliasFinder())
    return True
