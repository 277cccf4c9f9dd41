"""CSE paper experiment on ant_goal (MJX ant; context = goal position (goal_x, goal_y) on the radius-3 circle, trained at (3, 0)).

    python scripts/experiments/ant_goal.py                 # cpu scale: a short run (not run for the docs)
    python scripts/experiments/ant_goal.py --scale paper   # paper scale: 1.04M steps x 10 seeds (GPU)
"""

from common import MJX_CPU, PAPER_EVAL, PAPER_LOOP, Experiment, Scale, main

EXPERIMENT = Experiment(
    env="ant_goal",
    methods=("vanilla", "cse", "ldr", "dr"),
    cpu=MJX_CPU,
    paper=Scale(steps=1_040_000, seeds=10, chunks=40, config=PAPER_LOOP, **PAPER_EVAL),
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
