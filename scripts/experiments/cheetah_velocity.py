"""CSE paper experiment on cheetah_velocity (MJX half-cheetah; context = target velocity, trained at 2.0).

    python scripts/experiments/cheetah_velocity.py                 # cpu scale: a short run, a smoke test of the protocol
    python scripts/experiments/cheetah_velocity.py --scale paper   # paper scale: 520k steps x 10 seeds (GPU)
"""

from common import MJX_CPU, PAPER_EVAL, PAPER_LOOP, Experiment, Scale, main

EXPERIMENT = Experiment(
    env="cheetah_velocity",
    methods=("vanilla", "cse", "ldr"),
    cpu=MJX_CPU,
    paper=Scale(steps=520_000, seeds=10, chunks=40, config=PAPER_LOOP, **PAPER_EVAL),
)

if __name__ == "__main__":
    raise SystemExit(main(EXPERIMENT))
