"""CSE paper experiment on pendulum_goal (context g, m, l, tau; trained at (2, 1, 1, 0)).

    python scripts/experiments/pendulum_goal.py                 # cpu scale
    python scripts/experiments/pendulum_goal.py --scale paper   # paper scale (GPU)
"""

from common import Experiment, Scale, main

EXPERIMENT = Experiment(
    env="pendulum_goal",
    methods=("vanilla", "cse", "ldr", "dr"),
    cpu=Scale(steps=24_000, seeds=5, eval_episodes=8,
              config=dict(num_envs=8, hidden_sizes=(64, 64), batch_size=128, grad_updates_per_step=4)),
    paper=Scale(steps=100_000, seeds=5, eval_episodes=16, chunks=10, config=dict(num_envs=8)),
    focus=("tau", 0.5, "at large |tau|"),
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
