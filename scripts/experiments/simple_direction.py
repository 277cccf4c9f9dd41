"""CSE paper experiment on simple_direction (s' = s + a + c, r = s'·c, trained at c = (0, 0)).

    python scripts/experiments/simple_direction.py                 # cpu scale, a few minutes
    python scripts/experiments/simple_direction.py --scale paper   # paper scale (GPU)
"""

from common import Experiment, Scale, main

SMALL = dict(num_envs=8, hidden_sizes=(64, 64), batch_size=128, learning_starts=400, grad_updates_per_step=2)

EXPERIMENT = Experiment(
    env="simple_direction",
    methods=("vanilla", "cse", "ldr", "dr"),
    cpu=Scale(steps=10_000, seeds=8, config=SMALL, eval_episodes=16),
    # The paper's SAC (256x256, batch 256, one update per step) for 20k steps, 10 seeds.
    paper=Scale(steps=20_000, seeds=10, config=dict(num_envs=8), eval_episodes=32, sweep_points=11, chunks=5),
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
