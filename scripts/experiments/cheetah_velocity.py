"""CSE paper experiment on cheetah_velocity (MJX half-cheetah; context = target velocity, trained at 2.0).

    python scripts/experiments/cheetah_velocity.py                 # cpu scale: a short run, a smoke test of the protocol
    python scripts/experiments/cheetah_velocity.py --scale paper   # paper scale: 1M steps (GPU)
"""

from common import MJX_CPU, MJX_PAPER, Experiment, main

EXPERIMENT = Experiment(
    env="cheetah_velocity",
    methods=("vanilla", "cse", "ldr"),
    cpu=MJX_CPU,
    paper=MJX_PAPER,
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
