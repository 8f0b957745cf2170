"""Static checks of infra/ (offline, seconds): the manifests parse, validate against their
schemas, and keep the invariants that matter when a study moves to a GPU cluster.

- Standard Kubernetes objects, and every pod template inside a RayCluster/RayJob, validate
  strictly (unknown fields rejected) against the Kubernetes K8S_VERSION schemas shipped
  with kubernetes-validate.
- RayCluster/RayJob use only KubeRay v1.6 field names (KUBERAY_SCHEMA, from the KubeRay
  v1.6 CRD API reference).
- The `ray up` file passes Ray's own cluster-config preparation and schema.
- Invariants: pinned image tags, Ray/torch/MLflow versions equal the project's pins, token
  auth on, nothing exposed outside the cluster, GPU group autoscaled from 0 with GPU
  requests == limits, a head that runs no trials, a RayJob that shuts its cluster down and
  whose entrypoint parses with the CLI's own parser, and credentials only in Secrets.
"""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
COMPOSE = INFRA / "compose" / "docker-compose.yaml"
LAUNCHER = INFRA / "cluster-launcher" / "aws-gpu.yaml"
DOCKERFILE = INFRA / "Dockerfile"
MLFLOW_DOCKERFILE = INFRA / "mlflow.Dockerfile"

K8S_VERSION = "1.33.0"  # the oldest Kubernetes the manifests target (README says so)
PLACEHOLDER = "CHANGE_ME"  # the only value a committed Secret may hold
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|CREDENTIAL", re.I)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT_VERSION = PYPROJECT["project"]["version"]


def _pin(name: str, text: str) -> str:
    m = re.search(rf"^\s*{re.escape(name)}(\[[^\]]*\])?==([\w.]+)\s*$", text, re.M)
    assert m, f"no {name}==X pin found"
    return m.group(2)


RAY_PIN = _pin("ray", "\n".join(PYPROJECT["project"]["dependencies"]))
MLFLOW_PIN = _pin("mlflow", (ROOT / "requirements" / "constraints.txt").read_text())
VAESTUDY_TAG = f"{PROJECT_VERSION}-ray{RAY_PIN}"


# --- loading ------------------------------------------------------------------------------------


def yaml_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml"))


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s_objects() -> list[tuple[str, dict]]:
    return [
        (f"{p.name}:{d['kind']}/{d['metadata']['name']}", d)
        for p in sorted(K8S.glob("*.yaml"))
        for d in load_all(p)
    ]


OBJECTS = k8s_objects()


def of_kind(*kinds: str) -> list[dict]:
    return [d for _, d in OBJECTS if d["kind"] in kinds]


def cluster_specs() -> list[tuple[str, dict]]:
    """(name, RayClusterSpec) of every RayCluster and every RayJob's rayClusterSpec."""
    out = [(d["metadata"]["name"], d["spec"]) for d in of_kind("RayCluster")]
    out += [(d["metadata"]["name"], d["spec"]["rayClusterSpec"]) for d in of_kind("RayJob")]
    return out


def pod_templates() -> list[tuple[str, dict]]:
    out = []
    for name, spec in cluster_specs():
        out.append((f"{name}/head", spec["headGroupSpec"]["template"]))
        out += [
            (f"{name}/{g['groupName']}", g["template"]) for g in spec.get("workerGroupSpecs", [])
        ]
    out += [
        (f"{d['metadata']['name']}/submitter", d["spec"]["submitterPodTemplate"])
        for d in of_kind("RayJob")
        if "submitterPodTemplate" in d["spec"]
    ]
    return out


