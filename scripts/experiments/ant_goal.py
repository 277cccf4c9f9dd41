"""CSE paper experiment on ant_goal (MJX ant; context = goal angle on the radius-3 circle, trained at 0).

    python scripts/experiments/ant_goal.py                 # cpu scale: a short run (not run for the docs)
    python scripts/experiments/ant_goal.py --scale paper   # paper scale: 1M steps (GPU)
"""

from common import MJX_CPU, MJX_PAPER, Experiment, main

EXPERIMENT = Experiment(
    env="ant_goal",
    methods=("vanilla", "cse", "ldr", "dr"),
    cpu=MJX_CPU,
    paper=MJX_PAPER,
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
