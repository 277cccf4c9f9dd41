"""Train, export and reference-run the CSE paper's own RLlib policies (run with the paper's virtualenv).

This file runs under the paper's virtualenv (ray 2.44, torch), never under zsgjax's:
it imports only the standard library, NumPy, torch and ray (and, for ``train`` and
``reference``, the paper's code from ``--paper-code``). zsgjax never imports it;
``scripts/experiments/paper_code_policies.py`` calls it as a subprocess.

    python paper_code_export.py train --paper-code DIR --storage DIR --seed K -- <main.py arguments>
    python paper_code_export.py export --checkpoint DIR --out policy.npz
    python paper_code_export.py reference --paper-code DIR --out fixture.npz [--width 32] [--checkpoint DIR]
    python paper_code_export.py paper-eval --paper-code DIR --checkpoint DIR --contexts 2,1,1,0.75 ... --out r.npz

``train`` runs the paper's unchanged ``main.py`` in this process with two things set
from outside: Ray Tune's storage folder (``RunConfig(storage_path=...)``, so that
every seed has its own folder) and the algorithm's seed (``AlgorithmConfig.seed``:
the paper's code sets none). RLlib seeds its environments and generators from it, but
its runs are not reproducible: two seed-0 runs of pen_goal differed from their first
episodes on, so a seed labels an independent trial.

``export`` writes the actor of a trained SAC RLModule (``pi_encoder`` then ``pi``,
the layers of RLlib's ``TorchMLP``s in order) to an ``.npz``, atomically: ``w{i}``
``(in, out)`` and ``b{i}`` ``(out,)`` of every linear layer ``i``, ``activations``
(after each layer: ``"relu"``, ``"tanh"`` or ``"linear"``), the action box
``action_low``/``action_high``, ``log_std_min``/``log_std_max`` (the clamp of
``TorchSquashedGaussian.from_logits``) and the versions of ray and torch.

``reference`` writes a test fixture: the export of a fresh (or checkpointed) module
of the paper's pen_goal model config at the given width, with the policy head
re-drawn at a scale where ``log_std`` leaves the clamp range, plus random
observations ``obs (N, 7)``, RLlib's own ``action_dist_inputs`` ``(N, 2)``, the
distribution's ``loc`` and ``scale`` (``TorchSquashedGaussian.from_logits``), standard
normal draws ``noise (N, 1)`` and RLlib's squashed sample ``squashed (N, 1) =
_squash(loc + scale * noise)`` (``sample()`` draws ``loc + scale * noise`` from torch's
generator and squashes it the same way).
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import tempfile

import numpy as np

ACTIVATIONS = {"ReLU": "relu", "Tanh": "tanh"}


def atomic_savez(path: str, **arrays) -> None:
    """``np.savez`` to a temporary file next to ``path``, then renamed over it."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # the mode open(path, "w") gives (mkstemp: 0o600)
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# ------------------------------------------------------------------- train
def train(paper_code: str, storage: str, seed: int, main_args: list[str]) -> None:
    """Run the paper's ``main.py main_args`` with Tune's storage at ``storage`` and RLlib's seed ``seed``."""
    paper_code = os.path.abspath(paper_code)
    storage = os.path.abspath(storage)
    os.makedirs(storage, exist_ok=True)
    os.chdir(paper_code)  # main.py appends to "run logs/<date>.txt" under the working directory
    sys.path.insert(0, paper_code)
    from ray import tune

    import utils.rllib_dqn
    import utils.rllib_sac

    class StoredRunConfig(tune.RunConfig):
        """main.py's RunConfig with ``storage_path`` set (main.py sets none: ~/ray_results)."""

        def __init__(self, *args, **kwargs):
            kwargs.setdefault("storage_path", storage)
            super().__init__(*args, **kwargs)

    tune.RunConfig = StoredRunConfig
    for config_class in (utils.rllib_sac.SACConfig, utils.rllib_dqn.DQNConfig):
        _seed_config_class(config_class, seed)
    sys.argv = ["main.py", *main_args]
    runpy.run_path(os.path.join(paper_code, "main.py"), run_name="__main__")


def _seed_config_class(config_class, seed: int) -> None:
    init = config_class.__init__

    def seeded_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.seed = seed

    config_class.__init__ = seeded_init


