"""Checks of deploy/kubernetes/: the manifests, the configuration they carry, the Dockerfile
and .dockerignore, against each other and against the real binary. Offline.

What is checked, in the order of the classes below:

- ManifestTest: every YAML document parses and names itself; the kustomizations list
  exactly the files there are; selectors select the pod; the Service has UDP and TCP 53
  aimed at the container's ports; probes aim at the configuration's [health] port, with
  /livez for liveness; the security context (non-root, read-only root, no privilege
  escalation, every capability dropped and none added, RuntimeDefault seccomp) and the
  port-53 design (the pod's net.ipv4.ip_unprivileged_port_start sysctl covers every
  privileged port the configuration listens on); drain_grace + query_timeout + 1 s (+ a
  preStop sleep) fits in terminationGracePeriodSeconds; the ConfigMap's hubdns.toml
  passes `hubdns --check-config`; the Pod Security "restricted" profile; the AKS overlay.
  Each check runs on the base and on the rendered overlay.
- DockerfileTest: stages, build flags, runtime packages (against ldd of the real binary and
  dpkg), numeric non-root USER equal to the Deployment's, EXPOSE equal to the ports,
  ENTRYPOINT/CMD equal to what the Deployment runs and mounts; .dockerignore.
- LoopbackRuntimeTest: the real binary with the ConfigMap's configuration, changed only in
  its listen addresses (free loopback ports) and upstreams (a fake DNS server on loopback
  run by the test): the manifest's probe paths answer 200, dig and kdig (TCP) resolve
  through it, and SIGTERM gives 503 at once, DNS during drain_grace, exit 0 inside
  terminationGracePeriodSeconds.
- PodEmulationTest (needs root, as the integration tests do): the binary run as a pod runs
  it: a network namespace of its own with the manifest's sysctls applied, a "pod address",
  the manifest's runAsUser/runAsGroup, no capability at all, no_new_privs, a read-only
  root, the configuration unchanged but for its upstreams. Probes and DNS on port 53 work
  there; without the sysctl the same start fails with EACCES (exit 2).
- MutationTest: every check above is run on mutated copies (liveness on /readyz, no UDP
  port, capability added, drain_grace too long, ...) and must fail on each.

Nothing is skipped: a missing tool (PyYAML, dig, kdig, curl, unshare, ...) is a failure.
Only loopback and addresses inside a network namespace the test creates are contacted;
the configuration's real upstreams (168.63.129.16, ...) are always replaced first.
"""

import copy
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import unittest

import yaml

SOURCE_DIR = os.path.abspath(os.environ.get("HUBDNS_SOURCE_DIR")
                             or os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("HUBDNS_BINARY", "")
K8S_SUBDIR = os.path.join("deploy", "kubernetes")
BASE = "base"
OVERLAYS = ["aks-internal-lb"]

sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))
from harness import FakeUpstream, free_port, response_status, wait_until  # noqa: E402


def need(condition, message):
    """An assertion that survives python -O and reads as a requirement."""
    if not condition:
        raise AssertionError(message)


def need_tool(name):
    path = shutil.which(name)
    need(path, f"{name} is needed by this test and is not installed")
    return path


def binary():
    need(BINARY and os.access(BINARY, os.X_OK),
         f"HUBDNS_BINARY must name the hubdns binary (got {BINARY!r})")
    return BINARY


# --------------------------------------------------------------------------------------
# Values


DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def seconds(duration):
    """A hubdns duration ("15s", "4500ms", "1m30s", "1.5s") in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", duration)
    need(parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}")
    return sum(float(n) * DURATION_UNITS[u] for n, u in parts)


def split_address(address, default_port):
    """("host", port) of "IP", "IP:PORT" or "[IPv6]:PORT"."""
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", address)
    if m:
        return m.group(1), int(m.group(2) or default_port)
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, int(port)
    return address, default_port


def listen_ports(config, table, default_port):
    return {split_address(a, default_port)[1] for a in config.get(table, {}).get("listen", [])}


def config_path_from_args(args):
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


# --------------------------------------------------------------------------------------
# A small kustomize: just what deploy/kubernetes uses (resources, namespace,
# configMapGenerator, images, JSON 6902 patches). Anything else is refused, so that a new
# feature in a kustomization cannot make these checks look at something else than what
# `kubectl apply -k` applies.


KUSTOMIZATION_KEYS = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator",
                      "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}


def load_yaml_documents(path):
    with open(path) as f:
        try:
            return [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            raise AssertionError(f"{path}: not valid YAML: {e}")


def json_pointer(path):
    need(path.startswith("/"), f"bad JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def apply_json6902(doc, ops, where):
    for op in ops:
        kind, parts = op.get("op"), json_pointer(op.get("path", ""))
        need(kind in ("add", "replace", "remove"), f"{where}: unsupported patch op {kind!r}")
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.get(p)
            need(parent is not None, f"{where}: patch path {op['path']} does not exist")
        last = parts[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif kind == "replace":
                parent[index] = copy.deepcopy(op["value"])
            else:
                del parent[index]
        else:
            need(kind == "add" or last in parent, f"{where}: patch path {op['path']} does not exist")
            if kind == "remove":
                del parent[last]
            else:
                parent[last] = copy.deepcopy(op["value"])


class Rendered:
    def __init__(self):
        self.docs = []          # resources, after namespace / images / patches
        self.generated = {}     # ConfigMap name -> {key: text}
        self.namespace = None


def render(kdir, seen=()):
    kfile = os.path.join(kdir, "kustomization.yaml")
    need(os.path.isfile(kfile), f"{kdir}: no kustomization.yaml")
    need(os.path.realpath(kdir) not in seen, f"{kdir}: kustomization cycle")
    docs = load_yaml_documents(kfile)
    need(len(docs) == 1 and isinstance(docs[0], dict), f"{kfile}: one mapping expected")
    k = docs[0]
    need(k.get("apiVersion") == "kustomize.config.k8s.io/v1beta1" and k.get("kind") == "Kustomization",
         f"{kfile}: apiVersion/kind of a Kustomization expected")
    unknown = set(k) - KUSTOMIZATION_KEYS
    need(not unknown, f"{kfile}: {sorted(unknown)} not understood by this test's renderer; extend it")
    out = Rendered()
    for resource in k.get("resources", []):
        path = os.path.normpath(os.path.join(kdir, resource))
        need(os.path.exists(path), f"{kfile}: resource {resource} does not exist")
        if os.path.isdir(path):
            sub = render(path, seen + (os.path.realpath(kdir),))
            out.docs += sub.docs
            out.generated.update(sub.generated)
            out.namespace = out.namespace or sub.namespace
        else:
            out.docs += load_yaml_documents(path)
    for gen in k.get("configMapGenerator", []):
        data = {}
        for name in gen.get("files", []):
            key, _, file = name.partition("=") if "=" in name else (os.path.basename(name), "", name)
            path = os.path.join(kdir, file)
            need(os.path.isfile(path), f"{kfile}: configMapGenerator file {file} does not exist")
            with open(path) as f:
                data[key] = f.read()
        need(data, f"{kfile}: configMapGenerator {gen.get('name')} has no files")
        out.generated[gen["name"]] = data
        out.docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": gen["name"]}, "data": data})
    for patch in k.get("patches", []):
        need(set(patch) <= {"target", "patch"}, f"{kfile}: only inline patches with a target are understood")
        target, ops = patch["target"], yaml.safe_load(patch["patch"])
        matched = [d for d in out.docs if d.get("kind") == target.get("kind")
                   and d.get("metadata", {}).get("name") == target.get("name")]
        need(matched, f"{kfile}: patch target {target} matches nothing")
        for d in matched:
            apply_json6902(d, ops, kfile)
    for image in k.get("images", []):
        for d in out.docs:
            for c in pod_spec(d).get("containers", []) if d.get("kind") == "Deployment" else []:
                if c.get("image", "").split(":")[0] == image["name"]:
                    c["image"] = f"{image.get('newName', image['name'])}:{image.get('newTag', 'latest')}"
    if k.get("namespace"):
        out.namespace = k["namespace"]
        for d in out.docs:
            if d.get("kind") not in CLUSTER_SCOPED:
                d.setdefault("metadata", {})["namespace"] = k["namespace"]
    return out


def pod_spec(deployment):
    return deployment.get("spec", {}).get("template", {}).get("spec", {})


class Bundle:
    """One kustomization under ROOT/deploy/kubernetes rendered, with its hubdns
    configuration and the Dockerfile: what the checks look at. ROOT is the source tree or a
    mutated copy of the parts these checks read."""

    def __init__(self, root, name):
        self.root = root
        self.k8s = os.path.join(root, K8S_SUBDIR)
        self.name = name
        self.kdir = os.path.join(self.k8s, name)
        self.rendered = render(self.kdir)
        self.docs = self.rendered.docs
        self.deployment = self.one("Deployment")
        self.service = self.one("Service")
        self.pdb = self.one("PodDisruptionBudget")
        self.namespace = self.one("Namespace")
        self.pod = pod_spec(self.deployment)
        containers = self.pod.get("containers", [])
        need(len(containers) == 1, f"{name}: one container expected in the Deployment")
        self.container = containers[0]
        volume = self.config_volume()
        self.configmap_name = volume["configMap"]["name"]
        need(self.configmap_name in self.rendered.generated,
             f"{name}: the Deployment mounts ConfigMap {self.configmap_name!r}, which the "
             f"kustomization does not generate ({sorted(self.rendered.generated)})")
        data = self.rendered.generated[self.configmap_name]
        need(len(data) == 1, f"{name}: the ConfigMap should hold exactly one file")
        (self.config_key, self.config_text), = data.items()
        try:
            self.config = tomllib.loads(self.config_text)
        except tomllib.TOMLDecodeError as e:
            raise AssertionError(f"{name}: {self.config_key} is not valid TOML: {e}")

    def one(self, kind):
        found = [d for d in self.docs if d.get("kind") == kind]
        need(len(found) == 1, f"{self.name}: exactly one {kind} expected, found {len(found)}")
        return found[0]

    def config_volume(self):
        volumes = [v for v in self.pod.get("volumes", []) if "configMap" in v]
        need(len(volumes) == 1, f"{self.name}: one ConfigMap volume expected")
        return volumes[0]

    def template_labels(self):
        return self.deployment["spec"]["template"]["metadata"].get("labels", {})

    def container_port(self, ref, protocol):
        """The containerPort a probe or Service targetPort `ref` (name or number) means."""
        for p in self.container.get("ports", []):
            if p.get("protocol", "TCP") != protocol:
                continue
            if (isinstance(ref, str) and p.get("name") == ref) or ref == p.get("containerPort"):
                return p["containerPort"]
        raise AssertionError(f"{self.name}: no {protocol} container port {ref!r}")

    def pod_security(self):
        return self.pod.get("securityContext", {})

    def effective(self, key):
        """A securityContext field as the kubelet resolves it: container over pod."""
        container = self.container.get("securityContext", {})
        return container[key] if key in container else self.pod_security().get(key)

    def prestop_sleep(self):
        pre = self.container.get("lifecycle", {}).get("preStop")
        if not pre:
            return 0.0
        if "sleep" in pre:
            return float(pre["sleep"]["seconds"])
        command = pre.get("exec", {}).get("command", [])
        need(len(command) == 2 and os.path.basename(command[0]) == "sleep",
             f"{self.name}: a preStop hook other than a sleep: {pre}")
        return float(command[1])


def bundles(root=SOURCE_DIR):
    return [Bundle(root, name) for name in [BASE] + OVERLAYS]


# --------------------------------------------------------------------------------------
# Checks on manifests. Each takes a Bundle (or the root) and raises AssertionError.


def check_yaml_documents(root):
    k8s = os.path.join(root, K8S_SUBDIR)
    found = 0
    for dirpath, _, files in os.walk(k8s):
        for file in sorted(files):
            if not file.endswith((".yaml", ".yml")):
                continue
            path = os.path.join(dirpath, file)
            for doc in load_yaml_documents(path):
                found += 1
                need(isinstance(doc, dict), f"{path}: a document is not a mapping")
                need(doc.get("apiVersion") and doc.get("kind"), f"{path}: a document has no apiVersion/kind")
                if doc["kind"] != "Kustomization":
                    need(doc.get("metadata", {}).get("name"), f"{path}: a {doc['kind']} has no metadata.name")
    need(found >= 5, f"{k8s}: only {found} YAML documents")


def check_kustomization_files(root):
    """The base lists every manifest beside it and nothing else; every other directory is
    an overlay with only its kustomization.yaml, on top of the base."""
    k8s = os.path.join(root, K8S_SUBDIR)
    dirs = sorted(d for d in os.listdir(k8s) if os.path.isdir(os.path.join(k8s, d)))
    need(dirs == sorted([BASE] + OVERLAYS), f"{k8s}: directories {dirs}, expected {[BASE] + OVERLAYS}")
    base = os.path.join(k8s, BASE)
    k = load_yaml_documents(os.path.join(base, "kustomization.yaml"))[0]
    listed = list(k.get("resources", []))
    need(len(listed) == len(set(listed)), f"{base}: a resource is listed twice")
    present = sorted(f for f in os.listdir(base) if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml")
    need(sorted(listed) == present, f"{base}/kustomization.yaml lists {sorted(listed)}, the directory has {present}")
    generated = [f for g in k.get("configMapGenerator", []) for f in g.get("files", [])]
    need(generated, f"{base}: no configMapGenerator")
    for file in generated:
        need(os.path.isfile(os.path.join(base, file.split("=")[-1])), f"{base}: generator file {file} missing")
    images = [i["name"] for i in k.get("images", [])]
    deployment = [d for f in listed for d in load_yaml_documents(os.path.join(base, f)) if d.get("kind") == "Deployment"]
    for d in deployment:
        for c in pod_spec(d)["containers"]:
            need(c["image"].split(":")[0] in images, f"{base}: image {c['image']} not covered by `images`")
    for overlay in OVERLAYS:
        odir = os.path.join(k8s, overlay)
        files = sorted(os.listdir(odir))
        need(files == ["kustomization.yaml"], f"{odir}: only kustomization.yaml expected, found {files}")
        ok = load_yaml_documents(os.path.join(odir, "kustomization.yaml"))[0]
        need([os.path.normpath(os.path.join(odir, r)) for r in ok.get("resources", [])] == [base],
             f"{odir}: its one resource must be the base")


def check_selectors(b):
    labels = b.template_labels()
    need(labels, f"{b.name}: the pod template has no labels")

    def selects(selector, what):
        need(selector, f"{b.name}: {what} has an empty selector")
        for key, value in selector.items():
            need(labels.get(key) == value, f"{b.name}: {what} selects {key}={value}, the pod has {labels.get(key)}")

    selects(b.deployment["spec"]["selector"].get("matchLabels"), "the Deployment")
    need(not b.deployment["spec"]["selector"].get("matchExpressions"), f"{b.name}: matchExpressions not expected")
    selects(b.service["spec"].get("selector"), "the Service")
    selects(b.pdb["spec"]["selector"].get("matchLabels"), "the PodDisruptionBudget")
    for c in b.pod.get("topologySpreadConstraints", []):
        selects(c.get("labelSelector", {}).get("matchLabels"), f"the spread constraint on {c.get('topologyKey')}")
    need(b.namespace["metadata"]["name"] == b.rendered.namespace,
         f"{b.name}: the Namespace is {b.namespace['metadata']['name']}, the kustomization uses {b.rendered.namespace}")


def check_service_ports(b):
    dns_ports = listen_ports(b.config, "server", 53)
    ports = b.service["spec"].get("ports", [])
    for protocol in ("UDP", "TCP"):
        matching = [p for p in ports if p.get("protocol", "TCP") == protocol and p.get("port") == 53]
        need(len(matching) == 1, f"{b.name}: the Service needs exactly one {protocol} port 53")
    names = [p.get("name") for p in ports]
    need(all(names) and len(set(names)) == len(names), f"{b.name}: Service ports need unique names")
    for p in ports:
        protocol = p.get("protocol", "TCP")
        target = b.container_port(p.get("targetPort", p["port"]), protocol)
        need(target in dns_ports,
             f"{b.name}: Service port {p['name']} reaches container port {target}, hubdns listens on {sorted(dns_ports)}")
    need(b.service["spec"].get("type", "ClusterIP") in ("ClusterIP", "LoadBalancer"), f"{b.name}: Service type")
    need(not b.service["spec"].get("publishNotReadyAddresses"),
         f"{b.name}: publishNotReadyAddresses would send queries to pods that cannot resolve")


def check_container_ports(b):
    dns = listen_ports(b.config, "server", 53)
    health = listen_ports(b.config, "health", 8053)
    declared = {(p["containerPort"], p.get("protocol", "TCP")) for p in b.container.get("ports", [])}
    expected = {(p, proto) for p in dns for proto in ("UDP", "TCP")} | {(p, "TCP") for p in health}
    need(declared == expected, f"{b.name}: container ports {sorted(declared)}, the configuration listens on {sorted(expected)}")
    for p in b.container.get("ports", []):
        need("hostPort" not in p, f"{b.name}: hostPort {p} (the Service is the way in)")
    for table in ("server", "health"):
        for address in b.config.get(table, {}).get("listen", []):
            host = split_address(address, 0)[0]
            need(host in ("0.0.0.0", "::"),
                 f"{b.name}: [{table}] listen {address}: the kubelet and the Service reach the pod's address, "
                 "so a wildcard address is needed")


def check_probes(b):
    health = listen_ports(b.config, "health", 8053)
    need(health, f"{b.name}: [health] listen is empty: nothing for the probes")
    expected = {"readinessProbe": ("/readyz", "/healthz"), "livenessProbe": ("/livez",), "startupProbe": ("/livez",)}
    for kind, paths in expected.items():
        probe = b.container.get(kind)
        if kind == "startupProbe" and probe is None:
            continue
        need(probe and "httpGet" in probe, f"{b.name}: {kind} must be an httpGet probe")
        get = probe["httpGet"]
        need(get.get("path") in paths,
             f"{b.name}: {kind} asks {get.get('path')!r}, expected one of {paths}"
             + (" (never /readyz for liveness: an upstream outage must not restart pods)" if kind != "readinessProbe" else ""))
        need(get.get("scheme", "HTTP") == "HTTP" and "host" not in get, f"{b.name}: {kind} must be plain HTTP to the pod")
        port = b.container_port(get.get("port"), "TCP")
        need(port in health, f"{b.name}: {kind} probes port {port}, [health] listens on {sorted(health)}")
        need(probe.get("timeoutSeconds", 1) < probe.get("periodSeconds", 10), f"{b.name}: {kind} timeout >= period")


def check_security_context(b):
    need(b.effective("runAsNonRoot") is True, f"{b.name}: runAsNonRoot must be true")
    uid = b.effective("runAsUser")
    need(isinstance(uid, int) and uid > 0, f"{b.name}: runAsUser must be a non-zero number, got {uid!r}")
    gid = b.effective("runAsGroup")
    need(isinstance(gid, int) and gid > 0, f"{b.name}: runAsGroup must be a non-zero number, got {gid!r}")
    sc = b.container.get("securityContext", {})
    need(sc.get("readOnlyRootFilesystem") is True, f"{b.name}: readOnlyRootFilesystem must be true")
    need(sc.get("allowPrivilegeEscalation") is False, f"{b.name}: allowPrivilegeEscalation must be false")
    need(not sc.get("privileged"), f"{b.name}: privileged")
    caps = sc.get("capabilities", {})
    need("ALL" in caps.get("drop", []), f"{b.name}: capabilities must drop ALL")
    # The port-53 design needs no capability; NET_BIND_SERVICE added here would not even
    # reach a non-root process (no ambient capabilities), so it would only mislead.
    need(not caps.get("add"), f"{b.name}: no capability may be added (got {caps.get('add')})")
    need((b.effective("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{b.name}: seccompProfile RuntimeDefault")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        need(not b.pod.get(key), f"{b.name}: {key}")
    need(b.pod.get("automountServiceAccountToken") is False, f"{b.name}: no API token needed in the pod")


def check_port53_design(b):
    """Every port below 1024 the configuration listens on is bindable by the pod's non-root
    user without a capability: the pod's ip_unprivileged_port_start must be at most the
    lowest of them, and the pod must have its own network namespace to carry it."""
    ports = listen_ports(b.config, "server", 53) | listen_ports(b.config, "health", 8053)
    privileged = sorted(p for p in ports if p < 1024)
    sysctls = {s["name"]: s["value"] for s in b.pod_security().get("sysctls", [])}
    if not privileged:
        return
    need(b.effective("runAsUser") != 0, f"{b.name}: non-root expected")
    value = sysctls.get("net.ipv4.ip_unprivileged_port_start")
    need(value is not None,
         f"{b.name}: hubdns listens on {privileged} as a non-root user without capabilities: the pod needs "
         "the sysctl net.ipv4.ip_unprivileged_port_start")
    need(isinstance(value, str), f"{b.name}: sysctl values are strings in the Kubernetes API")
    need(int(value) <= privileged[0], f"{b.name}: ip_unprivileged_port_start={value} does not cover port {privileged[0]}")
    need(not b.pod.get("hostNetwork"), f"{b.name}: a network sysctl needs the pod's own network namespace")


# The Pod Security Standards, "restricted" profile (which includes "baseline"), as far as
# this pod's fields go.
PSS_SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                    "net.ipv4.tcp_keepalive_probes"}
PSS_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                    "projected", "secret"}


def check_pod_security_restricted(b):
    labels = b.namespace["metadata"].get("labels", {})
    need(labels.get("pod-security.kubernetes.io/enforce") == "restricted",
         f"{b.name}: the namespace should enforce Pod Security 'restricted'")
    for s in b.pod_security().get("sysctls", []):
        need(s["name"] in PSS_SAFE_SYSCTLS, f"{b.name}: sysctl {s['name']} is not in the safe set")
    for v in b.pod.get("volumes", []):
        types = set(v) - {"name"}
        need(types <= PSS_VOLUME_TYPES, f"{b.name}: volume type {types} not allowed by 'restricted'")
    caps = b.container.get("securityContext", {}).get("capabilities", {})
    need(set(caps.get("add", [])) <= {"NET_BIND_SERVICE"}, f"{b.name}: 'restricted' allows adding NET_BIND_SERVICE only")
    need((b.effective("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost"),
         f"{b.name}: 'restricted' needs a seccomp profile")
    need(b.effective("runAsNonRoot") is True and b.effective("runAsUser") != 0, f"{b.name}: 'restricted' needs non-root")
    need(b.container.get("securityContext", {}).get("allowPrivilegeEscalation") is False,
         f"{b.name}: 'restricted' needs allowPrivilegeEscalation false")


def check_termination_grace(b):
    lifecycle = b.config.get("lifecycle", {})
    drain = seconds(lifecycle.get("drain_grace", "15s"))
    query_timeout = seconds(b.config.get("server", {}).get("query_timeout", "5s"))
    grace = b.pod.get("terminationGracePeriodSeconds", 30)
    # After SIGTERM: drain_grace, then the queries in flight (at most query_timeout + 1 s);
    # before it, a preStop hook.
    needed = b.prestop_sleep() + drain + query_timeout + 1
    need(drain > 0, f"{b.name}: drain_grace 0 would stop answering before the endpoints are gone")
    need(needed < grace,
         f"{b.name}: preStop {b.prestop_sleep():g} s + drain_grace {drain:g} s + query_timeout {query_timeout:g} s + 1 s "
         f"= {needed:g} s does not fit in terminationGracePeriodSeconds {grace}")


def check_config_validates(b):
    with tempfile.TemporaryDirectory(prefix="hubdns-k8s-") as tmp:
        path = os.path.join(tmp, b.config_key)
        with open(path, "w") as f:
            f.write(b.config_text)
        result = subprocess.run([binary(), "--check-config", path], capture_output=True, text=True, timeout=30)
    need(result.returncode == 0 and result.stdout.strip() == "ok",
         f"{b.name}: hubdns --check-config {b.config_key}: exit {result.returncode}: {result.stdout}{result.stderr}")


def check_config_contents(b):
    rules = b.config.get("forward", [])
    root = [r for r in rules if r.get("zone") in (".", "")]
    need(len(root) == 1 and root[0].get("critical", True) is True, f"{b.name}: a critical rule for '.' is needed")
    for upstream in root[0].get("upstreams", []):
        need(not upstream.startswith("/"),
             f"{b.name}: '.' to {upstream}: a pod's resolv.conf may name CoreDNS, which may forward back here")
    for r in rules:
        if r is not root[0]:
            need(r.get("critical", True) is False, f"{b.name}: conditional zone {r.get('zone')} must not be critical")
    need(b.config.get("lifecycle", {}).get("scheduled_events", "off") == "off",
         f"{b.name}: scheduled_events must be off in a pod (the node's metadata service; Kubernetes drains)")
    workers = b.config.get("server", {}).get("workers", 0)
    need(workers > 0, f"{b.name}: workers = 0 means one per CPU of the node, not of the pod")


def check_config_mount(b):
    volume = b.config_volume()
    mounts = [m for m in b.container.get("volumeMounts", []) if m.get("name") == volume["name"]]
    need(len(mounts) == 1, f"{b.name}: the config volume must be mounted once")
    mount = mounts[0]
    need("subPath" not in mount, f"{b.name}: a subPath mount never sees ConfigMap updates")
    need(mount.get("readOnly") is True, f"{b.name}: the config mount should be read-only")
    path = config_path_from_args(b.container.get("args", []))
    need(path, f"{b.name}: the container's args must name the configuration (--config)")
    need(path == os.path.join(mount["mountPath"], b.config_key),
         f"{b.name}: hubdns reads {path}, the ConfigMap's {b.config_key} is at {mount['mountPath']}")


def check_availability(b):
    spec = b.deployment["spec"]
    replicas = spec.get("replicas", 1)
    need(replicas >= 2, f"{b.name}: one replica is no DNS tier")
    pdb = b.pdb["spec"]
    if "maxUnavailable" in pdb:
        need(0 < int(pdb["maxUnavailable"]) < replicas, f"{b.name}: PDB maxUnavailable")
    else:
        need(0 < int(pdb.get("minAvailable", 0)) < replicas, f"{b.name}: PDB minAvailable")
    rolling = spec.get("strategy", {}).get("rollingUpdate", {})
    need(spec.get("strategy", {}).get("type", "RollingUpdate") == "RollingUpdate", f"{b.name}: rolling updates")
    need(rolling.get("maxUnavailable") == 0 and rolling.get("maxSurge", 0) not in (0, "0%"),
         f"{b.name}: a rollout should surge before taking a pod away")
    zones = [c for c in b.pod.get("topologySpreadConstraints", []) if c.get("topologyKey") == "topology.kubernetes.io/zone"]
    need(zones and zones[0].get("maxSkew", 0) >= 1, f"{b.name}: replicas must be spread across zones")
    resources = b.container.get("resources", {})
    need(resources.get("requests", {}).get("cpu") and resources.get("requests", {}).get("memory"),
         f"{b.name}: cpu and memory requests")
    need(resources.get("limits", {}).get("memory"), f"{b.name}: a memory limit")


def check_service_exposure(b):
    """The base is cluster-internal; the AKS overlay an internal load balancer whose probe
    follows the pods' readiness, with the drain timing that needs."""
    spec, annotations = b.service["spec"], b.service["metadata"].get("annotations", {}) or {}
    if b.name == BASE:
        need(spec.get("type", "ClusterIP") == "ClusterIP", f"{b.name}: the base Service is a ClusterIP")
        need(b.prestop_sleep() == 0, f"{b.name}: the base needs no preStop hook (hubdns drains on SIGTERM)")
        return
    need(spec.get("type") == "LoadBalancer", f"{b.name}: a LoadBalancer Service expected")
    need(annotations.get("service.beta.kubernetes.io/azure-load-balancer-internal") == "true",
         f"{b.name}: the load balancer must be internal")
    need(spec.get("externalTrafficPolicy") == "Local",
         f"{b.name}: externalTrafficPolicy Local, so that the probe follows the pods' readiness")
    interval = int(annotations.get("service.beta.kubernetes.io/azure-load-balancer-health-probe-interval", "5"))
    probes = int(annotations.get("service.beta.kubernetes.io/azure-load-balancer-health-probe-num-of-probe", "2"))
    need(b.prestop_sleep() >= interval * (probes + 1),
         f"{b.name}: preStop sleep {b.prestop_sleep():g} s is shorter than the load balancer needs to notice "
         f"({interval} s x ({probes} + 1))")


