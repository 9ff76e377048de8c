"""Every `probes synth` option is one declaration: a field of SweepSpec (TrainConfig's fields come in
automatically) is both a flag and a config-file key, with the same meaning; the flags that are not fields
are the command's run controls (panels Sweep, Launch, SLURM). Tested by enumerating the model's fields."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import typer
from probes.cli.app import _register, app
from probes.cli.options import flag_name
from probes.cli.synth import _RENAME, sweep_from_options

from probes.train.config import TrainConfig
from probes.train.sweep import SweepSpec, build_sweep, load_sweep_file

RUN_CONTROL_PANELS = {"Sweep", "Launch", "SLURM"}


def _synth() -> Any:
    _register()
    return typer.main.get_command(app).commands["synth"]  # type: ignore[attr-defined]


def _sample(name: str, annotation: Any, default: Any) -> tuple[Any, str]:
    """A value other than the default where the type allows (file form, flag text)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if type(None) in typing.get_args(annotation) and len(args) == 1 else annotation
    origin = typing.get_origin(base)
    if base is bool:
        return (not default), ""
    if base is int:
        return 7, "7"
    if base is float:
        return 0.5, "0.5"
    if origin is list and typing.get_args(base) == (int,):
        return [16, 32], "16,32"
    if origin is list and typing.get_args(base) == (float,):
        return [0.001, 0.002], "0.001,0.002"
    if origin is tuple:
        return [0.8, 0.9], "0.8,0.9"
    value = default if not isinstance(default, list) else ",".join(default) or "csv"
    return value, str(value)


def _flags_of(command: Any) -> dict[str, Any]:
    return {p.name: p for p in command.params}


def test_every_field_is_a_flag_and_every_flag_a_field_or_a_run_control() -> None:
    params = _flags_of(_synth())
    fields = set(SweepSpec.model_fields)
    by_field = {_RENAME.get(name, name): p for name, p in params.items()}
    missing = [f for f in fields if f not in by_field]
    assert not missing, f"fields without a flag: {missing}"
    for field, p in by_field.items():
        if field in fields:
            assert flag_name(field) in p.opts or field == "len" and "--len" in p.opts, (field, p.opts)
        else:
            assert getattr(p, "rich_help_panel", None) in RUN_CONTROL_PANELS, f"--{field} is neither a key nor a run control"


def test_every_train_config_field_is_an_option() -> None:
    """A new TrainConfig field becomes a key and a flag without editing the CLI (lr is swept, seed shared)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"lr", "seed"}
    assert names <= set(SweepSpec.model_fields)
    assert names <= {_RENAME.get(n, n) for n in _flags_of(_synth())}


@pytest.mark.parametrize("field", [f for f in SweepSpec.model_fields if f != "param"])
def test_file_key_and_flag_mean_the_same(field: str, tmp_path: Path) -> None:
    info = SweepSpec.model_fields[field]
    value, text = _sample(field, info.annotation, info.get_default(call_default_factory=True))
    cfg = tmp_path / "c.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump({field: value}))
    from_file = build_sweep(load_sweep_file(cfg), {})
    param = next(p for p in _synth().params if _RENAME.get(p.name, p.name) == field)
    if text == "":  # a boolean flag: its on or off spelling
        argv = [param.opts[0] if value else param.secondary_opts[0]]
    else:
        argv = [param.opts[0], text]
    ctx = _synth().make_context("synth", argv)
    from_flag = sweep_from_options(ctx, None)
    assert getattr(from_flag, field) == getattr(from_file, field)
    assert from_flag.model_dump() == from_file.model_dump()


def test_param_is_a_flag_and_a_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("param: {pool: 9}\n")
    ctx = _synth().make_context("synth", ["--param", "pool=9"])
    assert sweep_from_options(ctx, None).param == build_sweep(load_sweep_file(cfg), {}).param == {"pool": 9}


def test_model_is_a_key_as_well_as_a_flag(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: mamba-tiny\n")
    assert build_sweep(load_sweep_file(cfg), {}).models == ["mamba-tiny"]
    ctx = _synth().make_context("synth", ["--config", str(cfg), "--model", "pythia-tiny"])
    assert sweep_from_options(ctx, cfg).models == ["pythia-tiny"]  # the typed flag overrides the file


def test_flag_defaults_are_the_model_defaults() -> None:
    """Hand-declared flags show a default in --help: it must be the one the model applies."""
    for p in _synth().params:
        field = _RENAME.get(p.name, p.name)
        if field not in SweepSpec.model_fields or field in ("lr", "init_seed", "param") or p.default is None:
            continue
        file_value = p.default if not isinstance(p.default, Path) else str(p.default)
        spec = build_sweep({field: file_value}, {})
        assert getattr(spec, field) == getattr(SweepSpec(), field), field
