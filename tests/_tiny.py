"""The one tiny training setup shared by the CLI, checkpoint and experiment-protocol tests.

Tests that train it with the same number of seeds and chunk size build identical
programs, so the session's compilation cache (``conftest.py``) compiles them once.
"""

TINY_TRAIN = dict(env="simple_direction", total_steps=64, num_envs=4, steps_per_iteration=16, learning_starts=16,
                  batch_size=16, buffer_size=128, hidden_sizes=(16, 16))
TINY_SEEDS = 2
TINY_CHUNK_ITERATIONS = 2  # 4 iterations in 2 chunks
TINY_EVAL = dict(eval_episodes=2, sweep_points=3)
