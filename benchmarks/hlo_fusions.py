"""Kernel counts of one SAC update and one training round, from the compiled HLO.

A GPU runs each XLA fusion (and each unfused op such as a matmul or a custom call)
as one kernel launch; a SAC update of 256x256 networks at batch 256 is a few
microseconds of arithmetic per kernel on a GPU, so the number of kernels bounds its
speed there. On this CPU the same compiled HLO is counted as a proxy:
``jax.jit(f).lower(...).compile().as_text()`` for

* ``update``: one :meth:`zsgjax.agents.sac.SAC.update` (batch ``--batch-size``);
* ``round``: one training round (one batched environment step + ``--grad-updates``
  updates) as :meth:`zsgjax.train.Trainer.run` compiles it for one iteration of one round.

Counted per program: ``fusion`` instructions and ``kernels`` = every instruction of
the non-fused computations that is not free (parameters, constants, tuples,
``get-tuple-element``, bitcasts; control flow itself, ``while``/``conditional``/``call``,
is counted apart as ``control``). Instructions in a loop body count once; ``launches``
counts what one execution runs: a loop body times its ``known_trip_count``, a
conditional's largest branch.

Run: ``python benchmarks/hlo_fusions.py`` (writes ``results/hlo_fusions_cpu.json``).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

FREE = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast", "after-all", "partition-id", "replica-id"}
CONTROL = {"while", "conditional", "call"}
_HEADER = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_OPCODE = re.compile(r"=\s.*?\s([a-z][a-z0-9\-]*)\(")
_CONTROL_TARGETS = re.compile(r"(?:body|condition|true_computation|false_computation)=%?([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_TRIP = re.compile(r'known_trip_count"\s*:\s*\{\s*"n"\s*:\s*"(\d+)"')


def count_kernels(hlo_text: str) -> dict:
    """``{"fusion", "kernels", "control", "by_opcode"}`` of a compiled HLO module's text.

    Only computations that run as a sequence of kernels are counted: the entry and,
    transitively, the bodies, conditions and branches of its control flow (not the
    insides of fusions nor reducers' ``to_apply`` computations).
    """
    comps: dict[str, list[tuple[str, str]]] = {}
    entry, current = None, None
    for line in hlo_text.splitlines():
        if not line.startswith(" "):
            m = _HEADER.match(line)
            if m:
                current = m.group(2)
                comps[current] = []
                if m.group(1):
                    entry = current
            continue
        if current is None or " = " not in line:
            continue
        m = _OPCODE.search(line)
        if m:
            comps[current].append((m.group(1), line))
    if entry is None:
        raise ValueError("count_kernels: no ENTRY computation in the HLO text")
    by_opcode: collections.Counter = collections.Counter()
    seen, todo = set(), [entry]
    while todo:
        name = todo.pop()
        if name in seen or name not in comps:
            continue
        seen.add(name)
        for opcode, line in comps[name]:
            by_opcode[opcode] += 1
            todo.extend(_callees(opcode, line))
    kernels = sum(v for k, v in by_opcode.items() if k not in FREE | CONTROL)
    return {
        "launches": _launches(comps, entry, {}),
        "fusion": by_opcode.get("fusion", 0),
        "kernels": kernels,
        "control": sum(by_opcode.get(k, 0) for k in CONTROL),
        "computations": len(seen),
        "by_opcode": dict(sorted(by_opcode.items(), key=lambda kv: -kv[1])),
    }


def _callees(opcode: str, line: str) -> list[str]:
    """The computations a control-flow instruction runs as kernel sequences (none for other ops):
    a loop's body and condition, a conditional's branches, a call's callee."""
    if opcode not in CONTROL:
        return []
    names = _CONTROL_TARGETS.findall(line)
    names += [x.strip().lstrip("%") for group in _BRANCHES.findall(line) for x in group.split(",")]
    if opcode == "call":
        names += _CALLS.findall(line)
    return names


def _launches(comps: dict, name: str, memo: dict) -> int:
    """Kernels one execution of computation ``name`` runs: a loop body counts ``known_trip_count``
    times (once where XLA states no trip count), a conditional its largest branch."""
    if name in memo:
        return memo[name]
    memo[name] = 0  # guards against recursion
    total = 0
    for opcode, line in comps.get(name, []):
        inner = [_launches(comps, c, memo) for c in _callees(opcode, line)]
        if opcode == "while":
            trip = _TRIP.search(line)
            total += (int(trip.group(1)) if trip else 1) * sum(inner)
        elif opcode == "conditional":
            total += max(inner, default=0)
        elif opcode == "call":
            total += sum(inner)
        elif opcode not in FREE:
            total += 1
    memo[name] = total
    return total


def compiled_counts(fn, *args) -> dict:
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - t0
    return {**count_kernels(compiled.as_text()), "flops": _common.program_flops(compiled), "compile_s": seconds}


def measure(args) -> dict:
    from zsgjax.train import TrainConfig, make_train

    config = TrainConfig(
        env=args.env, method=args.method, num_envs=args.num_envs, batch_size=args.batch_size, hidden_sizes=tuple(args.hidden),
        grad_updates_per_step=args.grad_updates, learning_starts=0, prioritized_replay=None if args.prioritized is None else args.prioritized == "yes", buffer_size=max(4 * args.batch_size, 1024),
        total_steps=args.num_envs, steps_per_iteration=args.num_envs,
    )
    trainer = make_train(config)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    agent = trainer.agent
    items = trainer.replay.sample(state.replay, jax.random.PRNGKey(1))
    batch = items.transition
    weight = jnp.ones(batch.reward.shape, jnp.float32)
    update = compiled_counts(lambda a, k: agent.update(a, batch, weight, k), state.agent, jax.random.PRNGKey(2))
    round_ = compiled_counts(lambda s: trainer.run(s, 1), state)
    return {"update": update, "round": round_, "config": {k: getattr(config, k) for k in (
        "env", "method", "num_envs", "batch_size", "hidden_sizes", "grad_updates_per_step")},
        "prioritized_replay": trainer.replay.prioritized}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="pendulum_goal")
    p.add_argument("--method", default="vanilla", help="training method of the round (vanilla, cse, ldr, dr)")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", type=_common.hidden_sizes, default=(256, 256))
    p.add_argument("--grad-updates", type=int, default=1)
    p.add_argument("--prioritized", default=None, choices=["yes", "no"],
                   help="prioritized replay (default: the environment's preset)")
    p.add_argument("--label", default="", help="stored with the counts (e.g. 'before', 'after')")
    p.add_argument("--out", default=os.path.join(_common.RESULTS_DIR, "hlo_fusions_cpu.json"))
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = _common.result_header("hlo_fusions", args, peak=False)
    result["method"] = (
        "Counts of fusion / kernel instructions in jax.jit(f).lower(...).compile().as_text() on this backend "
        "(instructions in loop bodies count once). A CPU-side proxy for the kernel launches of a GPU program."
    )
    result.update(measure(args))
    for k in ("update", "round"):
        r = result[k]
        print(f"[hlo_fusions] {k}: {r['fusion']} fusions, {r['kernels']} kernels, {r['launches']} launches, "
              f"{r['control']} control, "
              f"compile {r['compile_s']:.1f}s", flush=True)
    _common.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
