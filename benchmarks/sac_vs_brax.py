"""zsgjax SAC against ``brax.training.agents.sac.train`` at equal settings.

Both learners train the **same environment object** (a zsgjax ``ContextualEnv``,
which is a brax ``Env``) with the same number of parallel environments, batch
size, hidden layers, gradient updates per batched environment step, replay
capacity, warm-up (zsgjax ``learning_starts`` = brax ``min_replay_size``),
discount, Polyak rate, learning rates and episode length (brax's
``EpisodeWrapper`` gets ``episode_length=env.horizon``, the horizon zsgjax's
rollout truncates at). Observation normalisation is off on both sides; zsgjax's
``action_scale`` is 1 like brax's tanh policy.

What is timed (steady state, compile excluded):

* **brax**: ``train(..., num_evals=repeats + 2)`` runs a prefill and ``repeats + 1``
  equal training epochs; every epoch after the first is one steady-state measurement
  (brax's own ``training/sps`` timer around the pmapped epoch, evaluation excluded).
  The first epoch also compiles, so ``epoch1 - median(later epochs)`` estimates
  brax's compile time. Evaluation runs on a trivial
  environment with the same observation and action sizes (``_NullEnv``), so it costs
  almost nothing and never touches the measured epoch.
* **zsgjax**: ``Trainer.run`` of the same number of rounds (one round = one batched
  environment step + ``grad_updates_per_step`` updates), compiled apart with
  ``jax.jit(trainer.run).lower(...).compile()``, started from a state whose replay
  already holds ``learning_starts`` transitions (warmed up by the same compiled
  program, so every timed round learns, as in brax's epoch).

The two sides are interleaved in one process: brax's ``progress_fn`` (called after
every epoch) runs one zsgjax measurement, so the sequence is brax epoch, zsgjax run,
brax epoch, ... (brax is compiled once). The figure is the median of the paired
ratios ``zsgjax steps/s / brax steps/s`` (each brax epoch with the zsgjax run just
before it).

Roofline (per row): ``zsgjax.round_flops`` (XLA ``cost_analysis`` of one loop-free
learning round, ``Trainer._round``) and ``zsgjax.roofline`` (times the timed rounds,
over the median time, against the in-run matmul peak); brax's round runs inside
``train()`` with no loop-free program to analyse, so both sides' update FLOPs and
rooflines are in ``update_profile``.

brax 0.14.2 calls ``jax.device_put_replicated``, which jax 0.10 removed: this script
(and only this script) installs a shim when it is missing, documented in the JSON.

Run: ``python benchmarks/sac_vs_brax.py`` (small CPU settings); ``--scale 16`` gives
GPU-sized settings (128 parallel environments, 16x the rounds and replay).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

SHIM_NOTE = (
    "brax 0.14.2's SAC calls jax.device_put_replicated, which this jax no longer has; the "
    "benchmark installs jax.device_put_replicated = lambda x, devices: "
    "jax.device_put(jax.tree.map(lambda a: jnp.stack([a] * len(devices)), x)) when it is "
    "absent (benchmark only, not in the library). It runs once at initialisation, outside "
    "the timed epochs."
)


def install_device_put_replicated_shim() -> bool:
    """Add ``jax.device_put_replicated`` if missing; returns whether the shim was installed."""
    if hasattr(jax, "device_put_replicated"):
        return False

    def device_put_replicated(x, devices):
        return jax.device_put(jax.tree.map(lambda a: jnp.stack([jnp.asarray(a)] * len(devices)), x))

    jax.device_put_replicated = device_put_replicated
    return True


def make_null_env(observation_size: int, action_size: int):
    """A trivial brax ``Env`` of the given sizes, for brax's (unmeasured) evaluations."""
    from brax.envs.base import Env, State

    class _NullEnv(Env):
        @property
        def observation_size(self):
            return observation_size

        @property
        def action_size(self):
            return action_size

        @property
        def backend(self):
            return "jax"

        def reset(self, rng):
            z = jnp.zeros((), jnp.float32)
            return State(pipeline_state=None, obs=jnp.zeros((observation_size,)), reward=z, done=z, metrics={}, info={})

        def step(self, state, action):
            return state.replace(reward=jnp.sum(action) * 0.0)

    return _NullEnv()


def build_env(name: str, physical: tuple[str, ...] = ()):
    from zsgjax.envs import make

    return make(name, physical=physical) if physical else make(name)


