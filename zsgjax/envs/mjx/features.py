"""Physical context features of MuJoCo MJX environments (CARL-style).

A *feature* is one scalar context dimension that is written into a per-call copy
of the ``mjx.Model``. Users choose at construction which features are part of the
context; the rest keep the model's own values. Every feature is a pure function
``(mjx.Model, value ()) -> mjx.Model``: the value is a traced argument, never
closed over, so changing it never recompiles and ``jax.jacfwd`` differentiates
the physics with respect to it.

Feature names (``<body>`` is a named body, ``<joint>`` a named joint of the model):

=====================  =======  ============  ==========================================
name                   default  range         what it scales / sets
=====================  =======  ============  ==========================================
gravity                9.81     [5, 20]       gravity vector ``(0, 0, -g)``, m/s^2
mass_scale             1        [0.5, 2]      every body's mass and inertia (density)
mass_scale:<body>      1        [0.5, 2]      one body's mass and inertia
friction_scale         1        [0.25, 2]     every geom's friction coefficients
actuator_gain          1        [0.5, 2]      actuator gain and bias (``gainprm``, ``biasprm``)
damping_scale          1        [0.5, 2]      every joint's damping (``dof_damping``)
damping_scale:<joint>  1        [0.5, 2]      the damping of one joint's degrees of freedom
=====================  =======  ============  ==========================================

A per-body or per-joint feature has the kind of its prefix (``mass_scale``,
``damping_scale``): its default range and physical minimum. A feature only acts
as far as the model uses what it scales: a joint with damping near 0 (e.g.
``CartpoleBalance``'s ``slider``, 5e-4, and ``hinge_1``, 2e-6) makes
``damping_scale:<joint>`` a near-irrelevant (nuisance) context dimension.

Derived constants: ``body_subtreemass`` is recomputed from the scaled masses
(as ``mj_setConst`` does). ``body_invweight0``/``dof_invweight0``, MuJoCo's
constraint-regulariser constants computed once at ``qpos0``, keep their nominal
values: they only set the contact softness, and with joint armature they are not
a function of the scaled masses that could be updated in closed form.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx

ApplyFn = Callable[[mjx.Model, jax.Array], mjx.Model]


@dataclasses.dataclass(frozen=True)
class PhysicalFeature:
    """One physical context dimension.

    name:        the context dimension name (e.g. ``"gravity"``, ``"mass_scale:torso"``)
    default:     the model's nominal value (the training context)
    low, high:   the range of the context dimension
    description: what the feature scales, for documentation and error messages
    apply:       ``(mjx.Model, value ()) -> mjx.Model``, pure and traceable
    """

    name: str
    default: float
    low: float
    high: float
    description: str
    apply: ApplyFn = dataclasses.field(compare=False, repr=False)

    @property
    def kind(self) -> str:
        """The feature's kind, a key of :data:`FEATURE_RANGES` (:func:`feature_kind`)."""
        return feature_kind(self.name)

    @property
    def widened(self) -> bool:
        """Whether ``[low, high]`` reaches beyond the kind's default range (:data:`FEATURE_RANGES`)."""
        low, high = FEATURE_RANGES[self.kind]
        return self.low < low or self.high > high


# Default (low, high) per kind; the default value is the model's own.
FEATURE_RANGES: dict[str, tuple[float, float]] = {
    "gravity": (5.0, 20.0),
    "mass_scale": (0.5, 2.0),
    "friction_scale": (0.25, 2.0),
    "actuator_gain": (0.5, 2.0),
    "damping_scale": (0.5, 2.0),
}
FEATURE_KINDS = tuple(FEATURE_RANGES)
# Physically valid values: a range must lie above these (strictly, except damping, which may be 0).
# Zero friction, mass or gravity, or negative ones, make the MJX state non-finite within steps.
PHYSICAL_MINIMUM: dict[str, tuple[float, bool]] = {  # kind -> (bound, bound allowed)
    "gravity": (0.0, False),
    "mass_scale": (0.0, False),
    "friction_scale": (0.0, False),
    "actuator_gain": (0.0, False),
    "damping_scale": (0.0, True),
}
PER_BODY_PREFIX = "mass_scale:"
PER_JOINT_PREFIX = "damping_scale:"


def feature_kind(name: str) -> str:
    """The kind of feature ``name``: ``"mass_scale"`` for ``"mass_scale:<body>"``, ``"damping_scale"``
    for ``"damping_scale:<joint>"``, else ``name`` itself."""
    for prefix in (PER_BODY_PREFIX, PER_JOINT_PREFIX):
        if name.startswith(prefix):
            return prefix[:-1]
    return name


