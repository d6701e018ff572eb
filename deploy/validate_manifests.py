"""Schema and consistency checks of the deployment files (scripts/check_deploy.sh runs it).

    python deploy/validate_manifests.py [--self-test] [--ray-python PYTHON]

Needs the PyPI packages kubernetes-validate (Kubernetes' own OpenAPI schemas, one
set per release, shipped in the package) and PyYAML. What it checks:

* every Kubernetes object under deploy/k8s and deploy/kuberay against Kubernetes'
  schemas in strict mode (unknown fields are errors), for the oldest and newest
  release in CHECKED_VERSIONS;
* the KubeRay RayService (a custom resource: no schema in that package) against
  RAYSERVICE_SCHEMA below, written here from the ray.io/v1 API's field names (not
  KubeRay's CRD file), unknown fields being errors; its pod templates against
  Kubernetes' PodTemplateSpec in strict mode;
* the Ray Serve configs (deploy/ray/serve_config.yaml and the RayService's
  serveConfigV2) against SERVE_SCHEMA below (Ray 2.60's field names, unknown fields
  being errors), and, where a Python with Ray is given or found, against Ray's own
  ray.serve.schema.ServeDeploySchema;
* that the pieces agree: probes on /ready and /health, the port the Dockerfile
  exposes, RINFER_NUM_THREADS following the CPU limit, requests equal to limits,
  the Service and PodDisruptionBudget selecting the Deployment's pods, the HPA
  scaling it, the RayService importing rinfer.serve_ray:app with the rayVersion
  the Dockerfile's RAY_VERSION installs, serveConfigV2 equal to serve_config.yaml.

--self-test breaks copies of the files in known ways and fails unless each break is
reported. Nothing is applied to a cluster: these are static checks.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import re
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CHECKED_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
SERVE_IMPORT_PATH = "rinfer.serve_ray:app"

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_INT = {"type": "integer"}
_OBJ = {"type": "object"}
_POD_TEMPLATE = {"type": "object"}  # checked against Kubernetes' PodTemplateSpec separately


def _strict(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


# ray.io/v1 RayService: the fields of the API (KubeRay v1.x); pod templates and the
# Services' specs are Kubernetes types, left open here and checked where noted.
_WORKER_GROUP = _strict(
    {
        "groupName": {"type": "string", "minLength": 1},
        "replicas": _INT,
        "minReplicas": _INT,
        "maxReplicas": _INT,
        "idleTimeoutSeconds": _INT,
        "numOfHosts": _INT,
        "priority": _INT,
        "rayStartParams": _STR_MAP,
        "template": _POD_TEMPLATE,
        "scaleStrategy": _strict({"workersToDelete": {"type": "array", "items": {"type": "string"}}}),
        "suspend": {"type": "boolean"},
        "resources": _STR_MAP,
        "labels": _STR_MAP,
    },
    ("groupName", "minReplicas", "maxReplicas", "template"),
)
_HEAD_GROUP = _strict(
    {
        "rayStartParams": _STR_MAP,
        "template": _POD_TEMPLATE,
        "serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
        "enableIngress": {"type": "boolean"},
        "headService": _OBJ,
        "ingressOptions": _OBJ,
        "resources": _STR_MAP,
        "labels": _STR_MAP,
    },
    ("template",),
)
_AUTOSCALER = _strict(
    {
        "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
        "idleTimeoutSeconds": _INT,
        "image": {"type": "string"},
        "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
        "resources": _OBJ,
        "env": {"type": "array"},
        "envFrom": {"type": "array"},
        "securityContext": _OBJ,
        "volumeMounts": {"type": "array"},
        "version": {"type": "string"},
    }
)
_RAY_CLUSTER = _strict(
    {
        "rayVersion": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
        "enableInTreeAutoscaling": {"type": "boolean"},
        "autoscalerOptions": _AUTOSCALER,
        "headGroupSpec": _HEAD_GROUP,
        "workerGroupSpecs": {"type": "array", "items": _WORKER_GROUP},
        "headServiceAnnotations": _STR_MAP,
        "suspend": {"type": "boolean"},
        "managedBy": {"type": "string"},
        "gcsFaultToleranceOptions": _OBJ,
        "authOptions": _OBJ,
        "upgradeStrategy": _OBJ,
        "networkPolicy": _OBJ,
        "tlsOptions": _OBJ,
    },
    ("headGroupSpec",),
)
RAYSERVICE_SCHEMA = _strict(
    {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayService"},
        "metadata": _strict(
            {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": _STR_MAP,
                "annotations": _STR_MAP,
            },
            ("name",),
        ),
        "spec": _strict(
            {
                "serveConfigV2": {"type": "string", "minLength": 1},
                "rayClusterConfig": _RAY_CLUSTER,
                "serviceUnhealthySecondThreshold": _INT,
                "deploymentUnhealthySecondThreshold": _INT,
                "rayClusterDeletionDelaySeconds": _INT,
                "serveService": _OBJ,
                "excludeHeadPodFromServeSvc": {"type": "boolean"},
                "upgradeStrategy": _strict(
                    {
                        "type": {"enum": ["NewCluster", "None", "NewClusterWithIncrementalUpgrade"]},
                        "clusterUpgradeOptions": _OBJ,
                    }
                ),
                "suspend": {"type": "boolean"},
                "managedBy": {"type": "string"},
            },
            ("rayClusterConfig",),
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)

# Ray Serve's config file (ServeDeploySchema of Ray 2.60); Ray itself ignores unknown
# top-level keys, this check does not (a misspelt key would otherwise do nothing).
_NUM = {"type": "number"}
_AUTOSCALING = _strict(
    {
        k: _NUM
        for k in (
            "min_replicas",
            "initial_replicas",
            "max_replicas",
            "target_ongoing_requests",
            "upscale_delay_s",
            "downscale_delay_s",
            "downscale_to_zero_delay_s",
            "metrics_interval_s",
            "look_back_period_s",
            "smoothing_factor",
            "upscale_smoothing_factor",
            "downscale_smoothing_factor",
            "upscaling_factor",
            "downscaling_factor",
        )
    }
    | {"aggregation_function": {"type": "string"}, "policy": _OBJ}
)
_SERVE_DEPLOYMENT = _strict(
    {
        "name": {"type": "string", "minLength": 1},
        "num_replicas": {"anyOf": [{"type": "integer", "minimum": 0}, {"const": "auto"}, {"type": "null"}]},
        "max_ongoing_requests": {"type": "integer", "minimum": 1},
        "max_queued_requests": {"type": "integer"},
        "user_config": {},
        "autoscaling_config": _AUTOSCALING,
        "graceful_shutdown_wait_loop_s": _NUM,
        "graceful_shutdown_timeout_s": _NUM,
        "health_check_period_s": _NUM,
        "health_check_timeout_s": _NUM,
        "ray_actor_options": _strict(
            {
                "num_cpus": _NUM,
                "num_gpus": _NUM,
                "memory": _NUM,
                "resources": _OBJ,
                "runtime_env": _OBJ,
                "accelerator_type": {"type": "string"},
            }
        ),
        "placement_group_bundles": {"type": "array"},
        "placement_group_strategy": {"type": "string"},
        "placement_group_bundle_label_selector": {"type": "array"},
        "max_replicas_per_node": {"type": "integer"},
        "logging_config": _OBJ,
        "request_router_config": _OBJ,
        "backpressure_config": _OBJ,
        "gang_scheduling_config": _OBJ,
        "deployment_actors": {"type": "array"},
        "max_surge_percent": _NUM,
        "rolling_update_percentage": _NUM,
    },
    ("name",),
)
_SERVE_APP = _strict(
    {
        "name": {"type": "string", "minLength": 1},
        "route_prefix": {"type": ["string", "null"], "pattern": "^/"},
        "import_path": {"type": "string", "pattern": r"^[A-Za-z_][\w.]*[:.][A-Za-z_]\w*$"},
        "runtime_env": _strict(
            {
                "env_vars": _STR_MAP,
                "working_dir": {"type": "string"},
                "py_modules": {"type": "array"},
                "pip": {},
                "uv": {},
                "conda": {},
                "excludes": {"type": "array"},
                "config": _OBJ,
                "image_uri": {"type": "string"},
            }
        ),
        "deployments": {"type": "array", "items": _SERVE_DEPLOYMENT},
        "args": _OBJ,
        "logging_config": _OBJ,
        "external_scaler_enabled": {"type": "boolean"},
        "autoscaling_policy": _OBJ,
        "host": {"type": "string"},
        "port": _INT,
    },
    ("import_path",),
)
SERVE_SCHEMA = _strict(
    {
        "proxy_location": {"enum": ["Disabled", "HeadOnly", "EveryNode"]},
        "http_options": _strict(
            {
                "host": {"type": "string"},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "root_path": {"type": "string"},
                "request_timeout_s": _NUM,
                "keep_alive_timeout_s": _NUM,
                "ssl_keyfile": {"type": "string"},
                "ssl_certfile": {"type": "string"},
                "ssl_keyfile_password": {"type": "string"},
                "ssl_ca_certs": {"type": "string"},
            }
        ),
        "grpc_options": _OBJ,
        "logging_config": _OBJ,
        "target_capacity": _NUM,
        "controller_options": _OBJ,
        "tracing_config": _OBJ,
        "applications": {"type": "array", "minItems": 1, "items": _SERVE_APP},
    },
    ("applications",),
)


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.passed: list[str] = []

    def error(self, where: str, msg: str) -> None:
        self.errors.append(f"{where}: {msg}")

    def ok(self, msg: str) -> None:
        self.passed.append(msg)


def _jsonschema(report: Report, where: str, doc, schema: dict) -> None:
    validator = jsonschema.Draft7Validator(schema)
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        path = "/".join(str(p) for p in err.absolute_path) or "(top)"
        report.error(where, f"{path}: {err.message}")


def _kubernetes(report: Report, where: str, doc: dict) -> None:
    for version in CHECKED_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = "/".join(str(p) for p in e.path) or "(top)"
            report.error(where, f"Kubernetes {version}: {path}: {e.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
            report.error(where, f"Kubernetes {version}: no schema: {e}")


def _pod_template(report: Report, where: str, template: dict) -> None:
    # a core PodTemplate object carries a PodTemplateSpec: Kubernetes' own schema checks it
    wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template}
    _kubernetes(report, where, wrapped)


def _cpu(q) -> float:
    s = str(q)
    return float(s[:-1]) / 1000 if s.endswith("m") else float(s)


def _dockerfile() -> tuple[set[int], str | None]:
    text = (ROOT / "Dockerfile").read_text()
    exposed = {int(p) for line in re.findall(r"^EXPOSE\s+(.+)$", text, re.MULTILINE) for p in re.findall(r"\d+", line)}
    ray = re.search(r"^ARG RAY_VERSION=(\S+)$", text, re.MULTILINE)
    return exposed, ray.group(1) if ray else None


def _serve_config(report: Report, where: str, cfg) -> None:
    _jsonschema(report, where, cfg, SERVE_SCHEMA)
    if isinstance(cfg, dict):
        paths = [a.get("import_path") for a in cfg.get("applications") or [] if isinstance(a, dict)]
        if SERVE_IMPORT_PATH not in paths:
            report.error(where, f"no application imports {SERVE_IMPORT_PATH} (import paths: {paths})")


def check_docs(docs: dict[str, list[dict]], serve_cfg, report: Report) -> None:
    exposed, ray_version = _dockerfile()
    by_kind: dict[str, list[tuple[str, dict]]] = {}
    for where, items in docs.items():
        for i, doc in enumerate(items):
            tag = f"{where}#{i}"
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                report.error(tag, "not a Kubernetes object (apiVersion and kind missing)")
                continue
            by_kind.setdefault(doc["kind"], []).append((tag, doc))
            if doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayService":
                _jsonschema(report, tag, doc, RAYSERVICE_SCHEMA)
                cluster = doc.get("spec", {}).get("rayClusterConfig", {})
                groups = [("headGroupSpec", cluster.get("headGroupSpec", {}))] + [
                    (f"workerGroupSpecs/{j}", g) for j, g in enumerate(cluster.get("workerGroupSpecs") or [])
                ]
                for name, group in groups:
                    if isinstance(group, dict) and isinstance(group.get("template"), dict):
                        _pod_template(report, f"{tag} {name}/template", group["template"])
            else:
                _kubernetes(report, tag, doc)

    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        report.error("deploy/k8s", f"expected one Deployment, found {len(deployments)}")
    for tag, dep in deployments:
        pod = dep["spec"]["template"]
        labels = pod.get("metadata", {}).get("labels", {})
        if dep["spec"]["selector"].get("matchLabels", {}).items() - labels.items():
            report.error(tag, "selector does not match the pod template's labels")
        spec = pod["spec"]
        sc = spec.get("securityContext", {})
        if not sc.get("runAsNonRoot") or sc.get("runAsUser", 0) == 0:
            report.error(tag, "pods must run as a non-root user")
        main = next((c for c in spec["containers"] if c["name"] == "rinfer"), None)
        if main is None:
            report.error(tag, "no container named rinfer")
            continue
        ports = {p.get("name"): p["containerPort"] for p in main.get("ports", [])}
        if ports.get("http") not in exposed:
            report.error(tag, f"container port http={ports.get('http')} is not one the Dockerfile exposes {exposed}")
        for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
            got = main.get(probe, {}).get("httpGet", {}).get("path")
            if got != path:
                report.error(tag, f"{probe} checks {got}, not {path}")
        res = main.get("resources", {})
        limit, request = res.get("limits", {}).get("cpu"), res.get("requests", {}).get("cpu")
        if limit is None or request is None or _cpu(limit) != _cpu(request):
            report.error(tag, f"cpu requests ({request}) must equal limits ({limit}): threads are sized by them")
        env = {e["name"]: e for e in main.get("env", [])}
        threads = env.get("RINFER_NUM_THREADS")
        if threads is None:
            report.error(tag, "RINFER_NUM_THREADS is not set")
        elif "value" in threads:
            if limit is not None and float(threads["value"]) != _cpu(limit):
                report.error(tag, f"RINFER_NUM_THREADS={threads['value']} but the CPU limit is {limit}")
        else:
            ref = threads.get("valueFrom", {}).get("resourceFieldRef", {})
            if ref.get("resource") != "limits.cpu" or ref.get("containerName", "rinfer") != "rinfer":
                report.error(tag, "RINFER_NUM_THREADS must follow this container's limits.cpu")
        mounts = {m["mountPath"] for m in main.get("volumeMounts", [])}
        args = main.get("args", [])
        if "--model" in args and args[args.index("--model") + 1] not in mounts:
            report.error(tag, f"--model {args[args.index('--model') + 1]} is not a mounted volume")
        for kind in ("Service", "PodDisruptionBudget"):
            for otag, obj in by_kind.get(kind, []):
                sel = obj["spec"].get("selector", {})
                sel = sel.get("matchLabels", sel) if kind == "PodDisruptionBudget" else sel
                if not sel or sel.items() - labels.items():
                    report.error(otag, f"{kind} selector {sel} does not select the Deployment's pods")
                if kind == "Service":
                    for p in obj["spec"]["ports"]:
                        if p.get("targetPort") not in (*ports, *ports.values()):
                            report.error(otag, f"targetPort {p.get('targetPort')} is not a container port")
        for otag, hpa in by_kind.get("HorizontalPodAutoscaler", []):
            ref = hpa["spec"]["scaleTargetRef"]
            if (ref.get("kind"), ref.get("name")) != ("Deployment", dep["metadata"]["name"]):
                report.error(otag, f"scales {ref.get('kind')}/{ref.get('name')}, not the Deployment")
            if hpa["spec"].get("minReplicas", 1) > hpa["spec"]["maxReplicas"]:
                report.error(otag, "minReplicas > maxReplicas")

    services = by_kind.get("RayService", [])
    if len(services) != 1:
        report.error("deploy/kuberay", f"expected one RayService, found {len(services)}")
    for tag, rs in services:
        spec = rs.get("spec", {})
        try:
            inner = yaml.safe_load(spec.get("serveConfigV2", ""))
        except yaml.YAMLError as e:
            report.error(tag, f"serveConfigV2 is not YAML: {e}")
            continue
        _serve_config(report, f"{tag} serveConfigV2", inner)
        if serve_cfg is not None and inner != serve_cfg:
            report.error(tag, "serveConfigV2 differs from deploy/ray/serve_config.yaml")
        cluster = spec.get("rayClusterConfig", {})
        if ray_version and cluster.get("rayVersion") != ray_version:
            report.error(tag, f"rayVersion {cluster.get('rayVersion')} but the Dockerfile installs Ray {ray_version}")
        for j, group in enumerate(cluster.get("workerGroupSpecs") or []):
            cpus = group.get("rayStartParams", {}).get("num-cpus")
            for c in group.get("template", {}).get("spec", {}).get("containers", [])[:1]:
                limit = c.get("resources", {}).get("limits", {}).get("cpu")
                if cpus is not None and limit is not None and float(cpus) != _cpu(limit):
                    report.error(tag, f"workerGroupSpecs/{j}: num-cpus {cpus} but the CPU limit is {limit}")
    if serve_cfg is not None:
        _serve_config(report, "deploy/ray/serve_config.yaml", serve_cfg)


def load() -> tuple[dict[str, list[dict]], object]:
    docs = {}
    for path in sorted([*DEPLOY.glob("k8s/*.yaml"), *DEPLOY.glob("kuberay/*.yaml")]):
        docs[str(path.relative_to(ROOT))] = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    serve = DEPLOY / "ray" / "serve_config.yaml"
    return docs, (yaml.safe_load(serve.read_text()) if serve.exists() else None)


def ray_check(python: str, serve_cfg, docs) -> str:
    """Ray's own ServeDeploySchema on both Serve configs, in a Python that has Ray."""
    configs = [serve_cfg] + [
        yaml.safe_load(d["spec"]["serveConfigV2"])
        for items in docs.values()
        for d in items
        if d.get("kind") == "RayService"
    ]
    code = (
        "import json, sys, ray\nfrom ray.serve.schema import ServeDeploySchema\n"
        "for c in json.load(sys.stdin): ServeDeploySchema.model_validate(c)\n"
        "print(ray.__version__)\n"
    )
    out = subprocess.run(
        [python, "-c", code], check=False, input=json.dumps(configs), capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0:
        raise ValueError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    return out.stdout.strip()


def self_test() -> int:
    """Each break must be reported; the files as they are must pass."""
    docs, serve = load()
    base = Report()
    check_docs(docs, serve, base)
    if base.errors:
        print("self-test: the files as they are fail:\n  " + "\n  ".join(base.errors))
        return 1

    def find(d, kind):
        return next(x for items in d.values() for x in items if x["kind"] == kind)

    def rs_config(d, edit):
        rs = find(d, "RayService")
        cfg = yaml.safe_load(rs["spec"]["serveConfigV2"])
        edit(cfg)
        rs["spec"]["serveConfigV2"] = yaml.safe_dump(cfg)

    def container(d):
        return find(d, "Deployment")["spec"]["template"]["spec"]["containers"][0]

    breaks = {
        "unknown Deployment field": lambda d, s: find(d, "Deployment")["spec"].__setitem__("replica", 2),
        "wrong type in a Service": lambda d, s: find(d, "Service")["spec"]["ports"][0].__setitem__("port", "eighty"),
        "unknown container field": lambda d, s: container(d).__setitem__("livenessprobe", {}),
        "readiness on /health": lambda d, s: container(d)["readinessProbe"]["httpGet"].__setitem__("path", "/health"),
        "threads not following the limit": lambda d, s: container(d)["resources"]["limits"].__setitem__("cpu", "4"),
        "HPA on another target": lambda d, s: find(d, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"].__setitem__(
            "name", "other"
        ),
        "Service selecting nothing": lambda d, s: find(d, "Service")["spec"]["selector"].__setitem__("app", "x"),
        "unknown RayService field": lambda d, s: find(d, "RayService")["spec"].__setitem__("serveConfig", "x"),
        "rayStartParams not strings": lambda d, s: find(d, "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"][
            "rayStartParams"
        ].__setitem__("num-cpus", 0),
        "worker group without maxReplicas": lambda d, s: find(d, "RayService")["spec"]["rayClusterConfig"][
            "workerGroupSpecs"
        ][0].pop("maxReplicas"),
        "unknown field in a Ray pod template": lambda d, s: find(d, "RayService")["spec"]["rayClusterConfig"][
            "headGroupSpec"
        ]["template"]["spec"]["containers"][0].__setitem__("cpu", 1),
        "another import path": lambda d, s: rs_config(
            d, lambda c: c["applications"][0].__setitem__("import_path", "x:y")
        ),
        "misspelt Serve key": lambda d, s: s.__setitem__("http_option", {}),
        "wrong rayVersion": lambda d, s: find(d, "RayService")["spec"]["rayClusterConfig"].__setitem__(
            "rayVersion", "2.0.0"
        ),
    }
    failed = 0
    for name, brk in breaks.items():
        d, s = copy.deepcopy(docs), copy.deepcopy(serve)
        brk(d, s)
        r = Report()
        check_docs(d, s, r)
        if r.errors:
            print(f"self-test: {name}: reported ({r.errors[0][:110]})")
        else:
            print(f"self-test: {name}: NOT reported")
            failed += 1
    print(f"self-test: {len(breaks) - failed} of {len(breaks)} breaks reported")
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--self-test", action="store_true", help="check that known breaks are reported")
    ap.add_argument("--ray-python", help="a Python with Ray: also validate the Serve configs with Ray's own schema")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    docs, serve = load()
    report = Report()
    check_docs(docs, serve, report)
    count = sum(len(v) for v in docs.values())
    if args.ray_python:
        try:
            version = ray_check(args.ray_python, serve, docs)
            print(f"manifests: Serve configs pass Ray {version}'s ServeDeploySchema")
        except (ValueError, OSError, subprocess.TimeoutExpired) as e:
            report.error("Serve configs", f"Ray's ServeDeploySchema: {e}")
    for e in report.errors:
        print(f"manifests: FAIL {e}")
    if report.errors:
        return 1
    print(
        f"manifests: {count} objects in {len(docs)} files pass: Kubernetes {' and '.join(CHECKED_VERSIONS)} schemas "
        "(strict), the RayService and Serve config schemas, and the consistency checks"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
