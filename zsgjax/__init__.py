"""zsgjax: zero-shot context generalization in reinforcement learning, in JAX."""

import contextlib as _contextlib
import io as _io

__version__ = "0.1.0"

# mujoco.mjx prints "Failed to import warp" / "Failed to import mujoco_warp" on stdout
# when its optional Warp backend is absent (zsgjax uses the JAX backend only). Import it
# once here, quietly, so no command's output starts with those two lines.
with _contextlib.redirect_stdout(_io.StringIO()):
    try:
        import mujoco.mjx  # noqa: F401
    except ImportError:  # pragma: no cover - mujoco-mjx is a dependency; let the real import fail later
        pass
