"""Static checks of the deployment files; no Docker engine or cluster runs here (deploy/README.md).

Kubernetes: every overlay is rendered with `kubectl kustomize` and each object is validated
against the API schemas of pinned Kubernetes versions (kubernetes-validate, strict: unknown
fields fail), then the facts the deployment relies on are asserted. Compose: docker-compose.yml
is validated against the Compose Specification schema (compose-spec.json, vendored from
compose-spec/compose-spec at commit 170098ba07d9, Apache-2.0) and checked the same way.
Both: every RAGFT_* name must be a setting the code reads, and the vLLM flags must be the ones
ragft's launcher builds from the same model settings: their defaults, and values of one's own.
"""

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import pytest
import yaml
from pydantic_settings import BaseSettings

from gateway.config import GatewaySettings
from ragft.sample_data import SampleDataSettings
from ragft.settings import REPO, RagftSettings
from services.generation.adapters import Adapter
from services.generation.config import GenerationSettings
from services.generation.launcher import vllm_command
from services.retrieval.config import RetrievalSettings

Doc = dict[str, Any]

K8S = REPO / "deploy" / "k8s"
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILES = sorted((REPO / "deploy" / "docker").glob("*.Dockerfile"))
COMPOSE_SCHEMA = Path(__file__).with_name("compose-spec.json")
OVERLAYS = ("cpu", "gpu")
# The dtype each deployment pins: a CPU node's flags are unknown to a static file, and the
# server CPUs such nodes run (AMX) compute bf16 natively; on a GPU, vLLM's own choice.
DTYPES: dict[str, str | None] = {"cpu": "bfloat16", "gpu": None}
# Every overlay and extra kustomization that must render and validate.
KUSTOMIZATIONS = (*(f"overlays/{name}" for name in OVERLAYS), "fill-models")
# The oldest version we claim (kubectl's own here is 1.32) and a current one.
KUBERNETES_VERSIONS = ("1.32.0", "1.35.0")
WORKLOADS = ("Deployment", "StatefulSet")
CONTRACT_PORTS = {"gateway": 8000, "retrieval": 8001, "generation": 8002}
# The gateway's Redis (gateway/store.py): not one of ragft's services, so not in the contract.
STORE = ("store", 6379)
STORE_URL = "redis://store:6379/0"
# What makes an acknowledged write survive kill -9 of Redis.
STORE_DURABILITY = {"appendonly": "yes", "appendfsync": "always"}
# Where the images and the Kubernetes pods find the base model and the adapters.
DATA_DIR = "/var/lib/ragft"
MODEL_DIR = "/var/lib/ragft/models/smollm2-135m-instruct"
ADAPTER = ("support-voice", "/var/lib/ragft/adapters/support-voice")
RAGFT_NAME = re.compile(r"\bRAGFT_[A-Z0-9_]+")
# A model of one's own, set the way each deployment documents (deploy/README.md).
OWN_MODEL = {
    "RAGFT_BASE_MODEL": "/var/lib/ragft/models/qwen2.5-7b-instruct",
    "RAGFT_MAX_MODEL_LEN": "8192",
    "RAGFT_MAX_LORA_RANK": "64",
    "RAGFT_MAX_LORAS": "8",
}
# Compose's `${NAME:-default}`: the default when NAME is unset or empty.
COMPOSE_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+):-([^}]*)\}")
# Kubernetes expands `$(NAME)` in a container's args from the container's env.
K8S_VARIABLE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


# ---- helpers ----


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail(
            "kubectl is not installed, so the Kustomize manifests cannot be rendered: "
            "`apt-get install -y kubectl` (any kubectl >= 1.27 with `kubectl kustomize`)",
            pytrace=False,
        )
    return path


@functools.cache
def rendered_text(kustomization: str) -> str:
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S / kustomization)], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {kustomization} failed:\n{result.stderr}", pytrace=False)
    return result.stdout


def render(kustomization: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(rendered_text(kustomization)) if doc]


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def generated(docs: list[Doc], kind: str, prefix: str) -> Doc:
    """A ConfigMap or Secret from a Kustomize generator: its name carries a content hash."""
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(prefix + "-")]
    assert len(matches) == 1, f"expected one generated {kind} {prefix}-<hash>, found {len(matches)}"
    return matches[0]


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Doc) -> list[Doc]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def workloads(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d["kind"] in WORKLOADS]


