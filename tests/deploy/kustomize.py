"""A tiny kustomize: renders a kustomization the way `kustomize build` does, for the
features Jobplane's manifests use (resources, namespace, labels, images, patches), so the
tests can check the documents a cluster would get without the kustomize binary. A feature it
does not know is an error, never silently skipped."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, cast

import yaml

Document = dict[str, Any]

KUSTOMIZATION = "kustomization.yaml"
_KNOWN_KEYS = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
# Kinds without a namespace (the ones Jobplane's manifests could hold).
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}


class KustomizeError(Exception):
    pass


def load_kustomization(directory: Path) -> Document:
    kustomization = cast(Document, yaml.safe_load((directory / KUSTOMIZATION).read_text()))
    unknown = set(kustomization) - _KNOWN_KEYS
    if unknown:
        raise KustomizeError(f"{directory}: fields this renderer does not know: {unknown}")
    return kustomization


def listed_files(directory: Path) -> set[Path]:
    """The files a kustomization names (resources that are files, patches)."""
    kustomization = load_kustomization(directory)
    named = [
        *kustomization.get("resources", []),
        *(p["path"] for p in kustomization.get("patches", [])),
    ]
    return {(directory / entry).resolve() for entry in named if not (directory / entry).is_dir()}


def render(directory: Path) -> list[Document]:
    kustomization = load_kustomization(directory)
    documents: list[Document] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            documents += render(path)
        else:
            documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for patch in kustomization.get("patches", []):
        _apply_patch(documents, directory / patch["path"], patch.get("target"))
    for label in kustomization.get("labels", []):
        if label.get("includeSelectors") or label.get("includeTemplates"):
            raise KustomizeError("labels with includeSelectors/includeTemplates: not supported")
        for doc in documents:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    for image in kustomization.get("images", []):
        for doc in documents:
            _set_image(doc, image)
    if "namespace" in kustomization:
        for doc in documents:
            if doc["kind"] not in _CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    return documents


def pod_spec(doc: Document) -> Document | None:
    if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        return cast(Document, doc["spec"]["template"]["spec"])
    return None


def _set_image(doc: Document, image: Document) -> None:
    spec = pod_spec(doc)
    if spec is None:
        return
    for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        name, _, tag = container["image"].partition(":")
        if name == image["name"]:
            new_tag = image.get("newTag", tag)
            new_name = image.get("newName", name)
            container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name


def _matches(doc: Document, target: Document) -> bool:
    return all(
        (doc["metadata"]["name"] if key == "name" else doc.get(key)) == value
        for key, value in target.items()
    )


def _apply_patch(documents: list[Document], path: Path, target: Document | None) -> None:
    patch = yaml.safe_load(path.read_text())
    if isinstance(patch, list):  # JSON 6902 operations, applied to every target
        if target is None:
            raise KustomizeError(f"{path}: a JSON 6902 patch needs a target")
        hits = [doc for doc in documents if _matches(doc, target)]
        for doc in hits:
            for operation in patch:
                _json6902(doc, operation)
    else:  # a strategic merge patch names its resource
        hits = [
            doc
            for doc in documents
            if doc["kind"] == patch["kind"] and doc["metadata"]["name"] == patch["metadata"]["name"]
        ]
        for doc in hits:
            _merge(doc, patch)
    if not hits:
        raise KustomizeError(f"{path}: the patch matches no resource")


def _json6902(doc: Document, operation: Document) -> None:
    *parents, last = operation["path"].strip("/").split("/")
    node: Any = doc
    for key in parents:
        node = node[key]
    if operation["op"] in {"replace", "add"} and isinstance(node, dict):
        if operation["op"] == "replace" and last not in node:
            raise KustomizeError(f"replace of a missing field {operation['path']}")
        node[last] = copy.deepcopy(operation["value"])
    elif operation["op"] == "remove" and isinstance(node, dict):
        del node[last]
    else:
        raise KustomizeError(f"unsupported operation {operation}")


def _merge(into: Document, patch: Document) -> None:
    """Strategic merge for what the manifests use: maps merge, lists of named items merge
    by name (containers, env), any other value is replaced."""
    for key, value in patch.items():
        current = into.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value)
        elif isinstance(current, list) and _named_list(value) and _named_list(current):
            by_name = {item["name"]: item for item in current}
            for item in value:
                if item["name"] in by_name:
                    _merge(by_name[item["name"]], item)
                else:
                    current.append(copy.deepcopy(item))
        else:
            into[key] = copy.deepcopy(value)


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value)
