"""The argument specs of the collection's modules, as each module builds them: main() runs with BackupModule
stopped at its constructor, which hands over the spec and the other validation arguments. The technique
ansible-test's validate-modules uses; shared by the unit tests and the example inventory's test."""

import importlib
import os
from unittest import mock

from ansible_collections.songmetrix.backup.plugins.module_utils import module_base

PACKAGE = "ansible_collections.songmetrix.backup.plugins.modules"
MODULES_DIR = os.path.join(os.path.dirname(module_base.__file__), os.pardir, "modules")


class _Captured(Exception):
    def __init__(self, kwargs):
        super().__init__("captured")
        self.kwargs = kwargs


def _capture(self, *args, **kwargs):
    if args:
        kwargs["argument_spec"] = args[0]
    raise _Captured(kwargs)


def module_names():
    return sorted(name[:-3] for name in os.listdir(MODULES_DIR) if name.endswith(".py") and not name.startswith("_"))


def module_arguments(name):
    """The keyword arguments the module gives BackupModule: argument_spec, required_if, mutually_exclusive, ..."""
    module = importlib.import_module("%s.%s" % (PACKAGE, name))
    with mock.patch.object(module_base.BackupModule, "__init__", _capture):
        try:
            module.main()
        except _Captured as captured:
            return captured.kwargs
    raise AssertionError("module %s did not build a BackupModule" % name)


def module_argument_specs():
    """{module name: argument_spec} of every module of the collection."""
    return {name: module_arguments(name)["argument_spec"] for name in module_names()}
