"""CSE paper experiment on simple_direction (s' = s + a + c, r = s'·c, trained at c = (0, 0)).

    python scripts/experiments/simple_direction.py                 # cpu scale, a few minutes
    python scripts/experiments/simple_direction.py --scale paper   # paper scale (GPU)
"""

from common import PAPER_EVAL, PAPER_LOOP, Experiment, Scale, main

SMALL = dict(num_envs=8, hidden_sizes=(64, 64), batch_size=128, learning_starts=400, grad_updates_per_step=2,
             buffer_size=20_000)

EXPERIMENT = Experiment(
    env="simple_direction",
    methods=("vanilla", "cse", "ldr", "dr"),
    cpu=Scale(steps=10_000, seeds=8, config=SMALL, eval_episodes=16),
    # The paper: 500 RLlib iterations of >= 104 env steps (8 envs x 13 rounds), 10 seeds, the preset SAC.
    paper=Scale(steps=52_000, seeds=10, config=PAPER_LOOP, chunks=10, **PAPER_EVAL),
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
