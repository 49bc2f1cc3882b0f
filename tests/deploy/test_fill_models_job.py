"""The fill-models Job's command in the layout of the image it runs in (no Docker engine here):
ragft installed from the files generation-cpu.Dockerfile copies, not editable, in a scratch
virtualenv, and the sample data where the Dockerfile puts it. The Job must install the shipped
grounded adapter for the base model at the path the generation pods mount."""

import json
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from ragft.sample_data import DATA, SHIPPED_ADAPTER
from ragft.settings import REPO
from services.generation.config import DEFAULT_BASE_MODEL
from services.generation.model import is_prepared
from tests.deploy.test_manifests import env_value, pod_spec, render
from training.lora import REPORT

DOCKERFILE = REPO / "deploy" / "docker" / "generation-cpu.Dockerfile"
COPY = re.compile(r"^COPY (?!--)(.+)$", re.MULTILINE)
WEIGHTS = "adapter_model.safetensors"


def copies(stage: str) -> list[tuple[list[str], str]]:
    """Each `COPY SOURCE... DEST` of a Dockerfile stage, `--from` copies left out."""
    return [(words[:-1], words[-1]) for words in (line.split() for line in COPY.findall(stage))]


def install_as_the_image_does(root: Path) -> Path:
    """A virtualenv whose ragft is a regular install of the build stage's files; its dependencies
    are this suite's (a path in a .pth file, so the checkout's editable ragft stays out)."""
    build_stage = DOCKERFILE.read_text().split(" AS runtime")[0]
    source = root / "src"
    for sources, dest in copies(build_stage):
        for name in sources:
            target = source / dest / Path(name).name if dest.endswith("/") and not name.endswith("/") else source / dest
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / name, target)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "suite-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet"]
    installed = subprocess.run([*install, str(source)], cwd=root, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


def run_the_job(venv: Path, root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The Job's container command and environment, its volume under `root`."""
    (job,) = [d for d in render("fill-models") if d["kind"] == "Job"]
    (container,) = pod_spec(job)["containers"]
    job_env = {item["name"]: item["value"] for item in container["env"]}
    data_dir = root / env_value(container, "RAGFT_DATA_DIR")["value"].lstrip("/")
    data_dir.mkdir(parents=True, exist_ok=True)
    process_env = {**job_env, "RAGFT_DATA_DIR": str(data_dir), "PATH": f"{venv / 'bin'}:/usr/bin:/bin"}
    process_env |= {"HOME": str(root), "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run(
        [*container["command"], *container["args"]], cwd=root, env=process_env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


@pytest.mark.usefixtures("processes")  # it installs ragft and runs its commands: the services tier
def test_the_fill_models_job_installs_the_shipped_adapter_in_the_images_layout(tmp_path: Path) -> None:
    venv = install_as_the_image_does(tmp_path)
    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import ragft.settings as s; print(s.REPO)"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    installed_repo = Path(where.stdout.strip())
    assert installed_repo.is_relative_to(venv) and not (installed_repo / "data").exists()

    runtime_stage = DOCKERFILE.read_text().split(" AS runtime")[1]
    (data_dest,) = [dest for sources, dest in copies(runtime_stage) if sources == ["data/"]]
    assert f"RAGFT_SAMPLE_DATA_DIR={data_dest.rstrip('/')} " in runtime_stage
    sample_data = tmp_path / data_dest.strip("/")
    shutil.copytree(DATA, sample_data, ignore=shutil.ignore_patterns("__pycache__"))
    without_data = run_the_job(venv, tmp_path)  # ragft's own default: a data/ beside site-packages
    assert without_data.returncode != 0, "the Job found the sample data without RAGFT_SAMPLE_DATA_DIR"
    assert f"{installed_repo / 'data'}" in " ".join(without_data.stderr.split()).replace(" ", "")

    ran = run_the_job(venv, tmp_path, RAGFT_SAMPLE_DATA_DIR=str(sample_data))
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    models = tmp_path / "var" / "lib" / "ragft" / "models"
    assert is_prepared(models / DEFAULT_BASE_MODEL)
    adapter = models.parent / "adapters" / "support-voice"
    assert (adapter / WEIGHTS).read_bytes() == (SHIPPED_ADAPTER / WEIGHTS).read_bytes()
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((models / DEFAULT_BASE_MODEL).resolve())
    assert json.loads((adapter / REPORT).read_text())["grounding"], "not the grounded adapter"