def body_names(mj_model: mujoco.MjModel) -> list[str]:
    """Named bodies of a model (world excluded): the valid ``mass_scale:<body>`` suffixes."""
    names = [mj_model.body(i).name for i in range(1, mj_model.nbody)]
    return [n for n in names if n]


def joint_names(mj_model: mujoco.MjModel) -> list[str]:
    """Named joints of a model: the valid ``damping_scale:<joint>`` suffixes."""
    names = [mj_model.joint(i).name for i in range(mj_model.njnt)]
    return [n for n in names if n]


def _damping_scaler(mask: np.ndarray) -> ApplyFn:
    """``(model, value ()) -> model`` scaling ``dof_damping`` of the DOFs where ``mask (nv,)`` is true."""

    def apply(model: mjx.Model, v: jax.Array) -> mjx.Model:
        dtype = model.dof_damping.dtype
        scale = jnp.where(jnp.asarray(mask, bool), v.astype(dtype), jnp.ones((), dtype))
        return model.replace(dof_damping=model.dof_damping * scale)

    return apply


def _subtree_matrix(mj_model: mujoco.MjModel) -> np.ndarray:
    """``A (nbody, nbody)`` with ``A[i, j] = 1`` when body ``j`` is in the subtree of ``i``."""
    nbody = mj_model.nbody
    a = np.eye(nbody)
    for j in range(1, nbody):
        i = int(mj_model.body_parentid[j])
        while True:
            a[i, j] = 1.0
            if i == 0:
                break
            i = int(mj_model.body_parentid[i])
    return a


def _mass_scaler(mj_model: mujoco.MjModel, mask: np.ndarray) -> ApplyFn:
    """``(model, value ()) -> model`` scaling mass and inertia of the bodies where ``mask (nbody,)`` is 1."""
    subtree = _subtree_matrix(mj_model)

    def apply(model: mjx.Model, v: jax.Array) -> mjx.Model:
        m = jnp.asarray(mask, model.body_mass.dtype)
        scale = 1.0 + m * (v.astype(m.dtype) - 1.0)
        mass = model.body_mass * scale
        return model.replace(
            body_mass=mass,
            body_inertia=model.body_inertia * scale[:, None],
            body_subtreemass=jnp.asarray(subtree, mass.dtype) @ mass,
        )

    return apply


