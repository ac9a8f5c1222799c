#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The packaging checks of `make test` (CTest label `packaging`), and `make manifests`.

Offline and fast: helm renders the chart (no cluster), ../shared/tools/k8s-validate checks the
objects against Kubernetes' OpenAPI documents, and the rest reads the rendered YAML, the
Dockerfile and the built binaries. Not for: installing anything (scripts/install-helm does),
or judging whether the workloads run (no cluster here).

Each subcommand is one CTest test; exit 0 pass, 1 fail, 77 skipped (with the reason printed).
"""

import argparse
import base64
import difflib
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CHART = os.path.join(ROOT, "charts", "loupe")
CI_DIR = os.path.join(CHART, "ci")
HELM = os.environ.get("LOUPE_HELM", os.path.join(ROOT, ".tools", "bin", "helm"))
K8S_VALIDATE = os.environ.get("LOUPE_K8S_VALIDATE",
                              os.path.join(ROOT, "..", "shared", "tools", "k8s-validate"))
MANIFESTS = os.path.join(ROOT, "manifests", "loupe.yaml")
MANIFESTS_VALUES = os.path.join(HERE, "manifests-values.yaml")
RELEASE, NAMESPACE = "loupe", "loupe"

# Custom resources k8s-validate has no schema for: the only kinds a render may skip.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"),
             ("cert-manager.io/v1", "Certificate"), ("cert-manager.io/v1", "Issuer")}
WORKLOAD_KINDS = {"DaemonSet", "Deployment", "Pod"}
AGENT_CAPS = {"BPF", "NET_ADMIN", "PERFMON", "SYS_RESOURCE"}
# The one container allowed to be privileged: it mounts bpffs for the node (Bidirectional).
PRIVILEGED_INIT = "mount-bpffs"


class Failure(Exception):
    pass


def fail(msg):
    raise Failure(msg)


# ------------------------------------------------------------------ helm

def helm_env(tmp):
    env = dict(os.environ)
    # Keep helm's cache, config and plugins out of the user's home.
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = os.path.join(tmp, var.lower())
    return env


def need_helm():
    if not os.access(HELM, os.X_OK):
        fail("%s is missing: run scripts/install-deps (it calls scripts/install-helm)" % HELM)


def helm(args, tmp, check=True):
    need_helm()
    proc = subprocess.run([HELM] + args, capture_output=True, text=True, env=helm_env(tmp))
    if check and proc.returncode != 0:
        fail("helm %s failed (%d):\n%s%s" % (" ".join(args), proc.returncode, proc.stdout,
                                             proc.stderr))
    return proc


def value_sets():
    """name -> values file (None for the defaults): the chart's ci/ sets."""
    sets = {"default": None}
    for path in sorted(glob.glob(os.path.join(CI_DIR, "*-values.yaml"))):
        sets[os.path.basename(path)[:-len("-values.yaml")]] = path
    return sets


def render(tmp, values=None, extra=()):
    args = ["template", RELEASE, CHART, "--namespace", NAMESPACE]
    if values:
        args += ["-f", values]
    return helm(args + list(extra), tmp).stdout


def documents(text):
    return [d for d in yaml.safe_load_all(text) if d]


# ------------------------------------------------------------ workloads

def pod_spec(obj):
    if obj["kind"] == "Pod":
        return obj["spec"]
    return obj["spec"]["template"]["spec"]


def name_of(obj):
    return "%s %s" % (obj["kind"], obj["metadata"]["name"])


def caps(container):
    return (container.get("securityContext") or {}).get("capabilities") or {}


def check_container(obj, c, init):
    where = "%s: %scontainer %s" % (name_of(obj), "init " if init else "", c["name"])
    sc = c.get("securityContext") or {}
    if sc.get("privileged"):
        if not init or c["name"] != PRIVILEGED_INIT:
            fail("%s is privileged (only the %s init container may be)" % (where, PRIVILEGED_INIT))
        mounts = c.get("volumeMounts") or []
        if [m["mountPath"] for m in mounts] != ["/sys/fs/bpf"]:
            fail("%s is privileged and mounts more than /sys/fs/bpf: %s" % (where, mounts))
        return
    if "ALL" not in (caps(c).get("drop") or []):
        fail("%s does not drop ALL capabilities" % where)
    if sc.get("allowPrivilegeEscalation") is not False:
        fail("%s does not set allowPrivilegeEscalation: false" % where)
    if sc.get("readOnlyRootFilesystem") is not True:
        fail("%s has a writable root filesystem" % where)
    added = set(caps(c).get("add") or [])
    allowed = AGENT_CAPS if obj["metadata"]["name"].endswith("-agent") else set()
    if added - allowed:
        fail("%s adds %s; allowed: %s" % (where, sorted(added - allowed), sorted(allowed) or "none"))
    if not ((c.get("resources") or {}).get("limits") or {}).get("memory"):
        fail("%s has no memory limit" % where)


