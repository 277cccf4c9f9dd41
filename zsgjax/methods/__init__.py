"""Training methods as objects, registered by name: ``vanilla``, ``cse``, ``ldr``, ``dr``, ``cse_ldr``.

See :mod:`zsgjax.methods.base` for what a method is. A new method is one class in
one file::

    @register
    @dataclasses.dataclass(frozen=True)
    class MyMethod(Method):
        name = "mine"
        def context_sampler(self, space): ...

after which ``TrainConfig(method="mine")`` trains it (the CLI lists it too once
the file is imported).
"""

from zsgjax.methods.base import ContextSampler, EnvStep, Method, default_sampler, plain_collect
from zsgjax.methods.registry import make_method, method_class, method_names, register
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
]
