"""CSE paper experiment on ant_direction (MJX ant; context = walking direction (dir_x, dir_y) on the unit circle, trained at (1, 0)).

    python scripts/experiments/ant_direction.py                 # cpu scale: a short run (not run for the docs)
    python scripts/experiments/ant_direction.py --scale paper   # paper scale: 1.04M steps x 10 seeds (GPU)
"""

from common import MJX_CPU, PAPER_EVAL, PAPER_LOOP, Experiment, Scale, main

EXPERIMENT = Experiment(
    env="ant_direction",
    methods=("vanilla", "cse", "ldr", "dr"),
    cpu=MJX_CPU,
    paper=Scale(steps=1_040_000, seeds=10, chunks=40, config=PAPER_LOOP, **PAPER_EVAL),
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