def containers(obj) -> list[dict]:
    """Every container (or initContainer) dict anywhere inside a manifest object."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("containers", "initContainers") and isinstance(v, list):
                found += [c for c in v if isinstance(c, dict)]
            found += containers(v)
    elif isinstance(obj, list):
        for v in obj:
            found += containers(v)
    return found


def dockerfile_froms(path: Path) -> list[str]:
    return re.findall(r"^FROM\s+(\S+)", path.read_text(), re.M)


def all_images() -> list[tuple[str, str]]:
    imgs = [(n, c["image"]) for n, d in OBJECTS for c in containers(d)]
    imgs += [
        (f"compose:{s}", svc["image"])
        for s, svc in yaml.safe_load(COMPOSE.read_text())["services"].items()
    ]
    imgs.append(("ray up", yaml.safe_load(LAUNCHER.read_text())["docker"]["image"]))
    imgs += [(p.name, ref) for p in (DOCKERFILE, MLFLOW_DOCKERFILE) for ref in dockerfile_froms(p)]
    return imgs


def split_image(ref: str) -> tuple[str, str]:
    """('repo/name', 'tag'); tag '' when the reference has none."""
    ref = ref.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        return ref.rsplit(":", 1)[0], ref.rsplit(":", 1)[1]
    return ref, ""


# --- 1. parsing and schemas ---------------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_manifest_parses_as_yaml(path):
    docs = load_all(path)
    assert docs and all(isinstance(d, dict) for d in docs)


def test_the_manifests_are_all_there():
    kinds = {d["kind"] for _, d in OBJECTS}
    assert {
        "RayCluster",
        "RayJob",
        "Deployment",
        "StatefulSet",
        "Service",
        "ConfigMap",
        "Secret",
    } <= kinds
    assert (
        (INFRA / "README.md").exists()
        and DOCKERFILE.exists()
        and COMPOSE.exists()
        and LAUNCHER.exists()
    )


STANDARD = [(n, d) for n, d in OBJECTS if not d["apiVersion"].startswith("ray.io/")]


@pytest.mark.parametrize("name,obj", STANDARD, ids=[n for n, _ in STANDARD])
def test_standard_objects_validate_against_the_kubernetes_schemas(name, obj):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    _validate(kubernetes_validate, obj)


@pytest.mark.parametrize("name,template", pod_templates(), ids=[n for n, _ in pod_templates()])
def test_ray_pod_templates_validate_as_kubernetes_pod_templates(name, template):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    wrapped = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "check"},
        "template": template,
    }
    _validate(kubernetes_validate, wrapped)


def _validate(kv, obj: dict) -> None:
    try:
        kv.validate(obj, K8S_VERSION, strict=True)
    except kv.ValidationError as exc:  # the full message quotes the whole schema: keep the gist
        pytest.fail(f"{exc.message} at {'/'.join(map(str, exc.path))}")


def test_the_checks_have_teeth():
    """A misspelt field fails both validators (guards against a silently lax setup)."""
    kv = pytest.importorskip("kubernetes_validate")
    deploy = copy.deepcopy(of_kind("Deployment")[0])
    deploy["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(deploy, K8S_VERSION, strict=True)
    job = copy.deepcopy(of_kind("RayJob")[0])
    job["spec"]["shutdownAfterJobFinish"] = True
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(job, KUBERAY_SCHEMA)


def _obj(props: dict, required: tuple = ()) -> dict:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": props,
        "required": list(required),
    }


ANY, STR, INT, BOOL = (
    {"type": "object"},
    {"type": "string"},
    {"type": "integer"},
    {"type": "boolean"},
)
STRMAP = {
    "type": "object",
    "additionalProperties": {"type": "string"},
}  # rayStartParams values are strings
# Field names of KubeRay v1.6 (ray.io/v1), from its CRD API reference; pod templates are
# checked separately against Kubernetes' own PodTemplateSpec schema.
CLUSTER_SPEC = _obj(
    {
        "authOptions": _obj(
            {"mode": {"enum": ["disabled", "token"]}, "secretName": STR, "enableK8sTokenAuth": BOOL}
        ),
        "suspend": BOOL,
        "managedBy": STR,
        "headServiceAnnotations": STRMAP,
        "rayVersion": STR,
        "enableInTreeAutoscaling": BOOL,
        "gcsFaultToleranceOptions": ANY,
        "upgradeStrategy": ANY,
        "autoscalerOptions": _obj(
            {
                "resources": ANY,
                "image": STR,
                "imagePullPolicy": STR,
                "securityContext": ANY,
                "env": {"type": "array"},
                "envFrom": {"type": "array"},
                "volumeMounts": {"type": "array"},
                "idleTimeoutSeconds": INT,
                "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
                "version": {"enum": ["v1", "v2"]},
            }
        ),
        "headGroupSpec": _obj(
            {
                "template": ANY,
                "headService": ANY,
                "enableIngress": BOOL,
                "rayStartParams": STRMAP,
                "serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
            },
            ("template",),
        ),
        "workerGroupSpecs": {
            "type": "array",
            "items": _obj(
                {
                    "groupName": STR,
                    "replicas": INT,
                    "minReplicas": INT,
                    "maxReplicas": INT,
                    "idleTimeoutSeconds": INT,
                    "rayStartParams": STRMAP,
                    "template": ANY,
                    "scaleStrategy": ANY,
                    "numOfHosts": INT,
                    "suspend": BOOL,
                },
                ("groupName", "template"),
            ),
        },
    },
    ("headGroupSpec",),
)
JOB_SPEC = _obj(
    {
        "entrypoint": STR,
        "rayClusterSpec": CLUSTER_SPEC,
        "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
        "shutdownAfterJobFinishes": BOOL,
        "ttlSecondsAfterFinished": INT,
        "activeDeadlineSeconds": INT,
        "backoffLimit": INT,
        "submitterPodTemplate": ANY,
        "submitterConfig": ANY,
        "runtimeEnvYAML": STR,
        "jobId": STR,
        "metadata": STRMAP,
        "clusterSelector": STRMAP,
        "managedBy": STR,
        "deletionStrategy": ANY,
        "suspend": BOOL,
        "entrypointResources": STR,
        "entrypointNumCpus": {"type": "number"},
        "entrypointNumGpus": {"type": "number"},
    }
)
KUBERAY_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"enum": ["RayCluster", "RayJob"]},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
    },
    "if": {"properties": {"kind": {"const": "RayJob"}}},
    "then": {"properties": {"spec": JOB_SPEC}},
    "else": {"properties": {"spec": CLUSTER_SPEC}},
}


@pytest.mark.parametrize("obj", of_kind("RayCluster", "RayJob"), ids=lambda d: d["kind"])
def test_kuberay_objects_use_kuberay_v1_6_fields(obj):
    jsonschema.validate(obj, KUBERAY_SCHEMA)


def test_compose_file_is_consistent():
    """No compose validator ships offline; check what `docker compose config` would reject."""
    compose = yaml.safe_load(COMPOSE.read_text())
    services, secrets = compose["services"], compose["secrets"]
    for name, svc in services.items():
        assert set(svc.get("depends_on", {})) <= set(services), name
        assert set(svc.get("secrets", [])) <= set(secrets), name
        for vol in svc.get("volumes", []):
            assert vol.split(":", 1)[0] in compose["volumes"], (name, vol)
        if "build" in svc:
            context = COMPOSE.parent / svc["build"]["context"]
            assert (context / svc["build"]["dockerfile"]).exists(), name
    assert all(s["file"].startswith("./secrets/") for s in secrets.values())
    assert {".env", "secrets/"} <= set((COMPOSE.parent / ".gitignore").read_text().split())
    import subprocess

    subprocess.run(["sh", "-n", str(COMPOSE.parent / "make-secrets.sh")], check=True)


def test_ray_up_config_passes_rays_own_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(LAUNCHER.read_text())
    validate_config(prepare_config(copy.deepcopy(config)))
    # prepare_config merges the launcher defaults: none of them may pip-install another Ray.
    assert config["setup_commands"] == [] and config["head_setup_commands"] == []


# --- 2. versions and images ---------------------------------------------------------------------


@pytest.mark.parametrize("where,ref", all_images(), ids=[f"{w}={r}" for w, r in all_images()])
def test_image_tags_are_pinned(where, ref):
    _, tag = split_image(ref)
    assert tag, f"{where}: {ref} has no tag"
    assert "latest" not in tag.lower() and tag not in ("main", "master", "nightly", "stable"), (
        f"{where}: {ref}"
    )
    assert re.search(r"\d+\.\d+|\d{4}-\d\d-\d\d", tag), f"{where}: {ref} is not a versioned tag"


def test_ray_version_everywhere_equals_the_pyproject_pin():
    for name, spec in cluster_specs():
        assert spec["rayVersion"] == RAY_PIN, name
    (base,) = dockerfile_froms(DOCKERFILE)
    repo, tag = split_image(base)
    assert repo == "rayproject/ray" and tag.startswith(f"{RAY_PIN}-py311-"), (
        base
    )  # a GPU (cuXXX) build
    assert f"ray.__version__ == '{RAY_PIN}'" in DOCKERFILE.read_text()  # the build itself checks it
    vaestudy_images = [(w, r) for w, r in all_images() if split_image(r)[0].endswith("/vaestudy")]
    assert len(vaestudy_images) >= 5
    for where, ref in vaestudy_images:
        assert split_image(ref)[1] == VAESTUDY_TAG, f"{where}: {ref} (want tag {VAESTUDY_TAG})"


def test_image_pins_torch_and_mlflow_like_the_project():
    text = DOCKERFILE.read_text()
    torch = re.search(r"^ARG TORCH_VERSION=(\S+)", text, re.M).group(1)
    assert torch == "2.13.0"
    make_pin = re.search(r"torch==([\w.]+)", (ROOT / "Makefile").read_text())
    if make_pin:  # the venv and the image run the same torch
        assert torch == make_pin.group(1)
    assert "-c requirements/constraints.txt" in text  # same dependency pins as the venv
    (mlflow_base,) = dockerfile_froms(MLFLOW_DOCKERFILE)
    assert split_image(mlflow_base)[1] == f"v{MLFLOW_PIN}"
    for where, ref in all_images():
        if split_image(ref)[0].endswith("vaestudy-mlflow"):
            assert split_image(ref)[1] == MLFLOW_PIN, where


def test_dockerfile_copies_only_what_exists_and_the_context_sends_it():
    ignore = (INFRA / "Dockerfile.dockerignore").read_text()
    for line in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)$", DOCKERFILE.read_text(), re.M):
        for src in line.split()[:-1]:
            assert (ROOT / src).exists(), src
            assert f"!{src}" in ignore, f"{src} is not let through Dockerfile.dockerignore"


# --- 3. security --------------------------------------------------------------------------------


def test_token_auth_is_on_for_every_ray_cluster():
    secrets = {d["metadata"]["name"]: d for d in of_kind("Secret")}
    for name, spec in cluster_specs():
        auth = spec.get("authOptions", {})
        assert auth.get("mode") == "token", name
        if "secretName" in auth:  # KubeRay reads the token from the key auth_token
            assert "auth_token" in secrets[auth["secretName"]]["stringData"], name
    launcher = yaml.safe_load(LAUNCHER.read_text())
    assert "--env RAY_AUTH_MODE=token" in launcher["docker"]["run_options"]
    for cmd in launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"]:
        assert "ray stop" in cmd or "RAY_AUTH_MODE=token ray start" in cmd, cmd
    assert any(dst.endswith(".ray/auth_token") for dst in launcher["file_mounts"])


def test_nothing_is_exposed_outside_the_cluster():
    for name, obj in OBJECTS:
        assert obj["kind"] not in ("Ingress", "Gateway", "HTTPRoute", "Route"), name
        if obj["kind"] == "Service":
            assert obj["spec"].get("type", "ClusterIP") == "ClusterIP", name
    for name, spec in cluster_specs():
        head = spec["headGroupSpec"]
        assert head.get("serviceType", "ClusterIP") == "ClusterIP", name
        assert not head.get("enableIngress", False), name
        assert (
            head.get("headService", {}).get("spec", {}).get("type", "ClusterIP") == "ClusterIP"
        ), name
    launcher = yaml.safe_load(LAUNCHER.read_text())
    assert "--dashboard-host=127.0.0.1" in " ".join(launcher["head_start_ray_commands"])
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert "ports" not in services["postgres"]
    for name, svc in services.items():
        for port in svc.get("ports", []):  # published only on BIND_ADDR, loopback by default
            assert port.startswith("${BIND_ADDR:-127.0.0.1}:"), (name, port)


def test_credentials_live_only_in_secrets():
    for obj in of_kind("Secret"):
        values = {**obj.get("stringData", {}), **obj.get("data", {})}
        assert values and set(values.values()) == {PLACEHOLDER}, obj["metadata"]["name"]
    for obj in of_kind("ConfigMap"):
        assert not [k for k in obj["data"] if SECRETISH.search(k)], obj["metadata"]["name"]
    for name, obj in OBJECTS:
        for c in containers(obj):
            for env in c.get("env", []):
                if SECRETISH.search(env["name"]):
                    assert "valueFrom" in env, f"{name}: {env['name']} must come from a Secret"
            for env in c.get("env", []):  # composed values may only reference variables
                assert not re.search(r"://[^$/]*:[^$@]+@", env.get("value", "")), (
                    f"{name}: {env['name']}"
                )
            cmdline = " ".join(c.get("command", []) + c.get("args", []))
            assert not re.search(r"(?i)password|secret|token|://[^/\s]+:[^/\s]+@", cmdline), (
                f"{name}: {cmdline}"
            )
    for obj in of_kind("RayJob"):
        assert not SECRETISH.search(obj["spec"]["entrypoint"])
    for name, svc in yaml.safe_load(COMPOSE.read_text())["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRETISH.search(key):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), (name, key)
    assert not SECRETISH.search(
        " ".join(yaml.safe_load(LAUNCHER.read_text())["docker"]["run_options"]).replace(
            "RAY_AUTH_MODE=token", ""
        )
    )


def test_mlflow_server_checks_hosts_and_reads_its_database_from_secrets():
    (deploy,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "mlflow"]
    (c,) = deploy["spec"]["template"]["spec"]["containers"]
    hosts = [a.split("=", 1)[1] for a in c["args"] if a.startswith("--allowed-hosts=")]
    assert hosts and "*" not in hosts[0].split(","), c["args"]
    env = {e["name"]: e for e in c["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"].startswith(
        "postgresql+psycopg2://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@"
    )
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-postgres"
    compose_mlflow = yaml.safe_load(COMPOSE.read_text())["services"]["mlflow"]
    assert "--allowed-hosts" in " ".join(compose_mlflow["command"])


def test_mlflow_server_asks_for_a_login_whose_secrets_only_drivers_get():
    """MLflow's basic auth in both set-ups: the admin (the studies' login) from a Secret or
    secret file, never a literal; the Ray pods that run drivers get the login, GPU workers
    (which never talk to MLflow) do not."""
    (deploy,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "mlflow"]
    (c,) = deploy["spec"]["template"]["spec"]["containers"]
    assert "--app-name=basic-auth" in c["args"], c["args"]
    env = {e["name"]: e for e in c["env"]}
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert "secretKeyRef" in env[name]["valueFrom"], name
    login = {"secretRef": {"name": "vaestudy-mlflow-login"}}
    for name, spec in cluster_specs():
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert login in head["envFrom"], name
        for group in spec.get("workerGroupSpecs", []):
            for worker in group["template"]["spec"]["containers"]:
                assert login not in worker.get("envFrom", []), (name, group["groupName"])
    compose = yaml.safe_load(COMPOSE.read_text())["services"]["mlflow"]
    command = " ".join(compose["command"])
    assert "--app-name basic-auth" in command
    assert 'MLFLOW_AUTH_ADMIN_PASSWORD="$$(cat /run/secrets/mlflow_admin_password)"' in command
    assert "mlflow_admin_password" in compose["secrets"]


# --- 4. cluster shape ---------------------------------------------------------------------------


def test_head_runs_no_trials():
    for name, spec in cluster_specs():
        assert spec["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0", name
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert "nvidia.com/gpu" not in head["resources"].get("limits", {}), name
    launcher = yaml.safe_load(LAUNCHER.read_text())
    assert launcher["available_node_types"][launcher["head_node_type"]]["resources"] == {"CPU": 0}
    assert "--num-cpus=0" in " ".join(launcher["head_start_ray_commands"])


def test_gpu_group_autoscales_from_zero_with_gpu_requests_and_limits():
    for name, spec in cluster_specs():
        assert spec["enableInTreeAutoscaling"] is True, name
        groups = [
            g
            for g in spec["workerGroupSpecs"]
            if any(
                "nvidia.com/gpu" in c["resources"].get("limits", {})
                for c in g["template"]["spec"]["containers"]
            )
        ]
        assert groups, f"{name}: no GPU worker group"
        for g in groups:
            assert g["minReplicas"] == 0 and g.get("replicas", 0) == 0 and g["maxReplicas"] >= 1, (
                name
            )
            for c in g["template"]["spec"]["containers"]:
                req, lim = c["resources"]["requests"], c["resources"]["limits"]
                assert (
                    str(req["nvidia.com/gpu"]) == str(lim["nvidia.com/gpu"])
                    and int(lim["nvidia.com/gpu"]) >= 1
                )
                assert req["cpu"] == lim["cpu"] and req["memory"] == lim["memory"], name
    launcher = yaml.safe_load(LAUNCHER.read_text())
    workers = [
        t for n, t in launcher["available_node_types"].items() if n != launcher["head_node_type"]
    ]
    assert workers and all(t["min_workers"] == 0 and t["max_workers"] >= 1 for t in workers)


# --- 5. the RayJob ------------------------------------------------------------------------------


def the_rayjob() -> dict:
    (job,) = of_kind("RayJob")
    return job


def test_rayjob_shuts_its_cluster_down_when_done():
    spec = the_rayjob()["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec.get("submissionMode", "K8sJobMode") in ("K8sJobMode", "HTTPMode", "SidecarMode")
    assert spec.get("activeDeadlineSeconds", 0) > 0  # a hung study cannot hold GPUs forever


def test_rayjob_takes_tracking_uri_storage_and_credentials_from_configmaps_and_secrets():
    spec = the_rayjob()["spec"]
    maps = {d["metadata"]["name"]: d["data"] for d in of_kind("ConfigMap")}
    secrets = {d["metadata"]["name"]: d["stringData"] for d in of_kind("Secret")}
    args = shlex.split(spec["entrypoint"])
    assert not {"--storage", "--tracking-uri", "--address"} & set(
        args
    )  # they come from the environment
    for name, tmpl in pod_templates():
        if not name.startswith(the_rayjob()["metadata"]["name"]):
            continue
        env_keys = set()
        for c in tmpl["spec"]["containers"]:
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    env_keys |= set(maps[src["configMapRef"]["name"]])
                if "secretRef" in src:
                    env_keys |= set(secrets[src["secretRef"]["name"]])
        assert {"MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= env_keys, (
            name
        )
        if name.endswith("/head"):  # the driver runs on the head
            assert {"VAESTUDY_STORAGE", "VAESTUDY_ADDRESS"} <= env_keys, name


def test_rayjob_entrypoint_is_a_real_vaestudy_command(monkeypatch):
    import click

    import cli.main as cli_main

    words = shlex.split(the_rayjob()["spec"]["entrypoint"])
    assert words[:2] == ["vaestudy", "run"], words
    assert PYPROJECT["project"]["scripts"]["vaestudy"] == "cli.main:main"  # `vaestudy` is this CLI
    run = cli_main.cli.commands["run"]
    args = words[2:]

    ctx = run.make_context("run", list(args), resilient_parsing=True)
    assert ctx.args == [], f"left over: {ctx.args}"
    assert ctx.params["study"] == "alpha-sweep" and ctx.params["preset"] == "paper"
    assert ctx.params["gpus_per_trial"] == 0.25
    # resilient parsing swallows unknown options and bad values; a strict parse does not
    # (it runs no command, and the cluster's environment variables are not this machine's).
    for var in ("VAESTUDY_ADDRESS", "VAESTUDY_STORAGE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    run.make_context("run", list(args))
    with pytest.raises(click.UsageError):
        run.make_context("run", list(args) + ["--no-such-option"])

    from studies.loading import load_study  # and the study and preset exist in the platform

    assert ctx.params["preset"] in load_study(ctx.params["study"]).describe()["presets"]


# --- 6. the README ------------------------------------------------------------------------------


def test_readme_has_the_commands_and_names_only_files_that_exist():
    text = (INFRA / "README.md").read_text()
    for needle in (
        "port-forward svc/mlflow 5000:5000",
        "-head-svc 8265:8265",
        "ray job submit --address",
        "vaestudy resume s3://",
        "KubeRay v1.6",
        "estimate",
        "gpus-per-trial 0.25",
    ):
        assert needle in text, needle
    for ref in set(
        re.findall(r"infra/[\w./-]+\.(?:yaml|Dockerfile|sh)\b|infra/Dockerfile\b", text)
    ):
        assert (ROOT / ref).exists(), ref