MANIFEST_CHECKS = [check_selectors, check_service_ports, check_container_ports, check_probes, check_security_context,
                   check_port53_design, check_pod_security_restricted, check_termination_grace, check_config_validates,
                   check_config_contents, check_config_mount, check_availability, check_service_exposure]


class ManifestTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bundles = bundles()

    def run_check(self, check):
        for b in self.bundles:
            with self.subTest(kustomization=b.name):
                check(b)

    def test_every_yaml_document_parses_and_is_named(self):
        check_yaml_documents(SOURCE_DIR)

    def test_kustomizations_list_exactly_the_files(self):
        check_kustomization_files(SOURCE_DIR)

    def test_selectors_match_the_pod(self):
        self.run_check(check_selectors)

    def test_service_has_udp_and_tcp_53_on_the_containers_ports(self):
        self.run_check(check_service_ports)

    def test_container_ports_are_the_configurations(self):
        self.run_check(check_container_ports)

    def test_probes_readiness_readyz_liveness_livez_on_the_health_port(self):
        self.run_check(check_probes)

    def test_security_context(self):
        self.run_check(check_security_context)

    def test_port_53_without_root_or_capability(self):
        self.run_check(check_port53_design)

    def test_pod_security_restricted(self):
        self.run_check(check_pod_security_restricted)

    def test_drain_fits_in_termination_grace(self):
        self.run_check(check_termination_grace)

    def test_configmap_passes_check_config(self):
        self.run_check(check_config_validates)

    def test_configuration_for_kubernetes(self):
        self.run_check(check_config_contents)

    def test_configuration_mounted_where_hubdns_reads_it(self):
        self.run_check(check_config_mount)

    def test_availability(self):
        self.run_check(check_availability)

    def test_service_exposure(self):
        self.run_check(check_service_exposure)


