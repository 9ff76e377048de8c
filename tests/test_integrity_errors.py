"""Run-directory integrity (README): inputs that used to end in a traceback are one `error:` line with exit code 2."""

import json
from pathlib import Path

import pytest
from probes.cli.app import main

DATA = ["data", "--len", "4", "--n", "4"]
SYNTH = ["synth", "--len", "4", "--max-steps", "2", "--eval-every", "2", "--eval-samples", "16",
         "--n-train", "640", "--batch-size", "8", "--device", "cpu"]


def fails_with_one_line(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


@pytest.mark.parametrize(("value", "shown"), [("abc", "'abc'"), ("10.5", "10.5"), ("[1,2]", "[1, 2]")])
def test_bad_task_parameter_types(tmp_path: Path, capsys, value: str, shown: str) -> None:
    err = fails_with_one_line(capsys, [*DATA, "--out", str(tmp_path / "d.jsonl"), "--param", f"length={value}"])
    assert f"parameter length must be int, got {shown}" in err
    assert not list(tmp_path.iterdir())


def test_non_integer_seed_param_is_refused(tmp_path: Path, capsys) -> None:
    err = fails_with_one_line(capsys, [*SYNTH, "--out", str(tmp_path), "--param", "seed=abc"])
    assert "parameter seed must be int" in err
    assert not list(tmp_path.iterdir())


def test_start_beyond_64_bit_indices(tmp_path: Path, capsys) -> None:
    err = fails_with_one_line(capsys, [*DATA, "--out", str(tmp_path / "d.jsonl"), "--start", str(10**20)])
    assert "sample indices are 64-bit" in err


def test_out_where_no_file_can_be_created(capsys) -> None:
    err = fails_with_one_line(capsys, [*DATA, "--out", "/proc/x"])
    assert err.startswith("error: cannot write /proc/x")


@pytest.mark.parametrize(("config", "why"), [("{not json", "not a valid JSON"),
                                             ('{"model_type": "no_such_arch"}', "no_such_arch")])
def test_model_directory_with_bad_config(tmp_path: Path, capsys, config: str, why: str) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(config)
    err = fails_with_one_line(capsys, [*SYNTH, "--model", str(model), "--out", str(tmp_path / "runs")])
    assert f"{model}/config.json cannot be used" in err and why in err


@pytest.fixture(scope="module")
def saved_vlm(tmp_path_factory) -> Path:
    from probes.vlm.model import build_vlm
    from probes.vlm.tokenizer import train_tokenizer

    tok = train_tokenizer(["the red circle", "yes", "no", "[0.1, 0.2, 0.3, 0.4]"] * 5, 512)
    path = tmp_path_factory.mktemp("vlm") / "ckpt"
    build_vlm(backbone="pythia-tiny", encoder="tiny", connector="mlp", tokenizer=tok).save(path)
    return path


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage", ["truncated-vision", "garbage-config", "config-not-object"])
def test_vlm_eval_on_a_damaged_checkpoint(saved_vlm: Path, tmp_path: Path, capsys, damage: str) -> None:
    ckpt = _copy(saved_vlm, tmp_path / "ckpt")
    if damage == "truncated-vision":
        f = ckpt / "vision.safetensors"
        f.write_bytes(f.read_bytes()[:200])
    elif damage == "garbage-config":
        (ckpt / "vlm_config.json").write_text("{garbage")
    else:
        (ckpt / "vlm_config.json").write_text(json.dumps([1, 2]))
    from PIL import Image

    Image.new("RGB", (84, 84), "red").save(tmp_path / "a.png")
    data = tmp_path / "refcoco.jsonl"
    data.write_text(json.dumps({"id": "1", "image": "a.png", "width": 84, "height": 84, "bbox": [1, 1, 10, 10],
                                "expression": "the red square", "split": "val"}) + "\n")
    err = fails_with_one_line(capsys, ["vlm", "eval", str(ckpt), "--data", str(data), "--task", "grounding",
                                       "--out", str(tmp_path / "ev")])
    assert str(ckpt) in err
    assert not (tmp_path / "ev").exists()