def check_workloads(docs, label):
    """No main container privileged, each drops ALL; the rest of the pod's hardening."""
    count = 0
    for obj in docs:
        if obj.get("kind") not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(obj)
        for c in spec.get("initContainers") or []:
            check_container(obj, c, True)
        for c in spec["containers"]:
            check_container(obj, c, False)
            count += 1
        name = obj["metadata"]["name"]
        if obj["kind"] == "Deployment":  # the controller
            psc = spec.get("securityContext") or {}
            if not psc.get("runAsNonRoot") or not psc.get("runAsUser"):
                fail("%s may run as root" % name_of(obj))
            if spec.get("automountServiceAccountToken") is not False:
                fail("%s mounts a service account token it never uses" % name_of(obj))
        if obj["kind"] in ("Deployment", "DaemonSet"):
            ann = obj["spec"]["template"]["metadata"].get("annotations") or {}
            if "checksum/tls" not in ann:
                fail("%s: no checksum/tls annotation (a new certificate would not roll it)"
                     % name_of(obj))
            main = spec["containers"][0]
            if main["command"][0] != "/bin/sleep":
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe not in main:
                        fail("%s: container %s has no %s" % (name_of(obj), main["name"], probe))
    if not count:
        fail("%s: no workload rendered" % label)
    return count


def check_rbac(docs, label):
    """Least privilege: the agent reads pods; nothing else gets any permission."""
    for obj in docs:
        if obj.get("kind") in ("Role", "ClusterRole"):
            if not obj["metadata"]["name"].endswith("-agent"):
                fail("%s: unexpected %s" % (label, name_of(obj)))
            rules = [(tuple(r.get("apiGroups", [])), tuple(r.get("resources", [])),
                      tuple(sorted(r.get("verbs", [])))) for r in obj["rules"]]
            if rules != [(("",), ("pods",), ("get", "list", "watch"))]:
                fail("%s: %s grants %s, not only pods get/list/watch" % (label, name_of(obj), rules))


def check_custom_resources(docs):
    """k8s-validate has no schema for these: check the fields their operators require."""
    need = {"ServiceMonitor": (("spec", "selector"), ("spec", "endpoints")),
            "Certificate": (("spec", "secretName"), ("spec", "issuerRef", "name")),
            "Issuer": (("spec",),)}
    for obj in docs:
        if (obj.get("apiVersion"), obj.get("kind")) not in CRD_KINDS:
            continue
        for path in need[obj["kind"]]:
            node = obj
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if node in (None, "", []):
                fail("%s: %s is missing" % (name_of(obj), ".".join(path)))
        if obj["kind"] == "Issuer" and len(obj["spec"]) != 1:
            fail("%s: an Issuer has exactly one type (selfSigned, ca, ...)" % name_of(obj))
        if obj["kind"] == "ServiceMonitor":
            for ep in obj["spec"]["endpoints"]:
                if not ep.get("port"):
                    fail("%s: an endpoint without a port name" % name_of(obj))


def find(docs, kind, suffix=""):
    return [d for d in docs if d.get("kind") == kind and d["metadata"]["name"].endswith(suffix)]


def one(docs, kind, suffix=""):
    found = find(docs, kind, suffix)
    if len(found) != 1:
        fail("expected one %s named *%s, found %d" % (kind, suffix, len(found)))
    return found[0]


def args_of(docs, kind, suffix):
    spec = pod_spec(one(docs, kind, suffix))
    return spec["containers"][0].get("args") or []


# What each value set must have changed in the render, so that a set that silently does
# nothing (a misspelt key the schema let through, a template ignoring a value) fails.
def expect_default(d):
    ds = one(d, "DaemonSet", "-agent")
    spec = pod_spec(ds)
    agent = spec["containers"][0]
    assert_(spec.get("hostNetwork") is True, "agent not on the host network")
    assert_(spec.get("priorityClassName") == "system-node-critical", "agent priority class")
    assert_(spec.get("tolerations") == [{"operator": "Exists"}], "agent does not tolerate every taint")
    assert_(ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 1, "maxUnavailable")
    mounts = {m["name"]: m for m in agent["volumeMounts"]}
    assert_(mounts["bpffs"].get("mountPropagation") == "HostToContainer", "bpffs propagation")
    env = {e["name"]: e for e in agent["env"]}
    assert_(env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName",
            "node name from the downward API")
    assert_(set(caps(agent)["add"]) == AGENT_CAPS, "agent capabilities")
    ann = ds["spec"]["template"]["metadata"]["annotations"]
    assert_(ann.get("prometheus.io/scrape") == "true", "agent scrape annotations")
    assert_([c["name"] for c in spec["initContainers"]] == [PRIVILEGED_INIT], "bpffs init container")
    a = agent["args"]
    assert_("--tls-cert=/etc/loupe/tls/tls.crt" in a and "--insecure" not in a, "agent mTLS")
    c = args_of(d, "Deployment", "-controller")
    assert_("--tls-client-ca=/etc/loupe/tls/ca.crt" in c, "controller mutual TLS")
    assert_("--token-file=/etc/loupe/token/token" in c, "controller token")
    assert_("--watch-dir=/etc/loupe/policies" in c, "controller watch dir")
    dep = one(d, "Deployment", "-controller")
    vols = {v["name"]: v for v in pod_spec(dep)["volumes"]}
    assert_("emptyDir" in vols["store"], "store is an emptyDir by default")
    assert_(vols["policies"]["configMap"]["name"] == RELEASE + "-policies", "policies ConfigMap")
    assert_(len(find(d, "Secret")) == 3, "two TLS Secrets and a token Secret")
    assert_(one(d, "Pod", "-test-controller")["metadata"]["annotations"]["helm.sh/hook"] == "test",
            "helm test pod")
    one(d, "Service", "-controller")


