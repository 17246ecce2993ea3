"""The metrics report computed in a child process gives the figures the in-process report gives, reads the
same disk cache, accepts a checkpoint's bytes, and brings back the child's refusals as MetricsError."""

from pathlib import Path

import pytest

from explorer.checkpoint import load_checkpoint
from explorer.errors import MetricsError
from explorer.quality.apart import report_apart
from explorer.quality.metrics import QualityOptions, quality_report
from explorer.store import DiskCache, file_sha256

AE = Path(__file__).resolve().parents[2] / "checkpoints" / "mnist-ae-mlp32.safetensors"
OPTIONS = QualityOptions(limit=300, max_train=500)


def test_the_child_gives_the_figures_of_the_report_computed_here(tmp_path):
    digest = file_sha256(AE)
    steps = []
    apart, cached = report_apart(str(AE), digest, (1, 28, 28), "mnist", options=OPTIONS, cache_dir=tmp_path,
                                 progress=lambda f, m: steps.append(f))  # fmt: skip
    assert not cached and steps and all(0.0 <= f <= 1.0 for f in steps)
    here, _ = quality_report(lambda: load_checkpoint(AE), digest, (1, 28, 28), "mnist", options=OPTIONS)
    assert apart.figures.keys() == here.figures.keys()
    for name, value in here.figures.items():  # the same computation, in another process
        assert apart.figures[name] == (value if value is None else pytest.approx(value, rel=1e-6, abs=1e-9)), name
    again, cached = report_apart(AE.read_bytes(), digest, (1, 28, 28), "mnist", options=OPTIONS, cache_dir=tmp_path)
    assert cached and again.figures == apart.figures  # the bytes of an upload; the disk cache read
    assert len(list(DiskCache(tmp_path).root.rglob("*"))) >= 1


def test_a_refusal_in_the_child_arrives_with_its_message(tmp_path):
    with pytest.raises(MetricsError, match="--ood mnist is the evaluated dataset itself"):
        report_apart(str(AE), "0" * 64, (1, 28, 28), "mnist", options=QualityOptions(limit=50, ood="mnist"))
    with pytest.raises(MetricsError, match="no checkpoint file at .*missing.safetensors"):
        report_apart(str(tmp_path / "missing.safetensors"), "0" * 64, (1, 28, 28), "mnist", options=OPTIONS)
