"""zsgjax SAC against rejax's SAC (``rejax.SAC``) at equal settings, one seed and vmapped seeds.

Both learners step the **same dynamics**: zsgjax trains its ``pendulum_goal`` env
directly; rejax trains the same env object through zsgjax's gymnax adapter
(``zsgjax.adapters.gymnax.GymnaxEnv``, whose step *is* the zsgjax env's step),
drawing every episode's context from the same sampler as zsgjax's trainer.
Equal settings: parallel environments (rejax ``num_envs``), batch size, hidden
layers (rejax ``hidden_layer_sizes``), one gradient update per batched env step
(rejax ``num_epochs``), replay capacity (rejax ``buffer_size``), warm-up (rejax
learns when ``global_step > fill_buffer``; ``fill_buffer = learning_starts - 1``
matches zsgjax's ``env_steps >= learning_starts``), discount, Polyak rate (rejax
``polyak = 1 - tau``, one target update per batched step), learning rates (rejax has
one rate for actor, critics and temperature; zsgjax gets that rate for all three),
initial temperature 1, target entropy ``-action_size``, actions in ``[-1, 1]``
(zsgjax ``action_scale = 1``, the adapter's ``action_bound = 1``), no observation or
reward normalisation, two critics.

What cannot be equalised (stored in the JSON under ``differences``): see
:data:`DIFFERENCES`. The largest is rejax's replay sampling (a draw without
replacement over the whole capacity: ``buffer_size`` Gumbel keys and a ``top_k``
per update), which is why the ``update_profile`` (one update alone on one fixed
batch, both sides) is reported next to the training rounds.

What is timed (steady state, compile apart, both compiled once):

* **zsgjax**: ``jit(trainer.run).lower(state, 1).compile()`` (``benchmarks/sac_vs_brax.py``'s
  ``ZsgjaxSide``), ``rounds`` batched steps from a state whose replay holds
  ``learning_starts`` transitions;
* **rejax**: ``jit(lambda ts: fori_loop(0, rounds, algo.train_iteration, ts))``, the loop
  rejax's own ``train`` runs between evaluations (evaluation left out), from a state
  past ``fill_buffer`` (warmed up by the same compiled program).

The sides alternate ABBA, ``--repeats`` times; the figure is the median of the
paired ratios ``rejax time / zsgjax time`` (= zsgjax steps/s over rejax steps/s),
with ``of_minima``. ``--seeds 4`` adds the vmapped-seeds comparison (rejax's selling
point is ``vmap(train)``): ``K`` prefilled states, zsgjax ``trainer.run_seeds``
against ``jax.vmap`` of rejax's loop, the same alternation. FLOPs: XLA
``cost_analysis`` of one loop-free training round per side (zsgjax ``Trainer._round``,
rejax ``train_iteration``) and of one update, times the calls; the fraction is of the
matmul peak measured in the same run (``_common.matmul_peak``).

gymnax 1.0.1's ``Environment.step`` returns six values ``(obs, state, reward,
terminated, truncated, info)``; rejax 0.1.3 unpacks the five of older gymnax
``(obs, state, reward, done, info)``. The adapter's
:class:`~zsgjax.adapters.gymnax.FiveValueStep` gives rejax the old signature with
``done = terminated | truncated`` (noted in the JSON).

Run: ``python benchmarks/sac_vs_rejax.py`` (CPU sizes).
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import sac_vs_brax  # noqa: E402

DIFFERENCES = (
    "replay sampling: rejax draws each minibatch without replacement over the whole capacity "
    "(jax.random.choice(buffer_size, replace=False, p=mask): buffer_size Gumbel keys and a lax.top_k of them per "
    "update); zsgjax draws uniform indices with replacement (flashbax). rejax's buffer, not a setting.",
    "warm-up actions: rejax acts with the policy from the first step; zsgjax takes uniform random actions "
    "before learning_starts and computes both actions every round (jnp.where). Both act with the policy in the "
    "timed (steady-state) rounds.",
    "optimisers: rejax uses one optax.chain(clip(max_grad_norm=inf), adam(lr)) for actor, critics and "
    "temperature (an elementwise no-op clip per leaf); zsgjax uses three Adams at the same rate, the networks' "
    "on one flat vector (optax.flatten).",
    "update order: rejax actor, critics (next action from the new actor), temperature; zsgjax temperature, "
    "critics, actor (with the fresh critics). Same arithmetic.",
    "truncation: rejax stores done = terminated | truncated (no bootstrap at the 200-step time limit), zsgjax "
    "bootstraps through truncation. Same arithmetic.",
    "policy head: rejax clips the log-std to [-10, 2] and scales tanh actions to the Box (here [-1, 1]); zsgjax's "
    "own log-std bounds. Same arithmetic up to a few elementwise ops.",
    "twin critics: both vmap one critic over two parameter sets (rejax jax.vmap of QNetwork.apply, zsgjax "
    "nn.vmap EnsembleCritic).",
)

SHIM_NOTE = (
    "gymnax 1.0.1 Environment.step returns (obs, state, reward, terminated, truncated, info); rejax 0.1.3 "
    "unpacks (obs, state, reward, done, info). zsgjax.adapters.gymnax.FiveValueStep gives rejax the old "
    "signature with done = terminated | truncated, as gymnax < 1.0 returned."
)


def make_rejax(env, sampler, s: dict):
    """``rejax.SAC`` on ``GymnaxEnv(env, sampler)`` at the settings ``s`` (see the module docstring)."""
    from rejax import SAC

    from zsgjax.adapters.gymnax import FiveValueStep, GymnaxEnv

    genv = GymnaxEnv(env, sampler=sampler, action_bound=1.0)
    return SAC.create(
        env=FiveValueStep(genv),
        env_params=genv.default_params,
        num_envs=s["num_envs"],
        batch_size=s["batch_size"],
        buffer_size=s["buffer_size"],
        fill_buffer=s["learning_starts"] - 1,
        hidden_layer_sizes=s["hidden_sizes"],
        learning_rate=s["lr"],
        gamma=s["gamma"],
        polyak=1.0 - s["tau"],
        num_epochs=s["grad_updates_per_step"],
        skip_initial_evaluation=True,
    )


class RejaxSide:
    """A compiled rejax loop of ``rounds`` ``train_iteration`` calls from a state past the warm-up.

    ``seeds=0``: one seed; ``seeds=K``: ``jax.vmap`` of the loop over ``K`` states.
    """

    def __init__(self, algo, s: dict, seed: int, seeds: int = 0):
        rounds = s["rounds"]

        def run(ts):
            return jax.lax.fori_loop(0, rounds, lambda _, t: algo.train_iteration(t), ts)

        key = jax.random.PRNGKey(seed)
        if seeds:
            ts = jax.jit(jax.vmap(algo.init_state))(jax.random.split(key, seeds))
            run = jax.vmap(run)
        else:
            ts = jax.jit(algo.init_state)(key)
        self.run, self.compile_s = _common.compile_timed(run, ts)
        step = lambda t: jnp.min(t.global_step)  # noqa: E731
        while int(step(ts)) <= algo.fill_buffer:
            ts = _common.block(self.run(ts))
        self.state = ts
        self.algo = algo

    def measure(self) -> float:
        return _common.timed(self.run, self.state)[1]


class ZsgjaxSeeds:
    """zsgjax ``trainer.run_seeds`` of ``K`` seeds, compiled apart, from prefilled states."""

    def __init__(self, trainer, s: dict, seed: int, seeds: int):
        keys = jax.random.split(jax.random.PRNGKey(seed), seeds)
        state = jax.jit(jax.vmap(trainer.init))(keys)
        self.run, self.compile_s = _common.compile_timed(trainer.run_seeds, state, 1, static_argnums=(1,))
        while int(state.env_steps[0]) < s["learning_starts"]:
            state = _common.block(self.run(state)[0])
        self.state = state

    def measure(self) -> float:
        return _common.timed(self.run, self.state)[1]


def round_flops(z: sac_vs_brax.ZsgjaxSide, r: RejaxSide) -> dict:
    """FLOPs of one learning round per side (loop-free: XLA counts a ``cond``'s heavier branch)."""
    return {
        "zsgjax_round": _common.loop_free_flops(lambda st: z.trainer._round(st, None), z.state),
        "rejax_round": _common.loop_free_flops(r.algo.train_iteration, r.state),
    }


def update_profile(z: sac_vs_brax.ZsgjaxSide, r: RejaxSide, repeats: int, peak: float, steps: int = 50) -> dict:
    """One SAC update alone, zsgjax against rejax, on one fixed replay batch (the same arrays).

    A ``lax.scan`` of ``steps`` updates per side (zsgjax ``SAC.update``; rejax
    ``SAC.update`` followed by its Polyak step), compiled apart, alternated ABBA; FLOPs
    of one loop-free update per side and their fraction of the matmul peak.
    """
    from rejax.buffers import Minibatch

    agent, algo = z.trainer.agent, r.algo
    tr = z.trainer.replay.sample(z.state.replay, jax.random.PRNGKey(1)).transition
    weight = jnp.ones(tr.reward.shape, jnp.float32)
    mb = Minibatch(obs=tr.obs, action=tr.action, reward=tr.reward, done=tr.done.astype(bool), next_obs=tr.next_obs)
    keys = jax.random.split(jax.random.PRNGKey(2), steps)

    def z_one(a, k):
        return agent.update(a, tr, weight, k)[0]

    def r_one(nets, k, ts):
        actor, critic, target, alpha = nets
        t = ts.replace(actor_ts=actor, critic_ts=critic, critic_target_params=target, alpha_ts=alpha, rng=k)
        t = algo.update(t, mb)
        target = algo.maybe_update_target_params(t.critic_ts.params, t.critic_target_params, 1, 0)
        return (t.actor_ts, t.critic_ts, target, t.alpha_ts)

    def z_updates(a):
        return jax.lax.scan(lambda a, k: (z_one(a, k), None), a, keys)[0]

    def r_updates(nets, ts):
        return jax.lax.scan(lambda n, k: (r_one(n, k, ts), None), nets, keys)[0]

    ts = r.state
    nets = (ts.actor_ts, ts.critic_ts, ts.critic_target_params, ts.alpha_ts)
    zc, z_compile = _common.compile_timed(z_updates, z.state.agent)
    rc, r_compile = _common.compile_timed(r_updates, nets, ts)
    times = _common.alternate(
        {"zsgjax": lambda: _common.timed(zc, z.state.agent)[1], "rejax": lambda: _common.timed(rc, nets, ts)[1]},
        repeats,
    )
    z_flops = _common.loop_free_flops(z_one, z.state.agent, keys[0])
    r_flops = _common.loop_free_flops(r_one, nets, keys[0], ts)
    return {
        "updates_per_measurement": steps,
        "zsgjax_ms_per_update": 1000 * _common.median(times["zsgjax"]) / steps,
        "rejax_ms_per_update": 1000 * _common.median(times["rejax"]) / steps,
        "speedup_zsgjax_over_rejax": _common.paired_ratio(times["rejax"], times["zsgjax"]),
        "compile_s": {"zsgjax": z_compile, "rejax": r_compile},
        "zsgjax_roofline": _common.roofline(z_flops and z_flops * steps, _common.median(times["zsgjax"]), peak),
        "rejax_roofline": _common.roofline(r_flops and r_flops * steps, _common.median(times["rejax"]), peak),
        "zsgjax_update_flops": z_flops,
        "rejax_update_flops": r_flops,
    }


def side_summary(times, steps: int, compile_s: float, flops_per_round, rounds: int, seeds: int, peak: float) -> dict:
    """Times, env steps/s (all seeds), compile seconds and the roofline of ``seeds x rounds`` rounds."""
    med = _common.median(times)
    total = flops_per_round * rounds * seeds if flops_per_round else None
    return {**_common.summary(times), "steps_per_s": steps * seeds / med, "compile_s": compile_s,
            "roofline": _common.roofline(total, med, peak)}


# ----------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="pendulum_goal", help="a zsgjax env name (rejax steps it through GymnaxEnv)")
    _common.add_sac_options(p)
    p.add_argument("--rounds", type=int, default=100, help="timed batched steps per measurement")
    p.add_argument("--seeds", type=int, nargs="*", default=[4], help="vmapped seed counts K to compare (none: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(_common.RESULTS_DIR, "sac_vs_rejax_cpu.json"))
    args = p.parse_args(argv)
    for name in ("num_envs", "batch_size", "rounds", "buffer_size", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"`--{name.replace('_', '-')}` must be >= 1, got {getattr(args, name)}")
    if args.grad_updates < 1:
        p.error(f"`--grad-updates` must be >= 1 (rejax num_epochs), got {args.grad_updates}")
    if any(k < 1 for k in args.seeds):
        p.error(f"`--seeds` must be counts >= 1, got {args.seeds}")
    return args


def settings(args) -> dict:
    """sac_vs_brax's settings at ``--scale 1`` (the same rounding of the warm-up to whole batched steps)."""
    ns = argparse.Namespace(**vars(args), scale=1, mjx_rounds=args.rounds)
    return sac_vs_brax.settings_for(ns, args.env)


def main(argv=None) -> dict:
    import rejax

    args = parse_args(argv)
    s = settings(args)
    result = _common.result_header("sac_vs_rejax", args)
    peak = result["matmul_peak"]["gflops"]
    result.update(rejax_version=getattr(rejax, "__version__", "0.1.3"), rejax_shim=SHIM_NOTE,
                  differences=list(DIFFERENCES), settings=s)
    result["method"] = (
        "zsgjax: jit(trainer.run).lower(state, 1).compile() apart, the compiled run of `rounds` batched steps from a "
        "prefilled state; rejax: jit(fori_loop(0, rounds, algo.train_iteration)) compiled apart, from a state past "
        "fill_buffer; same env (rejax through zsgjax.adapters.gymnax.GymnaxEnv and FiveValueStep); alternated "
        "ABBA; median of paired ratios rejax time / zsgjax time (= zsgjax/rejax steps/s)."
    )
    env = sac_vs_brax.build_env(args.env)
    steps = s["rounds"] * s["num_envs"]
    print(f"[sac_vs_rejax] {args.env}: {s}", flush=True)
    z = sac_vs_brax.ZsgjaxSide(args.env, env, s, args.seed)
    algo = make_rejax(env, z.trainer.sampler, s)
    r = RejaxSide(algo, s, args.seed)
    flops = round_flops(z, r)
    times = _common.alternate({"zsgjax": z.measure, "rejax": r.measure}, args.repeats)
    row = {
        "env": args.env,
        "seeds": 1,
        "vmapped": False,
        "timed_env_steps": steps,
        "round_flops": flops,
        "zsgjax": side_summary(times["zsgjax"], steps, z.compile_s, flops["zsgjax_round"], s["rounds"], 1, peak),
        "rejax": side_summary(times["rejax"], steps, r.compile_s, flops["rejax_round"], s["rounds"], 1, peak),
        "speedup_zsgjax_over_rejax": _common.paired_ratio(times["rejax"], times["zsgjax"]),
    }
    result["rows"] = [row]
    print(f"[sac_vs_rejax] 1 seed: zsgjax {row['zsgjax']['steps_per_s']:.0f} steps/s, rejax "
          f"{row['rejax']['steps_per_s']:.0f} steps/s, ratio {row['speedup_zsgjax_over_rejax']['median']:.2f} "
          f"(compile zsgjax {z.compile_s:.1f}s, rejax {r.compile_s:.1f}s)", flush=True)
    _common.write_json(args.out, result)
    if args.profile:
        result["update_profile"] = up = update_profile(z, r, args.repeats, peak)
        print(f"[sac_vs_rejax] one update: zsgjax {up['zsgjax_ms_per_update']:.2f} ms, rejax "
              f"{up['rejax_ms_per_update']:.2f} ms, ratio {up['speedup_zsgjax_over_rejax']['median']:.2f}", flush=True)
        _common.write_json(args.out, result)
    for k in args.seeds:
        zk = ZsgjaxSeeds(z.trainer, s, args.seed, k)
        rk = RejaxSide(algo, s, args.seed, seeds=k)
        times = _common.alternate({"zsgjax": zk.measure, "rejax": rk.measure}, args.repeats)
        row = {
            "env": args.env,
            "seeds": k,
            "vmapped": True,
            "timed_env_steps": steps * k,
            "round_flops": flops,
            "zsgjax": side_summary(times["zsgjax"], steps, zk.compile_s, flops["zsgjax_round"], s["rounds"], k, peak),
            "rejax": side_summary(times["rejax"], steps, rk.compile_s, flops["rejax_round"], s["rounds"], k, peak),
            "speedup_zsgjax_over_rejax": _common.paired_ratio(times["rejax"], times["zsgjax"]),
            "note": "zsgjax Trainer.run_seeds (counters shared, the learn cond stays a cond); rejax jax.vmap of its "
                    "loop (global_step batched: the learn cond becomes a select, which in these learning rounds "
                    "computes what it would anyway)",
        }
        result["rows"].append(row)
        print(f"[sac_vs_rejax] {k} vmapped seeds: zsgjax {row['zsgjax']['steps_per_s']:.0f} steps/s, rejax "
              f"{row['rejax']['steps_per_s']:.0f} steps/s, ratio {row['speedup_zsgjax_over_rejax']['median']:.2f} "
              f"(compile zsgjax {zk.compile_s:.1f}s, rejax {rk.compile_s:.1f}s)", flush=True)
        _common.write_json(args.out, result)
    return _common.finish(result, args.out)


if __name__ == "__main__":
    main()