# ------------------------------------------------------------------ export
def actor_layers(module) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """``(weights [(in, out)], biases [(out,)], activations)`` of a SAC RLModule's actor.

    The actor is ``pi_encoder.net.mlp`` followed by ``pi.net.mlp`` (torch ``Sequential``s
    of ``Linear`` layers, each optionally followed by an activation); anything else
    (layer norm, dropout, a free log-std head) is an error rather than a silent mismatch.
    """
    import torch

    weights, biases, activations = [], [], []
    for part in (module.pi_encoder.net.mlp, module.pi.net.mlp):
        for layer in part:
            if isinstance(layer, torch.nn.Linear):
                weights.append(layer.weight.detach().cpu().numpy().T.astype(np.float32))
                bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
                biases.append(bias.detach().cpu().numpy().astype(np.float32))
                activations.append("linear")
            elif type(layer).__name__ in ACTIVATIONS and activations and activations[-1] == "linear":
                activations[-1] = ACTIVATIONS[type(layer).__name__]
            else:
                raise ValueError(f"unsupported actor layer {layer!r}: only Linear layers each followed by at most "
                                 f"one of {', '.join(ACTIVATIONS)}")
    if not weights:
        raise ValueError("the module's actor has no Linear layer")
    return weights, biases, activations


def actor_arrays(module) -> dict[str, np.ndarray]:
    """The arrays :func:`export` writes for ``module`` (see the module docstring)."""
    import ray
    import torch
    from ray.rllib.utils.numpy import MAX_LOG_NN_OUTPUT, MIN_LOG_NN_OUTPUT

    weights, biases, activations = actor_layers(module)
    space = module.action_space
    out = {f"w{i}": w for i, w in enumerate(weights)}
    out.update({f"b{i}": b for i, b in enumerate(biases)})
    out.update(activations=np.array(activations), action_low=np.asarray(space.low, np.float32),
               action_high=np.asarray(space.high, np.float32), log_std_min=np.float32(MIN_LOG_NN_OUTPUT),
               log_std_max=np.float32(MAX_LOG_NN_OUTPUT), observation_size=np.int64(module.observation_space.shape[0]),
               versions=np.array([f"ray {ray.__version__}", f"torch {torch.__version__}"]))
    return out


def load_module(checkpoint: str):
    """The ``default_policy`` RLModule of an RLlib checkpoint folder (the trial's ``checkpoint_*``
    folder or its ``.../rl_module/default_policy`` subfolder)."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    sub = os.path.join(checkpoint, "learner_group", "learner", "rl_module", "default_policy")
    return RLModule.from_checkpoint(sub if os.path.isdir(sub) else checkpoint)


def export(checkpoint: str, out: str) -> None:
    atomic_savez(out, **actor_arrays(load_module(checkpoint)))


# --------------------------------------------------------------- reference
def fresh_module(paper_code: str, width: int, layers: int):
    """A freshly initialised SAC RLModule of the paper's pen_goal model config (``get_model_config``)."""
    sys.path.insert(0, os.path.abspath(paper_code))
    import gymnasium as gym
    from ray.rllib.algorithms.sac import SACConfig

    from utils.train_kwargs import get_model_config

    model_config = get_model_config(argparse.Namespace(env="pen_goal", width=width, layers=layers))
    obs_space = gym.spaces.Box(-np.inf, np.inf, (7,), np.float64)
    act_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float64)
    config = (SACConfig().api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
              .rl_module(model_config=model_config))
    spec = config.get_rl_module_spec()
    spec.observation_space, spec.action_space = obs_space, act_space
    return spec.build()


def reference(paper_code: str, out: str, width: int, layers: int, checkpoint: str | None, num_obs: int,
              seed: int) -> None:
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.models.torch.torch_distributions import TorchSquashedGaussian

    torch.manual_seed(seed)
    module = load_module(checkpoint) if checkpoint else fresh_module(paper_code, width, layers)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        obs = np.concatenate([rng.normal(0.0, 1.0, (num_obs, 3)), rng.uniform(-1.0, 5.0, (num_obs, 4))], axis=1)
        batch = {Columns.OBS: torch.from_numpy(obs).float()}
        # RLlib initialises the head with gain 0.01, so log_std would never reach the clamp: redraw the head and
        # spread its outputs, loc with std 1.5 around 0 and log_std with std 4 around -1.5 (over both bounds -5, 2)
        head = module.pi.net.mlp[-1]
        head.weight.copy_(torch.from_numpy(rng.normal(0.0, 1.0, tuple(head.weight.shape))).float())
        head.bias.zero_()
        raw = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
        for row, (center, spread) in enumerate([(0.0, 1.5), (-1.5, 4.0)]):
            factor = spread / raw[:, row].std()
            head.weight[row] *= factor
            head.bias[row] = center - factor * raw[:, row].median()
        logits = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
        dist = TorchSquashedGaussian.from_logits(logits)
        noise = rng.normal(0.0, 1.0, tuple(dist.loc.shape))
        scale = dist._dist.scale  # the Normal of TorchSquashedGaussian (as utils/cse.py reads it)
        squashed = dist._squash(dist.loc + scale * torch.from_numpy(noise).float())
    atomic_savez(out, **actor_arrays(module), obs=obs.astype(np.float32), logits=logits.numpy(),
                 loc=dist.loc.numpy(), scale=scale.numpy(), noise=noise.astype(np.float32),
                 squashed=squashed.numpy())


