"""CSE paper experiment on cart_goal (DQN; context g, m_pole, m_cart, l, goal; trained at goal 0).

    python scripts/experiments/cart_goal.py                 # cpu scale
    python scripts/experiments/cart_goal.py --scale paper   # paper scale (GPU)
"""

from common import PAPER_EVAL, PAPER_LOOP, Experiment, Scale, main

DQN = dict(num_envs=8, gamma=0.95, target_update_period=100, grad_updates_per_step=2)

EXPERIMENT = Experiment(
    env="cart_goal",
    methods=("vanilla", "cse", "ldr", "dr"),
    # cpu: the earlier zsgjax network (ReLU trunk, linear dueling heads) at 64x64
    cpu=Scale(steps=100_000, seeds=5, eval_episodes=8,
              config=dict(DQN, hidden_sizes=(64, 64), dqn_activation="relu", dqn_head_hidden_size=0, batch_size=128)),
    # The paper: 2000 RLlib iterations of 1000 env steps, 10 seeds, the preset DQN (batch 32, PER, eps 1 -> 0.02)
    # with the paper's Q-network (a shared 256-unit tanh layer, dueling heads of one 256-unit ReLU layer).
    paper=Scale(steps=2_000_000, seeds=10, chunks=40, config=PAPER_LOOP, **PAPER_EVAL),
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