# --------------------------------------------------------------------------------------
# The Dockerfile and .dockerignore


class Dockerfile:
    def __init__(self, path):
        need(os.path.isfile(path), f"{path} missing")
        self.path = path
        self.instructions = []  # (line, INSTRUCTION, arguments)
        buffer, start = "", None
        with open(path) as f:
            lines = f.read().splitlines()
        for number, line in enumerate(lines, 1):
            stripped = line.strip()
            if stripped.startswith("#") or (not stripped and not buffer):
                continue  # comments, also inside a continued instruction, are dropped
            start = start or number
            if stripped.endswith("\\"):
                buffer += stripped[:-1] + " "
                continue
            buffer += stripped
            word, _, rest = buffer.strip().partition(" ")
            self.instructions.append((start, word.upper(), rest.strip()))
            buffer, start = "", None
        need(not buffer, f"{path}: the last instruction is continued into nothing")
        self.stages = []  # {"image", "name", "instructions"}
        for line, word, rest in self.instructions:
            if word == "FROM":
                tokens = [t for t in rest.split() if not t.startswith("--")]
                stage = {"image": tokens[0], "name": None, "instructions": []}
                if len(tokens) == 3 and tokens[1].upper() == "AS":
                    stage["name"] = tokens[2]
                self.stages.append(stage)
            else:
                need(self.stages, f"{path}:{line}: {word} before FROM")
                self.stages[-1]["instructions"].append((line, word, rest))

    def in_stage(self, stage, word):
        return [rest for _, w, rest in stage["instructions"] if w == word]

    @staticmethod
    def exec_form(rest, what):
        try:
            value = json.loads(rest)
        except json.JSONDecodeError:
            raise AssertionError(f"{what} must use the exec (JSON) form, got {rest!r}")
        need(isinstance(value, list) and all(isinstance(v, str) for v in value), f"{what}: a JSON list of strings")
        return value

    def apt_packages(self, stage):
        packages = []
        for run in self.in_stage(stage, "RUN"):
            for command in re.split(r"&&|;", run):
                words = command.split()
                if "apt-get" in words and "install" in words:
                    packages += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
        return packages


def dpkg_owner(path):
    candidates = [path, os.path.realpath(path)]
    for p in list(candidates):
        if p.startswith("/lib"):
            candidates.append("/usr" + p)
        if p.startswith("/usr/lib"):
            candidates.append(p[len("/usr"):])
    for p in candidates:
        result = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if result.returncode == 0:
            return result.stdout.split(":")[0].strip()
    raise AssertionError(f"no Debian package owns {path}")


@functools.lru_cache(maxsize=None)
def libraries_packages(path):
    """The Debian packages whose shared libraries the binary loads (ldd)."""
    result = subprocess.run([need_tool("ldd"), path], capture_output=True, text=True, timeout=30)
    need(result.returncode == 0, f"ldd {path}: {result.stderr}")
    packages = set()
    for line in result.stdout.splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        # The test suite also runs on a sanitizer build, whose binary loads the sanitizer
        # runtimes; the image's release build never does.
        if m and not re.search(r"/lib(a|ub|l|t)san\.so", m.group(1)):
            packages.add(dpkg_owner(m.group(1)))
    need(packages, f"ldd {path} found no library")
    return packages


@functools.lru_cache(maxsize=None)
def depends_closure(packages):
    """The packages and everything they depend on, as dpkg knows it on this (Debian 12)
    machine: what apt would install with them."""
    need_tool("dpkg-query")
    seen, queue = set(), list(packages)
    while queue:
        package = queue.pop()
        if package in seen:
            continue
        result = subprocess.run(["dpkg-query", "-W", "-f=${Status}|${Depends}, ${Pre-Depends}", package],
                                capture_output=True, text=True)
        status, _, depends = result.stdout.partition("|")
        if result.returncode != 0 or not status.endswith(" installed"):
            continue  # not installed here (a virtual package, an unused alternative)
        seen.add(package)
        for group in depends.split(","):
            for alternative in group.split("|"):
                name = alternative.strip().split(" ")[0].split(":")[0]
                if name:
                    queue.append(name)
    return seen


def deps_sh_build_packages():
    with open(os.path.join(SOURCE_DIR, "scripts", "deps.sh")) as f:
        m = re.search(r"build_pkgs=\(([^)]*)\)", f.read())
    need(m, "scripts/deps.sh: build_pkgs=(...) not found")
    return m.group(1).split()


