"""CSE paper experiment on pendulum_goal (context g, m, l, tau; trained at (2, 1, 1, 0)).

    python scripts/experiments/pendulum_goal.py                 # cpu scale
    python scripts/experiments/pendulum_goal.py --scale paper   # paper scale (GPU)
"""

from common import PAPER_EVAL, PAPER_LOOP, Experiment, Scale, main

EXPERIMENT = Experiment(
    env="pendulum_goal",
    methods=("vanilla", "cse", "ldr", "dr"),
    cpu=Scale(steps=24_000, seeds=5, eval_episodes=8,
              config=dict(num_envs=8, hidden_sizes=(64, 64), batch_size=128, grad_updates_per_step=4)),
    # The paper: 1000 RLlib iterations of >= 104 env steps, 10 seeds, the preset SAC (fully prioritized replay).
    paper=Scale(steps=104_000, seeds=10, chunks=10, config=PAPER_LOOP, **PAPER_EVAL),
    focus=("tau", 0.6, "for tau > 0.6"),
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
