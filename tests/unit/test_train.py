"""The training command: a short real run writes a loadable checkpoint; --resume after a kill."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from explorer import load_checkpoint, read_metadata
from explorer.__main__ import main
from explorer.train import lr_at

ARGS = ["--dataset", "digits", "--backbone", "mlp", "--hidden", "32", "--latent-dim", "4", "--batch-size", "64"]


def test_cli_trains_a_loadable_checkpoint(tmp_path, capsys):
    out = tmp_path / "digits-vae.safetensors"
    assert main(["train", "--kind", "vae", *ARGS, "--epochs", "2", "--out", str(out)]) == 0
    model = load_checkpoint(out)
    assert model.kind == "vae" and model.input_shape == (1, 8, 8)
    meta = read_metadata(out)
    assert meta["training"]["device"] == "cpu"
    assert meta["training"]["epochs"] == 2
    assert meta["dataset"]["name"] == "digits"
    assert set(meta["metrics"]) >= {"mse", "bce", "kl", "probe_accuracy"}
    assert not Path(str(out) + ".resume").exists(), "the resume file is removed after a finished run"
    assert "wrote" in capsys.readouterr().out


def test_flag_of_another_kind_is_refused(tmp_path, capsys):
    code = main(["train", "--kind", "ae", *ARGS, "--beta", "2", "--out", str(tmp_path / "x.safetensors")])
    assert code == 2
    assert "--beta does not apply to kind 'ae'" in capsys.readouterr().err


def _train(out: Path, epochs: int, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "explorer", "train", "--kind", "dae", *ARGS, "--epochs", str(epochs)]
    return subprocess.Popen([*cmd, "--out", str(out), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path):
    # uninterrupted reference
    ref = tmp_path / "ref.safetensors"
    assert _train(ref, 6).wait(timeout=300) == 0

    # same run, killed once the resume file shows at least one finished epoch
    out = tmp_path / "run.safetensors"
    resume = Path(str(out) + ".resume")
    proc = _train(out, 6)
    deadline = time.time() + 300
    while not resume.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert resume.exists() and not out.exists(), "the kill should land mid-training"

    log = _train(out, 6, "--resume")
    text = log.communicate(timeout=300)[0].decode()
    assert log.returncode == 0, text
    assert "resuming from" in text
    a, b = load_checkpoint(ref).state_dict(), load_checkpoint(out).state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_lr_schedule_is_a_function_of_the_step():
    assert lr_at(0, 100, 1e-3) == pytest.approx(1e-3)
    assert lr_at(100, 100, 1e-3) == pytest.approx(5e-5)
    assert lr_at(50, 100, 1e-3) < lr_at(10, 100, 1e-3)


@pytest.mark.slow
def test_torchrun_ddp_on_cpu(tmp_path):
    """The same script under torchrun: two processes, DistributedDataParallel over gloo."""
    out = tmp_path / "ddp.safetensors"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "explorer"]
    cmd += ["train", "--kind", "ae", *ARGS, "--epochs", "1", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert read_metadata(out)["training"]["world_size"] == 2
