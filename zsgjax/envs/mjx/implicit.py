"""MJX steps whose forward-mode tangent skips the constraint solver's iterations.

``jax.jvp`` through :func:`mujoco.mjx.step` carries a tangent through every
iteration of the constraint solver (MJX's Newton/CG ``while_loop`` and every
line-search step inside it). The solver's result is the minimiser ``qacc*`` of a
convex cost ``f(qacc; theta)`` (Gauss term plus constraint costs, MuJoCo's
primal formulation), so its tangent follows from the implicit function theorem
at the solution instead:

    grad_qacc f(qacc*; theta) = 0
    =>  H dqacc = -(d/dtheta grad_qacc f)(qacc*; theta) . dtheta

with ``H`` the cost's Hessian at ``qacc*`` (``M + J^T C J``; ``C`` the active
constraints' curvature, cone Hessians included, as MJX's Newton solver builds
it). :func:`solve` is MJX's solver with this tangent (``jax.custom_jvp``): the
primal is MJX's own ``solve``, bit for bit; the tangent costs one linearised
evaluation of the cost's gradient (matrix-vector products) and one Cholesky
solve, whatever the number of solver and line-search iterations.

The tangent is exact for the converged solution; it differs from the tangent
of the *unrolled* iterations (what finite differences of the simulator see) by
how far the solver is from convergence: the model's ``tolerance`` and
``iterations`` set that. With ``iterations == 1`` the solver is one Newton step
and its result is not the minimiser, so :func:`supports` refuses such models
(use MJX's plain step there; one unrolled step is cheap anyway).

:func:`step` is ``mjx.step`` (Euler integrator, JAX implementation) with
:func:`solve` in place of MJX's solver. Everything else is MJX's own code
(``mujoco.mjx._src``; tested against ``mjx.step`` for identical primals).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
from mujoco import mjx
from mujoco.mjx._src import forward as mjx_forward
from mujoco.mjx._src import sensor as mjx_sensor
from mujoco.mjx._src import solver as mjx_solver
from mujoco.mjx._src import support as mjx_support
from mujoco.mjx._src.types import ConeType, IntegratorType, SolverType


def supports(mj_model: mujoco.MjModel) -> tuple[bool, str]:
    """``(True, "")`` when :func:`step` applies to ``mj_model``, else ``(False, reason)``.

    Needs the Euler integrator, a pyramidal or elliptic cone with the Newton solver
    (or a pyramidal cone with CG), and more than one solver iteration (one
    iteration does not reach the minimiser whose tangent the implicit function
    theorem gives).
    """
    opt = mj_model.opt
    if int(opt.integrator) != int(IntegratorType.EULER):
        return False, f"integrator {int(opt.integrator)} is not Euler"
    if int(opt.iterations) <= 1:
        return False, f"the solver runs {int(opt.iterations)} iteration(s): its result is not the minimiser"
    newton = int(opt.solver) == int(SolverType.NEWTON)
    pyramidal = int(opt.cone) == int(ConeType.PYRAMIDAL)
    if not (newton or pyramidal):
        return False, "the elliptic cone needs the Newton solver here"
    return True, ""


def _residual(m: mjx.Model, d: mjx.Data):
    """``(grad_qacc f (nv,), solver context)`` at ``d.qacc``: the optimality residual of the solver's cost."""
    ctx = mjx_solver.Context.create(m, d, grad=False)
    return ctx.Ma - d.qfrc_smooth - ctx.qfrc_constraint, ctx


def _hessian_solve(m: mjx.Model, d: mjx.Data, ctx, v: jax.Array) -> jax.Array:
    """``H^{-1} v`` with ``H`` the solver cost's Hessian at ``ctx`` (``v (nv,)``)."""
    if int(m.opt.solver) == int(SolverType.NEWTON):
        # MJX's Newton step builds H (cone Hessians included) and returns H^{-1} grad
        # with grad = Ma - qfrc_smooth - qfrc_constraint: set grad to v.
        zeros = jnp.zeros_like(v)
        ctx_v = ctx.replace(Ma=v, qfrc_constraint=zeros)
        return mjx_solver._update_gradient(m, d.replace(qfrc_smooth=zeros), ctx_v).Mgrad
    impl = d._impl
    h = mjx_support.full_m(m, d) + (impl.efc_J.T * (impl.efc_D * ctx.active)) @ impl.efc_J
    factor = jax.scipy.linalg.cho_factor(0.5 * (h + h.T))
    return jax.scipy.linalg.cho_solve(factor, v)


def _zero_tangent(x):
    dtype = jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return jnp.zeros(jnp.shape(x), jax.dtypes.float0)


@jax.custom_jvp
def solve(m: mjx.Model, d: mjx.Data) -> mjx.Data:
    """MJX's constraint solver (``qacc``, ``qfrc_constraint``, ``efc_force``) with an implicit tangent."""
    return mjx_solver.solve(m, d)


@solve.defjvp
def _solve_jvp(primals, tangents):
    m, d = primals
    dm, dd = tangents
    out = mjx_solver.solve(m, d)
    d_star = d.replace(qacc=out.qacc)
    dd_fixed = dd.replace(qacc=jnp.zeros_like(out.qacc))
    (_, ctx), (dg, _) = jax.jvp(_residual, (m, d_star), (dm, dd_fixed))
    dqacc = -_hessian_solve(m, d_star, ctx, dg)
    # constraint forces along (dtheta, dqacc): their tangent at the solution
    _, (_, dctx) = jax.jvp(_residual, (m, d_star), (dm, dd.replace(qacc=dqacc)))
    tangent_out = dd.tree_replace(
        {"qacc": dqacc, "qfrc_constraint": dctx.qfrc_constraint, "_impl.efc_force": dctx.efc_force}
    )
    return out, tangent_out


def forward(m: mjx.Model, d: mjx.Data) -> mjx.Data:
    """``mjx.forward`` (JAX implementation) with :func:`solve` as the constraint solver."""
    d = mjx_forward.fwd_position(m, d)
    d = mjx_sensor.sensor_pos(m, d)
    d = mjx_forward.fwd_velocity(m, d)
    d = mjx_sensor.sensor_vel(m, d)
    d = mjx_forward.fwd_actuation(m, d)
    d = mjx_forward.fwd_acceleration(m, d)
    if d._impl.efc_J.size == 0:
        return d.replace(qacc=d.qacc_smooth)
    d = solve(m, d)
    return mjx_sensor.sensor_acc(m, d)


def step(m: mjx.Model, d: mjx.Data) -> mjx.Data:
    """``mjx.step`` (Euler) with :func:`solve` as the constraint solver; check :func:`supports` first."""
    return mjx_forward.euler(m, forward(m, d))
