import pytest

from stgraph.config import from_dict, parse_assignment, set_path, to_dict
from stgraph.errors import InputError
from stgraph.models.stid import STIDConfig
from stgraph.pipeline import FitConfig, prepare, resolve_config


def test_unknown_key_is_an_error_with_a_suggestion():
    with pytest.raises(
        InputError, match=r"Unknown config key 'config.train.lrr'.*Did you mean 'lr'"
    ):
        from_dict(FitConfig, {"train": {"lrr": 0.1}}, "config")


def test_keys_are_named_as_typed_from_the_top_level():
    with pytest.raises(InputError, match=r"^Unknown config key 'train.lrr'.*Known keys of 'train'"):
        from_dict(FitConfig, {"train": {"lrr": 0.1}})
    with pytest.raises(InputError, match=r"^Unknown config key 'trian'.*at the top level: data"):
        from_dict(FitConfig, {"trian": {}})
    with pytest.raises(InputError, match=r"^Config key 'train.epochs' must be int"):
        resolve_config("simulator", assignments=["train.epochs=many"])


def test_strings_from_set_are_coerced_and_bad_types_rejected():
    config = from_dict(FitConfig, {"train": {"epochs": "3", "clip_grad_norm": None}}, "config")
    assert config.train.epochs == 3 and config.train.clip_grad_norm is None
    with pytest.raises(InputError, match="'config.train.epochs' must be int"):
        from_dict(FitConfig, {"train": {"epochs": "many"}}, "config")


def test_set_assignment_parses_yaml_values():
    data = {}
    key, value = parse_assignment("model.params.hidden=32")
    set_path(data, key, value)
    assert data == {"model": {"params": {"hidden": 32}}}
    with pytest.raises(InputError, match="key=value"):
        parse_assignment("oops")
    # YAML 1.1 would read exponent-only floats as strings.
    assert [parse_assignment(f"x={text}")[1] for text in ("1e-5", "-2E3", "1.5e-3")] == [
        1e-5,
        -2000.0,
        1.5e-3,
    ]
    assert parse_assignment("x=1e")[1] == "1e" and parse_assignment("x=10")[1] == 10


def test_resolve_layers_pipeline_then_set_then_flags():
    config = resolve_config(
        "simulator", assignments=["train.lr=0.5", "train.epochs=2"], flags={"train.epochs": 7}
    )
    # The pipeline's params, completed with the model's defaults: what MLflow logs.
    assert config.model.name == "stid"
    assert config.model.params == to_dict(STIDConfig(hidden=32, num_layers=2))
    assert config.train.lr == 0.5 and config.train.epochs == 7
    other = resolve_config("simulator", model="persistence")
    assert other.model.params == {}  # the pipeline's params were for another model


def test_unknown_model_is_an_error_with_a_suggestion():
    with pytest.raises(InputError, match="Unknown model 'persistance'.*Did you mean 'persistence'"):
        resolve_config("simulator", model="persistance")


def test_pipelines_extend_a_shared_recipe_and_presets_apply_per_model():
    config = resolve_config("pems08")
    assert config.model.name == "gram-ode" and config.task.params["loss"] == "huber"
    assert config.train.scheduler_params["milestones"] == [15, 50, 105, 145]
    stgode = resolve_config("pems08", model="stgode")
    assert stgode.task.params["loss"] == "mae" and stgode.train.batch_size == 16
    assert stgode.train.scheduler == "step"
    assert config.task.params["normalization"] == "train"
    faithful = resolve_config("pems08", model="gram-ode-faithful")
    assert faithful.task.params["normalization"] == "per_split"


def test_unknown_normalization_is_an_error_before_any_data_is_read():
    with pytest.raises(InputError, match="task.params.normalization must be 'train' or 'per_sp"):
        resolve_config("simulator", assignments=["task.params.normalization=global"])


def test_per_split_normalization_reaches_the_task():
    config = resolve_config("simulator", assignments=["task.params.normalization=per_split"])
    task = prepare(config)
    assert sorted(task.split_scalers) == ["test", "train", "val"]
    assert task.scaler_for("test") is task.split_scalers["test"]
    assert prepare(resolve_config("simulator")).split_scalers == {}


def test_model_and_task_params_are_checked_before_any_data_is_read(monkeypatch):
    import stgraph.data.sources as sources

    monkeypatch.setattr(sources, "open_dataset", lambda *a, **k: pytest.fail("data was read"))
    with pytest.raises(InputError, match=r"'model.params.hiden'.*Did you mean 'hidden'"):
        resolve_config("simulator", assignments=["model.params.hiden=8"])
    with pytest.raises(InputError, match=r"'task.params.horizn'.*Did you mean 'horizon'"):
        resolve_config("simulator", assignments=["task.params.horizn=3"])
    with pytest.raises(InputError, match="task.params.window and horizon must be positive"):
        resolve_config("simulator", assignments=["task.params.horizon=0"])


def test_task_flag_and_model_task_mismatch():
    with pytest.raises(InputError, match=r"Unknown task 'forcast'.*Did you mean 'forecast'"):
        resolve_config("simulator", task="forcast")
    config = resolve_config("los-loop", task="forecast")  # the pipeline's own task: kept
    assert config.model.name == "sttn" and config.task.params["window"] == 12


def test_every_shipped_pipeline_resolves_for_every_model_of_its_task():
    """Each pipeline with each model its task takes (presets merged) gives settings the trainer
    accepts: a preset's scheduler must not inherit another schedule's parameters."""
    import torch

    from stgraph import _shipped
    from stgraph.models.base import MODELS
    from stgraph.training.optim import build_scheduler

    checked = 0
    for path in sorted(_shipped.path("pipelines").glob("[!_]*.yaml")):
        task = resolve_config(path.stem).task.name
        for model in (n for n in MODELS.names() if MODELS.get(n).task == task):
            train = resolve_config(path.stem, model=model).train
            if train.scheduler != "none":
                probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=train.lr)
                build_scheduler(train.scheduler, probe, dict(train.scheduler_params))
            checked += 1
    assert checked >= 40


def test_a_new_scheduler_does_not_inherit_the_old_ones_parameters():
    # los-loop's sttn preset: cosine with T_max 40; StepLR takes no T_max.
    step = resolve_config(
        "los-loop", assignments=["train.scheduler=step", "train.scheduler_params.step_size=5"]
    )
    assert step.train.scheduler == "step" and step.train.scheduler_params == {"step_size": 5}
    # The order of the assignments does not matter; the same scheduler keeps its parameters.
    step = resolve_config(
        "los-loop", assignments=["train.scheduler_params.step_size=5", "train.scheduler=step"]
    )
    assert step.train.scheduler_params == {"step_size": 5}
    cosine = resolve_config("los-loop", assignments=["train.scheduler=cosine"])
    assert cosine.train.scheduler_params == {"T_max": 40, "eta_min": 1.0e-5}
