"""Methods as objects: their context samplers, the registry, a new method in one class, and
method settings declared once in the method class (TrainConfig, CLI and checkpoint derived)."""

import dataclasses

import jax
import numpy as np
import pytest

from zsgjax.configs import field_check, param
from zsgjax.envs import make
from zsgjax.methods import (CSE, DR, LDR, CSEWithLDR, Method, Vanilla, make_method, method_class, method_names,
                            register, registered_settings)
from zsgjax.methods.settings import merge_settings
from zsgjax.train import TrainConfig, make_train


def test_samplers():
    space = make("pendulum_goal").context_space
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)

    default = jax.vmap(Vanilla().context_sampler(space))(keys)
    np.testing.assert_array_equal(default, np.tile(space.default_array, (2000, 1)))

    ldr = np.asarray(jax.vmap(LDR(scale=0.1).context_sampler(space))(keys))
    assert np.all(space.contains(ldr))
    np.testing.assert_allclose(ldr.mean(0), space.default, atol=0.01)
    np.testing.assert_allclose(ldr.std(0), 0.1, atol=0.01)  # the default is >= 0.5 inside every bound

    full = np.asarray(jax.vmap(DR().context_sampler(space))(keys))
    assert np.all(space.contains(full))
    width = np.subtract(space.high, space.low)
    assert np.all(full.min(0) - space.low < 0.01 * width) and np.all(space.high - full.max(0) < 0.01 * width)

    box_low, box_high = (1.0, 0.9, 0.9, -0.5), (3.0, 1.1, 1.1, 0.5)
    box = np.asarray(jax.vmap(DR(low=box_low, high=box_high).context_sampler(space))(keys))
    assert np.all(box >= np.float32(box_low)) and np.all(box <= np.float32(box_high))
    np.testing.assert_allclose(box.mean(0), np.add(box_low, box_high) / 2, atol=0.05)


def test_method_errors():
    space = make("pendulum_goal").context_space
    with pytest.raises(ValueError, match="unknown method 'uniform'; known: vanilla, cse, ldr, dr, cse_ldr"):
        method_class("uniform")
    with pytest.raises(ValueError, match=r"^LDR.scale must be a finite number > 0, got 0.0$"):
        LDR(scale=0.0)
    with pytest.raises(ValueError, match=r"^CSE.mode must be one of first_order, exact, got 'second'$"):
        CSE(epsilon=0.1, mode="second", storage="jacobian", ratio=1.0)
    with pytest.raises(ValueError, match=r"^CSE.epsilon must be a finite number > 0, got inf$"):
        CSE(epsilon=float("inf"), mode="exact", storage="jacobian", ratio=1.0)
    with pytest.raises(ValueError, match=r"^CSEWithLDR.ratio must be a finite number in \[0, 1\], got 1.5$"):
        CSEWithLDR(ratio=1.5)
    with pytest.raises(ValueError, match=r"`dr_low` dimension 'g' = 0.1 is outside its range \[0.5, 5\]"):
        DR(low=(0.1, 1.0, 1.0, 0.0)).context_sampler(space)
    with pytest.raises(ValueError, match=r"`dr_high` dimension 'tau' = 2 is outside its range \[-1, 1\]"):
        DR(high=(5.0, 2.0, 2.0, 2.0)).context_sampler(space)
    with pytest.raises(ValueError, match=r"`dr_low` must have trailing dimension 4"):
        DR(low=(1.0, 1.0)).context_sampler(space)
    with pytest.raises(ValueError, match=r"`dr_low` must not exceed `dr_high`: dimension 'g' has 4 > 3"):
        DR(low=(4.0, 1.0, 1.0, 0.0), high=(3.0, 2.0, 2.0, 1.0)).context_sampler(space)
    with pytest.raises(ValueError, match="already registered"):
        register(type("Other", (Method,), {"name": "cse"}))
    with pytest.raises(ValueError, match="`method` is a 'ldr' method but TrainConfig.method is 'cse'"):
        make_train(TrainConfig(method="cse"), method=LDR(scale=0.2))


def test_methods_read_their_settings_from_the_config():
    c = TrainConfig(method="cse", cse_epsilon=0.05, cse_mode="exact", cse_ratio=0.5).resolve()
    assert make_method(c) == CSE(epsilon=0.05, mode="exact", storage="auto", ratio=0.5)
    assert make_method(dataclasses.replace(c, method="ldr", ldr_scale=0.3)) == LDR(scale=0.3)
    assert method_names()[:5] == ("vanilla", "cse", "ldr", "dr", "cse_ldr")