def container(docs: list[Doc], kind: str, name: str) -> Doc:
    (only,) = find(docs, kind, name)["spec"]["template"]["spec"]["containers"]
    result: Doc = only
    return result


def env_value(c: Doc, name: str) -> Doc:
    matches = [e for e in c.get("env", []) if e["name"] == name]
    assert len(matches) == 1, f"container {c['name']}: expected one env {name}, found {len(matches)}"
    result: Doc = matches[0]
    return result


def image_is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and bool(tag) and "/" not in tag and not tag.startswith("latest")


def setting_names() -> set[str]:
    models: tuple[type[BaseSettings], ...] = (
        RagftSettings, RetrievalSettings, GenerationSettings, GatewaySettings, SampleDataSettings
    )  # fmt: skip
    return {"RAGFT_" + name.upper() for model in models for name in model.model_fields}


def launcher_flags(overlay_or_profile: str, env: dict[str, str]) -> list[str]:
    """What `ragft serve generation` would run in the images (RAGFT_DATA_DIR=/var/lib/ragft) with
    `env` as the only environment, for the adapter the deployments mount, less the interpreter:
    `-m vllm.entrypoints.openai.api_server --model ...`."""
    with mock.patch.dict(os.environ, env, clear=True):
        settings = GenerationSettings(
            data_dir=Path(DATA_DIR),
            generation_host="0.0.0.0",
            generation_port=CONTRACT_PORTS["generation"],
            served_model_name="base",
        )
    adapters = [Adapter(ADAPTER[0], Path(ADAPTER[1]), rank=16, base_model="")]
    return vllm_command(settings, adapters, DTYPES[overlay_or_profile])[1:]


def compose_interpolated(value: str, env: dict[str, str]) -> str:
    interpolated = COMPOSE_VARIABLE.sub(lambda m: env.get(m[1]) or m[2], value)
    assert "$" not in interpolated, f"{value}: only ${{NAME:-default}} is interpolated here"
    return interpolated


def k8s_expanded(c: Doc, docs: list[Doc]) -> list[str]:
    """The container's args as the kubelet passes them: $(NAME) replaced by the env's value, each
    value from the manifest or from the ConfigMap key it names."""
    env = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "configMapKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["configMapKeyRef"]
            env[e["name"]] = find(docs, "ConfigMap", ref["name"])["data"][ref["key"]]

    def value(match: re.Match[str]) -> str:
        assert match[1] in env, f"$({match[1]}) in {c['name']}'s args is not in its env"
        return str(env[match[1]])

    return [K8S_VARIABLE.sub(value, str(arg)) for arg in c["args"]]


@functools.cache
def compose() -> Doc:
    loaded: Doc = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def compose_services() -> dict[str, Doc]:
    services: dict[str, Doc] = compose()["services"]
    return services


def redis_options(args: list[str]) -> dict[str, str]:
    """`redis-server --appendonly yes --appendfsync always` as {"appendonly": "yes", ...}."""
    assert args[0] == "redis-server", args
    return {flag.removeprefix("--"): str(value) for flag, value in zip(args[1::2], args[2::2], strict=True)}


def generation_service(profile: str) -> tuple[str, Doc]:
    matches = [(n, s) for n, s in compose_services().items() if profile in s.get("profiles", [])]
    assert len(matches) == 1, f"expected one service in profile {profile!r}, found {[n for n, _ in matches]}"
    return matches[0]


# ---- Kubernetes ----


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kustomization_renders_and_validates_against_the_api_schemas(kustomization: str, version: str) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("kubernetes-validate is not installed: pip install kubernetes-validate", pytrace=False)
    docs = render(kustomization)
    assert docs, f"{kustomization} rendered nothing"
    failures = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert not failures, "\n".join(failures)