def expect_tls_disabled(d):
    assert_("--insecure" in args_of(d, "DaemonSet", "-agent"), "agent --insecure")
    c = args_of(d, "Deployment", "-controller")
    assert_("--insecure" in c and not any(x.startswith("--token-file") for x in c), "controller")
    assert_(not find(d, "Secret"), "no Secret without TLS and token")


def expect_tls_existing_secret(d):
    assert_(not find(d, "Secret"), "existing Secrets are not rendered")
    text = yaml.safe_dump_all(d)
    for name in ("corp-loupe-controller-tls", "corp-loupe-agent-tls", "corp-loupe-token"):
        assert_(name in text, "%s not used" % name)


def expect_persistence(d):
    pvc = one(d, "PersistentVolumeClaim", "-controller-store")
    assert_(pvc["spec"]["storageClassName"] == "fast-ssd", "storage class")
    dep = one(d, "Deployment", "-controller")
    assert_(dep["spec"]["strategy"]["type"] == "Recreate", "Recreate with a claim")
    vols = {v["name"]: v for v in pod_spec(dep)["volumes"]}
    assert_(vols["store"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"], "claim")


def expect_scheduling(d):
    ds = one(d, "DaemonSet", "-agent")
    spec = pod_spec(ds)
    assert_(len(spec["tolerations"]) == 2 and spec["affinity"], "agent tolerations and affinity")
    agent = spec["containers"][0]
    assert_(agent["resources"]["limits"]["memory"] == "1Gi", "agent resources")
    assert_("SYS_RESOURCE" not in caps(agent)["add"], "sysResource: false")
    assert_(not spec.get("initContainers"), "mountBpffs: false")
    assert_(ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == "10%", "10%")
    assert_("--metrics-addr=0.0.0.0:19750" in agent["args"], "metrics address")
    assert_("@sha256:" in agent["image"], "image digest")
    dep = pod_spec(one(d, "Deployment", "-controller"))
    assert_(dep["containers"][0]["resources"]["limits"]["memory"] == "2Gi", "controller resources")
    assert_(dep["tolerations"][0]["key"] == "node-role.example.test/infra", "controller tolerations")


def expect_servicemonitor(d):
    assert_(len(find(d, "ServiceMonitor")) == 2, "two ServiceMonitors")
    svc = one(d, "Service", "-agent-metrics")
    assert_(svc["spec"]["clusterIP"] == "None", "headless agent Service")
    ann = one(d, "DaemonSet", "-agent")["spec"]["template"]["metadata"]["annotations"]
    assert_("prometheus.io/scrape" not in ann, "annotation scraping off")


def expect_cert_manager(d):
    assert_(len(find(d, "Certificate")) == 3 and len(find(d, "Issuer")) == 2, "CA chain")
    assert_(not find(d, "Secret", "-tls"), "cert-manager writes the TLS Secrets")


def expect_cert_manager_issuer(d):
    certs = find(d, "Certificate")
    assert_(len(certs) == 2 and not find(d, "Issuer"), "two Certificates, no chart Issuer")
    assert_(all(c["spec"]["issuerRef"]["kind"] == "ClusterIssuer" for c in certs), "issuerRef")


def expect_policies(d):
    cm = one(d, "ConfigMap", "-policies")
    assert_(sorted(cm["data"]) == ["ai-egress.json", "audit-dns.json"], "policy files")
    ann = one(d, "Deployment", "-controller")["spec"]["template"]["metadata"]["annotations"]
    assert_("checksum/policies" in ann, "rollOnPolicyChange")


def expect_uninstall(d):
    spec = pod_spec(one(d, "DaemonSet", "-agent"))
    init = [c["name"] for c in spec["initContainers"]]
    assert_(init == [PRIVILEGED_INIT, "uninstall"], "uninstall init container")
    assert_("--uninstall" in spec["initContainers"][1]["command"][2], "runs --uninstall")
    assert_(spec["containers"][0]["command"][0] == "/bin/sleep", "idle main container")


EXPECT = {
    "default": expect_default,
    "tls-disabled": expect_tls_disabled,
    "tls-existing-secret": expect_tls_existing_secret,
    "persistence": expect_persistence,
    "scheduling": expect_scheduling,
    "servicemonitor": expect_servicemonitor,
    "cert-manager": expect_cert_manager,
    "cert-manager-issuer": expect_cert_manager_issuer,
    "policies": expect_policies,
    "uninstall": expect_uninstall,
}


def assert_(cond, what):
    if not cond:
        fail("render does not show: " + what)


# ------------------------------------------------------------ subcommands

def cmd_lint(args, tmp):
    """helm lint --strict, on the defaults and on every value set: no warning, no error."""
    for name, values in value_sets().items():
        extra = ["-f", values] if values else []
        proc = helm(["lint", "--strict", CHART, "--namespace", NAMESPACE] + extra, tmp, check=False)
        out = proc.stdout + proc.stderr
        bad = [l for l in out.splitlines() if re.match(r"^\[(WARNING|ERROR)\]", l)]
        if proc.returncode != 0 or bad:
            fail("helm lint --strict (%s):\n%s" % (name, out))
        print("lint %-22s clean" % name)


def cmd_render(args, tmp):
    """One value set: render, validate strictly against Kubernetes' schemas, check what it set."""
    sets = value_sets()
    if args.set not in sets:
        fail("no value set %r (have: %s)" % (args.set, ", ".join(sets)))
    text = render(tmp, sets[args.set])
    docs = documents(text)
    for obj in docs:
        if obj.get("apiVersion") is None or obj.get("kind") is None:
            fail("%s: an object without apiVersion/kind" % args.set)
    EXPECT.get(args.set, lambda d: None)(docs)
    check_custom_resources(docs)
    check_workloads(docs, args.set)
    check_rbac(docs, args.set)
    print("render %s: %d objects, expectations met" % (args.set, len(docs)))
    if not os.path.exists(K8S_VALIDATE):
        print("SKIP validation: %s is absent (../shared is not beside the repository)" % K8S_VALIDATE)
        return SKIP
    path = os.path.join(tmp, args.set + ".yaml")
    with open(path, "w") as fh:
        fh.write(text)
    # Custom resources have no schema there: skipped by k8s-validate, but only known ones.
    proc = subprocess.run(["/usr/bin/python3", K8S_VALIDATE, "--ignore-missing-schemas", path],
                          capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    sys.stdout.write(proc.stderr)
    if proc.returncode != 0:
        fail("k8s-validate found errors in the %s render" % args.set)
    skipped = set(re.findall(r"no schema for apiVersion (\S+) kind (\S+)", proc.stdout))
    if skipped - CRD_KINDS:
        fail("%s renders kinds that neither Kubernetes nor a known operator defines: %s"
             % (args.set, sorted(skipped - CRD_KINDS)))
    return 0


def cmd_schema(args, tmp):
    """Every wrong values file is refused with the message its first line expects."""
    files = sorted(glob.glob(os.path.join(HERE, "bad-values", "*.yaml")))
    by_schema = 0
    for path in files:
        with open(path) as fh:
            first = fh.readline()
        m = re.match(r"^# expect-(schema|template): (.+?)\s*$", first)
        if not m:
            fail("%s: the first line must be '# expect-schema: TEXT' or '# expect-template: TEXT'"
                 % path)
        proc = helm(["template", RELEASE, CHART, "-f", path], tmp, check=False)
        name = os.path.basename(path)
        if proc.returncode == 0:
            fail("%s was accepted; expected: %s" % (name, m.group(2)))
        err = proc.stderr
        if m.group(2) not in err:
            fail("%s was refused, but not with %r:\n%s" % (name, m.group(2), err))
        from_schema = "don't meet the specifications of the schema" in err
        if from_schema != (m.group(1) == "schema"):
            fail("%s: expected a %s refusal:\n%s" % (name, m.group(1), err))
        by_schema += from_schema
        message = [l.strip() for l in err.splitlines() if l.strip().startswith("- at ") or
                   "execution error" in l]
        print("refused %-32s %s" % (name, message[0] if message else err.strip()[:120]))
    if by_schema < 5:
        fail("only %d wrong values files are refused by values.schema.json; want 5 or more" % by_schema)
    print("%d wrong values files refused, %d by values.schema.json" % (len(files), by_schema))


def cmd_values_doc(args, tmp):
    """Every key of values.yaml has a comment above it, and the schema knows every key."""
    with open(os.path.join(CHART, "values.yaml")) as fh:
        lines = fh.read().splitlines()
    with open(os.path.join(CHART, "values.schema.json")) as fh:
        schema = json.load(fh)
    problems = []
    stack = []  # (indent, key)
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z][A-Za-z0-9_.-]*):( |$)", line)
        if not m:
            continue
        indent, key = len(m.group(1)), m.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [k for _, k in stack] + [key]
        stack.append((indent, key))
        prev = lines[i - 1].strip() if i else ""
        is_parent = not line[m.end():].strip() and i + 1 < len(lines) and \
            len(lines[i + 1]) - len(lines[i + 1].lstrip()) > indent and \
            not lines[i + 1].lstrip().startswith("-")
        if not prev.startswith("#"):
            problems.append("values.yaml:%d: %s has no comment" % (i + 1, ".".join(path)))
        node = schema
        for part in path:
            props = node.get("properties") or {}
            if part in props:
                node = props[part]
            elif isinstance(node.get("additionalProperties"), dict) or node.get("additionalProperties") is not False and node.get("type") == "object":
                break  # a free-form map (labels, resources, policies)
            else:
                problems.append("values.yaml:%d: %s is not in values.schema.json" % (i + 1, ".".join(path)))
                break
    if problems:
        fail("\n".join(problems))
    print("values.yaml: every key commented and in values.schema.json")


def cmd_policies(args, tmp):
    """The policies ConfigMap, as mounted, passes `loupectl policy check`."""
    loupectl = os.path.join(args.bin_dir, "loupectl")
    if not os.access(loupectl, os.X_OK):
        fail("%s is missing" % loupectl)
    text = render(tmp, os.path.join(CI_DIR, "policies-values.yaml"),
                  ["--show-only", "templates/policies-configmap.yaml"])
    cm = documents(text)[0]
    pdir = os.path.join(tmp, "policies")
    os.makedirs(pdir)
    for key, value in cm["data"].items():
        with open(os.path.join(pdir, key), "w") as fh:
            fh.write(value)
    proc = subprocess.run([loupectl, "policy", "check", pdir], capture_output=True, text=True)
    print(proc.stdout + proc.stderr, end="")
    if proc.returncode != 0:
        fail("loupectl policy check refused the rendered policies")


def cmd_tls(args, tmp):
    """The certificates Helm generates: one CA, a server certificate for every name agents
    and loupectl dial, a client certificate for the agents (mutual TLS), checked with openssl."""
    docs = documents(render(tmp))
    secrets = {d["metadata"]["name"]: d for d in docs
               if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-tls")}
    # The checksum annotations hash the very bytes the Secrets get (one generation per render).
    material = json.dumps({n.split("-")[-2]: secrets[n]["data"] for n in secrets},
                          sort_keys=True, separators=(",", ":"))
    token = base64.b64decode(one(docs, "Secret", "-token")["data"]["token"])
    for obj in (one(docs, "DaemonSet", "-agent"), one(docs, "Deployment", "-controller")):
        ann = obj["spec"]["template"]["metadata"]["annotations"]
        if ann["checksum/tls"] != hashlib.sha256(material.encode()).hexdigest():
            fail("%s: checksum/tls is not the hash of the generated certificates" % name_of(obj))
        if "checksum/token" in ann and ann["checksum/token"] != hashlib.sha256(token).hexdigest():
            fail("%s: checksum/token is not the hash of the generated token" % name_of(obj))
    files = {}
    for name, secret in secrets.items():
        if secret["type"] != "kubernetes.io/tls":
            fail("%s is of type %s, not kubernetes.io/tls" % (name, secret["type"]))
        for key, value in secret["data"].items():
            path = os.path.join(tmp, "%s-%s" % (name, key))
            with open(path, "wb") as fh:
                fh.write(base64.b64decode(value))
            files[(name, key)] = path
    ctl, agent = RELEASE + "-controller-tls", RELEASE + "-agent-tls"

    def openssl(*argv):
        proc = subprocess.run(["openssl"] + list(argv), capture_output=True, text=True)
        if proc.returncode != 0:
            fail("openssl %s: %s%s" % (" ".join(argv), proc.stdout, proc.stderr))
        return proc.stdout

    with open(files[(ctl, "ca.crt")], "rb") as a, open(files[(agent, "ca.crt")], "rb") as b:
        if a.read() != b.read():
            fail("the two Secrets carry different CAs")
    openssl("verify", "-CAfile", files[(agent, "ca.crt")], "-purpose", "sslserver",
            files[(ctl, "tls.crt")])
    openssl("verify", "-CAfile", files[(ctl, "ca.crt")], "-purpose", "sslclient",
            files[(agent, "tls.crt")])
    svc = RELEASE + "-controller"
    for host in (svc, "%s.%s.svc" % (svc, NAMESPACE), "%s.%s.svc.cluster.local" % (svc, NAMESPACE),
                 "localhost"):
        out = openssl("x509", "-noout", "-in", files[(ctl, "tls.crt")], "-checkhost", host)
        if "does match" not in out:
            fail("the controller certificate does not name %s: %s" % (host, out.strip()))
    for name in (ctl, agent):
        mod_crt = openssl("x509", "-noout", "-pubkey", "-in", files[(name, "tls.crt")])
        mod_key = openssl("pkey", "-pubout", "-in", files[(name, "tls.key")])
        if mod_crt != mod_key:
            fail("%s: tls.key is not the key of tls.crt" % name)
    print("TLS: one CA; the controller certificate names its Service and localhost; the agent "
          "certificate is a client certificate of the same CA; checksum annotations hash the "
          "generated certificates and token")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def cmd_smoke(args, tmp):
    """The chart's wiring against the real binaries, on loopback: the controller started with
    the Deployment's arguments and the files its Secrets and ConfigMap would mount, then the
    `helm test` pod's loupectl command (TLS verified against the generated CA, the token),
    the Unix socket without a token, and a refusal without the token."""
    controller = os.path.join(args.bin_dir, "loupe-controller")
    loupectl = os.path.join(args.bin_dir, "loupectl")
    for b in (controller, loupectl):
        if not os.access(b, os.X_OK):
            print("SKIP: %s is not built" % b)
            return SKIP
    docs = documents(render(tmp, os.path.join(CI_DIR, "policies-values.yaml")))
    # What the pods mount, as files under tmp/root.
    root = os.path.join(tmp, "root")
    mounts = {}
    for obj in docs:
        if obj["kind"] == "Secret":
            mounts[obj["metadata"]["name"]] = {k: base64.b64decode(v) for k, v in obj["data"].items()}
        elif obj["kind"] == "ConfigMap":
            mounts[obj["metadata"]["name"]] = {k: v.encode() for k, v in obj["data"].items()}

    def place(pod):
        spec = pod_spec(pod)
        vols = {v["name"]: v for v in spec["volumes"]}
        for m in spec["containers"][0].get("volumeMounts", []):
            vol = vols[m["name"]]
            path = root + m["mountPath"]
            os.makedirs(path, exist_ok=True)
            src = (vol.get("secret") or {}).get("secretName") or (vol.get("configMap") or {}).get("name")
            items = (vol.get("secret") or {}).get("items")
            for key, data in mounts.get(src, {}).items():
                if items and key not in [i["key"] for i in items]:
                    continue
                with open(os.path.join(path, key), "wb") as fh:
                    fh.write(data)

    def rewrite(argv, port, mport):
        out = []
        for a in argv:
            a = re.sub(r"^--listen=.*", "--listen=127.0.0.1:%d" % port, a)
            a = re.sub(r"^--metrics-addr=.*", "--metrics-addr=127.0.0.1:%d" % mport, a)
            a = re.sub(r"^--controller=.*", "--controller=localhost:%d" % port, a)
            a = re.sub(r"=(/(etc|var|run)/)", "=" + root + r"\1", a)
            out.append(a)
        return out

    dep = one(docs, "Deployment", "-controller")
    test = one(docs, "Pod", "-test-controller")
    place(dep)
    place(test)
    port, mport = free_port(), free_port()
    c = pod_spec(dep)["containers"][0]
    argv = rewrite(c["command"][1:] + c["args"], port, mport)
    argv = [a for a in argv if not a.startswith("/usr/bin")]
    log = open(os.path.join(tmp, "controller.log"), "w+")
    proc = subprocess.Popen([controller] + argv, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % mport, timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                fail("the controller with the chart's arguments %s did not get ready:\n%s"
                     % (argv, log.read()))
            time.sleep(0.1)
        t = pod_spec(test)["containers"][0]
        targv = rewrite(t["args"], port, mport)

        def run(argv, want_ok, what):
            r = subprocess.run([loupectl] + argv, capture_output=True, text=True, timeout=20)
            if (r.returncode == 0) != want_ok:
                fail("%s: loupectl %s exited %d:\n%s%s" % (what, " ".join(argv), r.returncode,
                                                            r.stdout, r.stderr))
            return r.stdout

        print(run(targv, True, "the helm test pod's command"), end="")
        policies = run(targv[:-2] + ["get", "policies"], True, "get policies over TLS")
        print(policies, end="")
        for name in ("audit-dns", "ai-egress-allowed"):
            if name not in policies:
                fail("the policies of values.policies are not served: %s" % policies)
        sock = [a for a in argv if a.startswith("--unix-socket=")][0].split("=", 1)[1]
        run(["--controller=unix:" + sock, "get", "agents"], True, "the Unix socket, no token")
        no_token = [a for a in targv if not a.startswith("--token-file")]
        run(no_token[:-2] + ["get", "policies"], False, "TCP without the token")
        print("controller started with the chart's arguments; the helm test command, TLS with "
              "the generated CA, the token, the Unix socket and the policies ConfigMap work")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def render_manifests(tmp):
    text = render(tmp, MANIFESTS_VALUES, ["--skip-tests"])
    with open(os.path.join(HERE, "namespace.yaml")) as fh:
        namespace = fh.read()
    header = ("# GENERATED by `make manifests` from charts/loupe with tests/packaging/"
              "manifests-values.yaml:\n# do not edit. See docs/install.md (\"Without Helm\") for "
              "the Secrets to create first.\n")
    return header + namespace + text


def cmd_manifests(args, tmp):
    """manifests/loupe.yaml is the chart rendered with defaults (plus a Namespace)."""
    text = render_manifests(tmp)
    if args.write:
        os.makedirs(os.path.dirname(MANIFESTS), exist_ok=True)
        with open(MANIFESTS, "w") as fh:
            fh.write(text)
        print("wrote %s (%d objects)" % (os.path.relpath(MANIFESTS, ROOT), len(documents(text))))
        return 0
    try:
        with open(MANIFESTS) as fh:
            current = fh.read()
    except FileNotFoundError:
        current = ""
    if current != text:
        diff = difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                    "manifests/loupe.yaml", "chart render")
        sys.stdout.writelines(list(diff)[:80])
        fail("manifests/loupe.yaml is out of date with charts/loupe: run `make manifests`")
    docs = documents(text)
    check_workloads(docs, "manifests")
    if any(d["kind"] == "Secret" for d in docs):
        fail("manifests/ holds a Secret: generated key material must not be committed")
    print("manifests/loupe.yaml is up to date (%d objects, no Secret)" % len(docs))


def dockerfile_stages(path):
    """[(name, from, [instruction lines])], continuation lines joined."""
    with open(path) as fh:
        text = re.sub(r"\\\n", " ", fh.read())
    stages = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = re.match(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", s, re.I)
        if m:
            stages.append((m.group(2) or "", m.group(1), []))
        elif stages:
            stages[-1][2].append(s)
    return stages


def needed_packages(binary):
    """NEEDED library -> the Debian package that ships the file the loader resolves it to."""
    out = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out)
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    where = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M))
    candidates = {}
    for lib in needed:
        if lib not in where:
            fail("%s: ldd does not resolve %s" % (binary, lib))
        # usrmerge: dpkg may know the file under /lib or /usr/lib, as a link or its target.
        paths = {where[lib], os.path.realpath(where[lib])}
        for p in list(paths):
            paths.add(p[4:] if p.startswith("/usr/") else "/usr" + p)
        candidates[lib] = paths
    # One dpkg-query for every path (it exits 1 for the paths it does not know: expected).
    proc = subprocess.run(["dpkg-query", "-S"] + sorted(set().union(*candidates.values())),
                          capture_output=True, text=True)
    owner_of = {}
    for line in proc.stdout.splitlines():
        pkgs, _, path = line.partition(": ")
        owner_of[path] = {p.split(":")[0] for p in pkgs.split(", ")}
    result = {}
    for lib, paths in candidates.items():
        owners = set().union(*(owner_of.get(p, set()) for p in paths))
        if len(owners) != 1:
            fail("%s: %s belongs to %s, not one package" % (binary, lib, sorted(owners) or "nothing"))
        result[lib] = owners.pop()
    return result


