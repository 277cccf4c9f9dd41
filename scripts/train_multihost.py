"""Train over a ``(seeds, envs)`` mesh spanning several processes (machines): ``zsgjax train``.

A thin call of the one run driver: this process becomes ``python -m zsgjax train``
with the same arguments (``os.execv``: the same process id, so signals and exit
status are ``zsgjax train``'s), which runs :mod:`zsgjax.runner`. Every option is
``zsgjax train``'s, and so are the chunks, checkpoints, ``--resume``,
divergence checks, evaluation and results. Start one process per machine, all with
the same options except ``--process-id``; process 0 also runs the coordinator on
``--coordinator``'s port and alone writes ``--out`` (checkpoints, metrics, results).
On 2 machines with 8 GPUs each (16 seeds, 2 per mesh row, the gradient all-reduce
of each seed inside one machine)::

    # machine 0 (10.0.0.1)                  # machine 1
    python scripts/train_multihost.py \\      python scripts/train_multihost.py \\
      --coordinator 10.0.0.1:29400 \\           --coordinator 10.0.0.1:29400 \\
      --num-processes 2 --process-id 0 \\       --num-processes 2 --process-id 1 \\
      --env pendulum_goal --method cse \\       --env pendulum_goal --method cse \\
      --mesh-seeds 2 --seeds 16 \\              --mesh-seeds 2 --seeds 16 \\
      --out runs/multihost                      --out runs/multihost

Add ``--resume`` to both to continue from process 0's latest checkpoint. On one
machine, for testing, give each process its CPU devices with ``--local-device-count``
(``JAX_PLATFORMS=cpu``). See docs/sharding.md.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """Replace this process with ``python -m zsgjax train`` and ``argv`` (default: this
    command's arguments); does not return."""
    args = list(sys.argv[1:] if argv is None else argv)
    os.execv(sys.executable, [sys.executable, "-m", "zsgjax", "train", *args])


if __name__ == "__main__":
    main()