@register
@dataclasses.dataclass(frozen=True)
class _HalfwayLDR(Method):
    """A method defined outside the package, in one class: LDR episodes, and each replay
    batch's contexts pulled halfway back to the training context (it only shows the hooks)."""

    name = "test_halfway_ldr"

    def context_sampler(self, space):
        return LDR(scale=0.2).context_sampler(space)

    def training_batch(self, env, items, rng):
        batch, weight, dropped = super().training_batch(env, items, rng)
        return batch.replace(context=batch.context * 0.5), weight, dropped


def test_a_method_defined_outside_the_package_plugs_in():
    from zsgjax.replay import ReplayItem
    from zsgjax.types import Transition

    trainer = make_train(TrainConfig(method="test_halfway_ldr", hidden_sizes=(8, 8)))
    assert isinstance(trainer.method, _HalfwayLDR)
    ctx = np.asarray(jax.vmap(trainer.sampler)(jax.random.split(jax.random.PRNGKey(0), 500)))
    assert 0.1 < ctx.std() < 0.3
    n = 4
    t = Transition(obs=np.zeros((n, 4)), action=np.zeros((n, 2)), reward=np.zeros(n), next_obs=np.zeros((n, 4)),
                   done=np.zeros(n), context=np.ones((n, 2)))
    batch, weight, dropped = trainer.training_batch(ReplayItem(t), jax.random.PRNGKey(1))
    np.testing.assert_allclose(batch.context, 0.5)
    assert weight.shape == (n,) and int(dropped) == 0


def test_cse_auto_storage_resolves_per_environment():
    from zsgjax.methods.cse import resolve_storage

    analytic = make("pendulum_goal")  # a 4-d context that enters analytic dynamics: the Jacobian is cheap
    reward_only = make("cheetah_velocity")  # the context (target velocity) only enters the reward
    physical = make("cheetah_velocity", physical=("gravity", "mass_scale"))
    assert physical.physical_context_dim == 2 and reward_only.physical_context_dim == 0
    assert resolve_storage("auto", analytic) == "jacobian"
    assert resolve_storage("auto", reward_only) == "jacobian"
    assert resolve_storage("auto", physical) == "jvp"
    for explicit in ("jacobian", "jvp"):
        assert resolve_storage(explicit, physical) == explicit
    with pytest.raises(ValueError, match="resolve_storage: `storage` must be one of auto, jacobian, jvp, got 'hessian'"):
        resolve_storage("hessian", physical)
    with pytest.raises(ValueError, match="CSE.storage must be one of auto, jacobian, jvp, got 'hessian'"):
        CSE(epsilon=0.1, mode="first_order", storage="hessian", ratio=1.0)
    # what collect stores follows the resolution (shapes only: nothing is compiled)
    method = CSE(epsilon=0.1, mode="first_order", storage="auto", ratio=1.0)
    for env, stored in ((physical, "delta_c"), (analytic, None)):
        state = env.init_env_state(jax.random.PRNGKey(0), env.context_space.default_array)
        action = jax.numpy.zeros((env.action_size,))
        _, extras = jax.eval_shape(lambda s, a, c, k, env=env: method.collect(env, s, a, c, k), state, action,
                                   env.context_space.default_array, jax.random.PRNGKey(1))
        if stored == "delta_c":
            assert extras.delta_c.shape == (env.context_dim,) and extras.d_obs.shape == (env.state_obs_size,)
        else:
            assert extras.d_obs.shape == (env.state_obs_size, env.context_dim)