def source_of(pkg):
    out = subprocess.run(["dpkg-query", "-W", "-f=${source:Package}", pkg], capture_output=True,
                         text=True).stdout.strip()
    return out or pkg


def install_deps_packages():
    with open(os.path.join(ROOT, "scripts", "install-deps")) as fh:
        m = re.search(r"^packages=\((.*?)^\)", fh.read(), re.S | re.M)
    words = []
    for line in m.group(1).splitlines():
        words += line.split("#")[0].split()
    return words


def cmd_dockerfile(args, tmp):
    """The image builds as `make test` does and ships exactly the libraries the binaries need."""
    stages = dockerfile_stages(os.path.join(ROOT, "Dockerfile"))
    if len(stages) != 2:
        fail("Dockerfile: expected two stages (build, runtime), found %d" % len(stages))
    (bname, bfrom, build), (_, rfrom, runtime) = stages
    args_default = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", open(os.path.join(ROOT, "Dockerfile")).read(), re.M))
    resolve = lambda ref: re.sub(r"\$\{?(\w+)\}?", lambda m: args_default.get(m.group(1), m.group(0)), ref)
    if not re.match(r"^debian:12(\.\d+)?(@|$)", resolve(bfrom)):
        fail("Dockerfile: the build stage is %s, not Debian 12 (what scripts/install-deps targets)" % bfrom)
    if not re.match(r"^debian:12(\.\d+)?-slim(@|$)", resolve(rfrom)):
        fail("Dockerfile: the runtime stage is %s, not debian:12-slim" % rfrom)
    build_runs = " ; ".join(l for l in build if l.upper().startswith("RUN"))
    if "scripts/install-deps" not in build_runs:
        fail("Dockerfile: the build stage does not run scripts/install-deps")
    if re.search(r"apt-get\s+install|apt\s+install|dpkg\s+-i", build_runs):
        fail("Dockerfile: the build stage installs packages besides scripts/install-deps")
    if not re.search(r"\bmake\s+build\b", build_runs):
        fail("Dockerfile: the build stage does not build with `make build` (the build `make test` runs)")
    runtime_runs = " ".join(l for l in runtime if l.upper().startswith("RUN"))
    m = re.search(r"apt-get\s+install\s+(.*?)(?:&&|;|$)", runtime_runs)
    if not m:
        fail("Dockerfile: the runtime stage installs no package")
    listed = {w for w in m.group(1).split() if not w.startswith("-")}
    copied = set(re.findall(r"/bin/(loupe-agent|loupe-controller|loupectl)\b",
                            " ".join(l for l in runtime if l.upper().startswith("COPY"))))
    binaries = {"loupe-agent", "loupe-controller", "loupectl"}
    if copied != binaries:
        fail("Dockerfile: the runtime stage copies %s, not the three binaries" % sorted(copied))
    labels = " ".join(l for l in runtime if l.upper().startswith("LABEL"))
    for label in ("title", "description", "version", "licenses", "revision", "source"):
        if "org.opencontainers.image." + label not in labels:
            fail("Dockerfile: no org.opencontainers.image.%s label" % label)
    user = [l for l in runtime if l.upper().startswith("USER")]
    if not user or re.match(r"^USER\s+(0|root)\b", user[-1], re.I):
        fail("Dockerfile: the image's default user is root (the controller runs as non-root)")

    # Runtime libraries: the packages owning the binaries' NEEDED libraries, as built here.
    need = {}
    present = []
    for b in sorted(binaries):
        path = os.path.join(args.bin_dir, b)
        if os.path.exists(path):
            present.append(b)
            for lib, pkg in needed_packages(path).items():
                need.setdefault(pkg, set()).add("%s (%s)" % (lib, b))
    need.pop("libc6", None)  # in every Debian image
    if not present:
        fail("no binary in %s: build first" % args.bin_dir)
    missing = set(need) - listed
    if missing:
        fail("Dockerfile: the runtime stage lacks %s, needed by %s" % (
            sorted(missing), sorted(x for p in missing for x in need[p])))
    extra = listed - set(need)
    absent = sorted(binaries - set(present))
    if extra and not absent:
        fail("Dockerfile: the runtime stage installs %s, which no binary needs" % sorted(extra))
    # Each runtime library comes from the same Debian source as a -dev package the build
    # stage got from scripts/install-deps: the build and the image agree on versions.
    dev_sources = {source_of(p) for p in install_deps_packages()}
    strays = sorted(p for p in listed if source_of(p) not in dev_sources)
    if strays:
        fail("Dockerfile: %s do not come from a package scripts/install-deps installs" % strays)
    print("Dockerfile: build stage runs scripts/install-deps and `make build`; runtime installs %s"
          % " ".join(sorted(listed)))
    print("needed by %s: %s" % (", ".join(present), " ".join(sorted(need))))
    if absent:
        print("note: %s not built yet: %s not checked against it" % (", ".join(absent),
                                                                     " ".join(sorted(extra)) or "nothing"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("lint")
    p = sub.add_parser("render")
    p.add_argument("set", help="default, or the name of a charts/loupe/ci/NAME-values.yaml")
    sub.add_parser("schema")
    sub.add_parser("values-doc")
    sub.add_parser("tls")
    p = sub.add_parser("smoke")
    p.add_argument("--bin-dir", required=True)
    p = sub.add_parser("policies")
    p.add_argument("--bin-dir", required=True)
    p = sub.add_parser("manifests")
    p.add_argument("--write", action="store_true", help="regenerate instead of checking")
    p = sub.add_parser("dockerfile")
    p.add_argument("--bin-dir", required=True)
    p = sub.add_parser("list-sets")
    args = parser.parse_args()
    if args.cmd == "list-sets":
        print(";".join(value_sets()))
        return 0
    tmp = tempfile.mkdtemp(prefix="loupe-packaging-")
    try:
        handler = globals()["cmd_" + args.cmd.replace("-", "_")]
        return handler(args, tmp) or 0
    except Failure as exc:
        print("FAIL: %s" % exc)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
