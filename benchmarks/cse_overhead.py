"""Wall-time overhead of SAC+CSE over plain SAC, by gradient storage and context dimension.

For every environment and context dimension ``d`` three zsgjax trainers with the
same SAC settings are compiled apart and timed alternately (ABBA) on the same
number of training rounds (one round = one batched environment step + the
gradient updates), each started from a state whose replay already holds
``learning_starts`` transitions:

* ``vanilla``      -- ``method='vanilla'`` (no context gradients);
* ``cse_jacobian`` -- ``method='cse', cse_storage='jacobian'`` (``jacfwd`` at
  collection, ``d`` tangents; the full context Jacobian is stored);
* ``cse_jvp``      -- ``method='cse', cse_storage='jvp'`` (one ``jvp`` along the
  step drawn at insertion; one directional derivative stored).

The figure is the median over repeats of ``time(cse) / time(vanilla)``.

Environments:

* ``direction_d`` (analytic): a ``d``-dimensional generalisation of
  ``simple_direction`` defined here (state, action, context in ``R^d``,
  ``s' = s + a + c``, ``r = s' . c``, horizon 10), so the context dimension can be
  varied with nothing else changing in kind.
* ``cheetah_velocity`` (MJX): the half-cheetah with its target velocity plus
  ``d - 1`` physical features (gravity, mass scale, friction, actuator gain,
  damping, per-body masses), so every physical dimension is differentiated through
  the MJX physics.

"Where the time goes": the script also times the two components apart (at the largest context dimension) -- a
collection-only scan (``rollout.step`` with the plain collector or CSE's ``jacobian``/``jvp``/``auto`` one;
for the MJX env also with ``solver_tangent="unrolled"``, the tangent through every constraint-solver
iteration, against the default implicit-function-theorem tangent) and a scan of SAC updates on a replay
batch (plain and CSE-enhanced). Without autodiff (``cse_gradients="fd"``): the same collectors with central
finite differences (``jacobian_fd``: ``2 d`` extra steps, ``jvp_fd``: 2, vmapped with the primal step), timed
in the same alternation and reported as ``collect_jacobian_fd_over_jacobian`` / ``collect_jvp_fd_over_jvp`` (the
cost of FD against ``jacfwd`` / ``jvp``) and against the plain step. Each collection program's FLOPs per step (XLA ``cost_analysis``, which counts
the body of a loop once: one batched step, with one pass of the constraint solver's loop) and fraction of the matmul peak measured in the same run are recorded.

Run: ``python benchmarks/cse_overhead.py``; ``--scale 16`` for GPU-sized settings.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
from sac_vs_brax import ZsgjaxSide  # noqa: E402

from zsgjax import rollout  # noqa: E402
from zsgjax.methods import CSE, Vanilla, plain_collect  # noqa: E402
from zsgjax.methods.cse import resolve_storage as cse_resolve_storage  # noqa: E402
from zsgjax.envs.base import ContextualEnv  # noqa: E402
from zsgjax.envs.context import ContextSpace  # noqa: E402

PHYSICAL = (
    "gravity",
    "mass_scale",
    "friction_scale",
    "actuator_gain",
    "damping_scale",
    "mass_scale:torso",
    "mass_scale:bthigh",
)


class DirectionD(ContextualEnv):
    """``simple_direction`` in ``d`` dimensions: ``s' = s + a + c``, ``r = s' . c``, horizon 10."""

    horizon = 10

    def __init__(self, dim: int):
        if dim < 1:
            raise ValueError(f"DirectionD: `dim` must be >= 1, got {dim}")
        self.dim = int(dim)
        self.context_space = ContextSpace(
            tuple(f"c_{i}" for i in range(dim)), low=(-1.0,) * dim, high=(1.0,) * dim, default=(0.0,) * dim
        )
        self.state_obs_size = self.dim

    @property
    def action_size(self) -> int:
        return self.dim

    def init_env_state(self, rng, context):
        return jax.random.uniform(rng, (self.dim,), minval=-1.0, maxval=1.0)

    def observe(self, env_state, context):
        return env_state

    def env_step(self, env_state, action, context):
        next_s = env_state + jnp.clip(action, -1.0, 1.0) + context
        return next_s, next_s, jnp.dot(next_s, context), jnp.zeros((), dtype=bool)


def make_env(kind: str, dim: int, **kwargs):
    """``(registered name used for defaults, env)`` of a benchmark environment with context dimension ``dim``
    (``kwargs`` go to the MJX env's constructor, e.g. ``solver_tangent``)."""
    if kind == "direction_d":
        return "simple_direction", DirectionD(dim)
    if kind == "cheetah_velocity":
        if not 1 <= dim <= 1 + len(PHYSICAL):
            raise ValueError(f"cheetah_velocity: context dimension must be in [1, {1 + len(PHYSICAL)}], got {dim}")
        from zsgjax.envs import make

        return "cheetah_velocity", make("cheetah_velocity", physical=PHYSICAL[: dim - 1], **kwargs)
    raise ValueError(f"unknown benchmark environment '{kind}'; known: direction_d, cheetah_velocity")


SIDES = {
    "vanilla": dict(method="vanilla"),
    "cse_jacobian": dict(method="cse", cse_storage="jacobian"),
    "cse_jvp": dict(method="cse", cse_storage="jvp"),
    "cse_jacobian_fd": dict(method="cse", cse_storage="jacobian", cse_gradients="fd"),
    "cse_jvp_fd": dict(method="cse", cse_storage="jvp", cse_gradients="fd"),
}


def settings(args, kind: str) -> dict:
    n = args.num_envs * args.scale
    rounds = (args.mjx_rounds if kind == "cheetah_velocity" else args.rounds) * args.scale
    starts = -(-max(args.batch_size, 2 * n) // n) * n
    return dict(
        num_envs=n,
        rounds=rounds,
        batch_size=args.batch_size,
        hidden_sizes=tuple(args.hidden),
        grad_updates_per_step=args.grad_updates,
        buffer_size=max(10_000 * args.scale, starts + 3 * rounds * n),
        learning_starts=starts,
        gamma=0.99,
        tau=0.005,
        lr=3e-4,
        alpha_lr=3e-4,
    )


COLLECTORS = ("none", "jacobian", "jvp", "auto", "jacobian_fd", "jvp_fd")
FD_PAIRS = {"jacobian_fd": "jacobian", "jvp_fd": "jvp"}  # FD collector -> its autodiff counterpart


def component_times(env, trainer_by_side: dict, state_by_side: dict, s: dict, repeats: int, peak: float,
                    unrolled_env=None, collectors=COLLECTORS, fd_step: float = 0.01) -> dict:
    """Collection-only and update-only scans, compiled apart, timed alternately.

    ``unrolled_env``: the same MJX env with ``solver_tangent="unrolled"`` (adds the
    ``jacobian_unrolled``/``jvp_unrolled`` collectors); ``peak``: matmul GFLOP/s;
    ``collectors``: which of :data:`COLLECTORS` to time (``none`` always);
    ``fd_step``: ``cse_fd_step`` of the FD collectors.
    """
    n, rounds = s["num_envs"], s["rounds"]
    sampler = Vanilla().context_sampler(env.context_space)
    env_state = rollout.reset(env, jax.random.PRNGKey(0), n, sampler)

    def cse_collect(storage, gradients="autodiff"):
        return CSE(epsilon=0.1, mode="first_order", storage=storage, ratio=1.0, gradients=gradients,
                   fd_step=fd_step).collect

    unknown = set(collectors) - set(COLLECTORS)
    if unknown:
        raise ValueError(f"component_times: `collectors` must be among {', '.join(COLLECTORS)}, got {sorted(unknown)}")
    every = {"none": (env, plain_collect), "jacobian": (env, cse_collect("jacobian")),
             "jvp": (env, cse_collect("jvp")), "auto": (env, cse_collect("auto")),
             "jacobian_fd": (env, cse_collect("jacobian", "fd")), "jvp_fd": (env, cse_collect("jvp", "fd"))}
    collectors = {k: v for k, v in every.items() if k == "none" or k in collectors}
    if unrolled_env is not None:
        collectors["jacobian_unrolled"] = (unrolled_env, cse_collect("jacobian"))
        collectors["jvp_unrolled"] = (unrolled_env, cse_collect("jvp"))

    def one_step(mode):
        e, collector = collectors[mode]

        def f(st, k):
            k_a, k_s = jax.random.split(k)
            action = jax.random.uniform(k_a, (n, e.action_size), minval=-1.0, maxval=1.0)
            st, out = rollout.step(e, st, action, k_s, sampler, collector)
            # the stored derivatives must be outputs, or XLA removes their computation as dead code
            stored = sum(jnp.sum(x) for x in jax.tree.leaves(out.extras))
            return st, out.transition.reward.sum() + stored

        return f

    def collect(mode):
        def f(state, key):
            return jax.lax.scan(one_step(mode), state, jax.random.split(key, rounds))

        return f

    def updates(side):
        tr, st = trainer_by_side[side], state_by_side[side]

        def f(agent_state, key):
            def body(a, k):
                # one gradient update as the trainer does it, through public pieces
                k_sample, k_enh, k_upd = jax.random.split(k, 3)
                batch, weight, _ = tr.training_batch(tr.replay.sample(st.replay, k_sample), k_enh)
                a, _ = tr.agent.update(a, batch, weight, k_upd)
                return a, None

            return jax.lax.scan(body, agent_state, jax.random.split(key, rounds))[0]

        return f

    fns = {}
    compile_s = {}
    step_flops = {}
    for mode in collectors:
        fns[f"collect_{mode}"], compile_s[f"collect_{mode}"] = _common.compile_timed(
            collect(mode), env_state, jax.random.PRNGKey(1)
        )
        # XLA counts a scan body once: the scan's FLOPs are one step's (the solver's own loop also once)
        step_flops[mode] = _common.program_flops(fns[f"collect_{mode}"])
    for side in trainer_by_side:
        agent_state = state_by_side[side].agent
        fns[f"update_{side}"], compile_s[f"update_{side}"] = _common.compile_timed(
            updates(side), agent_state, jax.random.PRNGKey(2)
        )
    args = {k: (env_state,) if k.startswith("collect") else (state_by_side[k[len("update_"):]].agent,) for k in fns}
    times = _common.alternate(
        {k: (lambda k=k: _common.timed(fns[k], *args[k], jax.random.PRNGKey(3))[1]) for k in fns}, repeats
    )
    out = {k: {**_common.summary(v), "per_round_ms": 1000 * _common.median(v) / rounds} for k, v in times.items()}
    for mode in collectors:
        median_s = _common.median(times[f"collect_{mode}"])
        out[f"collect_{mode}"]["roofline_per_step"] = _common.roofline(step_flops[mode], median_s / rounds, peak)
        if mode != "none":
            out[f"collect_{mode}_over_none"] = _common.paired_ratio(times[f"collect_{mode}"], times["collect_none"])
        if FD_PAIRS.get(mode) in collectors:
            out[f"collect_{mode}_over_{FD_PAIRS[mode]}"] = _common.paired_ratio(
                times[f"collect_{mode}"], times[f"collect_{FD_PAIRS[mode]}"])
    out["auto_storage"] = cse_resolve_storage("auto", env)
    for side in trainer_by_side:
        if side != "vanilla" and "vanilla" in trainer_by_side:
            out[f"update_{side}_over_vanilla"] = _common.paired_ratio(times[f"update_{side}"], times["update_vanilla"])
    out["compile_s"] = compile_s
    return out


def parse_dims(text: str) -> list[int]:
    dims: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            dims.extend(range(int(lo), int(hi) + 1))
        elif part:
            dims.append(int(part))
    return dims


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", default="direction_d,cheetah_velocity")
    p.add_argument("--dims", default="1-8", help="context dimensions of the analytic env, e.g. 1-8 or 1,2,4")
    p.add_argument("--mjx-dims", default="1,8", help="context dimensions of the MJX env (1..8), e.g. 1-8")
    p.add_argument("--num-envs", type=int, default=8, help="parallel environments (times --scale)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", type=_common.hidden_sizes, default=(256, 256))
    p.add_argument("--grad-updates", type=int, default=1)
    p.add_argument("--rounds", type=int, default=50, help="timed batched steps, analytic env (times --scale)")
    p.add_argument("--mjx-rounds", type=int, default=10, help="timed batched steps, MJX env (times --scale)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--components", type=int, default=1, help="1: also time collection and updates apart")
    p.add_argument("--sides", default="vanilla,cse_jacobian,cse_jvp", help=f"trainers timed per row (of {', '.join(SIDES)})")
    p.add_argument("--collectors", default=",".join(COLLECTORS),
                   help=f"collectors timed in the components (of {', '.join(COLLECTORS)}; none always)")
    p.add_argument("--unrolled", type=int, default=1, help="1: also the MJX unrolled-solver collectors")
    p.add_argument("--fd-step", type=float, default=0.01, help="cse_fd_step of the FD collectors and sides")
    p.add_argument("--scale", type=int, default=1, help="multiplies num_envs, rounds and replay (16: GPU-sized)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(_common.RESULTS_DIR, "cse_overhead_cpu.json"))
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = _common.result_header("cse_overhead", args)
    result["method"] = (
        "Per (env, context dim): vanilla / cse_jacobian / cse_jvp trainers with identical SAC settings, each "
        "compiled apart (jit(trainer.run).lower().compile()), timed on the same number of learning rounds from a "
        "prefilled replay, alternated ABBA; figure = median of per-repeat time(cse)/time(vanilla). "
        "cse_mode=first_order, cse_ratio=1 (the whole batch is enhanced), cse_epsilon=0.1; FD sides and "
        f"collectors: cse_gradients=fd, cse_fd_step={args.fd_step:g}."
    )
    result["targets"] = {"analytic_jvp": "<= 1.15", "mjx_jvp": "<= 1.5"}
    result["rows"] = []
    for kind in [e for e in args.envs.split(",") if e]:
        s = settings(args, kind)
        dims = parse_dims(args.mjx_dims if kind == "cheetah_velocity" else args.dims)
        for d in dims:
            name, env = make_env(kind, d)
            sides = {k: ZsgjaxSide(name, env, s, args.seed, **SIDES[k]) for k in args.sides.split(",") if k}
            times = _common.alternate({k: z.measure for k, z in sides.items()}, args.repeats)
            row = {
                "env": kind,
                "context_dim": d,
                "context_names": list(env.context_space.names),
                "settings": s,
                "times": {k: {**_common.summary(v), "compile_s": sides[k].compile_s} for k, v in times.items()},
            }
            for k in SIDES:
                if k != "vanilla" and k in times and "vanilla" in times:
                    row["ratio_" + k[4:]] = _common.paired_ratio(times[k], times["vanilla"])
            for fd, autodiff in (("cse_jacobian_fd", "cse_jacobian"), ("cse_jvp_fd", "cse_jvp")):
                if fd in times and autodiff in times:
                    row[f"ratio_{fd[4:]}_over_{autodiff[4:]}"] = _common.paired_ratio(times[fd], times[autodiff])
            target = 1.5 if kind == "cheetah_velocity" else 1.15
            row["target_jvp"] = target
            if "ratio_jvp" in row:
                row["target_jvp_met"] = row["ratio_jvp"]["median"] <= target
            if args.components and d == dims[-1]:
                row["components"] = component_times(
                    env,
                    {k: z.trainer for k, z in sides.items()},
                    {k: z.state for k, z in sides.items()},
                    s,
                    args.repeats,
                    result["matmul_peak"]["gflops"],
                    make_env(kind, d, solver_tangent="unrolled")[1] if kind == "cheetah_velocity" and args.unrolled
                    else None,
                    collectors=tuple(c for c in args.collectors.split(",") if c),
                    fd_step=args.fd_step,
                )
            print(f"[cse_overhead] {kind} d={d}: " + ", ".join(
                f"{k} {v['median']:.3f}x" for k, v in row.items() if k.startswith("ratio_")), flush=True)
            for k, v in row.get("components", {}).items():
                if "_over_" in k:
                    print(f"[cse_overhead]   {k}: {v['median']:.3f}x", flush=True)
            result["rows"].append(row)
            _common.write_json(args.out, result)
    _common.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