# -------------------------------------------------------------- paper-eval
def paper_evaluation(paper_code: str, checkpoint: str, contexts: list[list[float]], episodes: int,
                     vectorization: int, out: str) -> None:
    """The paper's own evaluation of a checkpoint: ``evaluate_policies.get_returns`` (its loop: actions sampled
    from the module's distribution, sent unscaled; the last reward of an episode left out) on its pen_goal
    environment at each context; writes ``contexts (C, 4)`` and ``returns (C, episodes)``."""
    paper_code = os.path.abspath(paper_code)
    os.chdir(paper_code)
    sys.path.insert(0, paper_code)
    from gymnasium.vector import SyncVectorEnv
    from gymnasium.wrappers import TimeLimit

    from environments.common import env_class_dict, time_limit_dict
    from evaluate_policies import get_returns

    env_class = env_class_dict["pen_goal"]
    base = np.array(contexts[0], np.float64)
    env = SyncVectorEnv([lambda: TimeLimit(env_class(base.copy()), time_limit_dict["pen_goal"])
                         for _ in range(vectorization)])
    module = load_module(checkpoint)
    returns = np.zeros((len(contexts), episodes))
    for i, context in enumerate(contexts):
        env.call("update_context", np.array(context, np.float64))
        returns[i] = get_returns(env, module, nepisodes=episodes)
    env.close()
    atomic_savez(out, contexts=np.array(contexts, np.float64), returns=returns)


# -------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="run the paper's main.py with a storage folder and a seed")
    t.add_argument("--paper-code", required=True, help="the paper's repository (holds main.py)")
    t.add_argument("--storage", required=True, help="Ray Tune's storage folder for this run")
    t.add_argument("--seed", type=int, required=True, help="RLlib's seed (AlgorithmConfig.seed)")
    t.add_argument("main_args", nargs=argparse.REMAINDER, help="-- then main.py's arguments")
    e = sub.add_parser("export", help="write a checkpoint's actor to an .npz")
    e.add_argument("--checkpoint", required=True, help="a trial's checkpoint_* folder")
    e.add_argument("--out", required=True, help="the .npz to write")
    r = sub.add_parser("reference", help="write a forward-pass fixture for the JAX port's test")
    r.add_argument("--paper-code", required=True, help="the paper's repository (utils/train_kwargs.py)")
    r.add_argument("--out", required=True, help="the .npz to write")
    r.add_argument("--width", type=int, default=256, help="hidden width (the paper: 256)")
    r.add_argument("--layers", type=int, default=2, help="hidden layers (the paper: 2)")
    r.add_argument("--checkpoint", default=None, help="use this checkpoint's module instead of a fresh one")
    r.add_argument("--num-obs", type=int, default=32, help="random observations")
    r.add_argument("--seed", type=int, default=0, help="seed of the weights, observations and noise")
    v = sub.add_parser("paper-eval", help="the paper's evaluate_policies.get_returns of a checkpoint at contexts")
    v.add_argument("--paper-code", required=True, help="the paper's repository")
    v.add_argument("--checkpoint", required=True, help="a trial's checkpoint_* folder")
    v.add_argument("--contexts", required=True, nargs="+", help="contexts g,m,l,tau")
    v.add_argument("--episodes", type=int, default=64, help="episodes per context (the paper: 64)")
    v.add_argument("--vectorization", type=int, default=32, help="parallel environments (the paper: 32)")
    v.add_argument("--out", required=True, help="the .npz to write")
    args = p.parse_args(argv)
    if args.command == "paper-eval":
        contexts = [[float(x) for x in c.split(",")] for c in args.contexts]
        paper_evaluation(args.paper_code, args.checkpoint, contexts, args.episodes, args.vectorization, args.out)
    elif args.command == "train":
        main_args = args.main_args[1:] if args.main_args[:1] == ["--"] else args.main_args
        train(args.paper_code, args.storage, args.seed, main_args)
    elif args.command == "export":
        export(args.checkpoint, args.out)
    else:
        reference(args.paper_code, args.out, args.width, args.layers, args.checkpoint, args.num_obs, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
