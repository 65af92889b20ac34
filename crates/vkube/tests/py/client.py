"""The official Python client against vkube: create, read, list with selectors, patch,
watch, delete and an error Status. Usage: client.py KUBECONFIG"""
import sys

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
apps = client.AppsV1Api()

names = {ns.metadata.name for ns in core.list_namespace().items}
assert {"default", "kube-system"} <= names, names

cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py", labels={"from": "python"}), data={"a": "1"})
created = core.create_namespaced_config_map("default", cm)
assert created.metadata.resource_version
got = core.read_namespaced_config_map("py", "default")
assert got.data == {"a": "1"}, got.data
listed = core.list_namespaced_config_map("default", label_selector="from=python")
assert [c.metadata.name for c in listed.items] == ["py"]
core.patch_namespaced_config_map("py", "default", {"data": {"a": "2"}})
assert core.read_namespaced_config_map("py", "default").data["a"] == "2"

dep = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="pyweb"),
    spec=client.V1DeploymentSpec(
        replicas=2,
        selector=client.V1LabelSelector(match_labels={"app": "pyweb"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "pyweb"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")]),
        ),
    ),
)
apps.create_namespaced_deployment("default", dep)
assert apps.read_namespaced_deployment("pyweb", "default").spec.replicas == 2

w = watch.Watch()
seen = []
for event in w.stream(core.list_namespaced_config_map, "default", label_selector="from=python", timeout_seconds=5):
    seen.append(event["type"])
    if event["type"] == "ADDED":
        core.delete_namespaced_config_map("py", "default")
    if event["type"] == "DELETED":
        w.stop()
assert seen[0] == "ADDED" and "DELETED" in seen, seen

try:
    core.read_namespaced_config_map("py", "default")
    raise AssertionError("expected 404")
except ApiException as e:
    assert e.status == 404, e.status
    assert '"reason":"NotFound"' in e.body, e.body
print("python client ok")