def check_dockerfile(b):
    d = Dockerfile(os.path.join(b.k8s, "Dockerfile"))
    need(len(d.stages) >= 2, f"{d.path}: a multi-stage build expected")
    build, final = d.stages[0], d.stages[-1]
    need(build["image"] == "debian:12" and build["name"], f"{d.path}: the build stage is a named debian:12")
    need(final["image"] == "debian:12-slim", f"{d.path}: the runtime stage is debian:12-slim, got {final['image']}")
    names = {s["name"] for s in d.stages if s["name"]}
    # Build stage: the project's build dependencies and build command.
    missing = set(deps_sh_build_packages()) - set(d.apt_packages(build))
    need(not missing, f"{d.path}: the build stage lacks {sorted(missing)} (scripts/deps.sh)")
    runs = " ".join(d.in_stage(build, "RUN"))
    for flag in ("cmake -S . -B build", "-DHUBDNS_TESTS=OFF", "-DCMAKE_BUILD_TYPE=Release"):
        need(flag in runs, f"{d.path}: the build stage should run {flag}")
    # Runtime stage: libraries only, and all of them.
    runtime = d.apt_packages(final)
    for package in runtime:
        need(not package.endswith("-dev") and package not in ("g++", "gcc", "cmake", "make"),
             f"{d.path}: {package} has no place in the runtime image")
    # debian:12-slim has apt, hence everything apt depends on (libc6, libstdc++6, ...).
    provided = depends_closure(tuple(sorted(runtime))) | depends_closure(("apt",))
    missing = libraries_packages(binary()) - provided
    need(not missing, f"{d.path}: the runtime stage does not install {sorted(missing)}, which hubdns loads")
    # The binary where ENTRYPOINT runs it, and where the Deployment expects it.
    entrypoint = d.exec_form(d.in_stage(final, "ENTRYPOINT")[-1] if d.in_stage(final, "ENTRYPOINT") else "", "ENTRYPOINT")
    need(len(entrypoint) == 1, f"{d.path}: ENTRYPOINT should be the binary alone")
    copies = [c.split() for c in d.in_stage(final, "COPY")]
    from_build = [c for c in copies if c[0].startswith("--from=")]
    need(from_build, f"{d.path}: the runtime stage copies nothing from the build stage")
    for c in from_build:
        need(c[0].split("=", 1)[1] in names, f"{d.path}: COPY {c[0]} names no stage")
    need(any(c[-1] == entrypoint[0] for c in from_build), f"{d.path}: nothing is copied to {entrypoint[0]}")
    command = b.container.get("command")
    need(command in (None, entrypoint), f"{b.name}: the container's command {command} is not the image's {entrypoint}")
    # The configuration: CMD reads the file the Deployment mounts; the image's own default
    # is the ConfigMap's file.
    cmd = d.exec_form(d.in_stage(final, "CMD")[-1] if d.in_stage(final, "CMD") else "", "CMD")
    path = config_path_from_args(cmd)
    need(path == config_path_from_args(b.container.get("args", [])),
         f"{d.path}: CMD reads {path}, the Deployment runs --config {config_path_from_args(b.container.get('args', []))}")
    default = [c for c in copies if not c[0].startswith("--") and c[-1] == path]
    need(default, f"{d.path}: no default configuration copied to {path}")
    source = os.path.join(b.root, default[0][0])
    need(os.path.isfile(source), f"{d.path}: COPY source {default[0][0]} does not exist in the build context")
    with open(source) as f:
        need(f.read() == b.config_text, f"{d.path}: the image's default configuration is not the ConfigMap's")
    # The user: numeric, non-root, the Deployment's.
    users = d.in_stage(final, "USER")
    need(users, f"{d.path}: no USER in the runtime stage (it would run as root)")
    user, _, group = users[-1].partition(":")
    need(user.isdigit() and int(user) != 0, f"{d.path}: USER must be a non-zero number, got {users[-1]!r}")
    need(int(user) == b.effective("runAsUser"), f"{d.path}: USER {user}, the Deployment's runAsUser {b.effective('runAsUser')}")
    need(group.isdigit() and int(group) == b.effective("runAsGroup"),
         f"{d.path}: USER's group {group!r}, the Deployment's runAsGroup {b.effective('runAsGroup')}")
    # The ports.
    exposed = set()
    for rest in d.in_stage(final, "EXPOSE"):
        for item in rest.split():
            port, _, protocol = item.partition("/")
            exposed.add((int(port), (protocol or "tcp").upper()))
    declared = {(p["containerPort"], p.get("protocol", "TCP")) for p in b.container.get("ports", [])}
    need(exposed == declared, f"{d.path}: EXPOSE {sorted(exposed)}, the container's ports {sorted(declared)}")


def dockerignore_regex(pattern):
    """Docker's .dockerignore pattern (relative to the context root, filepath.Match
    syntax, ** for any number of directories) as a regular expression."""
    pattern = pattern.strip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignored(path, patterns):
    """Whether Docker leaves `path` (relative) out of the context: the last pattern that
    matches it or one of its parent directories decides ("!" re-includes)."""
    prefixes = ["/".join(path.split("/")[:n]) for n in range(1, path.count("/") + 2)]
    excluded = False
    for negate, regex in patterns:
        if any(regex.match(p) for p in prefixes):
            excluded = not negate
    return excluded


def check_dockerignore(root):
    path = os.path.join(root, ".dockerignore")
    need(os.path.isfile(path), f"{path} missing")
    with open(path) as f:
        lines = [l.strip() for l in f if l.strip() and not l.strip().startswith("#")]
    patterns = [(l.startswith("!"), dockerignore_regex(l.lstrip("!"))) for l in lines]
    for unwanted in (".git/HEAD", "build/CMakeCache.txt", "build-asan/daemon/hubdns", "build-bench/x"):
        need(dockerignored(unwanted, patterns), f"{path}: {unwanted} would be sent to the Docker daemon")
    result = subprocess.run([need_tool("git"), "-C", SOURCE_DIR, "ls-files"], capture_output=True, text=True, timeout=60)
    need(result.returncode == 0, f"git ls-files: {result.stderr}")
    tracked = result.stdout.split()
    need(len(tracked) > 50, "git ls-files listed almost nothing")
    left_out = [f for f in tracked if dockerignored(f, patterns)]
    need(not left_out, f"{path}: tracked files left out of the build context: {left_out[:10]}")


class DockerfileTest(unittest.TestCase):
    def test_dockerfile_matches_the_deployment(self):
        for b in bundles():
            with self.subTest(kustomization=b.name):
                check_dockerfile(b)

    def test_dockerignore_keeps_build_dirs_and_git_out_and_sources_in(self):
        check_dockerignore(SOURCE_DIR)


# --------------------------------------------------------------------------------------
# Running the real binary


def rewrite_config(text, server_listen, health_listen, upstream):
    """The configuration with its [server] and [health] listen addresses and every rule's
    upstreams replaced (one-line arrays, as in the manifests); then checked with tomllib
    to differ in those keys and nothing else."""
    out, table = [], None
    for line in text.splitlines():
        header = re.match(r"\s*\[\[?\s*([A-Za-z_.]+)\s*\]\]?\s*(#.*)?$", line)
        if header:
            table = header.group(1)
        elif table == "server" and re.match(r"\s*listen\s*=", line):
            line = f"listen = {json.dumps(server_listen)}"
        elif table == "health" and re.match(r"\s*listen\s*=", line):
            line = f"listen = {json.dumps(health_listen)}"
        elif table == "forward" and re.match(r"\s*upstreams\s*=", line):
            line = f"upstreams = {json.dumps([upstream])}"
        out.append(line)
    result = "\n".join(out) + "\n"
    before, after = tomllib.loads(text), tomllib.loads(result)
    need(after["server"]["listen"] == server_listen and after["health"]["listen"] == health_listen
         and all(r["upstreams"] == [upstream] for r in after["forward"]), "the configuration rewrite missed a value")
    for config in (before, after):
        config["server"].pop("listen")
        config["health"].pop("listen")
        for r in config["forward"]:
            r.pop("upstreams")
    need(before == after, "the configuration rewrite changed more than addresses")
    return result


def curl_status(url, runner=()):
    result = subprocess.run([*runner, need_tool("curl"), "-s", "-o", "/dev/null", "-w", "%{http_code}",
                             "--max-time", "3", url], capture_output=True, text=True, timeout=30)
    return int(result.stdout or 0)


def curl_body(url, runner=()):
    result = subprocess.run([*runner, need_tool("curl"), "-s", "--max-time", "3", url],
                            capture_output=True, text=True, timeout=30)
    return result.stdout


def resolve(port, name, tcp=False, server="127.0.0.1", runner=()):
    """(status, answers) of one query with dig (UDP) or kdig (TCP), the real clients."""
    if tcp:
        cmd = [need_tool("kdig"), f"@{server}", "-p", str(port), name, "A", "+tcp", "+retry=0", "+time=5"]
    else:
        cmd = [need_tool("dig"), f"@{server}", "-p", str(port), name, "A", "+tries=1", "+time=5"]
    out = subprocess.run([*runner, *cmd], capture_output=True, text=True, timeout=30).stdout
    answers = [l.split()[-1] for l in out.splitlines()
               if l and not l.startswith(";") and len(l.split()) >= 5 and l.split()[3] == "A"]
    return response_status(out), answers


def probe_paths(b):
    return {kind: (b.container[kind]["httpGet"]["path"], b.container_port(b.container[kind]["httpGet"]["port"], "TCP"))
            for kind in ("readinessProbe", "livenessProbe", "startupProbe") if kind in b.container}


def service_dns_ports(b):
    """(UDP container port, TCP container port) the Service sends port 53 to."""
    ports = {p.get("protocol", "TCP"): b.container_port(p.get("targetPort", p["port"]), p.get("protocol", "TCP"))
             for p in b.service["spec"]["ports"] if p["port"] == 53}
    return ports["UDP"], ports["TCP"]


ANSWER = "10.53.0.1"  # what the fake upstream answers for every A question


