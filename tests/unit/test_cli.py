"""``python -m explorer``: the command table is the whole interface, help is fast, user errors exit 2."""

import dataclasses
import os
import re
import subprocess
import sys
import typing
from argparse import Namespace
from pathlib import Path

import pytest

from explorer import models
from explorer.cli import COMMANDS, build_parser, command_module, main
from explorer.errors import ConfigError

ENV = {**os.environ, "COLUMNS": "200"}  # one flag per line, unwrapped


def _explorer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "explorer", *args], capture_output=True, text=True, timeout=120, env=ENV
    )


def test_help_lists_exactly_the_commands_in_the_table():
    done = _explorer("--help")
    assert done.returncode == 0, done.stderr
    listed = re.search(r"\{([a-z_,-]+)\}", done.stdout)
    assert listed is not None, done.stdout
    assert listed.group(1).split(",") == list(COMMANDS)
    for name in COMMANDS:
        first_line = command_module(name).__doc__.strip().splitlines()[0]
        assert re.search(rf"^\s+{name}\s+{re.escape(first_line)}$", done.stdout, re.M), (name, done.stdout)


def test_top_level_help_imports_nothing_heavy():
    code = (
        "import sys\nfrom explorer.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted({'torch', 'umap', 'sklearn', 'streamlit', 'numba'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_has_help(name):
    done = _explorer(name, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m explorer {name}")


def test_train_help_has_a_flag_for_every_field_of_every_kind():
    text = _explorer("train", "--help").stdout
    for kind in models.trainable_kinds():
        cls = models.config_class(kind)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            if hint in (int, float, str) or typing.get_origin(hint) is tuple:
                assert "--" + f.name.replace("_", "-") in text, (kind, f.name)
    assert "{" + ",".join(models.trainable_kinds()) + "}" in text


def test_a_user_error_exits_2_with_its_message(monkeypatch, capsys):
    def failing_run(args: Namespace) -> int:
        raise ConfigError("the latent dimension must be positive")

    monkeypatch.setattr(command_module("evaluate"), "run", failing_run)
    assert main(["evaluate", "model.safetensors"]) == 2
    assert capsys.readouterr().err == "error: the latent dimension must be positive\n"


def test_import_refusal_names_the_flag_that_resolves_it(tmp_path, capsys):
    import torch
    from safetensors.torch import save

    path = tmp_path / "odd.safetensors"
    path.write_bytes(save({"e.weight": torch.zeros(10, 500), "f.weight": torch.zeros(500, 10)}))
    assert main(["import", str(path), "--out", str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: odd.safetensors: the model takes 500 input values"), err
    assert err.endswith("give its input shape C,H,W with C*H*W = 500 and C = 1 or 3 (--input-shape C,H,W).\n"), err
    # a refusal no option resolves names no flag
    path.write_bytes(b"hello, not a model")
    assert main(["import", str(path), "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "(--" not in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()


def _kind_choices(command: str) -> list[str]:
    parser = build_parser(command)
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    (kind,) = [a for a in sub.choices[command]._actions if a.dest == "kind"]
    return list(kind.choices)


def test_the_kind_choices_are_the_registry_kinds():
    """No list of kinds is written in the CLI: train offers every kind the registry can train, import every
    one a layer stack can become, both from explorer.models."""
    from explorer.importers.layers import importable_kinds

    assert _kind_choices("train") == models.trainable_kinds()
    assert set(models.trainable_kinds()) <= set(models.kinds())
    assert [k for k in models.kinds() if getattr(models.model_class(k), "trainable", True)] == _kind_choices("train")
    assert _kind_choices("import") == importable_kinds()
    assert set(importable_kinds()) <= set(models.trainable_kinds())


def test_the_readme_names_the_registered_kinds_and_how_to_list_them():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    sentence = re.search(r"^Kinds, (.*?)Backbones:", readme, re.M | re.S)
    assert sentence is not None, "README: the sentence listing the kinds is missing"
    assert "python -m explorer train --help" in sentence.group(1)
    named = re.findall(r"`([a-z0-9_]+)`", sentence.group(1))
    assert sorted(named) == models.kinds(), named
