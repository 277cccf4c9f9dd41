"""CSE paper experiment on cart_goal (DQN; context g, m_pole, m_cart, l, goal; trained at goal 0).

    python scripts/experiments/cart_goal.py                 # cpu scale
    python scripts/experiments/cart_goal.py --scale paper   # paper scale (GPU)
"""

from common import Experiment, Scale, main

DQN = dict(num_envs=8, gamma=0.95, target_update_period=100, grad_updates_per_step=2)

EXPERIMENT = Experiment(
    env="cart_goal",
    methods=("vanilla", "cse", "ldr", "dr"),
    cpu=Scale(steps=100_000, seeds=5, eval_episodes=8,
              config=dict(DQN, hidden_sizes=(64, 64), batch_size=128)),
    paper=Scale(steps=200_000, seeds=5, eval_episodes=16, chunks=10, config=DQN),
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