def test_dr_box_comes_from_the_config_and_defaults_to_the_space():
    space = make("pendulum_goal").context_space
    c = TrainConfig(env="pendulum_goal", method="dr").resolve()
    assert c.dr_low == tuple(float(x) for x in space.low) and c.dr_high == tuple(float(x) for x in space.high)
    box = TrainConfig(env="pendulum_goal", method="dr", dr_low=(1.5, 0.8, 0.8, -0.5),
                      dr_high=(2.5, 1.2, 1.2, 0.5)).resolve()
    method = make_method(box)
    assert method == DR(low=(1.5, 0.8, 0.8, -0.5), high=(2.5, 1.2, 1.2, 0.5))
    draws = jax.vmap(method.context_sampler(space))(jax.random.split(jax.random.PRNGKey(0), 256))
    assert np.all(np.asarray(draws) >= np.array(box.dr_low) - 1e-6)
    assert np.all(np.asarray(draws) <= np.array(box.dr_high) + 1e-6)
    with pytest.raises(ValueError, match=r"TrainConfig.dr_low must be a non-empty tuple of finite numbers"):
        TrainConfig(env="pendulum_goal", method="dr", dr_low=(float("nan"),) * 4)
    with pytest.raises(ValueError, match="`dr_low` must not exceed `dr_high`"):
        make_method(dataclasses.replace(box, dr_low=box.dr_high, dr_high=box.dr_low)).context_sampler(space)


# ------------------------------------------------------------ method settings
@register
@dataclasses.dataclass(frozen=True)
class _TemperedLDR(LDR):
    """A test-only method registered after zsgjax.train was imported: LDR's ``scale``
    (inherited, so it is ``ldr_scale``) plus one setting of its own, declared once here."""

    name = "test_tempered"
    temperature: float = param(0.5, low=0.0, high=2.0, low_open=True, help="how far batches are pulled back")

    def training_batch(self, env, items, rng):
        batch, weight, dropped = super().training_batch(env, items, rng)
        return batch.replace(context=batch.context * self.temperature), weight, dropped


def test_settings_are_declared_once_by_the_method_classes():
    settings = registered_settings()
    builtin = ["cse_epsilon", "cse_mode", "cse_storage", "cse_ratio", "cse_gradients", "cse_fd_step",
               "cse_gradient_noise", "cse_noise_scale_gradient", "ldr_scale", "dr_low", "dr_high"]
    assert list(settings)[:len(builtin)] == builtin
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for option in builtin:  # TrainConfig's method fields are derived: the method's default and check
        s = settings[option]
        assert fields[option].default == s.default == getattr(s.owner, s.field)
        assert field_check(TrainConfig, option) == s.check
    assert TrainConfig().cse_epsilon == 0.1 and TrainConfig().cse_storage == "auto" and TrainConfig().dr_low is None
    # the composite reads CSE's and LDR's settings without declaring any
    assert [(s.option, s.owner) for s in CSEWithLDR.settings()] == [
        ("cse_epsilon", CSE), ("cse_mode", CSE), ("cse_storage", CSE), ("cse_ratio", CSE), ("cse_gradients", CSE),
        ("cse_fd_step", CSE), ("cse_gradient_noise", CSE), ("cse_noise_scale_gradient", CSE), ("ldr_scale", LDR)]
    assert not CSEWithLDR.__dict__.get("__annotations__")
    assert [s.option for s in _TemperedLDR.settings()] == ["ldr_scale", "test_tempered_temperature"]

    @dataclasses.dataclass(frozen=True)
    class WideLDR(LDR):  # declares LDR's field again: a setting of its own, with its own default
        name = "test_wide"
        scale: float = param(0.5, low=0.0, low_open=True, help="wider")

    assert [(s.option, s.owner, s.default) for s in WideLDR.settings()] == [("test_wide_scale", WideLDR, 0.5)]
    assert "test_tempered_temperature" not in fields  # registered after import: a method_options entry


