"""A small kustomize renderer for the subset deploy/kubernetes uses, so CI needs no binary.

Supported kustomization fields: `resources` (files or directories holding a
kustomization.yaml), `namespace`, and `patches` given as file paths holding strategic
merge patches. Anything else raises, so a kustomization that grows past this subset
fails the tests instead of rendering wrong.

Strategic merge semantics implemented (the ones our patches rely on):
- maps merge recursively; a scalar or list in the patch replaces the base value;
- for built-in kinds, lists with a Kubernetes merge key merge element-wise by that key
  (containers/initContainers/env/volumes/ports... by name, volumeMounts by mountPath,
  containerPort for container ports), other lists are replaced (e.g. tolerations);
- custom resources (ScaledObject, ServiceMonitor...) have no merge keys: patches to
  them are JSON merge patches (lists replaced whole), which is what kustomize does too.
`null` values (deletion) and `$patch` directives are not supported and raise.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "PriorityClass"}
BUILTIN_GROUPS = {"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1",
                  "rbac.authorization.k8s.io/v1"}
# field name -> merge key, for lists in built-in kinds (from the Kubernetes API's
# x-kubernetes-patch-merge-key). Ports of a container merge by containerPort, of a
# Service by port.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name",
              "env": "name", "volumes": "name", "volumeMounts": "mountPath", "imagePullSecrets": "name",
              "volumeClaimTemplates": None}


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _merge_key(field: str, items: list) -> str | None:
    if field == "ports":
        sample = next((i for i in items if isinstance(i, dict)), {})
        return "containerPort" if "containerPort" in sample else "port"
    return MERGE_KEYS.get(field)


def strategic_merge(base, patch, builtin: bool, field: str = ""):
    if patch is None:
        raise ValueError(f"null (delete) in a patch at {field!r} is not supported")
    if isinstance(patch, dict):
        if any(k.startswith("$") for k in patch):
            raise ValueError(f"patch directives are not supported at {field!r}")
        if not isinstance(base, dict):
            return copy.deepcopy(patch)
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if key in base:
                out[key] = strategic_merge(base[key], value, builtin, key)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(patch, list) and builtin and isinstance(base, list):
        key = _merge_key(field, patch + base)
        if key:
            out = copy.deepcopy(base)
            for item in patch:
                idx = next((i for i, b in enumerate(out) if b.get(key) == item.get(key)), None)
                if idx is None:
                    out.append(copy.deepcopy(item))
                else:
                    out[idx] = strategic_merge(out[idx], item, builtin, field)
            return out
    return copy.deepcopy(patch)


def _ident(doc: dict) -> tuple[str, str, str]:
    return doc["apiVersion"], doc["kind"], doc["metadata"]["name"]


def render(directory: Path) -> list[dict]:
    """The resources `kustomize build directory` would output (order: as listed)."""
    directory = Path(directory)
    kz = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kz) - SUPPORTED_FIELDS
    if unknown:
        raise ValueError(f"{directory}/kustomization.yaml uses unsupported fields {sorted(unknown)}")
    docs: list[dict] = []
    for entry in kz.get("resources", []):
        path = (directory / entry).resolve()
        docs.extend(render(path) if path.is_dir() else load_docs(path))
    seen = set()
    for doc in docs:
        ident = _ident(doc)
        if ident in seen:
            raise ValueError(f"duplicate resource {ident}")
        seen.add(ident)
    for entry in kz.get("patches", []):
        if set(entry) != {"path"}:
            raise ValueError(f"only `patches: - path: FILE` is supported, got {entry}")
        for patch in load_docs(directory / entry["path"]):
            matches = [i for i, d in enumerate(docs) if _ident(d) == _ident(patch)]
            if len(matches) != 1:
                raise ValueError(f"patch {entry['path']} targets {_ident(patch)}: {len(matches)} matches")
            i = matches[0]
            docs[i] = strategic_merge(docs[i], patch, builtin=patch["apiVersion"] in BUILTIN_GROUPS)
    if "namespace" in kz:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kz["namespace"]
    return docs
