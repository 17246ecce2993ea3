"""The training command: a short real run writes a loadable checkpoint; --resume after a kill."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from explorer import models
from explorer.checkpoint import load_checkpoint, read_metadata
from explorer.cli import main
from explorer.train import epoch_indices, load_resume, lr_at, save_resume

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


def test_sparse_codes_train_with_the_trainers_since_fired_counters(tmp_path):
    out = tmp_path / "sae.safetensors"
    # dead after one silent step and resampled every second step: both paths run within one short epoch
    args = ["--dataset", "digits", "--latent-dim", "64", "--k", "4", "--dead-steps", "1", "--resample-every", "2"]
    assert main(["train", "--kind", "sae", *args, "--limit", "256", "--epochs", "1", "--out", str(out)]) == 0
    assert load_checkpoint(out).kind == "sae"


def test_resume_file_keeps_the_trainers_counters(tmp_path):
    model = models.build(models.config_class("sae")(input_shape=(1, 8, 8), latent_dim=16, k=2))
    opt = torch.optim.Adam(model.parameters())
    since_fired = torch.arange(16)
    save_resume(tmp_path / "r", model, opt, {"epoch": 3}, {"since_fired": since_fired})
    doc, counters = load_resume(tmp_path / "r", model, opt)
    assert doc["epoch"] == 3 and torch.equal(counters["since_fired"], since_fired)


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


@pytest.mark.parametrize("n", [1, 128, 129, 1437])
def test_every_rank_gets_the_same_number_of_samples(n):
    world = 2
    shares = [epoch_indices(n, epoch=3, seed=1, rank=r, world=world) for r in range(world)]
    assert {len(s) for s in shares} == {-(-n // world)}
    assert set(torch.cat(shares).tolist()) == set(range(n)), "padding repeats samples, it drops none"


def test_one_process_takes_a_plain_seeded_permutation():
    # the order one process has always trained in: a run started before ranks shared epochs resumes identically
    expected = torch.randperm(1000, generator=torch.Generator().manual_seed(2 * 100_003 + 5))
    assert torch.equal(epoch_indices(1000, epoch=5, seed=2), expected)


@pytest.mark.slow
@pytest.mark.parametrize("kind, extra", [("ae", []), ("sae", ["--k", "2", "--dead-steps", "1"])])
def test_torchrun_ddp_on_cpu(tmp_path, kind, extra):
    """The same script under torchrun: two processes, DistributedDataParallel over gloo.

    129 images in batches of 64 split as 65 + 64 would give the second rank an empty last
    batch while the first waits in the gradient all-reduce; every rank must take every step.
    The SAE's since-fired counters are combined over ranks.
    """
    out = tmp_path / "ddp.safetensors"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "explorer"]
    cmd += ["train", "--kind", kind, *ARGS, *extra, "--epochs", "2", "--limit", "129", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert read_metadata(out)["training"]["world_size"] == 2
