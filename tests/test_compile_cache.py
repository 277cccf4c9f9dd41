"""A resumed run compiles nothing new: every program it needs is in JAX's persistent cache.

The default suite checks it in process on the tiny analytic run
(``tests/test_cli.py::test_end_to_end_resume_and_conflicts``). Here, at MJX size and
slow, ``zsgjax train`` runs in fresh processes sharing a fresh cache directory: a run,
a resume from its first checkpoint (a restored state trains on), and a resume of the
finished run (a restored state is evaluated); :class:`~zsgjax.reporting.compiles.CompileEvents`
counts what XLA compiled in each.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

# Runs `zsgjax train` and prints how many programs XLA compiled and loaded from the cache.
COUNTED_RUN = """
import sys
from zsgjax import cli
from zsgjax.reporting.compiles import CompileEvents
with CompileEvents() as events:
    code = cli.main(sys.argv[1:])
print(f"programs compiled {events.compiled} loaded {events.cache_hits}", flush=True)
sys.exit(code)
"""

MJX_TINY = ["train", "--env", "cheetah_velocity", "--method", "cse", "--seeds", "2", "--steps", "64", "--num-envs", "4",
            "--steps-per-iteration", "16", "--learning-starts", "16", "--batch-size", "16", "--buffer-size", "128",
            "--hidden-sizes", "16", "16", "--chunks", "2", "--keep", "3", "--eval-episodes", "1", "--sweep-points", "2",
            "--no-tensorboard"]


def counted_run(argv, cache):
    """``(compiled, loaded, stdout)`` of one ``zsgjax train`` in a fresh process using the cache ``cache``,
    which keeps every program however fast its compilation."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(ZSGJAX_COMPILE_CACHE=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               PYTHONPATH=os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", COUNTED_RUN, *argv], capture_output=True, text=True, env=env,
                          timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    compiled, loaded = map(int, re.search(r"programs compiled (\d+) loaded (\d+)", done.stdout).groups())
    return compiled, loaded, done.stdout


def test_compile_events_count_the_programs_xla_compiles_within_the_block():
    import jax
    import jax.numpy as jnp

    from zsgjax.reporting.compiles import CompileEvents

    program = jax.jit(lambda x: x * 3.25 + 1.5)  # too fast to compile for the suite's cache to keep it
    x, y = jnp.ones(7), jnp.ones(8)
    with CompileEvents() as events:
        program(x).block_until_ready()
        program(x).block_until_ready()  # found in JAX's in-memory cache: not handed to XLA
    assert (events.programs, events.cache_hits, events.compiled, events.loaded_from_cache) == (1, 0, 1, False)
    program(y).block_until_ready()  # after the block: not counted
    assert events.programs == 1


@pytest.mark.slow
def test_a_resumed_mjx_run_compiles_nothing_new(tmp_path):
    cache, out = str(tmp_path / "jit"), str(tmp_path / "run")
    compiled, _, lines = counted_run(MJX_TINY + ["--out", out], cache)
    assert compiled > 0 and "[cse] compiling the cheetah_velocity training programs for 2 seeds" in lines
    shutil.rmtree(os.path.join(out, "cse", "checkpoints", "4"))  # as if stopped after the first chunk
    compiled, loaded, lines = counted_run(MJX_TINY + ["--out", out, "--resume"], cache)
    assert compiled == 0 and loaded > 0, lines
    assert "[cse] resumed from iteration 2/4" in lines and "[cse] iteration 4/4" in lines
    assert "[cse] loaded the training programs for 2 seeds from the compilation cache in" in lines
    shutil.rmtree(os.path.join(out, "cse", "evaluations"))  # else the finished run reuses its stored evaluation
    compiled, loaded, lines = counted_run(MJX_TINY + ["--out", out, "--resume"], cache)  # finished: evaluated only
    assert compiled == 0 and loaded > 0, lines
    assert "[cse] loaded the evaluation program for 2 seeds x 1 episodes x " in lines