def make_feature(
    mj_model: mujoco.MjModel, name: str, value_range: tuple[float, float] | None = None
) -> PhysicalFeature:
    """Build the feature called ``name`` for ``mj_model``.

    ``value_range`` overrides the default ``(low, high)``; it must contain the
    model's nominal value. Raises ``ValueError`` for an unknown feature, body or
    joint name (listing the accepted ones) or a bad range.
    """
    nbody = mj_model.nbody
    if name == "gravity":
        g = float(-mj_model.opt.gravity[2])
        if np.any(mj_model.opt.gravity[:2] != 0) or g <= 0:
            raise ValueError(
                f"feature 'gravity' needs a model with gravity (0, 0, -g), g > 0; got {mj_model.opt.gravity}"
            )
        default, desc = g, "gravity magnitude g (m/s^2); gravity = (0, 0, -g)"

        def apply(model, v):
            grav = jnp.zeros((3,), v.dtype).at[2].set(-v)
            return model.replace(opt=model.opt.replace(gravity=grav.astype(model.opt.gravity.dtype)))

    elif name == "mass_scale" or name.startswith(PER_BODY_PREFIX):
        if name == "mass_scale":
            mask = np.ones((nbody,))
            desc = "mass and inertia of every body"
        else:
            body = name[len(PER_BODY_PREFIX):]
            known = body_names(mj_model)
            if body not in known:
                raise ValueError(
                    f"unknown body '{body}' in physical feature '{name}'; named bodies: {', '.join(known)}"
                )
            mask = np.zeros((nbody,))
            mask[mj_model.body(body).id] = 1.0
            desc = f"mass and inertia of body '{body}'"
        apply = _mass_scaler(mj_model, mask)
        default = 1.0

    elif name == "friction_scale":
        default, desc = 1.0, "friction coefficients (sliding, torsional, rolling) of every geom"

        def apply(model, v):
            return model.replace(geom_friction=model.geom_friction * v.astype(model.geom_friction.dtype))

    elif name == "actuator_gain":
        default, desc = 1.0, "actuator gain and bias parameters (gainprm, biasprm) of every actuator"

        def apply(model, v):
            v = v.astype(model.actuator_gainprm.dtype)
            return model.replace(
                actuator_gainprm=model.actuator_gainprm * v, actuator_biasprm=model.actuator_biasprm * v
            )

    elif name == "damping_scale":
        default, desc = 1.0, "joint damping (dof_damping) of every degree of freedom"

        def apply(model, v):
            return model.replace(dof_damping=model.dof_damping * v.astype(model.dof_damping.dtype))

    elif name.startswith(PER_JOINT_PREFIX):
        joint = name[len(PER_JOINT_PREFIX):]
        known = joint_names(mj_model)
        if joint not in known:
            raise ValueError(f"unknown joint '{joint}' in physical feature '{name}'; named joints: {', '.join(known)}")
        mask = (np.asarray(mj_model.dof_jntid) == mj_model.joint(joint).id).astype(np.float64)
        apply = _damping_scaler(mask)
        default, desc = 1.0, f"joint damping (dof_damping) of joint '{joint}'"

    else:
        raise ValueError(
            f"unknown physical feature '{name}'; known: {', '.join(FEATURE_KINDS)}, "
            f"or '{PER_BODY_PREFIX}<body>' with <body> one of: {', '.join(body_names(mj_model))}, "
            f"or '{PER_JOINT_PREFIX}<joint>' with <joint> one of: {', '.join(joint_names(mj_model))}"
        )

    kind = feature_kind(name)
    if value_range is None:
        value_range = FEATURE_RANGES[kind]
    if np.shape(value_range) != (2,) or not np.all(np.isfinite(np.asarray(value_range, dtype=np.float64))):
        raise ValueError(f"range of physical feature '{name}' must be a finite (low, high) pair, got {value_range}")
    low, high = float(value_range[0]), float(value_range[1])
    bound, inclusive = PHYSICAL_MINIMUM[kind]
    if not (low >= bound if inclusive else low > bound):
        raise ValueError(
            f"range of physical feature '{name}' is [{low:g}, {high:g}]: its low end must be "
            f"{'>=' if inclusive else '>'} {bound:g} (physically invalid below: the simulation turns non-finite)"
        )
    if not low <= default <= high:
        raise ValueError(
            f"range of physical feature '{name}' is [{low:g}, {high:g}], which must contain its default {default:g}"
        )
    return PhysicalFeature(name=name, default=default, low=low, high=high, description=desc, apply=apply)


def make_features(
    mj_model: mujoco.MjModel,
    names: Sequence[str],
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[PhysicalFeature, ...]:
    """Features for ``names`` (in order; duplicates rejected), ranges overridable by name."""
    if isinstance(names, str):
        raise ValueError(f"`physical` must be a sequence of feature names, got the string '{names}'")
    names = tuple(names)
    if len(set(names)) != len(names):
        raise ValueError(f"`physical` names must be unique, got {names}")
    ranges = dict(ranges or {})
    unknown = set(ranges) - set(names)
    if unknown:
        raise ValueError(f"`physical_ranges` names features not selected in `physical`: {sorted(unknown)}")
    return tuple(make_feature(mj_model, n, ranges.get(n)) for n in names)


def check_physical_ranges(env, first_dim: int) -> None:
    """Simulate the corners of ``env``'s physical ranges when one of them is widened.

    ``env``: a built environment with ``features`` (its physical features), whose
    context dimensions ``first_dim, ..., first_dim + len(features) - 1`` they are.
    When some feature's range reaches beyond its default range
    (:attr:`PhysicalFeature.widened`), :func:`zsgjax.envs.stability.check_ranges` runs
    short random-action rollouts at the corners of all the physical ranges together
    (one compilation) and raises a ``ValueError`` naming the corner where the
    simulation blows up. The default ranges themselves are checked at their corners
    for every registered environment by the contract tests, so nothing runs for them.
    """
    from zsgjax.envs import stability  # imports the env API; features.py itself does not

    widened = [f for f in env.features if f.widened]
    if not widened:
        return
    what = ", ".join(f"'{f.name}' [{f.low:g}, {f.high:g}] (default range {FEATURE_RANGES[f.kind][0]:g}-"
                     f"{FEATURE_RANGES[f.kind][1]:g})" for f in widened)
    dims = range(first_dim, first_dim + len(env.features))
    stability.check_ranges(env, dims, f"the widened range of physical feature{'s' * (len(widened) > 1)} {what}")


def apply_features(model: mjx.Model, features: Sequence[PhysicalFeature], values: jax.Array) -> mjx.Model:
    """Write ``values (len(features),)`` into a copy of ``model``, one feature after another."""
    for i, feature in enumerate(features):
        model = feature.apply(model, values[i])
    return model