def test_strict_validation_rejects_an_unknown_field() -> None:
    """The validator is not a rubber stamp: a misspelt field fails."""
    import kubernetes_validate

    gateway = find(render("overlays/cpu"), "Deployment", "gateway")
    broken = {**gateway, "spec": {**gateway["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_has_the_same_objects(overlay: str) -> None:
    def key(doc: Doc) -> tuple[str, str]:
        name: str = doc["metadata"]["name"]
        # Generated ConfigMaps and Secrets carry a content hash after the last dash.
        return doc["kind"], name.rsplit("-", 1)[0] if doc["kind"] in ("ConfigMap", "Secret") else name

    kinds = {key(d) for d in render(f"overlays/{overlay}")}
    expected = {
        ("Namespace", "ragft"),
        *((kind, name) for name in CONTRACT_PORTS for kind in ("Deployment", "Service", "PodDisruptionBudget")),
        ("HorizontalPodAutoscaler", "gateway"),
        ("StatefulSet", "qdrant"),
        ("Service", "qdrant"),
        ("Service", "qdrant-headless"),
        ("PodDisruptionBudget", "qdrant"),
        ("StatefulSet", STORE[0]),
        ("Service", STORE[0]),
        ("PodDisruptionBudget", STORE[0]),
        ("PersistentVolumeClaim", "ragft-models"),
        ("ConfigMap", "ragft-config"),
        ("Secret", "ragft-api-keys"),
    }
    assert expected <= kinds, f"missing: {sorted(expected - kinds)}"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_everything_lands_in_the_ragft_namespace(kustomization: str) -> None:
    for doc in render(kustomization):
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "ragft", f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_probes_and_resources(overlay: str) -> None:
    problems = []
    for workload in workloads(render(f"overlays/{overlay}")):
        for c in containers(workload):
            where = f"{workload['kind']}/{workload['metadata']['name']}/{c['name']}"
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    problems.append(f"{where}: no {probe}")
            resources = c.get("resources", {})
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(part, {}):
                        problems.append(f"{where}: no {part}.{resource}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_each_services_health_endpoints(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    for name in ("gateway", "retrieval"):
        c = container(docs, "Deployment", name)
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] in ("/healthz", "/readyz")
    assert container(docs, "Deployment", "retrieval")["readinessProbe"]["httpGet"]["path"] == "/readyz"
    vllm = container(docs, "Deployment", "generation")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert vllm[probe]["httpGet"]["path"] == "/health", probe
    # The launcher waits RAGFT_STARTUP_TIMEOUT_S (600 s) for vLLM; the startup probe allows at least that.
    startup = vllm["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    qdrant = container(docs, "StatefulSet", "qdrant")
    assert qdrant["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_gpu_overlay_runs_vllms_image_on_one_gpu_per_replica() -> None:
    vllm = container(render("overlays/gpu"), "Deployment", "generation")
    assert vllm["image"].startswith("vllm/vllm-openai:")
    assert str(vllm["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert str(vllm["resources"]["requests"]["nvidia.com/gpu"]) == "1"
    assert "--dtype" not in vllm["args"]


def test_a_gpu_rollout_needs_no_gpu_beyond_those_the_replicas_hold() -> None:
    """`kubectl rollout restart` on a one-GPU cluster: a surge pod would wait for a GPU forever,
    so the old pod goes first; the CPU overlay keeps the surge, and no answer waits."""
    for overlay, surge in (("gpu", 0), ("cpu", 1)):
        rolling = find(render(f"overlays/{overlay}"), "Deployment", "generation")["spec"]["strategy"]["rollingUpdate"]
        assert (rolling["maxSurge"], rolling["maxUnavailable"]) == (surge, 1 - surge), overlay


def test_cpu_overlay_runs_our_image_and_needs_no_gpu() -> None:
    docs = render("overlays/cpu")
    vllm = container(docs, "Deployment", "generation")
    assert vllm["image"].startswith("ragft-generation-cpu:")
    assert "nvidia.com/gpu" not in rendered_text("overlays/cpu")
    assert int(env_value(vllm, "VLLM_CPU_KVCACHE_SPACE")["value"]) >= 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_vllm_flags_are_the_launchers(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    vllm = container(docs, "Deployment", "generation")
    assert vllm["command"][0] == "python3"
    assert [*vllm["command"][1:], *k8s_expanded(vllm, docs)] == launcher_flags(overlay, {})
    assert env_value(vllm, "VLLM_ALLOW_RUNTIME_LORA_UPDATING")["value"] == "True"
    config_map = generated(docs, "ConfigMap", "ragft-config")["metadata"]["name"]
    for name in OWN_MODEL:
        assert f"$({name})" in vllm["args"], f"{name} is not read from the environment"
        assert env_value(vllm, name)["valueFrom"]["configMapKeyRef"] == {"name": config_map, "key": name}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_model_set_in_your_own_overlay_reaches_vllm(overlay: str, tmp_path: Path) -> None:
    """The overlay deploy/README.md shows: ragft-config's model settings merged, nothing else."""
    literals = "".join(f"\n      - {name}={value}" for name, value in OWN_MODEL.items())
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{os.path.relpath(K8S / 'overlays' / overlay, tmp_path)}]\n"  # kustomize wants it relative
        f"configMapGenerator:\n  - name: ragft-config\n    behavior: merge\n    literals:{literals}\n"
    )
    result = subprocess.run(
        [kubectl(), "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    vllm = container(docs, "Deployment", "generation")
    assert [*vllm["command"][1:], *k8s_expanded(vllm, docs)] == launcher_flags(overlay, OWN_MODEL)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hpa_scales_the_gateway_deployment(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    hpa = find(docs, "HorizontalPodAutoscaler", "gateway")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", "gateway")
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    # The HPA owns the count: a replicas field would reset it on every apply.
    for hpa in (d for d in docs if d["kind"] == "HorizontalPodAutoscaler"):
        assert "replicas" not in find(docs, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_a_pod_disruption_budget(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for workload in workloads(docs):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        covering = [p for p in pdbs if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(covering) == 1, f"{workload['kind']}/{workload['metadata']['name']}: {len(covering)} PDBs"
        spec = covering[0]["spec"]
        assert ("minAvailable" in spec) != ("maxUnavailable" in spec)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_qdrant_runs_distributed_with_replicated_shards(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    sts = find(docs, "StatefulSet", "qdrant")
    assert sts["spec"]["replicas"] >= 3
    assert sts["spec"]["volumeClaimTemplates"], "each peer needs its own persistent storage"
    headless = find(docs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert 6335 in [p["port"] for p in headless["spec"]["ports"]]
    qdrant = container(docs, "StatefulSet", "qdrant")
    assert 6335 in [p["containerPort"] for p in qdrant["ports"]]
    (config_ref,) = [e["configMapRef"]["name"] for e in qdrant["envFrom"]]
    config = find(docs, "ConfigMap", config_ref)["data"]
    assert config["QDRANT__CLUSTER__ENABLED"] == "true"
    assert config["QDRANT__CLUSTER__P2P__PORT"] == "6335"
    assert int(config["QDRANT__STORAGE__COLLECTION__REPLICATION_FACTOR"]) >= 2
    script = "\n".join(qdrant["args"])
    assert "--bootstrap" in script and "--uri" in script
    assert generated(docs, "ConfigMap", "ragft-config")["data"]["RAGFT_QDRANT_URL"] == "http://qdrant:6333"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_keys_come_from_a_secret(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    ref = env_value(container(docs, "Deployment", "gateway"), "RAGFT_API_KEYS")["valueFrom"]["secretKeyRef"]
    secret = find(docs, "Secret", ref["name"])
    assert ref["key"] in secret.get("data", {}) or ref["key"] in secret.get("stringData", {})
    for config_map in (d for d in docs if d["kind"] == "ConfigMap"):
        assert not any("API_KEY" in key for key in config_map.get("data", {})), config_map["metadata"]["name"]
    for workload in workloads(docs):
        for c in containers(workload):
            for e in c.get("env", []):
                if "API_KEY" in e["name"]:
                    assert "secretKeyRef" in e.get("valueFrom", {}), f"{c['name']}: {e['name']} is not from a Secret"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_generation_mounts_the_models_volume_read_only(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    deployment = find(docs, "Deployment", "generation")
    (volume,) = [v for v in pod_spec(deployment)["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    find(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    (mount,) = [m for m in container(docs, "Deployment", "generation")["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    assert MODEL_DIR.startswith(mount["mountPath"] + "/")
    assert ADAPTER[1].startswith(mount["mountPath"] + "/")


def test_fill_job_writes_where_generation_reads() -> None:
    (job,) = [d for d in render("fill-models") if d["kind"] == "Job"]
    (volume,) = pod_spec(job)["volumes"]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert claim in {d["metadata"]["name"] for d in render("overlays/cpu") if d["kind"] == "PersistentVolumeClaim"}
    (c,) = pod_spec(job)["containers"]
    (mount,) = c["volumeMounts"]
    assert not mount.get("readOnly", False)
    assert env_value(c, "RAGFT_DATA_DIR")["value"] == mount["mountPath"] == "/var/lib/ragft"
    assert env_value(c, "RAGFT_DEFAULT_ADAPTER")["value"] == ADAPTER[0]
    config = generated(render("overlays/cpu"), "ConfigMap", "ragft-config")["data"]
    assert config["RAGFT_DEFAULT_ADAPTER"] == ADAPTER[0]
    assert config["RAGFT_BASE_MODEL"] == MODEL_DIR  # where `ragft model prepare` writes under RAGFT_DATA_DIR
    assert "ragft model prepare --with-adapter" in c["args"][0]  # tests/test_packaging.py runs it


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_follow_the_contract(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    for name, port in CONTRACT_PORTS.items():
        (service_port,) = find(docs, "Service", name)["spec"]["ports"]
        assert service_port["port"] == port
        assert find(docs, "Service", name)["spec"].get("type", "ClusterIP") == "ClusterIP"
        assert port in [p["containerPort"] for p in container(docs, "Deployment", name)["ports"]]
    config = generated(docs, "ConfigMap", "ragft-config")["data"]
    assert config["RAGFT_RETRIEVAL_URL"] == "http://retrieval:8001"
    assert config["RAGFT_GENERATION_URL"] == "http://generation:8002"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_pods_meet_the_restricted_pod_security_standard(kustomization: str) -> None:
    docs = render(kustomization)
    pods = [d for d in docs if d["kind"] in (*WORKLOADS, "Job")]
    assert pods
    for workload in pods:
        spec = pod_spec(workload)
        pod_context = spec.get("securityContext", {})
        assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        for c in containers(workload):
            where = f"{workload['metadata']['name']}/{c['name']}"
            context = c.get("securityContext", {})
            assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, where
            assert context.get("runAsUser", pod_context.get("runAsUser", 1)) != 0, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not context.get("privileged", False), where
        assert not any("hostPath" in v for v in spec.get("volumes", [])), workload["metadata"]["name"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kubernetes_images_are_pinned(kustomization: str) -> None:
    for workload in [d for d in render(kustomization) if d["kind"] in (*WORKLOADS, "Job")]:
        for c in containers(workload):
            assert image_is_pinned(c["image"]), f"{workload['metadata']['name']}/{c['name']}: {c['image']}"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kubernetes_ragft_names_are_settings(kustomization: str) -> None:
    docs = render(kustomization)
    used = set(RAGFT_NAME.findall(rendered_text(kustomization)))
    for config_map in (d for d in docs if d["kind"] == "ConfigMap"):
        used |= {key for key in config_map.get("data", {}) if key.startswith("RAGFT_")}
    unknown = used - setting_names()
    assert not unknown, f"not settings any ragft service reads: {sorted(unknown)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_store_fsyncs_every_write_to_its_own_volume(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    sts = find(docs, "StatefulSet", STORE[0])
    assert sts["spec"]["replicas"] == 1, "one Redis primary; HA is Sentinel, Cluster or a managed Redis"
    redis = container(docs, "StatefulSet", STORE[0])
    assert redis["image"].startswith("redis:")
    assert redis_options(redis["args"]).items() >= STORE_DURABILITY.items()
    assert STORE[1] in [p["containerPort"] for p in redis["ports"]]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert [m["mountPath"] for m in redis["volumeMounts"] if m["name"] == claim["metadata"]["name"]] == ["/data"]
    (service_port,) = find(docs, "Service", STORE[0])["spec"]["ports"]
    assert service_port["port"] == STORE[1]
    assert find(docs, "Service", STORE[0])["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert generated(docs, "ConfigMap", "ragft-config")["data"]["RAGFT_STORE_URL"] == STORE_URL
    gateway = container(docs, "Deployment", "gateway")
    assert [r["configMapRef"]["name"] for r in gateway["envFrom"]] == [
        generated(docs, "ConfigMap", "ragft-config")["metadata"]["name"]
    ]
    assert "RAGFT_STORE_URL" not in [e["name"] for e in gateway.get("env", [])]


# ---- Docker Compose ----


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # The schema names draft-07 as "https://json-schema.org/draft-07/schema" (no "#").
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_every_compose_service_has_a_healthcheck() -> None:
    for name, service in compose_services().items():
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable", False), name


def test_only_the_gateway_publishes_a_port() -> None:
    publishing = {name for name, service in compose_services().items() if service.get("ports")}
    assert publishing == {"gateway"}
    (port,) = compose_services()["gateway"]["ports"]
    assert str(port).endswith(":8000:8000")


def test_compose_images_are_pinned() -> None:
    for name, service in compose_services().items():
        assert "image" in service, f"{name}: no image (a build needs a tagged name too)"
        assert image_is_pinned(service["image"]), f"{name}: {service['image']}"


def test_dockerfiles_pin_their_base_and_run_as_non_root() -> None:
    assert {p.name for p in DOCKERFILES} >= {"gateway.Dockerfile", "retrieval.Dockerfile", "generation-cpu.Dockerfile"}
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, re.MULTILINE)
        assert bases and all(image_is_pinned(b) for b in bases), dockerfile.name
        users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
        assert users and users[-1].split(":")[0] not in ("root", "0"), dockerfile.name
        assert "-c constraints.txt" in text, f"{dockerfile.name} does not install from the pinned constraints"
        assert dockerfile.with_name(dockerfile.name + ".dockerignore").exists(), dockerfile.name
    for name, service in compose_services().items():
        if "build" in service:
            assert (REPO / service["build"]["dockerfile"]).exists(), name


def test_every_image_runs_its_service_through_ragft_serve() -> None:
    commands = {p.name: re.findall(r"^CMD (\[.*\])$", p.read_text(), re.MULTILINE)[-1] for p in DOCKERFILES}
    assert json.loads(commands["gateway.Dockerfile"]) == ["ragft", "serve", "gateway"]
    assert json.loads(commands["retrieval.Dockerfile"])[:3] == ["ragft", "serve", "retrieval"]
    assert json.loads(commands["generation-cpu.Dockerfile"])[:3] == ["ragft", "serve", "generation"]


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=;!~]", requirement.strip().strip('"'), maxsplit=1)[0].lower().replace("_", "-")


def test_the_gateway_image_carries_what_ragft_serve_gateway_imports() -> None:
    """The image's command, run here with every project package its Dockerfile does not copy and
    every library it does not install made unimportable: it must start as far as its --help."""
    dockerfile = (REPO / "deploy" / "docker" / "gateway.Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+)/ \1/$", dockerfile, re.MULTILINE))
    pip_line = re.search(r"^RUN pip install -c constraints.txt((?:.*\\\n)*.*)$", dockerfile, re.MULTILINE)
    assert pip_line and copied >= {"ragft", "ragft_cli", "gateway"}
    installed = {_requirement_name(word) for word in pip_line[1].split() if word != "\\"}
    installed |= {
        _requirement_name(r) for name in set(installed) for r in metadata.requires(name) or [] if ";" not in r
    }
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_requirement_name(r) for r in project["dependencies"]}
    wanted |= {_requirement_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    wanted.discard(project["name"])  # an extra that names another extra (ragft[tools]) is no library
    modules_of: dict[str, set[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            modules_of.setdefault(_requirement_name(dist), set()).add(module)
    missing_libraries = {module for dist in wanted - installed for module in modules_of.get(dist, ())}
    assert {"torch", "sentence_transformers", "honcho", "vllm"} <= missing_libraries
    missing_packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - copied
    assert "loadtests" in missing_packages
    blocked = sorted(missing_libraries | missing_packages)
    code = f"import sys; sys.modules.update(dict.fromkeys({blocked!r})); from ragft_cli import main; main()"
    ran = subprocess.run(
        [sys.executable, "-c", code, "serve", "gateway", "--help"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "RAGFT_GATEWAY_PORT" in ran.stdout


def test_compose_dependencies_wait_for_healthy_services() -> None:
    services = compose_services()
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition["condition"] == "service_healthy", f"{name} -> {dependency}"
            assert "healthcheck" in services[dependency], dependency


def test_gpu_profile_reserves_a_gpu_for_vllms_image() -> None:
    _, service = generation_service("gpu")
    assert service["image"].startswith("vllm/vllm-openai:")
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"] and device["count"] == 1


def test_cpu_profile_builds_the_vllm_cpu_image() -> None:
    _, service = generation_service("cpu")
    assert service["build"]["dockerfile"] == "deploy/docker/generation-cpu.Dockerfile"
    assert "deploy" not in service
    assert "VLLM_CPU_KVCACHE_SPACE" in service["environment"]


def test_exactly_one_generation_service_answers_as_generation() -> None:
    names = {profile: generation_service(profile)[0] for profile in ("gpu", "cpu")}
    for name in names.values():
        assert compose_services()[name]["networks"]["default"]["aliases"] == ["generation"]
    profiled = {name for name, service in compose_services().items() if service.get("profiles")}
    assert profiled == set(names.values()), "everything but the generation services runs in both profiles"
    gateway = compose_services()["gateway"]
    assert gateway["environment"]["RAGFT_GENERATION_URL"] == "http://generation:8002"
    for name in names.values():
        assert gateway["depends_on"][name]["required"] is False


@pytest.mark.parametrize("env", [{}, OWN_MODEL], ids=["defaults", "own-model"])
@pytest.mark.parametrize("profile", ("gpu", "cpu"))
def test_compose_vllm_flags_are_the_launchers(profile: str, env: dict[str, str]) -> None:
    """With nothing set, and with a model of one's own in the shell or .env."""
    _, service = generation_service(profile)
    assert service["entrypoint"][0] == "python3"
    command = [compose_interpolated(str(arg), env) for arg in service["command"]]
    assert [*service["entrypoint"][1:], *command] == launcher_flags(profile, env)
    mounts = service["volumes"]
    assert all(str(m).endswith(":ro") for m in mounts)
    assert {str(m).split(":")[1] for m in mounts} == {"/var/lib/ragft/models", "/var/lib/ragft/adapters"}


def test_compose_ragft_names_are_settings() -> None:
    used = set(RAGFT_NAME.findall(COMPOSE_FILE.read_text()))
    for service in compose_services().values():
        used |= {key for key in service.get("environment", {}) if key.startswith("RAGFT_")}
    for dockerfile in DOCKERFILES:
        used |= set(RAGFT_NAME.findall(dockerfile.read_text()))
    unknown = used - setting_names()
    assert not unknown, f"not settings any ragft service reads: {sorted(unknown)}"
    assert "RAGFT_GENERATION_URL" in used and "RAGFT_QDRANT_URL" in used


def test_compose_passes_the_keys_file_and_an_unset_one_is_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway gets RAGFT_API_KEYS_FILE, empty when the shell sets none, and the folder it names."""
    gateway = compose_services()["gateway"]
    assert gateway["environment"]["RAGFT_API_KEYS_FILE"] == "${RAGFT_API_KEYS_FILE:-}"
    assert "./var/keys:/etc/ragft/keys:ro" in gateway["volumes"]
    monkeypatch.setenv("RAGFT_API_KEYS_FILE", "")  # what Compose passes when it is unset
    assert GatewaySettings().api_keys_file is None
    keys = tmp_path / "api-keys"
    keys.write_text("key-one help-center\n")
    monkeypatch.setenv("RAGFT_API_KEYS_FILE", str(keys))
    assert GatewaySettings().key_ring


def test_the_compose_store_fsyncs_every_write_to_a_named_volume() -> None:
    store = compose_services()[STORE[0]]
    assert store["image"].startswith("redis:")
    assert redis_options(store["command"]).items() >= STORE_DURABILITY.items()
    (volume,) = store["volumes"]
    name, path = str(volume).split(":")
    assert path == "/data" and name in compose()["volumes"]
    gateway = compose_services()["gateway"]
    assert gateway["environment"]["RAGFT_STORE_URL"] == STORE_URL
    assert gateway["depends_on"][STORE[0]]["condition"] == "service_healthy"
