"""Benchmark: one SAC update in four layouts (optimiser per leaf or flat, twin critic vmapped or two MLPs).

Why zsgjax's update was slower than brax's at the same FLOPs. Four versions of
:meth:`zsgjax.agents.sac.SAC.update`, the same arithmetic (XLA ``cost_analysis``):

* ``leaf_vmap`` -- the default: the twin critic is one ``nn.vmap``-ed module (a batched
  matrix product per layer), Adam per parameter leaf;
* ``flat_vmap`` -- ``SACConfig(flat_optimizer=True)``: the networks' Adam on one flat
  vector each (``optax.flatten``; fewer kernels);
* ``leaf_loop`` / ``flat_loop`` -- the critics as two separate MLPs (as brax has them;
  defined here, not a library option).

Each is a ``lax.scan`` of ``--steps`` updates on one fixed replay batch, compiled apart,
alternated ABBA (``--repeats``); the figure is each version's speed over the default's,
the median of the per-repeat ratios. Kernel counts come from the compiled HLO of one
update (``benchmarks/hlo_fusions.py``).

    python benchmarks/sac_update_variants.py            # pendulum_goal and cheetah_velocity, 256x256, batch 256
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import _common  # noqa: E402
from hlo_fusions import count_kernels  # noqa: E402
from zsgjax.agents.networks import QValue  # noqa: E402
from zsgjax.agents.sac import SAC  # noqa: E402

VARIANTS = {"leaf_vmap": (False, False), "flat_vmap": (True, False), "leaf_loop": (False, True),
            "flat_loop": (True, True)}  # name: (flat_optimizer, separate critic MLPs)
DEFAULT = "leaf_vmap"


class SeparateCritics(nn.Module):
    """``num_critics`` critics as separate MLPs: ``(..., obs), (..., act) -> (num_critics, ...)``."""

    hidden_sizes: tuple[int, ...]
    num_critics: int = 2

    @nn.compact
    def __call__(self, obs, action):
        return jnp.stack([QValue(self.hidden_sizes)(obs, action) for _ in range(self.num_critics)])


@dataclasses.dataclass(frozen=True)
class SeparateCriticSAC(SAC):
    """zsgjax's SAC with :class:`SeparateCritics` in place of the vmapped ensemble."""

    @property
    def critic(self):
        return SeparateCritics(tuple(self.config.hidden_sizes), self.config.num_critics)


def agents(base: SAC) -> dict[str, SAC]:
    out = {}
    for name, (flat, separate) in VARIANTS.items():
        cls = SeparateCriticSAC if separate else SAC
        out[name] = cls(base.obs_size, base.action_size, base.normalizer,
                        dataclasses.replace(base.config, flat_optimizer=flat))
    return out


def measure_env(env: str, args) -> dict:
    from zsgjax.train import TrainConfig, make_train

    trainer = make_train(TrainConfig(env=env, num_envs=8, batch_size=args.batch_size, hidden_sizes=args.hidden,
                                     total_steps=8, steps_per_iteration=8, learning_starts=0,
                                     buffer_size=max(4 * args.batch_size, 1024)))
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    state, _ = jax.jit(lambda s: trainer.run(s, 1))(state)  # 8 transitions in the replay
    batch = trainer.replay.sample(state.replay, jax.random.PRNGKey(1)).transition
    weight = jnp.ones(batch.reward.shape, jnp.float32)
    sides, rows = {}, {}
    for name, agent in agents(trainer.agent).items():
        a0 = jax.jit(agent.init)(jax.random.PRNGKey(2))

        def scan(a, key, agent=agent):
            def body(a, k):
                a, m = agent.update(a, batch, weight, k)
                return a, m["critic_loss"]
            return jax.lax.scan(body, a, jax.random.split(key, args.steps))

        compiled, compile_s = _common.compile_timed(scan, a0, jax.random.PRNGKey(3))
        one = jax.jit(lambda a, k, agent=agent: agent.update(a, batch, weight, k)).lower(a0, jax.random.PRNGKey(3)).compile()
        counts = count_kernels(one.as_text())
        rows[name] = {"flat_optimizer": VARIANTS[name][0], "separate_critics": VARIANTS[name][1],
                      "compile_s": compile_s, "update_flops": _common.program_flops(one),
                      **{k: counts[k] for k in ("fusion", "kernels", "launches")}}

        def run(compiled=compiled, a0=a0):
            t0 = time.perf_counter()
            _common.block(compiled(a0, jax.random.PRNGKey(4)))
            return time.perf_counter() - t0

        run()  # warm
        sides[name] = run
    times = _common.alternate(sides, args.repeats)
    for name, row in rows.items():
        seconds = _common.median(times[name]) / args.steps
        row.update(ms_per_update=seconds * 1e3, runs_s=times[name],
                   speed_over_default=_common.paired_ratio(times[DEFAULT], times[name]),
                   roofline=_common.roofline(row["update_flops"], seconds, args.peak))
    return {"env": env, "obs_size": trainer.agent.obs_size, "action_size": trainer.agent.action_size, "variants": rows}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=["pendulum_goal", "cheetah_velocity"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", type=_common.hidden_sizes, default=(256, 256))
    p.add_argument("--steps", type=int, default=50, help="updates per timed call")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--out", default=os.path.join(_common.RESULTS_DIR, "sac_update_variants_cpu.json"))
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = _common.result_header("sac_update_variants", args)
    args.peak = result["matmul_peak"]["gflops"]
    result["rows"] = [measure_env(env, args) for env in args.envs]
    _common.result_footer(result)
    for row in result["rows"]:
        for name, v in row["variants"].items():
            r = v["speed_over_default"]
            print(f"[sac_update_variants] {row['env']:>16} {name}: {v['ms_per_update']:.3f} ms/update, "
                  f"speed over {DEFAULT} {r['median']:.2f} [{r['min']:.2f}, {r['max']:.2f}], "
                  f"{v['fusion']} fusions, {v['launches']} launches", flush=True)
    _common.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
