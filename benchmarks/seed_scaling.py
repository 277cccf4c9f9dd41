"""Seeds trained as one vmapped program against the same seeds trained one after another.

For ``K`` in ``--seeds`` (default 1, 2, 4, 8, 16, 32) the script compiles apart

* ``vmapped``:    ``jax.jit(jax.vmap(trainer.train))`` on ``K`` keys;
* ``sequential``: ``jax.jit(trainer.train)`` (compiled once), called ``K`` times
  (each call waited for, as a loop over seeds would),

and times them alternately (ABBA). Figures: the median per-repeat
``time(sequential K) / time(vmapped K)`` (the speed-up of vmapping), and
``time(vmapped K) / time(one seed)`` (one seed timed in the same alternation; how many single runs ``K`` vmapped seeds
cost; the target is ``<= 4`` for ``K = 16`` on CPU).

``trainer.train`` is the whole run (initialisation, warm-up, learning). Under
``vmap`` the trainer's ``lax.cond`` (learn or not) becomes a select, so vmapped
seeds also pay for updates during the ``learning_starts`` warm-up; keep
``learning_starts`` small relative to ``total_steps``.

Run: ``python benchmarks/seed_scaling.py``; ``--scale 16`` for GPU-sized settings.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

from zsgjax import rollout  # noqa: E402
from zsgjax.train import TrainConfig, make_train  # noqa: E402


def component_profile(trainer, k: int, rounds: int, repeats: int, seed: int) -> dict:
    """Where vmapping ``k`` seeds costs: each component of a training round, single vs vmapped.

    Components (each a ``lax.scan`` of ``rounds`` calls, compiled apart):
    ``env_step`` (``rollout.step`` of ``num_envs`` environments), ``replay`` (insert
    ``num_envs`` items and sample one batch), ``update`` (one SAC/DQN update on a
    sampled batch). Returns per-component ``time(vmapped k) / time(single)``.
    """
    c = trainer.config
    key = jax.random.PRNGKey(seed)
    state = jax.jit(trainer.init)(key)
    state = jax.jit(lambda st: trainer.run(st, 1)[0])(state)  # a filled replay, a live agent
    sampler = trainer.sampler
    env = trainer.env

    def env_step(st, key):
        def body(es, kk):
            k_a, k_s = jax.random.split(kk)
            es, out = rollout.step(env, es, trainer.agent.random_action(k_a, c.num_envs), k_s, sampler)
            return es, out.transition.reward.sum()

        return jax.lax.scan(body, st.env, jax.random.split(key, rounds))[0].obs

    items = jax.jit(lambda st, kk: trainer.replay.sample(st.replay, kk))(state, key)

    def replay(st, key):
        add = jax.tree.map(lambda x: x[: c.num_envs], items)

        def body(rs, kk):
            rs = trainer.replay.add(rs, add)
            return rs, trainer.replay.sample(rs, kk).transition.reward.sum()

        return jax.lax.scan(body, st.replay, jax.random.split(key, rounds))[1]

    def update(st, key):
        def body(a, kk):
            k1, k2 = jax.random.split(kk)
            batch, weight, _ = trainer.training_batch(trainer.replay.sample(st.replay, k1), k1)
            return trainer.agent.update(a, batch, weight, k2)[0], None

        return jax.lax.scan(body, st.agent, jax.random.split(key, rounds))[0]

    stacked = jax.tree.map(lambda x: jax.numpy.stack([x] * k), state)
    keys = jax.random.split(key, k)
    fns, out = {}, {}
    for name, f in (("env_step", env_step), ("replay", replay), ("update", update)):
        fns[name + "_single"], _ = _common.compile_timed(f, state, key)
        fns[name + "_vmapped"], _ = _common.compile_timed(jax.vmap(f), stacked, keys)
    call = {
        n: (lambda n=n: _common.timed(fns[n], *((stacked, keys) if n.endswith("vmapped") else (state, key)))[1])
        for n in fns
    }
    times = _common.alternate(call, repeats)
    for name in ("env_step", "replay", "update"):
        out[name] = {
            "single_ms_per_round": 1000 * _common.median(times[name + "_single"]) / rounds,
            "vmapped_ms_per_round": 1000 * _common.median(times[name + "_vmapped"]) / rounds,
            "vmapped_over_single": _common.paired_ratio(times[name + "_vmapped"], times[name + "_single"]),
        }
    out["seeds"] = k
    out["rounds"] = rounds
    return out


def train_flops(trainer, seed: int) -> dict:
    """XLA FLOPs of one seed's ``trainer.train``, from loop-free pieces (XLA counts a loop body once).

    ``round``: one learning round (``Trainer._round``; of its ``cond`` XLA counts the
    heavier branch, the updates); ``updates``: that branch alone (``Trainer._updates``).
    A single seed runs ``warm`` rounds without updates (``env_steps < learning_starts``
    after the round) and the rest with: ``single = rounds * round - warm * updates``.
    Under ``vmap`` the ``cond`` becomes a select, so each vmapped seed computes the updates
    in every round: ``per_vmapped_seed = rounds * round``. Initialisation is left out.
    With ``grad_updates_per_step != 1`` the totals are ``None`` (XLA counts the scan of
    the G updates once).
    """
    c = trainer.config
    key = jax.random.PRNGKey(seed)
    state = jax.jit(trainer.init)(key)
    rf = _common.loop_free_flops(lambda st: trainer._round(st, None)[0], state)
    uf = _common.loop_free_flops(lambda st, k: trainer._updates(st.agent, st.replay, k)[0], state, key)
    rounds = trainer.num_iterations * trainer.rounds_per_iteration
    warm = sum(1 for r in range(rounds) if (r + 1) * c.num_envs < c.learning_starts)
    if rf is None or uf is None or c.grad_updates_per_step != 1:
        return {"round": rf, "updates": uf, "rounds": rounds, "warm_rounds": warm, "single": None,
                "per_vmapped_seed": None}
    return {"round": rf, "updates": uf, "rounds": rounds, "warm_rounds": warm,
            "single": rounds * rf - warm * uf, "per_vmapped_seed": rounds * rf}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="simple_direction")
    p.add_argument("--method", default="vanilla", choices=("vanilla", "cse", "ldr", "dr"))
    p.add_argument("--seeds", default="1,2,4,8,16,32")
    p.add_argument("--num-envs", type=int, default=8, help="parallel environments per seed (times --scale)")
    p.add_argument("--total-steps", type=int, default=4096, help="env steps per seed (times --scale)")
    p.add_argument("--learning-starts", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=lambda x: tuple(int(h) for h in x.split(",")), default=(64, 64))
    p.add_argument("--grad-updates", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--scale", type=int, default=1, help="multiplies num_envs and total_steps (16: GPU-sized)")
    p.add_argument("--profile-seeds", type=int, default=16, help="seeds of the component profile (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(_common.RESULTS_DIR, "seed_scaling_cpu.json"))
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    seeds = [int(k) for k in args.seeds.split(",") if k]
    n = args.num_envs * args.scale
    total = args.total_steps * args.scale
    config = TrainConfig(
        env=args.env,
        method=args.method,
        total_steps=total,
        num_envs=n,
        steps_per_iteration=max(n, (total // 4 // n) * n),
        learning_starts=args.learning_starts,
        batch_size=args.batch_size,
        buffer_size=max(total, args.batch_size),
        hidden_sizes=tuple(args.hidden),
        grad_updates_per_step=args.grad_updates,
    )
    trainer = make_train(config)
    result = _common.result_header("seed_scaling", args)
    result["config"] = {k: v for k, v in vars(trainer.config).items()}
    result["method"] = (
        "vmapped = jit(vmap(trainer.train)) on K keys; sequential = jit(trainer.train) compiled once and called K "
        "times (blocking each); both compiled apart; alternated ABBA; medians of per-repeat ratios."
    )
    key = jax.random.PRNGKey(args.seed)
    single, single_compile = _common.compile_timed(trainer.train, key)

    def sequential(keys):
        def run():
            total_s = 0.0
            for k in keys:
                total_s += _common.timed(single, k)[1]
            return total_s

        return run

    result["single_compile_s"] = single_compile
    flops = train_flops(trainer, args.seed)
    result["train_flops"] = flops
    peak = result["matmul_peak"]["gflops"]

    def roof(total, times):
        return _common.roofline(total, _common.median(times), peak)

    result["rows"] = []
    for k in seeds:
        keys = jax.random.split(key, k)
        vmapped, vcompile = _common.compile_timed(jax.vmap(trainer.train), keys)
        times = _common.alternate(
            {
                "one_seed": lambda: _common.timed(single, key)[1],
                "sequential": sequential(list(keys)),
                "vmapped": lambda: _common.timed(vmapped, keys)[1],
            },
            args.repeats,
        )
        row = {
            "seeds": k,
            "vmapped": {**_common.summary(times["vmapped"]), "compile_s": vcompile},
            "sequential": _common.summary(times["sequential"]),
            "speedup_vmapped_over_sequential": _common.paired_ratio(times["sequential"], times["vmapped"]),
        }
        row["one_seed"] = _common.summary(times["one_seed"])
        row["vmapped_over_one_seed"] = _common.paired_ratio(times["vmapped"], times["one_seed"])
        single_f, vm_f = flops["single"], flops["per_vmapped_seed"]
        row["one_seed"]["roofline"] = roof(single_f, times["one_seed"])
        row["sequential"]["roofline"] = roof(k * single_f if single_f else None, times["sequential"])
        row["vmapped"]["roofline"] = roof(k * vm_f if vm_f else None, times["vmapped"])
        if k == 16:
            row["target"] = "vmapped 16 <= 4x one seed"
            row["target_met"] = row["vmapped_over_one_seed"]["median"] <= 4.0
        print(
            f"[seed_scaling] K={k}: vmapped {_common.median(times['vmapped']):.3f}s, sequential "
            f"{_common.median(times['sequential']):.3f}s, speed-up "
            f"{row['speedup_vmapped_over_sequential']['median']:.2f}x, vmapped/one seed "
            f"{row['vmapped_over_one_seed']['median']:.2f} (compile {vcompile:.1f}s)",
            flush=True,
        )
        result["rows"].append(row)
        _common.write_json(args.out, result)
    if args.profile_seeds:
        prof = component_profile(trainer, args.profile_seeds, trainer.rounds_per_iteration, args.repeats + 1, args.seed)
        result["component_profile"] = prof
        print(f"[seed_scaling] component profile: {prof}", flush=True)
    _common.result_footer(result)
    _common.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
