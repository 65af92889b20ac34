"""Oversized bodies under load: while other threads create and list objects, 4 and
16 MiB ConfigMap POSTs must each be answered 413 RequestEntityTooLarge with a Status (never a
dropped or reset connection), and a 2 MiB one 422 (data over 1 MiB); the other requests
keep succeeding. Usage: big_bodies.py KUBECONFIG"""
import sys
import threading

from kubernetes import client, config
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
stop = threading.Event()
errors = []
done = [0]


def background(i):
    n = 0
    while not stop.is_set():
        try:
            cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"load-{i}-{n}"), data={"k": "v" * 1000})
            core.create_namespaced_config_map("default", cm)
            core.list_namespaced_config_map("default", limit=20)
            n += 1
            done[0] += 1
        except Exception as e:  # noqa: BLE001 - every failure is a test failure
            errors.append(f"background {i}: {e!r}")
            return


threads = [threading.Thread(target=background, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
try:
    for attempt in range(8):
        # 4 MiB, and 16 MiB: far more than the server reads before it answers.
        size = (4 if attempt % 2 == 0 else 16) * 1024 * 1024
        big = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"big-{attempt}"), data={"k": "x" * size})
        try:
            core.create_namespaced_config_map("default", big)
            errors.append("a 4 MiB configmap was accepted")
        except ApiException as e:
            assert e.status == 413, (e.status, e.body)
            assert '"reason":"RequestEntityTooLarge"' in e.body.replace(" ", ""), e.body
            assert "Request entity too large: limit is 3145728" in e.body, e.body
        # Any other exception (a reset or dropped connection) fails the script.
    mid = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="mid"), data={"k": "x" * (2 * 1024 * 1024)})
    try:
        core.create_namespaced_config_map("default", mid)
        errors.append("a 2 MiB configmap was accepted")
    except ApiException as e:
        assert e.status == 422, (e.status, e.body)
        assert "Too long: may not be more than 1048576 bytes" in e.body, e.body
finally:
    stop.set()
    for t in threads:
        t.join()
assert not errors, errors
assert done[0] > 0, "no background request completed"
for attempt in range(8):
    try:
        core.read_namespaced_config_map(f"big-{attempt}", "default")
        raise AssertionError("an oversized configmap was stored")
    except ApiException as e:
        assert e.status == 404, e.status
print("big bodies ok", done[0])