def test_a_setting_added_in_one_class_reaches_config_cli_and_checkpoint(tmp_path):
    from zsgjax import cli, runner

    # Python API: by name through replace / method_options; checked where it is passed
    config = TrainConfig(method="test_tempered", hidden_sizes=(8, 8)).replace(test_tempered_temperature=0.25)
    assert config.method_options == {"test_tempered_temperature": 0.25}
    assert config.method_setting("test_tempered_temperature") == 0.25 and config.method_setting("ldr_scale") == 0.1
    assert config.replace(test_tempered_temperature=1.25).method_setting("test_tempered_temperature") == 1.25
    trainer = make_train(config.replace(ldr_scale=0.3))
    assert trainer.method == _TemperedLDR(scale=0.3, temperature=0.25)
    # the resolved config records the value used, also when left at its default
    assert make_train(TrainConfig(method="test_tempered")).config.method_options == {"test_tempered_temperature": 0.5}
    assert TrainConfig(**trainer.config.record()) == trainer.config  # what run.json / checkpoints hold reads back
    record = runner.checkpoint_config(trainer, 2)
    assert record["method_options"] == {"test_tempered_temperature": 0.25} and record["ldr_scale"] == 0.3
    assert "method_options" not in runner.checkpoint_config(make_train(TrainConfig(method="cse")), 2)

    # CLI: the flag with its help and range, parsed into the same config
    parser = cli.build_parser()
    help_text = " ".join(parser.subcommands["train"].format_help().split())
    assert ("--test-tempered-temperature FLOAT test_tempered: how far batches are pulled back; a finite number in "
            "(0, 2] (default: 0.5)") in help_text
    assert "--cse-mode {first_order,exact} cse: first_order: Taylor step" in help_text  # choices shown, judged once
    args = parser.parse_args(["train", "--method", "test_tempered", "--test-tempered-temperature", "1.5",
                              "--hidden-sizes", "8", "8", "--out", str(tmp_path / "run")])
    command = cli.command_from_args(args)
    assert command.trainers["test_tempered"].method == _TemperedLDR(scale=0.1, temperature=1.5)


@pytest.mark.parametrize("value, shown", [(0.0, "0.0"), (2.5, "2.5"), (float("nan"), "nan"), ("hot", "'hot'")])
def test_a_bad_setting_is_one_message_from_python_and_cli(tmp_path, capsys, value, shown):
    from zsgjax import cli

    rule = "must be a finite number in (0, 2], got " + shown
    for call in (lambda: TrainConfig(method="test_tempered").replace(test_tempered_temperature=value),
                 lambda: TrainConfig(method_options={"test_tempered_temperature": value})):
        with pytest.raises(ValueError) as e:
            call()
        assert str(e.value) == "TrainConfig.method_options['test_tempered_temperature'] " + rule
    with pytest.raises(ValueError) as e:
        _TemperedLDR(temperature=value)
    assert str(e.value) == "_TemperedLDR.temperature " + rule
    if isinstance(value, float):
        with pytest.raises(SystemExit):
            cli.main(["train", "--method", "test_tempered", "--test-tempered-temperature", str(value),
                      "--out", str(tmp_path / "run")])
        assert capsys.readouterr().err.splitlines() == [
            f"zsgjax train: error: --test-tempered-temperature {rule}; see 'zsgjax train --help'"]
        assert not (tmp_path / "run").exists()


def test_method_options_and_registration_refuse_what_they_cannot_place():
    with pytest.raises(ValueError, match=r"TrainConfig.method_options: 'cse_epsilon' is a TrainConfig field; give it "
                                         r"as TrainConfig\(cse_epsilon=...\)"):
        TrainConfig(method_options={"cse_epsilon": 0.2})
    with pytest.raises(ValueError, match=r"TrainConfig.replace: 'cse_epsilom' is neither a TrainConfig field nor a "
                                         r"setting of a registered method; .*test_tempered_temperature"):
        TrainConfig().replace(cse_epsilom=0.2)
    with pytest.raises(ValueError, match="TrainConfig.method_setting: 'nope' is neither"):
        TrainConfig().method_setting("nope")

    @dataclasses.dataclass(frozen=True)
    class Bare(Method):
        name = "test_bare"
        weight: float = 1.0  # not declared with param: no range, no help

    with pytest.raises(TypeError, match=r"Bare.weight: a method's fields are its settings; declare it with "
                                        r"zsgjax.configs.param\(default, help="):
        register(Bare)

    @dataclasses.dataclass(frozen=True)
    class Unexplained(Method):
        name = "test_unexplained"
        weight: float = param(1.0, low=0.0)  # a range but no help for --help

    with pytest.raises(TypeError, match="Unexplained.weight: a method's fields are its settings"):
        register(Unexplained)

    @dataclasses.dataclass(frozen=True)
    class Clash(Method):
        name = "test_a_b"
        c: float = param(1.0, help="h")  # option test_a_b_c

    @dataclasses.dataclass(frozen=True)
    class Clash2(Method):
        name = "test_a"
        b_c: float = param(1.0, help="h")  # option test_a_b_c too

    with pytest.raises(ValueError, match=r"method setting 'test_a_b_c' is declared twice: Clash.c and Clash2.b_c"):
        merge_settings([Clash, Clash2])
    assert "test_bare" not in method_names()
