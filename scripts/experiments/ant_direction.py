"""CSE paper experiment on ant_direction (MJX ant; context = direction angle, trained at 0).

    python scripts/experiments/ant_direction.py                 # cpu scale: a short run (not run for the docs)
    python scripts/experiments/ant_direction.py --scale paper   # paper scale: 1M steps (GPU)
"""

from common import MJX_CPU, MJX_PAPER, Experiment, main

EXPERIMENT = Experiment(
    env="ant_direction",
    methods=("vanilla", "cse", "ldr", "dr"),
    cpu=MJX_CPU,
    paper=MJX_PAPER,
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