def run_on_loopback(b, drain):
    """The ConfigMap's configuration on free loopback ports, upstreams to a fake DNS server;
    the manifest's probes and the Service's ports checked; with `drain`, SIGTERM too."""
    upstream = FakeUpstream(address=ANSWER)
    dns_port, health_port = free_port(), free_port()
    container_dns = set(service_dns_ports(b))
    container_health = {port for _, port in probe_paths(b).values()}
    need(len(container_dns) == 1 and len(container_health) == 1, "one DNS and one health port expected")
    tmp = tempfile.mkdtemp(prefix="hubdns-k8s-")
    log_path = os.path.join(tmp, "stderr.log")
    process = None
    try:
        config = rewrite_config(b.config_text, [f"127.0.0.1:{dns_port}"], [f"127.0.0.1:{health_port}"], upstream.endpoint)
        config_path = os.path.join(tmp, b.config_key)
        with open(config_path, "w") as f:
            f.write(config)
        args = [a if a != config_path_from_args(b.container["args"]) else config_path for a in b.container["args"]]
        with open(log_path, "w") as log:
            process = subprocess.Popen([binary(), *args], stdout=subprocess.DEVNULL, stderr=log)

        def log_text():
            with open(log_path) as f:
                return f.read()

        url = f"http://127.0.0.1:{health_port}"
        readiness = b.container["readinessProbe"]["httpGet"]["path"]
        need(wait_until(lambda: process.poll() is not None or curl_status(url + readiness) == 200, 15),
             f"not ready within 15 s: {log_text()}")
        need(process.poll() is None, f"hubdns exited with {process.returncode}: {log_text()}")
        # The kubelet's probes, as the manifest writes them (the ports map to the config's).
        for kind, (path, _) in probe_paths(b).items():
            status = curl_status(url + path)
            need(status == 200, f"{kind} GET {path} answered {status}: {log_text()}")
        status = json.loads(curl_body(url + "/status"))
        need(status.get("ready") is True and not status.get("draining"), f"/status: {status}")
        need("hubdns_" in curl_body(url + "/metrics"), "/metrics has no hubdns_ samples")
        # DNS over UDP (dig) and TCP (kdig), for the default rule and a conditional zone.
        for name, tcp in (("www.example.com", False), ("www.example.com", True), ("host.corp.contoso.com", False)):
            result = resolve(dns_port, name, tcp=tcp)
            need(result == ("NOERROR", [ANSWER]), f"{name} over {'TCP' if tcp else 'UDP'}: {result}")
        if not drain:
            return
        # SIGTERM as the kubelet sends it: 503 at once, DNS answered during drain_grace,
        # exit 0 before terminationGracePeriodSeconds (minus any preStop sleep) runs out.
        drain_grace = seconds(b.config["lifecycle"]["drain_grace"])
        budget = b.pod.get("terminationGracePeriodSeconds", 30) - b.prestop_sleep()
        signalled = time.time()
        process.send_signal(signal.SIGTERM)
        need(wait_until(lambda: curl_status(url + "/readyz") == 503, 1.0), "readiness did not turn 503 within 1 s of SIGTERM")
        need(curl_status(url + "/livez") == 200, "liveness must stay 200 while draining")
        time.sleep(min(1.0, drain_grace / 2))
        result = resolve(dns_port, "during.drain.example")
        need(result == ("NOERROR", [ANSWER]), f"DNS during drain_grace: {result}")
        try:
            code = process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"hubdns still running {budget:g} s after SIGTERM: the kubelet would SIGKILL it")
        elapsed = time.time() - signalled
        need(code == 0, f"exit {code} after SIGTERM: {log_text()}")
        need(elapsed >= drain_grace - 0.1, f"exited after {elapsed:.1f} s, before drain_grace {drain_grace:g} s")
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        upstream.close()
        shutil.rmtree(tmp, ignore_errors=True)


class LoopbackRuntimeTest(unittest.TestCase):
    def test_probes_dns_and_drain_with_the_configmaps_configuration(self):
        run_on_loopback(Bundle(SOURCE_DIR, BASE), drain=True)


# A pod, emulated: its own network namespace held by a sleeping process (the "pause"
# container), the manifest's sysctls applied to it, a pod address, and hubdns started in
# it through setpriv with the pod's user and no capability, under a read-only root.

POD_ADDRESS = "10.244.1.10"      # on the loopback device of the test's own network namespace
FAKE_UPSTREAM_PORT = 5301
FAKE_UPSTREAM = f"""
import sys, time
sys.path.insert(0, {os.path.join(SOURCE_DIR, 'tests', 'integration')!r})
from harness import FakeUpstream
FakeUpstream(address={ANSWER!r}, port={FAKE_UPSTREAM_PORT})
print("listening", flush=True)
time.sleep(120)
"""


