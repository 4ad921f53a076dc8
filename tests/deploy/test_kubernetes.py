"""deploy/kubernetes, rendered (kustomize_lite.py) and validated offline:
- built-in kinds against the Kubernetes OpenAPI schemas bundled in the `kubernetes-validate`
  wheel (strict: unknown fields fail), for the oldest and newest Kubernetes we claim;
- CRDs (ScaledObject, ServiceMonitor, PrometheusRule) against tests/deploy/schemas/*.json;
- then cross-references: selectors, ports, probes, settings, the KEDA stream name.
Where a `kubectl` binary exists, its built-in kustomize must render the same objects."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate.utils as kubernetes_validate
import pytest
import referencing
import yaml

from service.queue import GROUP
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy/kubernetes"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
KUBE_VERSIONS = ("1.27.0", "1.33.0")  # oldest supported (autoscaling/v2, policy/v1 GA long before), recent
CRD_SCHEMAS = {("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.json",
               ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
               ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.json"}
BUILDS = {"base": K8S / "base", "gpu": K8S / "overlays/gpu"}


@pytest.fixture(scope="module")
def rendered(kustomize) -> dict[str, list[dict]]:
    return {name: kustomize.render(path) for name, path in BUILDS.items()}


def find(docs: list[dict], kind: str, name: str) -> dict:
    hits = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


def pod_templates(docs):
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            yield d, d["spec"]["template"]


def config(docs) -> dict[str, str]:
    return find(docs, "ConfigMap", "vidpose-config")["data"]


def vidpose_settings(docs) -> Settings:
    return Settings(**{k[len("VIDPOSE_"):].lower(): v for k, v in config(docs).items()})


# ---------------------------------------------------------------- schema validation
@pytest.fixture
def no_network(monkeypatch):
    """Validation must work offline: any socket use during it is an error."""

    def refuse(*args, **kwargs):
        raise AssertionError("schema validation tried to use the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def crd_validators() -> dict:
    common = json.loads((SCHEMAS / "_common.json").read_text())
    registry = referencing.Registry().with_resource(
        "vidpose:common", referencing.Resource.from_contents(common))
    out = {}
    for key, filename in CRD_SCHEMAS.items():
        schema = json.loads((SCHEMAS / filename).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        out[key] = jsonschema.Draft202012Validator(schema, registry=registry)
    return out


def all_manifests(rendered) -> list[tuple[str, dict]]:
    docs = [(name, d) for name, ds in rendered.items() for d in ds]
    example = yaml.safe_load((K8S / "base/secret.example.yaml").read_text())
    return docs + [("secret.example.yaml", example)]


def test_every_manifest_is_schema_valid(rendered, crd_validators, no_network):
    errors, checked = [], 0
    for source, doc in all_manifests(rendered):
        where = f"{source}: {doc['kind']}/{doc['metadata']['name']}"
        key = (doc["apiVersion"], doc["kind"])
        if key in crd_validators:
            errors += [f"{where}: {e.message} at {list(e.absolute_path)}"
                       for e in crd_validators[key].iter_errors(doc)]
            checked += 1
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                errors.append(f"{where}: no schema for {key} (a CRD needs a schema in tests/deploy/schemas)")
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{where} (k8s {version}): {exc.message} at {list(exc.absolute_path)}")
        checked += 1
    assert not errors, "\n".join(errors)
    assert checked == sum(len(v) for v in rendered.values()) + 1


def test_validators_reject_bad_manifests(crd_validators):
    """The schemas are not vacuous: typical mistakes fail."""
    kv = kubernetes_validate
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                  "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                      "metadata": {"labels": {"a": "b"}},
                      "spec": {"containers": [{"name": "c", "image": "i", "resource": {}}]}}}}
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, KUBE_VERSIONS[0], strict=True)  # misspelt `resources`
    scaled = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "w"},
              "spec": {"scaleTargetRef": {"name": "w"},
                       "triggers": [{"type": "redis-streams", "metadata": {"lagCount": 2}}]}}
    validator = crd_validators[("keda.sh/v1alpha1", "ScaledObject")]
    assert any("is not of type 'string'" in e.message for e in validator.iter_errors(scaled))
    scaled["spec"]["triggers"][0]["metadata"]["lagCount"] = "2"
    assert not list(validator.iter_errors(scaled))
    scaled["spec"]["maxReplicas"] = 3  # HPA's name, not KEDA's
    assert list(validator.iter_errors(scaled))
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "m"},
               "spec": {"selector": {}, "endpoints": [{"port": "http", "interval": "15 seconds"}]}}
    assert list(crd_validators[("monitoring.coreos.com/v1", "ServiceMonitor")].iter_errors(monitor))


# ---------------------------------------------------------------- rendering
def test_kustomizations_use_only_the_rendered_subset(kustomize, rendered):
    for name, docs in rendered.items():
        assert docs, name
        for doc in docs:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "vidpose", f"{name}: {doc['kind']}"
    listed = set(yaml.safe_load((K8S / "base/kustomization.yaml").read_text())["resources"])
    files = {p.name for p in (K8S / "base").glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == files, "every base manifest is listed in kustomization.yaml (and only those)"


def test_renderer_applies_strategic_merge_like_kustomize(kustomize):
    env = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    base = {"spec": {"template": {"spec": {
        "containers": [{"name": "w", "image": "a", "env": env,
                        "volumeMounts": [{"name": "v", "mountPath": "/x"}]}],
        "tolerations": [{"key": "a"}]}}}}
    patch = {"spec": {"template": {"spec": {
        "containers": [{"name": "w", "image": "b",
                        "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}],
        "tolerations": [{"key": "b"}]}}}}
    out = kustomize.strategic_merge(base, patch, builtin=True)
    c = out["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "b"
    assert c["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}]
    assert c["volumeMounts"] == [{"name": "v", "mountPath": "/x"}]
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "b"}]  # no merge key: replaced
    crd = kustomize.strategic_merge({"triggers": [{"name": "a"}, {"name": "b"}]},
                                    {"triggers": [{"name": "c"}]}, builtin=False)
    assert crd == {"triggers": [{"name": "c"}]}
    with pytest.raises(ValueError):
        kustomize.strategic_merge({"a": 1}, {"a": None}, builtin=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="cross-check only: no kubectl here "
                    "(the renderer above is what CI relies on)")
@pytest.mark.parametrize("build", sorted(BUILDS))
def test_renderer_matches_kubectl_kustomize(kustomize, rendered, build):
    out = subprocess.run(["kubectl", "kustomize", str(BUILDS[build])], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    theirs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}
    mine = {(d["kind"], d["metadata"]["name"]): d for d in rendered[build]}
    assert mine == theirs


# ---------------------------------------------------------------- cross-references
def test_settings_in_configmap_are_valid(rendered):
    fields = set(Settings.model_fields)
    for docs in rendered.values():
        for key in config(docs):
            assert key.startswith("VIDPOSE_") and key[len("VIDPOSE_"):].lower() in fields, key
        s = vidpose_settings(docs)
        assert s.api_host == "0.0.0.0"
        assert s.redis_url and urlparse(s.redis_url).scheme == "redis"


def test_pods_reference_existing_config_and_secret(rendered):
    example = yaml.safe_load((K8S / "base/secret.example.yaml").read_text())
    for docs in rendered.values():
        for deploy, tpl in pod_templates(docs):
            if deploy["metadata"]["name"] == "vidpose-redis":
                continue
            refs = tpl["spec"]["containers"][0]["envFrom"]
            assert refs[0] == {"configMapRef": {"name": "vidpose-config"}}
            # the Secret comes last so it overrides the ConfigMap, and is required (fail closed)
            assert refs[-1] == {"secretRef": {"name": example["metadata"]["name"]}}
            assert set(example["stringData"]) <= {"VIDPOSE_API_KEYS", "VIDPOSE_REDIS_URL"}


def test_selectors_ports_and_labels_line_up(rendered):
    for name, docs in rendered.items():
        templates = {d["metadata"]["name"]: t for d, t in pod_templates(docs)}
        for d, tpl in pod_templates(docs):
            sel = d["spec"]["selector"]["matchLabels"]
            assert sel.items() <= tpl["metadata"]["labels"].items(), d["metadata"]["name"]
        for svc in (d for d in docs if d["kind"] == "Service"):
            targets = [t for t in templates.values()
                       if svc["spec"]["selector"].items() <= t["metadata"]["labels"].items()]
            assert len(targets) == 1, f"{name}: Service {svc['metadata']['name']} selects {len(targets)} pods"
            port_names = {p["name"] for c in targets[0]["spec"]["containers"] for p in c.get("ports", [])}
            for port in svc["spec"]["ports"]:
                assert port["targetPort"] in port_names
        for mon in (d for d in docs if d["kind"] == "ServiceMonitor"):
            svcs = [s for s in docs if s["kind"] == "Service"
                    and mon["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
            assert len(svcs) == 1, mon["metadata"]["name"]
            # job label = Service name = the compose job name the alerts use
            assert svcs[0]["metadata"]["name"] == mon["metadata"]["name"]
            for ep in mon["spec"]["endpoints"]:
                assert ep["port"] in {p["name"] for p in svcs[0]["spec"]["ports"]}
                assert ep["path"] == "/metrics"
        for pdb in (d for d in docs if d["kind"] == "PodDisruptionBudget"):
            hits = [t for t in templates.values()
                    if pdb["spec"]["selector"]["matchLabels"].items() <= t["metadata"]["labels"].items()]
            assert len(hits) == 1, pdb["metadata"]["name"]
        hpa = find(docs, "HorizontalPodAutoscaler", "vidpose-api")
        assert hpa["spec"]["scaleTargetRef"]["name"] in templates
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        assert "replicas" not in find(docs, "Deployment", "vidpose-api")["spec"], "the HPA owns replicas"


def test_ports_and_probes_match_settings(rendered):
    for docs in rendered.values():
        s = vidpose_settings(docs)
        api = find(docs, "Deployment", "vidpose-api")["spec"]["template"]["spec"]["containers"][0]
        assert api["ports"] == [{"name": "http", "containerPort": s.api_port}]
        assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        worker = find(docs, "Deployment", "vidpose-worker")["spec"]["template"]["spec"]["containers"][0]
        assert worker["ports"] == [{"name": "metrics", "containerPort": s.worker_metrics_port}]
        # readiness = warm model (the worker's /readyz), startup allows the model load
        assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        startup = worker["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
        redis_url = urlparse(s.redis_url)
        redis_svc = find(docs, "Service", redis_url.hostname)
        assert redis_svc["spec"]["ports"][0]["port"] == (redis_url.port or 6379)


def test_pods_are_hardened_and_sized(rendered):
    for docs in rendered.values():
        for d, tpl in pod_templates(docs):
            spec, name = tpl["spec"], d["metadata"]["name"]
            # Service links would inject e.g. VIDPOSE_API_PORT=tcp://10.0.0.1:8000 for the
            # vidpose-api Service: a broken value for the api_port setting.
            assert spec["enableServiceLinks"] is False, name
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert spec["securityContext"]["runAsUser"] != 0, name
            for c in spec["containers"]:
                res = c["resources"]
                assert {"cpu", "memory"} <= set(res["requests"]) and "memory" in res["limits"], name
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
                assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_uploads_volume_is_shared_rwx_at_blob_dir(rendered):
    for docs in rendered.values():
        s = vidpose_settings(docs)
        pvc = find(docs, "PersistentVolumeClaim", "vidpose-uploads")
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        for name in ("vidpose-api", "vidpose-worker"):
            spec = find(docs, "Deployment", name)["spec"]["template"]["spec"]
            vol = [v["name"] for v in spec["volumes"]
                   if v.get("persistentVolumeClaim", {}).get("claimName") == "vidpose-uploads"]
            mounts = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] in vol]
            assert [m["mountPath"] for m in mounts] == [str(s.blob_dir)], name
            assert spec["securityContext"]["fsGroup"] == 10001  # the images' uid/gid


def test_redis_is_persistent(rendered):
    for docs in rendered.values():
        sts = find(docs, "StatefulSet", "vidpose-redis")
        args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--appendonly") + 1] == "yes"
        assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
        assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
        image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
        assert int(image.split(":")[1].split(".")[0]) >= 7, "KEDA's lagCount needs Redis >= 7"


def drain_timeout_s(argv: list[str]) -> float:
    """The SIGTERM drain budget of a `vidpose worker ...` command line, read by the real CLI parser."""
    from service.cli import build_parser

    assert argv[:2] == ["vidpose", "worker"], argv
    return float(build_parser().parse_args(argv[1:]).drain_timeout)


def test_worker_grace_period_covers_the_drain(rendered, compose):
    for docs in rendered.values():
        spec = find(docs, "Deployment", "vidpose-worker")["spec"]
        drain = drain_timeout_s(spec["template"]["spec"]["containers"][0]["args"])
        grace = spec["template"]["spec"]["terminationGracePeriodSeconds"]
        # drain + requeue of what is left + heartbeat join + deregister, with room to spare
        assert grace >= drain + 60, f"grace {grace}s < drain {drain}s + 60s"
        assert "replicas" not in spec, "KEDA owns the worker count"
    for name in ("worker", "worker-cpu"):
        svc = compose["services"][name]
        drain = drain_timeout_s(svc["command"])
        grace = int(svc["stop_grace_period"].rstrip("m")) * 60
        assert grace >= drain + 30, f"compose {name}: stop_grace_period {grace}s < drain {drain}s + 30s"


def test_keda_scales_workers_on_the_jobs_stream(rendered):
    for name, docs in rendered.items():
        s = vidpose_settings(docs)
        so = find(docs, "ScaledObject", "vidpose-worker")["spec"]
        assert so["scaleTargetRef"]["name"] == find(docs, "Deployment", "vidpose-worker")["metadata"]["name"]
        assert so["minReplicaCount"] >= 1, "API readiness needs a live worker: never scale to zero"
        assert so["maxReplicaCount"] >= so["minReplicaCount"]
        triggers = so["triggers"]
        assert {t["type"] for t in triggers} == {"redis-streams"}
        redis_url = urlparse(s.redis_url)
        fqdn = f"{redis_url.hostname}.vidpose.svc.cluster.local:{redis_url.port or 6379}"
        kinds = set()
        for t in triggers:
            md = t["metadata"]
            assert md["stream"] == f"{s.key_prefix}:jobs:{s.default_model}", "stream of the served model"
            assert md["consumerGroup"] == GROUP
            assert md["address"] == fqdn, "KEDA runs in another namespace: use the Redis Service FQDN"
            assert int(md.get("databaseIndex", "0")) == int(redis_url.path.strip("/") or 0)
            if "lagCount" in md:
                kinds.add("lag")
                assert int(md["lagCount"]) >= 1 and "activationLagCount" in md
            if "pendingEntriesCount" in md:
                kinds.add("pending")
                assert int(md["pendingEntriesCount"]) == s.worker_max_jobs
        assert kinds == {"lag", "pending"}, name


def test_gpu_overlay_puts_workers_on_gpus(rendered):
    base = find(rendered["base"], "Deployment", "vidpose-worker")["spec"]["template"]["spec"]
    gpu = find(rendered["gpu"], "Deployment", "vidpose-worker")["spec"]["template"]["spec"]
    bc, gc = base["containers"][0], gpu["containers"][0]
    assert "nvidia.com/gpu" not in bc["resources"]["limits"]
    assert bc["image"].startswith("vidpose-worker-cpu:")
    assert gc["image"].startswith("vidpose-worker:")
    assert gc["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gc["resources"]["requests"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e["value"] for e in gc["env"]}
    assert env["VIDPOSE_WORKER_DEVICE"] == "cuda"
    assert {e["name"]: e["value"] for e in bc["env"]}["VIDPOSE_WORKER_DEVICE"] == "cpu"
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["tolerations"])
    strategy = find(rendered["gpu"], "Deployment", "vidpose-worker")["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 0, "maxUnavailable": 1}, "roll without needing a spare GPU"
    # everything else the overlay does not mention is inherited unchanged
    assert gc["readinessProbe"] == bc["readinessProbe"] and gc["volumeMounts"] == bc["volumeMounts"]
    others = lambda docs: {(d["kind"], d["metadata"]["name"]): d for d in docs  # noqa: E731
                           if (d["kind"], d["metadata"]["name"]) not in
                           {("Deployment", "vidpose-worker"), ("ScaledObject", "vidpose-worker")}}
    assert others(rendered["base"]) == others(rendered["gpu"])


def test_images_match_compose(rendered, compose):
    images = {svc: compose["services"][svc]["image"] for svc in ("api", "worker", "worker-cpu")}
    api = find(rendered["base"], "Deployment", "vidpose-api")["spec"]["template"]["spec"]["containers"][0]
    assert api["image"] == images["api"]
    cpu = find(rendered["base"], "Deployment", "vidpose-worker")["spec"]["template"]["spec"]["containers"][0]
    assert cpu["image"] == images["worker-cpu"]
    gpu = find(rendered["gpu"], "Deployment", "vidpose-worker")["spec"]["template"]["spec"]["containers"][0]
    assert gpu["image"] == images["worker"]
    redis = find(rendered["base"], "StatefulSet", "vidpose-redis")["spec"]["template"]["spec"]
    redis = redis["containers"][0]
    version = lambda image: image.split(":")[1].split("-")[0]  # noqa: E731
    assert version(redis["image"]) == version(compose["services"]["redis"]["image"]), "same Redis version"
