"""What JAX compiled within a block of code: XLA compilations and persistent-cache loads.

:class:`CompileEvents` listens to JAX's monitoring events while it is entered:
every program handed to XLA (``/jax/core/compile/backend_compile_duration``, one per
program, whether it is then compiled or loaded from the persistent compilation
cache) and every program loaded from that cache (``/jax/compilation_cache/cache_hits``).
The run driver uses it around the compilation of one lowered program (``Lowered.compile``,
not the tracing before it, which may compile small eager operations of its own that
are too fast for the cache to keep) to say whether that program was compiled or
loaded; the tests use it to check that a resumed run compiles nothing new.

The listeners are registered on ``__enter__`` and removed on ``__exit__``; JAX's
listeners are process-wide, so compilations of other threads inside the block are
counted too.
"""

from __future__ import annotations

import jax

PROGRAM_EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


def compile_cache_dir() -> str | None:
    """The directory of JAX's persistent compilation cache, ``None`` when it is off."""
    return jax.config.jax_compilation_cache_dir or None


class CompileEvents:
    """Counts, within a ``with`` block, the programs JAX handed to XLA and those of them it
    loaded from the persistent compilation cache.

    ``programs``: programs handed to XLA; ``cache_hits``: of those, loaded from the
    persistent cache; ``compiled``: ``programs - cache_hits``, the ones XLA compiled.
    Programs JAX found in its in-memory caches (a function already compiled in this
    process with the same arguments) are not handed to XLA and not counted.
    """

    def __init__(self):
        self.programs = 0
        self.cache_hits = 0

    @property
    def compiled(self) -> int:
        return self.programs - self.cache_hits

    @property
    def loaded_from_cache(self) -> bool:
        """Every program handed to XLA in the block came from the persistent cache (and there was one)."""
        return self.programs > 0 and self.compiled == 0

    def _on_event(self, event: str, **_) -> None:
        if event == CACHE_HIT_EVENT:
            self.cache_hits += 1

    def _on_duration(self, event: str, duration: float, **_) -> None:
        if event == PROGRAM_EVENT:
            self.programs += 1

    def __enter__(self) -> "CompileEvents":
        jax.monitoring.register_event_listener(self._on_event)
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_listener(self._on_event)
        jax.monitoring.unregister_event_duration_listener(self._on_duration)
