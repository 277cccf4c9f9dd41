"""Training methods as objects, registered by name: ``vanilla``, ``cse``, ``ldr``, ``dr``, ``cse_ldr``.

See :mod:`zsgjax.methods.base` for what a method is. A new method is one class in
one file::

    @register
    @dataclasses.dataclass(frozen=True)
    class MyMethod(Method):
        name = "mine"
        def context_sampler(self, space): ...

after which ``TrainConfig(method="mine")`` trains it (the CLI lists it too once
the file is imported). Its settings are its dataclass fields, each declared once::

        temperature: float = param(1.0, low=0.0, low_open=True, help="...")

which makes ``TrainConfig.mine_temperature`` and ``--mine-temperature`` (see
:mod:`zsgjax.methods.settings`).
"""

from zsgjax.methods.base import ContextSampler, EnvStep, Method, default_sampler, plain_collect
from zsgjax.methods.registry import make_method, method_class, method_names, register, registered_settings
from zsgjax.methods.settings import Setting, settings_of
from zsgjax.methods.vanilla import Vanilla
from zsgjax.methods.cse import CSE
from zsgjax.methods.ldr import LDR
from zsgjax.methods.dr import DR
from zsgjax.methods.cse_ldr import CSEWithLDR

__all__ = [
    "CSE",
    "CSEWithLDR",
    "ContextSampler",
    "DR",
    "EnvStep",
    "LDR",
    "Method",
    "Vanilla",
    "default_sampler",
    "make_method",
    "method_class",
    "method_names",
    "plain_collect",
    "register",
    "registered_settings",
    "Setting",
    "settings_of",
]
