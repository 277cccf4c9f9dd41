"""Names of the mujoco_playground environments the playground adapter supports.

The DeepMind Control Suite of ``mujoco_playground`` 0.2.0 (``dm_control_suite.ALL_ENVS``):
its MJCF files ship inside the package, so building them needs no network. The
locomotion and manipulation suites load robots from MuJoCo Menagerie, which
playground clones from GitHub on first use; they are not listed (a constructed
playground environment can still be wrapped directly, see
:class:`zsgjax.adapters.playground.PlaygroundEnv`). ``tests/test_adapters.py``
checks that this tuple equals the installed package's list.

This module imports nothing, so the environment registry can read it without
importing MuJoCo: :func:`registrations` is the ``zsgjax.envs`` entry point (in
``pyproject.toml``) through which :func:`zsgjax.envs.make` learns the
``playground:*`` names, lazily, without the core importing an adapter.
"""

PREFIX = "playground:"
"""Registry names are ``PREFIX + <playground name>``, e.g. ``"playground:CartpoleBalance"``."""

DM_CONTROL_ENVS: tuple[str, ...] = (
    "AcrobotSwingup",
    "AcrobotSwingupSparse",
    "BallInCup",
    "CartpoleBalance",
    "CartpoleBalanceSparse",
    "CartpoleSwingup",
    "CartpoleSwingupSparse",
    "CheetahRun",
    "FingerSpin",
    "FingerTurnEasy",
    "FingerTurnHard",
    "FishSwim",
    "HopperHop",
    "HopperStand",
    "HumanoidStand",
    "HumanoidWalk",
    "HumanoidRun",
    "PendulumSwingup",
    "PointMass",
    "ReacherEasy",
    "ReacherHard",
    "SwimmerSwimmer6",
    "WalkerRun",
    "WalkerStand",
    "WalkerWalk",
)


def registrations() -> dict[str, str]:
    """``{"playground:<Name>": "zsgjax.adapters.playground:<Name>"}`` for every supported name
    (read by :mod:`zsgjax.envs.registry` from the ``zsgjax.envs`` entry-point group)."""
    return {PREFIX + name: f"zsgjax.adapters.playground:{name}" for name in DM_CONTROL_ENVS}