# ------------------------------------------------------------------- settings
def settings_for(args, env_name: str) -> dict:
    n = args.num_envs * args.scale
    rounds = (args.mjx_rounds if env_name in MJX_ENVS else args.rounds) * args.scale
    starts = args.learning_starts if args.learning_starts is not None else max(args.batch_size, 2 * n)
    starts = -(-starts // n) * n  # a whole number of batched steps on both sides
    return dict(
        num_envs=n,
        rounds=rounds,
        batch_size=args.batch_size,
        hidden_sizes=tuple(args.hidden),
        grad_updates_per_step=args.grad_updates,
        buffer_size=max(args.buffer_size * args.scale, starts + (args.repeats + 2) * rounds * n),
        learning_starts=starts,
        gamma=0.99,
        tau=0.005,
        lr=3e-4,
        alpha_lr=3e-4,
    )


MJX_ENVS = ("cheetah_velocity", "ant_direction", "ant_goal")


# ----------------------------------------------------------------------- brax
def brax_interleaved(env, s: dict, seed: int, repeats: int, between) -> dict:
    """One ``brax.training`` SAC run of ``repeats + 1`` equal training epochs.

    ``between()`` (the zsgjax measurement) is called from brax's ``progress_fn``
    after every epoch, so the two learners alternate in one process: epoch 1 (brax,
    compiles), zsgjax, epoch 2, zsgjax, ... Returns the epochs' seconds (brax's own
    ``training/sps`` timer, evaluation excluded) and the ``between`` results.
    """
    from brax.training.agents.sac import networks as sac_networks
    from brax.training.agents.sac import train as sac_train

    n, rounds = s["num_envs"], s["rounds"]
    epochs, others = [], []

    def progress(step, metrics):
        if "training/sps" in metrics:
            epochs.append(rounds * n / float(metrics["training/sps"]))
            others.append(between())

    t0 = time.perf_counter()
    sac_train.train(
        environment=env,
        num_timesteps=s["learning_starts"] + (repeats + 1) * rounds * n,
        episode_length=int(env.horizon),
        num_envs=n,
        num_eval_envs=1,
        learning_rate=s["lr"],
        discounting=s["gamma"],
        seed=seed,
        batch_size=s["batch_size"],
        num_evals=repeats + 2,
        normalize_observations=False,
        reward_scaling=1.0,
        tau=s["tau"],
        min_replay_size=s["learning_starts"],
        max_replay_size=s["buffer_size"],
        grad_updates_per_step=s["grad_updates_per_step"],
        network_factory=functools.partial(sac_networks.make_sac_networks, hidden_layer_sizes=s["hidden_sizes"]),
        progress_fn=progress,
        eval_env=make_null_env(env.observation_size, env.action_size),
    )
    total = time.perf_counter() - t0
    if len(epochs) != repeats + 1:
        raise RuntimeError(f"expected {repeats + 1} brax training epochs, got {len(epochs)}")
    return {"epoch_s": epochs, "between": others, "train_call_s": total}


def update_profile(z: "ZsgjaxSide", s: dict, repeats: int, peak: float | None = None, steps: int = 50) -> dict:
    """Where the time goes: one SAC gradient update alone, zsgjax against brax.

    A ``lax.scan`` of ``steps`` updates on one fixed replay batch (the same arrays
    for both): zsgjax's ``SAC.update`` and brax's SAC ``sgd_step`` rebuilt from
    ``brax.training`` pieces (``make_sac_networks``, ``make_losses``,
    ``gradient_update_fn``: alpha, critic, actor, Polyak), compiled apart and timed
    alternately. If this ratio is ~1 and updates are most of a round, the learners
    cannot differ much at equal settings. With ``peak`` (GFLOP/s, the in-run matmul
    peak) each side also gets the XLA FLOPs of one loop-free update and its roofline.
    """
    import optax
    from brax.training import gradients
    from brax.training import types as btypes
    from brax.training.acme import running_statistics, specs
    from brax.training.agents.sac import losses as sac_losses
    from brax.training.agents.sac import networks as sac_networks

    agent = z.trainer.agent
    items = z.trainer.replay.sample(z.state.replay, jax.random.PRNGKey(1))
    tr = items.transition
    weight = jnp.ones(tr.reward.shape, jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(2), steps)

    def z_updates(a):
        return jax.lax.scan(lambda a, k: (agent.update(a, tr, weight, k)[0], None), a, keys)[0]

    net = sac_networks.make_sac_networks(agent.obs_size, agent.action_size, hidden_layer_sizes=s["hidden_sizes"])
    alpha_loss, critic_loss, actor_loss = sac_losses.make_losses(
        net, reward_scaling=1.0, discounting=s["gamma"], action_size=agent.action_size
    )
    opt, alpha_opt = optax.adam(s["lr"]), optax.adam(s["alpha_lr"])
    alpha_update = gradients.gradient_update_fn(alpha_loss, alpha_opt, pmap_axis_name=None)
    critic_update = gradients.gradient_update_fn(critic_loss, opt, pmap_axis_name=None)
    actor_update = gradients.gradient_update_fn(actor_loss, opt, pmap_axis_name=None)
    norm = running_statistics.init_state(specs.Array((agent.obs_size,), jnp.dtype("float32")))
    bt = btypes.Transition(
        observation=tr.obs,
        action=tr.action,
        reward=tr.reward,
        discount=1.0 - tr.done,
        next_observation=tr.next_obs,
        extras={"state_extras": {"truncation": jnp.zeros_like(tr.reward)}, "policy_extras": {}},
    )
    pp = net.policy_network.init(jax.random.PRNGKey(3))
    qp = net.q_network.init(jax.random.PRNGKey(4))
    la = jnp.zeros(())
    b_state = (pp, qp, qp, la, opt.init(pp), opt.init(qp), alpha_opt.init(la))
    tau = s["tau"]

    def b_step(st, k):  # brax's sgd_step (agents/sac/train.py) without the pmap axis
        pp, qp, tq, la, po, qo, ao = st
        k1, k2, k3 = jax.random.split(k, 3)
        _, la2, ao = alpha_update(la, pp, norm, bt, k1, optimizer_state=ao)
        alpha = jnp.exp(la)
        _, qp2, qo = critic_update(qp, pp, norm, tq, alpha, bt, k2, optimizer_state=qo)
        _, pp2, po = actor_update(pp, norm, qp, alpha, bt, k3, optimizer_state=po)
        tq = jax.tree.map(lambda x, y: x * (1 - tau) + y * tau, tq, qp2)
        return (pp2, qp2, tq, la2, po, qo, ao), None

    def b_updates(st):
        return jax.lax.scan(b_step, st, keys)[0]

    zc, _ = _common.compile_timed(z_updates, z.state.agent)
    bc, _ = _common.compile_timed(b_updates, b_state)
    times = _common.alternate(
        {"zsgjax": lambda: _common.timed(zc, z.state.agent)[1], "brax": lambda: _common.timed(bc, b_state)[1]},
        repeats,
    )
    out = {
        "updates_per_measurement": steps,
        "zsgjax_ms_per_update": 1000 * _common.median(times["zsgjax"]) / steps,
        "brax_ms_per_update": 1000 * _common.median(times["brax"]) / steps,
        "speedup_zsgjax_over_brax": _common.paired_ratio(times["brax"], times["zsgjax"]),
    }
    if peak is not None:
        z_flops = _common.loop_free_flops(lambda a, k: agent.update(a, tr, weight, k)[0], z.state.agent, keys[0])
        b_flops = _common.loop_free_flops(lambda st, k: b_step(st, k)[0], b_state, keys[0])
        for name, f in (("zsgjax", z_flops), ("brax", b_flops)):
            out[f"{name}_update_flops"] = f
            out[f"{name}_roofline"] = _common.roofline(f * steps if f else None, _common.median(times[name]), peak)
    return out


def round_flops(z: "ZsgjaxSide") -> float | None:
    """XLA FLOPs of one zsgjax learning round (``Trainer._round`` is loop-free but for a
    ``cond``, whose heavier branch, the updates, XLA counts)."""
    return _common.loop_free_flops(lambda st: z.trainer._round(st, None), z.state)


# --------------------------------------------------------------------- zsgjax
class ZsgjaxSide:
    """A compiled zsgjax ``run`` of ``rounds`` batched steps from a prefilled state."""

    def __init__(self, env_name: str, env, s: dict, seed: int, method: str = "vanilla", **extra):
        from zsgjax.train import TrainConfig, make_train

        n = s["num_envs"]
        common = dict(
            env=env_name,
            method=method,
            num_envs=n,
            seed=seed,
            learning_starts=s["learning_starts"],
            buffer_size=s["buffer_size"],
            batch_size=s["batch_size"],
            grad_updates_per_step=s["grad_updates_per_step"],
            gamma=s["gamma"],
            tau=s["tau"],
            hidden_sizes=s["hidden_sizes"],
            actor_lr=s["lr"],
            critic_lr=s["lr"],
            alpha_lr=s["alpha_lr"],
            init_alpha=1.0,
            action_scale=1.0,
            normalize_obs=False,
            **extra,
        )
        timed_steps = s["rounds"] * n
        self.trainer = make_train(
            TrainConfig(total_steps=s["learning_starts"] + timed_steps, steps_per_iteration=timed_steps, **common),
            env=env,
        )
        state, self.init_s = _common.timed(jax.jit(self.trainer.init), jax.random.PRNGKey(seed))
        self.run, self.compile_s = _common.compile_timed(self.trainer.run, state, 1, static_argnums=(1,))
        # Warm-up with the same compiled program until the replay holds learning_starts
        # transitions: every later (timed) round learns.
        self.prefill_s = 0.0
        while int(state.env_steps) < s["learning_starts"]:
            state, seconds = _common.timed(lambda st: self.run(st)[0], state)
            self.prefill_s += seconds
        self.state = state
        self.steps = timed_steps

    def measure(self) -> float:
        out, seconds = _common.timed(self.run, self.state)
        del out
        return seconds


# ----------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", default="pendulum_goal,cheetah_velocity", help="comma-separated environment names")
    _common.add_sac_options(p, scaled=True)
    p.add_argument("--rounds", type=int, default=100, help="timed batched steps, analytic envs (times --scale)")
    p.add_argument("--mjx-rounds", type=int, default=20, help="timed batched steps, MJX envs (times --scale)")
    p.add_argument("--scale", type=int, default=1, help="multiplies num_envs, rounds and replay (16: GPU-sized)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(_common.RESULTS_DIR, "sac_vs_brax_cpu.json"))
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    shimmed = install_device_put_replicated_shim()
    result = _common.result_header("sac_vs_brax", args)
    result["brax_shim"] = {"installed": shimmed, "note": SHIM_NOTE}
    result["method"] = (
        "Same env object for both; brax: repeats+1 equal training epochs in one train() call, each after the "
        "first is a steady-state measurement (brax's training/sps), compile estimate = epoch1 - median(later), "
        "evaluation on a null env of the same sizes; zsgjax: jit(trainer.run).lower().compile() apart, then the "
        "compiled run of the same number of rounds from a state prefilled with learning_starts transitions, "
        "called from brax's progress_fn after every epoch (interleaved); median of paired ratios."
    )
    result["rows"] = []
    peak = result["matmul_peak"]["gflops"]
    for name in [e for e in args.envs.split(",") if e]:
        env = build_env(name)
        s = settings_for(args, name)
        print(f"[sac_vs_brax] {name}: {s}", flush=True)
        z = ZsgjaxSide(name, env, s, args.seed)
        run = brax_interleaved(env, s, args.seed, args.repeats, z.measure)
        # brax epoch i+1 (steady state) is paired with the zsgjax run just before it.
        times = {"brax": run["epoch_s"][1:], "zsgjax": run["between"][:-1]}
        brax_compile = run["epoch_s"][0] - _common.median(times["brax"])
        steps = s["rounds"] * s["num_envs"]
        speedup = _common.paired_ratio(times["brax"], times["zsgjax"])
        row = {
            "env": name,
            "horizon": int(env.horizon),
            "brax_episode_length": int(env.horizon),
            "settings": s,
            "timed_env_steps": steps,
            "zsgjax": {
                **_common.summary(times["zsgjax"]),
                "steps_per_s": steps / _common.median(times["zsgjax"]),
                "compile_s": z.compile_s,
            },
            "brax": {
                **_common.summary(times["brax"]),
                "steps_per_s": steps / _common.median(times["brax"]),
                "first_epoch_s": run["epoch_s"][0],
                "compile_estimate_s": brax_compile,
                "train_call_s": run["train_call_s"],
            },
            "speedup_zsgjax_over_brax": speedup,
            "round_ms": {
                "zsgjax": 1000 * _common.median(times["zsgjax"]) / s["rounds"],
                "brax": 1000 * _common.median(times["brax"]) / s["rounds"],
            },
            "target": ">= 1.5",
            "target_met": speedup["median"] >= 1.5,
        }
        # Roofline: brax's round is inside brax's train() and has no loop-free program to
        # analyse; its update's FLOPs are in update_profile.
        rf = round_flops(z)
        row["zsgjax"]["round_flops"] = rf
        row["zsgjax"]["roofline"] = _common.roofline(
            rf * s["rounds"] if rf else None, _common.median(times["zsgjax"]), peak)
        print(
            f"[sac_vs_brax] {name}: zsgjax {row['zsgjax']['steps_per_s']:.0f} steps/s, brax "
            f"{row['brax']['steps_per_s']:.0f} steps/s, ratio {speedup['median']:.2f} "
            f"(compile zsgjax {z.compile_s:.1f}s, brax ~{row['brax']['compile_estimate_s']:.1f}s)",
            flush=True,
        )
        if args.profile:
            row["update_profile"] = update_profile(z, s, args.repeats, peak)
            up = row["update_profile"]
            print(
                f"[sac_vs_brax] {name}: one update zsgjax {up['zsgjax_ms_per_update']:.2f} ms, brax "
                f"{up['brax_ms_per_update']:.2f} ms, ratio {up['speedup_zsgjax_over_brax']['median']:.2f}",
                flush=True,
            )
        result["rows"].append(row)
        _common.write_json(args.out, result)
    return _common.finish(result, args.out)


if __name__ == "__main__":
    main()