class PodSandbox:
    def __init__(self, b, apply_sysctls=True):
        self.b = b
        for tool in ("unshare", "nsenter", "setpriv", "ip", "mount"):
            need_tool(tool)
        need(os.geteuid() == 0, "the pod emulation needs root (network namespace, sysctl, setpriv)")
        self.tmp = tempfile.mkdtemp(prefix="hubdns-pod-")
        os.chmod(self.tmp, 0o755)
        self.processes = []
        try:
            self.setup(apply_sysctls)
        except BaseException:
            self.close()
            raise

    def setup(self, apply_sysctls):
        b = self.b
        self.holder = self.spawn(["unshare", "--net", "sleep", "300"])
        own = os.readlink("/proc/self/ns/net")
        need(wait_until(lambda: os.readlink(f"/proc/{self.holder.pid}/ns/net") != own, 5), "no network namespace")
        self.ns = f"/proc/{self.holder.pid}/ns/net"
        self.run = ["nsenter", f"--net={self.ns}"]
        self.sh("ip link set lo up")
        # The pod's address, where the kubelet's probes and the Service's traffic arrive.
        self.sh(f"ip addr add {POD_ADDRESS}/32 dev lo")
        if apply_sysctls:  # as the runtime does for the pod sandbox: /proc/sys/net is per namespace
            for s in b.pod_security().get("sysctls", []):
                path = "/proc/sys/" + s["name"].replace(".", "/")
                self.sh(f"echo {int(s['value'])} > {path} && test \"$(cat {path})\" = {int(s['value'])}")
        fake = self.spawn([*self.run, sys.executable, "-c", FAKE_UPSTREAM], stdout=subprocess.PIPE)
        need(fake.stdout.readline().strip() == b"listening", "the fake upstream did not start")

    def spawn(self, cmd, **kwargs):
        # Nothing inherits the test's own output: a leftover child would hold ctest's pipe.
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        process = subprocess.Popen(cmd, **kwargs)
        self.processes.append(process)
        return process

    def sh(self, script):
        result = subprocess.run([*self.run, "sh", "-c", script], capture_output=True, text=True, timeout=30)
        need(result.returncode == 0, f"in the pod's namespace: {script}: {result.stderr}")

    def start_hubdns(self):
        """hubdns as the container runs: the Deployment's args (with the configuration's
        path in a temporary directory), its runAsUser/runAsGroup, no capability in any set,
        no_new_privs (allowPrivilegeEscalation false), every mount read-only."""
        b = self.b
        exe = os.path.join(self.tmp, "hubdns")  # readable wherever the build tree is
        shutil.copy(binary(), exe)
        os.chmod(exe, 0o755)
        config = rewrite_config(b.config_text, b.config["server"]["listen"], b.config["health"]["listen"],
                                f"127.0.0.1:{FAKE_UPSTREAM_PORT}")  # listen addresses unchanged
        config_path = os.path.join(self.tmp, b.config_key)
        with open(config_path, "w") as f:
            f.write(config)
        os.chmod(config_path, 0o644)
        args = [a if a != config_path_from_args(b.container["args"]) else config_path for a in b.container["args"]]
        uid, gid = b.effective("runAsUser"), b.effective("runAsGroup")
        read_only = ("for mp in $(cut -d' ' -f5 /proc/self/mountinfo | sort -u); do case $mp in "
                     "/proc|/proc/*|/sys|/sys/*|/dev|/dev/*) ;; *) mount -o remount,bind,ro \"$mp\" 2>/dev/null ;; esac; "
                     "done; mount -o remount,bind,ro / || exit 97")
        launch = (f"{read_only}; exec setpriv --reuid={uid} --regid={gid} --clear-groups --no-new-privs "
                  f"--bounding-set=-all --inh-caps=-all --ambient-caps=-all -- \"$0\" \"$@\"")
        self.log_path = os.path.join(self.tmp, "stderr.log")
        with open(self.log_path, "w") as log:
            self.hubdns = self.spawn([*self.run, "unshare", "--mount", "--propagation", "private", "--",
                                      "sh", "-c", launch, exe, *args], stderr=log)
        return self.hubdns

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def close(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdout:
                process.stdout.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def run_as_pod(b):
    pod = PodSandbox(b)
    try:
        hubdns = pod.start_hubdns()
        health = {port for _, port in probe_paths(b).values()}.pop()
        url = f"http://{POD_ADDRESS}:{health}"
        need(wait_until(lambda: hubdns.poll() is not None or curl_status(url + "/readyz", pod.run) == 200, 15),
             f"not ready within 15 s: {pod.log()}")
        need(hubdns.poll() is None, f"hubdns exited with {hubdns.returncode}: {pod.log()}")
        # The process is what the manifest promises: the pod's user, no capability in any
        # set, no_new_privs, a read-only root.
        with open(f"/proc/{hubdns.pid}/status") as f:
            status = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        need(status["Uid"].split() == [str(b.effective("runAsUser"))] * 4, f"Uid {status['Uid']}")
        need(status["Gid"].split() == [str(b.effective("runAsGroup"))] * 4, f"Gid {status['Gid']}")
        for capability_set in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            need(int(status[capability_set], 16) == 0, f"{capability_set} {status[capability_set].strip()}: not empty")
        need(status["NoNewPrivs"].strip() == "1", "no_new_privs not set")
        with open(f"/proc/{hubdns.pid}/mountinfo") as f:
            root = [l.split() for l in f if l.split()[4] == "/"]
        need(root and "ro" in root[-1][5].split(","), f"the root is not read-only: {root}")
        # The kubelet's probes, at the pod's address and the manifest's paths and ports.
        for kind, (path, port) in probe_paths(b).items():
            code = curl_status(f"http://{POD_ADDRESS}:{port}{path}", pod.run)
            need(code == 200, f"{kind} GET {path} on {POD_ADDRESS}:{port} answered {code}: {pod.log()}")
        # DNS at the pod's address on the ports the Service targets (53).
        udp, tcp = service_dns_ports(b)
        for port, over_tcp in ((udp, False), (tcp, True)):
            result = resolve(port, "www.example.com", tcp=over_tcp, server=POD_ADDRESS, runner=pod.run)
            need(result == ("NOERROR", [ANSWER]), f"DNS over {'TCP' if over_tcp else 'UDP'} port {port}: {result}")
        hubdns.send_signal(signal.SIGTERM)
        need(wait_until(lambda: curl_status(url + "/readyz", pod.run) == 503, 1.0), "no 503 after SIGTERM")
        hubdns.send_signal(signal.SIGTERM)  # a second signal stops at once
        need(hubdns.wait(timeout=10) == 0, f"exit {hubdns.returncode}: {pod.log()}")
    finally:
        pod.close()


class PodEmulationTest(unittest.TestCase):
    def test_runs_as_the_pod_runs_it(self):
        run_as_pod(Bundle(SOURCE_DIR, BASE))

    def test_without_the_sysctl_port_53_is_refused(self):
        """The control: the same start without the pod's sysctl fails to bind, so it is the
        sysctl, not some capability left over, that lets hubdns listen on 53."""
        b = Bundle(SOURCE_DIR, BASE)
        pod = PodSandbox(b, apply_sysctls=False)
        try:
            hubdns = pod.start_hubdns()
            code = hubdns.wait(timeout=15)
            self.assertEqual(code, 2, pod.log())
            self.assertIn("Permission denied", pod.log())
        finally:
            pod.close()


# --------------------------------------------------------------------------------------
# Mutations: each check must fail on a copy broken in the way it guards against.


def copy_tree(tmp):
    """The parts of the source tree the checks read, into tmp."""
    shutil.copytree(os.path.join(SOURCE_DIR, K8S_SUBDIR), os.path.join(tmp, K8S_SUBDIR))
    shutil.copy(os.path.join(SOURCE_DIR, ".dockerignore"), os.path.join(tmp, ".dockerignore"))
    return tmp


def replace_text(relative, old, new, count=1):
    def mutate(root):
        path = os.path.join(root, K8S_SUBDIR, relative) if not relative.startswith("/") else root + relative
        with open(path) as f:
            text = f.read()
        need(text.count(old) >= count, f"mutation: {old!r} not in {relative}")
        with open(path, "w") as f:
            f.write(text.replace(old, new, count))
    return mutate


def write_file(relative, text):
    def mutate(root):
        with open(os.path.join(root, K8S_SUBDIR, relative), "w") as f:
            f.write(text)
    return mutate


def both(first, second):
    return lambda root: (first(root), second(root))


def edit_yaml(relative, kind, edit):
    """Loads the file's documents, lets edit() change the one of `kind`, writes it back."""
    def mutate(root):
        path = os.path.join(root, K8S_SUBDIR, relative)
        docs = load_yaml_documents(path)
        edit(next(d for d in docs if d.get("kind") == kind))
        with open(path, "w") as f:
            yaml.safe_dump_all(docs, f, sort_keys=False)
    return mutate


def container(d):
    return d["spec"]["template"]["spec"]["containers"][0]


def base_check(check):
    return lambda root: check(Bundle(root, BASE))


def overlay_check(check):
    return lambda root: check(Bundle(root, OVERLAYS[0]))


DEPLOYMENT = "base/deployment.yaml"
CONFIG = "base/hubdns.toml"
MUTATIONS = [
    # (what, mutation, the check that must now fail)
    ("liveness on /readyz", replace_text(DEPLOYMENT, "path: /livez", "path: /readyz"), base_check(check_probes)),
    ("readiness on /livez", replace_text(DEPLOYMENT, "path: /readyz", "path: /livez"), base_check(check_probes)),
    ("startup probe on /readyz", edit_yaml(DEPLOYMENT, "Deployment", lambda d: container(d).update(
        startupProbe={"httpGet": {"path": "/readyz", "port": "health"}})), base_check(check_probes)),
    ("probe port not the config's", replace_text(DEPLOYMENT, "containerPort: 8053", "containerPort: 8054"),
     base_check(check_probes)),
    ("health port moved in the config", replace_text(CONFIG, 'listen = ["0.0.0.0:8053"]', 'listen = ["0.0.0.0:8054"]'),
     base_check(check_probes)),
    ("health on loopback only", replace_text(CONFIG, 'listen = ["0.0.0.0:8053"]', 'listen = ["127.0.0.1:8053"]'),
     base_check(check_container_ports)),
    ("no UDP port in the Service", edit_yaml("base/service.yaml", "Service", lambda d: d["spec"].update(
        ports=[p for p in d["spec"]["ports"] if p["protocol"] != "UDP"])), base_check(check_service_ports)),
    ("no TCP port in the Service", edit_yaml("base/service.yaml", "Service", lambda d: d["spec"].update(
        ports=[p for p in d["spec"]["ports"] if p["protocol"] != "TCP"])), base_check(check_service_ports)),
    ("Service targetPort names nothing", replace_text("base/service.yaml", "targetPort: dns-udp", "targetPort: dns"),
     base_check(check_service_ports)),
    ("Service targetPort a wrong number", replace_text("base/service.yaml", "targetPort: dns-tcp", "targetPort: 5353"),
     base_check(check_service_ports)),
    ("DNS listen port not the container's", replace_text(CONFIG, 'listen = ["0.0.0.0:53"]', 'listen = ["0.0.0.0:5353"]'),
     base_check(check_container_ports)),
    ("Service selects another label", edit_yaml("base/service.yaml", "Service", lambda d: d["spec"].update(
        selector={"app.kubernetes.io/name": "hubdns-x"})), base_check(check_selectors)),
    ("PDB selects another label", edit_yaml("base/poddisruptionbudget.yaml", "PodDisruptionBudget", lambda d: d["spec"].update(
        selector={"matchLabels": {"app": "hubdns"}})), base_check(check_selectors)),
    ("pod template lost its label", edit_yaml(DEPLOYMENT, "Deployment", lambda d: d["spec"]["template"]["metadata"].update(
        labels={"app.kubernetes.io/component": "dns-forwarder"})), base_check(check_selectors)),
    ("runAsNonRoot false", replace_text(DEPLOYMENT, "runAsNonRoot: true", "runAsNonRoot: false", 2),
     base_check(check_security_context)),
    ("runAsUser 0", replace_text(DEPLOYMENT, "runAsUser: 10053", "runAsUser: 0"), base_check(check_security_context)),
    ("writable root", replace_text(DEPLOYMENT, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"),
     base_check(check_security_context)),
    ("privilege escalation", replace_text(DEPLOYMENT, "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"),
     base_check(check_security_context)),
    ("capabilities not all dropped", replace_text(DEPLOYMENT, 'drop: ["ALL"]', 'drop: ["NET_RAW"]'),
     base_check(check_security_context)),
    ("NET_BIND_SERVICE added", replace_text(DEPLOYMENT, 'drop: ["ALL"]', 'drop: ["ALL"]\n              add: ["NET_BIND_SERVICE"]'),
     base_check(check_security_context)),
    ("no seccomp profile", edit_yaml(DEPLOYMENT, "Deployment", lambda d: (
        d["spec"]["template"]["spec"]["securityContext"].pop("seccompProfile"),
        container(d)["securityContext"].pop("seccompProfile"))), base_check(check_security_context)),
    ("hostNetwork", edit_yaml(DEPLOYMENT, "Deployment", lambda d: d["spec"]["template"]["spec"].update(hostNetwork=True)),
     base_check(check_port53_design)),
    ("no sysctl", edit_yaml(DEPLOYMENT, "Deployment", lambda d: d["spec"]["template"]["spec"]["securityContext"].pop(
        "sysctls")), base_check(check_port53_design)),
    ("sysctl above 53", replace_text(DEPLOYMENT, 'value: "53"', 'value: "1024"'), base_check(check_port53_design)),
    ("unsafe sysctl", replace_text(DEPLOYMENT, "name: net.ipv4.ip_unprivileged_port_start", "name: net.core.somaxconn"),
     base_check(check_pod_security_restricted)),
    ("namespace not restricted", replace_text("base/namespace.yaml", "enforce: restricted", "enforce: baseline"),
     base_check(check_pod_security_restricted)),
    ("drain_grace too long", replace_text(CONFIG, 'drain_grace = "15s"', 'drain_grace = "25s"'),
     base_check(check_termination_grace)),
    ("terminationGracePeriodSeconds too short", replace_text(DEPLOYMENT, "terminationGracePeriodSeconds: 30",
                                                             "terminationGracePeriodSeconds: 20"), base_check(check_termination_grace)),
    ("drain_grace 0", replace_text(CONFIG, 'drain_grace = "15s"', 'drain_grace = "0s"'), base_check(check_termination_grace)),
    ("config with an unknown key", replace_text(CONFIG, "workers = 2", "workers = 2\nworkerz = 2"),
     base_check(check_config_validates)),
    ("config with a bad value", replace_text(CONFIG, 'query_timeout = "5s"', 'query_timeout = "5"'),
     base_check(check_config_validates)),
    ("conditional zone critical", replace_text(CONFIG, "# An on-premises outage is shared by every pod: not critical.\ncritical = false",
                                               "critical = true"), base_check(check_config_contents)),
    ("root zone not critical", replace_text(CONFIG, "critical = true", "critical = false"), base_check(check_config_contents)),
    ("scheduled events on", replace_text(CONFIG, 'scheduled_events = "off"', 'scheduled_events = "on"'),
     base_check(check_config_contents)),
    ("workers 0", replace_text(CONFIG, "workers = 2", "workers = 0"), base_check(check_config_contents)),
    ("config path not the mount's", replace_text(DEPLOYMENT, '"/etc/hubdns/hubdns.toml"', '"/etc/hubdns.toml"'),
     base_check(check_config_mount)),
    ("subPath mount", replace_text(DEPLOYMENT, "mountPath: /etc/hubdns", "mountPath: /etc/hubdns/hubdns.toml\n              subPath: hubdns.toml"),
     base_check(check_config_mount)),
    ("ConfigMap name mismatch", replace_text("base/kustomization.yaml", "name: hubdns-config", "name: hubdns-conf"),
     base_check(check_config_mount)),
    ("one replica", replace_text(DEPLOYMENT, "replicas: 3", "replicas: 1"), base_check(check_availability)),
    ("no zone spreading", replace_text(DEPLOYMENT, "topologyKey: topology.kubernetes.io/zone", "topologyKey: kubernetes.io/os"),
     base_check(check_availability)),
    ("no memory limit", edit_yaml(DEPLOYMENT, "Deployment", lambda d: container(d)["resources"].pop("limits")),
     base_check(check_availability)),
    ("base Service a LoadBalancer", replace_text("base/service.yaml", "type: ClusterIP", "type: LoadBalancer"),
     base_check(check_service_exposure)),
    ("manifest missing from kustomization", replace_text("base/kustomization.yaml", "  - poddisruptionbudget.yaml\n", ""),
     check_kustomization_files),
    ("kustomization lists a missing file", replace_text("base/kustomization.yaml", "  - service.yaml\n",
                                                        "  - service.yaml\n  - hpa.yaml\n"), check_kustomization_files),
    ("a YAML document without a name", replace_text("base/poddisruptionbudget.yaml", "  name: hubdns\n", "  labels2: {}\n"),
     check_yaml_documents),
    ("invalid YAML", replace_text("base/service.yaml", "spec:", "spec: ["), check_yaml_documents),
    # The AKS overlay.
    ("overlay: preStop sleep shorter than the load balancer needs", replace_text("aks-internal-lb/kustomization.yaml", 'command: ["/bin/sleep", "15"]',
                                               'command: ["/bin/sleep", "5"]'), overlay_check(check_service_exposure)),
    ("overlay: grace too short for preStop + drain", replace_text("aks-internal-lb/kustomization.yaml", "value: 45", "value: 30"),
     overlay_check(check_termination_grace)),
    ("overlay: externalTrafficPolicy Cluster", replace_text("aks-internal-lb/kustomization.yaml", "value: Local", "value: Cluster"),
     overlay_check(check_service_exposure)),
    ("overlay: public load balancer", replace_text("aks-internal-lb/kustomization.yaml",
                                                   'azure-load-balancer-internal: "true"', 'azure-load-balancer-internal: "false"'),
     overlay_check(check_service_exposure)),
    ("overlay: patch on a missing path", replace_text("aks-internal-lb/kustomization.yaml",
                                                      "path: /spec/template/spec/terminationGracePeriodSeconds",
                                                      "path: /spec/template/spec/nosuch/terminationGracePeriodSeconds"),
     overlay_check(check_termination_grace)),
    # The Dockerfile and .dockerignore.
    ("USER by name", replace_text("Dockerfile", "USER 10053:10053", "USER hubdns"), base_check(check_dockerfile)),
    ("USER root", replace_text("Dockerfile", "USER 10053:10053", "USER 0:0"), base_check(check_dockerfile)),
    ("USER not the Deployment's", replace_text("Dockerfile", "USER 10053:10053", "USER 10054:10053"), base_check(check_dockerfile)),
    ("no USER", replace_text("Dockerfile", "USER 10053:10053", ""), base_check(check_dockerfile)),
    ("EXPOSE without 53/udp", replace_text("Dockerfile", "EXPOSE 53/udp 53/tcp 8053/tcp", "EXPOSE 53/tcp 8053/tcp"),
     base_check(check_dockerfile)),
    ("EXPOSE a wrong health port", replace_text("Dockerfile", "EXPOSE 53/udp 53/tcp 8053/tcp", "EXPOSE 53/udp 53/tcp 8080/tcp"),
     base_check(check_dockerfile)),
    ("ENTRYPOINT elsewhere", replace_text("Dockerfile", 'ENTRYPOINT ["/usr/bin/hubdns"]', 'ENTRYPOINT ["/usr/local/bin/hubdns"]'),
     base_check(check_dockerfile)),
    ("ENTRYPOINT in shell form", replace_text("Dockerfile", 'ENTRYPOINT ["/usr/bin/hubdns"]', "ENTRYPOINT /usr/bin/hubdns"),
     base_check(check_dockerfile)),
    ("CMD reads another file", replace_text("Dockerfile", 'CMD ["--config", "/etc/hubdns/hubdns.toml"]',
                                            'CMD ["--config", "/etc/hubdns/config.toml"]'), base_check(check_dockerfile)),
    ("runtime lacks libtomlplusplus3", replace_text("Dockerfile", "libuv1 libcurl4 libtomlplusplus3", "libuv1 libcurl4"),
     base_check(check_dockerfile)),
    ("runtime lacks libcurl4", replace_text("Dockerfile", "libuv1 libcurl4 libtomlplusplus3", "libuv1 libtomlplusplus3"),
     base_check(check_dockerfile)),
    ("compiler in the runtime image", replace_text("Dockerfile", "libuv1 libcurl4 libtomlplusplus3", "libuv1 libcurl4 libtomlplusplus3 g++"),
     base_check(check_dockerfile)),
    ("tests built in the image", replace_text("Dockerfile", "-DHUBDNS_TESTS=OFF ", ""), base_check(check_dockerfile)),
    ("build stage lacks a build dependency", replace_text("Dockerfile", "libtomlplusplus-dev", ""), base_check(check_dockerfile)),
    ("runtime stage not slim", replace_text("Dockerfile", "FROM debian:12-slim", "FROM debian:12"), base_check(check_dockerfile)),
    ("image default config not the ConfigMap's", both(
        write_file("other.toml", "[[forward]]\nzone = \".\"\nupstreams = [\"10.0.0.1\"]\n"),
        replace_text("Dockerfile", "COPY deploy/kubernetes/base/hubdns.toml", "COPY deploy/kubernetes/other.toml")),
     base_check(check_dockerfile)),
    ("container command not the ENTRYPOINT", edit_yaml(DEPLOYMENT, "Deployment", lambda d: container(d).update(
        command=["/bin/hubdns"])), base_check(check_dockerfile)),
    (".dockerignore lets .git in", replace_text("/.dockerignore", ".git\n", ""), check_dockerignore),
    (".dockerignore lets build dirs in", replace_text("/.dockerignore", "build*\n", "build\n"), check_dockerignore),
    (".dockerignore drops sources", replace_text("/.dockerignore", "run\n", "run\ndeploy\n"), check_dockerignore),
]


class MutationTest(unittest.TestCase):
    def test_unmutated_copy_passes_every_check(self):
        """The baseline: a failing mutation below means something only if the copy passes."""
        with tempfile.TemporaryDirectory(prefix="hubdns-mut-") as tmp:
            root = copy_tree(tmp)
            for check in [check_yaml_documents, check_kustomization_files, check_dockerignore]:
                check(root)
            for name in [BASE] + OVERLAYS:
                b = Bundle(root, name)
                for check in MANIFEST_CHECKS + [check_dockerfile]:
                    check(b)

    def test_each_mutation_fails_its_check(self):
        for what, mutate, check in MUTATIONS:
            with self.subTest(mutation=what), tempfile.TemporaryDirectory(prefix="hubdns-mut-") as tmp:
                root = copy_tree(tmp)
                mutate(root)
                with self.assertRaises(AssertionError, msg=f"the check passed despite: {what}"):
                    check(root)

    def test_runtime_check_fails_on_a_probe_path_hubdns_does_not_serve(self):
        with tempfile.TemporaryDirectory(prefix="hubdns-mut-") as tmp:
            root = copy_tree(tmp)
            replace_text(DEPLOYMENT, "path: /livez", "path: /alive")(root)
            with self.assertRaisesRegex(AssertionError, "livenessProbe GET /alive answered 404"):
                run_on_loopback(Bundle(root, BASE), drain=False)

    def test_runtime_check_fails_when_the_service_aims_at_a_port_hubdns_does_not_use(self):
        with tempfile.TemporaryDirectory(prefix="hubdns-mut-") as tmp:
            root = copy_tree(tmp)
            # The container's DNS ports say 5353; hubdns listens where its configuration says.
            replace_text(DEPLOYMENT, "containerPort: 53\n", "containerPort: 5353\n", 2)(root)
            with self.assertRaisesRegex(AssertionError, "DNS over UDP port 5353"):
                run_as_pod(Bundle(root, BASE))


if __name__ == "__main__":
    unittest.main()
