#!/usr/bin/env python3
"""Validate the example manifests in examples/ offline; no cluster needed.

  1. every examples/*.yaml against the Kubernetes OpenAPI schemas shipped by
     kubernetes-validate (PyPI), in strict mode (unknown fields are errors), for every
     Kubernetes minor version from MIN_K8S (native sidecars need 1.29) up to the
     newest that the installed kubernetes-validate ships; a kind without a schema is
     an error here, not the tool's warning;
  2. every examples/iam/*.json parses;
  3. checks that the API server or the kubelet would do but a schema cannot, and that
     the examples agree with each other and with the sidecar's CLI (cross_checks
     below): $(VAR) order in env, named ports, probe and preStop wiring of the status
     port, grace period vs the shutdown budget, known sidecar flags, IAM resources vs
     target group name, IRSA subject vs ServiceAccount, the cross-account (-role-arn)
     documents: trust in the IRSA role with an ExternalId, two distinct accounts.

Run as `python3 scripts/validate_manifests.py` (tests/it/manifests.rs does, with
NLB_SIDECAR_BIN set: the sidecar's flags are then read from its -h).
kubernetes-validate is installed with pip into $PYTHON (default python3) when that
python cannot import it (pinned by KUBERNETES_VALIDATE_PIP_SPEC); if pip is not allowed
to install there, into a venv under target/. The validation then runs in that python.
Exit status: 0 all good, 1 a check failed, 3 kubernetes-validate could not be found nor
installed.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import traceback

# Set when this script re-runs itself in the python that has kubernetes-validate.
PY_ENV = "_VALIDATE_MANIFESTS_PYTHON"


def env_or(name, default):
    """$name, or default when it is unset or empty (bash's ${name:-default})."""
    return os.environ.get(name) or default


def fatal(msg, code=3):
    print(f"FATAL: {msg}", file=sys.stderr)
    sys.exit(code)


# ---------------------------------------------------------------------------
# 0. A python that can import kubernetes-validate (and PyYAML, which it brings).


def has_kubernetes_validate(py):
    try:
        return subprocess.run([py, "-c", "import kubernetes_validate, yaml"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    except OSError:
        return False


def pip_install(py, spec):
    sys.stderr.flush()
    try:
        return subprocess.run([py, "-m", "pip", "install", "--disable-pip-version-check",
                               "--quiet", "--timeout", "60", spec],
                              stdout=sys.stderr.fileno()).returncode == 0
    except OSError:
        return False


def python_with_kubernetes_validate():
    """$PYTHON (default python3), with kubernetes-validate installed by pip if need be,
    else a venv under target/ that has it. Exits 3 when neither works."""
    spec = env_or("KUBERNETES_VALIDATE_PIP_SPEC", "kubernetes-validate==1.37.0")
    py = env_or("PYTHON", "python3")
    if shutil.which(py) is None:
        fatal(f"{py} not found: kubernetes-validate needs Python 3")
    if has_kubernetes_validate(py):
        return py
    print(f"kubernetes-validate is not installed for {py}: pip install {spec}", file=sys.stderr)
    if not pip_install(py, spec):
        venv = os.path.join(env_or("CARGO_TARGET_DIR", "target"), "kubernetes-validate-venv")
        print(f"pip could not install into {py}; trying a venv in {venv}", file=sys.stderr)
        sys.stderr.flush()
        venv_py = os.path.join(venv, "bin", "python")
        made = subprocess.run([py, "-m", "venv", venv], stdout=sys.stderr.fileno()).returncode == 0
        if made and pip_install(venv_py, spec):
            py = venv_py
    if not has_kubernetes_validate(py):
        fatal(f"kubernetes-validate could not be installed ({spec} from PyPI); "
              f"install it with: python3 -m pip install '{spec}'")
    return py


# ---------------------------------------------------------------------------
# 1. and 2. Schemas and JSON parsing.


def kubernetes_versions(kv, min_k8s):
    """The -k arguments for every minor version from min_k8s to the newest that
    kubernetes-validate ships (its default), and that newest; exits 3 if unreadable."""
    help_text = subprocess.run(kv + ["--help"], stdout=subprocess.PIPE, text=True).stdout
    newest = re.findall(r"Defaults to (\d+\.\d+)", help_text.replace("\n", " "))
    if not newest:
        fatal("could not read the default Kubernetes version from 'kubernetes-validate --help'")
    if "--strict" not in help_text:
        fatal("this kubernetes-validate has no --strict")
    newest = newest[-1]
    versions = []
    for minor in range(int(min_k8s.split(".", 1)[1]), int(newest.split(".", 1)[1]) + 1):
        versions += ["-k", f"1.{minor}"]
    return versions, newest


def schemas_ok(kv, versions, path):
    """Strict schema validation of one file; a WARN (a kind without a schema) or any
    other output fails it too."""
    run = subprocess.run(kv + ["--strict", "--quiet"] + versions + [path],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = run.stdout.rstrip("\n")
    if run.returncode != 0 or out:
        print(out)
        print(f"FAIL schema: {path}")
        return False
    print(f"ok   schema: {path}")
    return True


def json_ok(path):
    try:
        with open(path, encoding="utf-8") as f:
            json.load(f)
    except (OSError, ValueError) as e:
        print(e, file=sys.stderr)
        print(f"FAIL json:   {path}")
        return False
    print(f"ok   json:   {path}")
    return True


# ---------------------------------------------------------------------------
# 3. Checks beyond the schemas.

YAML_FILES, JSON_FILES = [], []
problems = []


def problem(where, msg):
    problems.append(f"{where}: {msg}")


# The sidecar's flags (the interface spec): name -> "bool" | "duration" | "value".
FLAGS = {
    "target-group-name": "value", "target-group-arn": "value", "target-id": "value",
    "target-port": "value", "target-availability-zone": "value", "region": "value",
    "role-arn": "value", "role-external-id": "value", "role-session-name": "value",
    "wait-in-service": "bool", "wait-in-service-timeout": "duration",
    "health-poll-interval": "duration", "deregister-timeout": "duration",
    "register-timeout": "duration",
    "wait-drained": "bool", "wait-drained-timeout": "duration",
    "pre-register-command": "value", "pre-register-timeout": "duration",
    "post-register-command": "value", "post-register-timeout": "duration",
    "post-deregister-command": "value", "post-deregister-timeout": "duration",
    "pre-register-http": "value", "post-register-http": "value", "post-deregister-http": "value",
    "status-addr": "value", "wait-for-tcp": "value", "wait-for-http": "value",
    "wait-for-timeout": "duration", "log-level": "value",
    "drain-quiet-period": "duration", "drain-ignore-from": "value", "lb-health-addr": "value",
    "log-format": "value", "check": "bool",
}
FLAG_ENVS = {}


def read_flags():
    """With NLB_SIDECAR_BIN (tests/it/manifests.rs sets it), the flags come from the
    binary's own -h, so the list above cannot drift from the program. False when
    they cannot be read."""
    global FLAGS, FLAG_ENVS
    if os.environ.get("NLB_SIDECAR_BIN"):
        usage = subprocess.run([os.environ["NLB_SIDECAR_BIN"], "-h"], capture_output=True,
                               text=True, check=True).stdout
        FLAGS = {}
        for m in re.finditer(r"^  -([a-z][a-z-]+)( value)?$", usage, re.M):
            name, takes = m.group(1), m.group(2)
            if name == "help":
                continue
            FLAGS[name] = ("value" if takes else "bool") if not re.search(r"(timeout|interval|period)$", name) else "duration"
        if "target-group-name" not in FLAGS:
            print(f"validate-manifests: cannot read the flags from {os.environ['NLB_SIDECAR_BIN']} -h",
                  file=sys.stderr)
            return False
    FLAG_ENVS = {"NLB_" + f.upper().replace("-", "_"): f for f in FLAGS}
    return True
BOOLS = {"1", "0", "t", "f", "true", "false", "TRUE", "FALSE", "True", "False"}
BOOLS_TRUE = {"1", "t", "true"}  # lower-cased
# Go's time.ParseDuration forms, as the sidecar accepts them: "0", an
# optional "+", numbers like "1", "1.5", ".5", "2." each with a unit.
DURATION = re.compile(r"^\+?(0|((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SIDECAR_IMAGE = "k8s-nlb-registrator-sidecar"
STATUS_ADDR_ENV = "NLB_STATUS_ADDR"


def seconds(duration):
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    pairs = re.findall(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)", duration)
    return sum(float(n) * units[u] for n, u in pairs)


def quantity(q):
    q = str(q)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", q)
    if not m:
        return None
    mult = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[m.group(2)]
    return float(m.group(1)) * mult


def var_refs(text):
    """$(VAR) references the kubelet would expand ($$ escapes)."""
    refs, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
        elif text.startswith("$(", i):
            end = text.find(")", i)
            if end < 0:
                break
            refs.append(text[i + 2:end])
            i = end + 1
        else:
            i += 1
    return refs


def load_all():
    import yaml  # PyYAML comes with kubernetes-validate

    docs = []
    for path in YAML_FILES:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    docs.append((path, doc))
    return docs


def pod_templates(docs):
    for path, doc in docs:
        kind = doc.get("kind")
        where = f"{path} {kind}/{doc.get('metadata', {}).get('name')}"
        ns = doc.get("metadata", {}).get("namespace", "default")
        if kind == "Pod":
            yield where, ns, doc, doc.get("metadata", {}), doc.get("spec", {})
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            t = doc["spec"]["template"]
            yield where, ns, doc, t.get("metadata", {}), t.get("spec", {})
        elif kind == "CronJob":
            t = doc["spec"]["jobTemplate"]["spec"]["template"]
            yield where, ns, doc, t.get("metadata", {}), t.get("spec", {})


def handlers(c):
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if c.get(probe):
            yield probe, c[probe]
    for hook in ("postStart", "preStop"):
        if c.get("lifecycle", {}).get(hook):
            yield hook, c["lifecycle"][hook]


def resolve_port(where, c, port):
    """A handler's port as the kubelet resolves it: names against this container."""
    if isinstance(port, int):
        if not 1 <= port <= 65535:
            problem(where, f"port {port} out of range")
        return port
    for p in c.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    problem(where, f"named port {port!r} is not a port of container {c['name']!r} "
                   "(the kubelet resolves names in the container's own ports)")
    return None


def check_container(where, c, init):
    w = f"{where} container {c['name']}"
    if not DNS_LABEL.match(c["name"]):
        problem(w, "name is not a DNS-1123 label")
    restartable = init and c.get("restartPolicy") == "Always"
    if init and c.get("restartPolicy") not in (None, "Always"):
        problem(w, "an init container's restartPolicy can only be Always")
    if init and not restartable:
        for name, _ in handlers(c):
            problem(w, f"{name} is only allowed on restartable (sidecar) init containers")
    # Dependent environment variables: only variables defined EARLIER are expanded.
    defined = set()
    for e in c.get("env", []):
        for ref in var_refs(str(e.get("value", ""))):
            if ref not in defined:
                problem(w, f"env {e['name']} refers to $({ref}), which is not defined "
                           "earlier in the list: the kubelet would leave it unexpanded")
        defined.add(e["name"])
    for field in ("command", "args"):
        for a in c.get(field) or []:
            for ref in var_refs(str(a)):
                if ref not in defined:
                    problem(w, f"{field} refers to $({ref}), which is not in env")
    for name, h in handlers(c):
        if "httpGet" in h:
            resolve_port(f"{w} {name}", c, h["httpGet"]["port"])
        if "tcpSocket" in h:
            resolve_port(f"{w} {name}", c, h["tcpSocket"]["port"])
    res = c.get("resources", {})
    for r, limit in res.get("limits", {}).items():
        req = res.get("requests", {}).get(r)
        if req is not None and quantity(req) is not None and quantity(limit) is not None \
                and quantity(req) > quantity(limit):
            problem(w, f"request {r}={req} exceeds its limit {limit}")


def sidecar_config(w, c):
    """Parse the sidecar's args and NLB_* env like the sidecar would; return the flags."""
    flags = {}
    env = {e["name"]: e for e in c.get("env", [])}
    for name, e in env.items():
        if name.startswith("NLB_"):
            if name not in FLAG_ENVS:
                problem(w, f"unknown sidecar variable {name}")
                continue
            if "value" in e:
                flags[FLAG_ENVS[name]] = str(e["value"])
            else:
                flags[FLAG_ENVS[name]] = "<valueFrom>"
    if c.get("command"):
        problem(w, "the sidecar's image has an ENTRYPOINT; use args, not command")
    args = [str(a) for a in c.get("args") or []]
    i = 0
    while i < len(args):
        m = re.fullmatch(r"--?([a-z0-9-]+)(?:=(.*))?", args[i], re.S)
        if not m or m.group(1) not in FLAGS:
            problem(w, f"unknown sidecar argument {args[i]!r}")
            i += 1
            continue
        name, value = m.group(1), m.group(2)
        kind = FLAGS[name]
        if kind == "bool":
            value = "true" if value is None else value
            if value not in BOOLS:
                problem(w, f"-{name}: {value!r} is not a boolean")
        elif value is None:
            if i + 1 >= len(args):
                problem(w, f"-{name} needs a value")
                break
            i += 1
            value = args[i]
        if kind == "duration" and not DURATION.match(value):
            problem(w, f"-{name}: {value!r} is not a duration")
        flags[name] = value
        i += 1
    return flags


def check_sidecar(where, spec, c, init):
    w = f"{where} sidecar {c['name']}"
    flags = sidecar_config(w, c)
    env = {e["name"]: e for e in c.get("env", [])}
    if not any(k in flags for k in ("target-group-name", "target-group-arn")):
        problem(w, "no target group (-target-group-name / NLB_TARGET_GROUP_NAME or ARN)")
    if "target-id" not in flags:
        fr = env.get("POD_IP", {}).get("valueFrom", {}).get("fieldRef", {})
        if fr.get("fieldPath") != "status.podIP":
            problem(w, "no target id: set POD_IP from the Downward API (status.podIP)")
    if not any(k in env for k in ("AWS_REGION", "AWS_DEFAULT_REGION", "NLB_REGION")) \
            and "region" not in flags:
        problem(w, "no region (AWS_REGION)")
    sc = c.get("securityContext", {})
    for key, want in (("runAsNonRoot", True), ("readOnlyRootFilesystem", True),
                      ("allowPrivilegeEscalation", False)):
        if sc.get(key) is not want:
            problem(w, f"securityContext.{key} must be {want}")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        problem(w, "securityContext.capabilities.drop must contain ALL")
    if flags.get("check", "false").lower() in BOOLS_TRUE:
        # -check reports and exits: no listener, probes or /drain to wire up.
        if spec.get("restartPolicy") != "Never":
            problem(w, "-check reports and exits: its pod needs restartPolicy: Never")
        return flags
    # The status listener, its probes and the app's preStop /drain must agree.
    addr = flags.get("status-addr")
    if not addr:
        problem(w, "no status listener (NLB_STATUS_ADDR): probes and /drain need it")
        return flags
    host, _, port = addr.rpartition(":")
    if host.strip("[]") in ("127.0.0.1", "localhost", "::1"):
        problem(w, f"status address {addr} is loopback: kubelet probes come from the node")
    status_port = int(port)
    # /lb-health alone, for the target group's health check from the VPC: a
    # port of its own, reachable from outside the pod.
    lb = flags.get("lb-health-addr")
    if lb:
        lb_host, _, lb_port = lb.rpartition(":")
        if lb_host.strip("[]") in ("127.0.0.1", "localhost", "::1"):
            problem(w, f"lb-health address {lb} is loopback: the load balancer's health checks come from the VPC")
        if lb_port.isdigit() and int(lb_port) == status_port:
            problem(w, "lb-health address on the status port: it needs a port of its own")
    probes = {}
    for name, h in handlers(c):
        if "httpGet" in h:
            probes[name] = h["httpGet"]["path"]
            if resolve_port(f"{w} {name}", c, h["httpGet"]["port"]) != status_port:
                problem(w, f"{name} does not probe the status port {status_port}")
    if probes.get("readinessProbe") != "/readyz":
        problem(w, "readinessProbe must be httpGet /readyz (pod Ready = target healthy)")
    if probes.get("livenessProbe") not in (None, "/healthz"):
        problem(w, "livenessProbe must be httpGet /healthz")
    if init:
        if probes.get("startupProbe") != "/healthz":
            problem(w, "a native sidecar needs startupProbe httpGet /healthz: it gates the "
                       "start of the app (/readyz there would never pass)")
    drains = 0
    for app in spec.get("containers", []):
        if app is c:
            continue
        h = app.get("lifecycle", {}).get("preStop", {}).get("httpGet")
        if h and h.get("path") == "/drain":
            drains += 1
            if h.get("host"):
                problem(w, f"container {app['name']}: preStop /drain must not set host")
            if resolve_port(f"{where} container {app['name']} preStop", app, h["port"]) != status_port:
                problem(w, f"container {app['name']}: preStop /drain is not on port {status_port}")
    if drains == 0:
        problem(w, "no app container has a preStop httpGet /drain on the status port")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    quiet = flags.get("drain-quiet-period")
    if quiet and seconds(quiet) >= seconds(flags.get("wait-drained-timeout", "5m")):
        problem(w, f"-drain-quiet-period {quiet} can never end within -wait-drained-timeout")
    # The shutdown budget, term by term as docs/kubernetes.md (and shutdown_budget) add it.
    groups = sum(len(flags[k].split(",")) for k in ("target-group-name", "target-group-arn")
                 if k in flags) or 1
    budget = 10 + seconds(flags.get("deregister-timeout", "20s")) + 6 * groups
    if flags.get("wait-drained", "false").lower() in ("1", "t", "true") or quiet:
        budget += seconds(flags.get("wait-drained-timeout", "5m")) + 2 * groups
    if "post-deregister-command" in flags or "post-deregister-http" in flags:
        budget += seconds(flags.get("post-deregister-timeout", "5s")) + 2
    if "status-addr" in flags:
        budget += 2
    if grace <= budget:
        problem(w, f"terminationGracePeriodSeconds {grace} leaves no time for the app after the "
                   f"sidecar's shutdown budget ({budget:.0f}s, docs/kubernetes.md)")
    return flags


def as_list(x):
    """An IAM field that may hold one value or a list, as a list."""
    return x if isinstance(x, list) else [x]


ELB_ACTIONS = {"elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth",
               "elasticloadbalancing:DescribeTargetGroupAttributes",
               "elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"}


def check_elb_policy(path, pol, tg_names):
    """An ELBv2 permissions policy: exactly the sidecar's and -check's five actions, the two
    that change a group scoped to target group ARNs of the examples' groups.
    Returns the account ids those ARNs name."""
    accounts = set()
    actions = {}
    for s in pol["Statement"]:
        for a in as_list(s.get("Action", [])):
            actions[a] = as_list(s.get("Resource"))
    if set(actions) != ELB_ACTIONS:
        problem(path, f"actions {sorted(actions)} are not exactly {sorted(ELB_ACTIONS)}")
    for a in ("elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"):
        for r in actions.get(a, []):
            m = re.fullmatch(r"arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:(\d{12}):targetgroup/([^/]+)/\*", r or "")
            if not m:
                problem(path, f"{a} is not scoped to a target group ARN: {r!r}")
                continue
            accounts.add(m.group(1))
            if tg_names and m.group(2) not in tg_names:
                problem(path, f"{a} allows target group {m.group(2)!r}, the examples use {sorted(tg_names)}")
    return accounts


def cross_checks():
    """The checks beyond the schemas; prints them, returns 0 when all pass."""
    if not read_flags():
        return 1
    docs = load_all()
    # Alternatives (IRSA, Pod Identity) may define the same ServiceAccount in two files.
    sa_docs = [(d["metadata"].get("namespace", "default"), d["metadata"]["name"], d)
               for _, d in docs if d.get("kind") == "ServiceAccount"]
    service_accounts = {(ns, name) for ns, name, _ in sa_docs}
    templates = []
    tg_names = set()
    for where, ns, doc, meta, spec in pod_templates(docs):
        labels = meta.get("labels", {})
        templates.append((ns, labels))
        sel = doc.get("spec", {}).get("selector", {}).get("matchLabels")
        if doc.get("kind") != "Pod" and sel is not None:
            for k, v in sel.items():
                if labels.get(k) != v:
                    problem(where, f"selector {k}={v} does not match the pod template labels")
        inits = spec.get("initContainers", [])
        mains = spec.get("containers", [])
        names = [c["name"] for c in inits + mains]
        for n in set(names):
            if names.count(n) > 1:
                problem(where, f"container name {n!r} used twice")
        sa = spec.get("serviceAccountName")
        if sa and (ns, sa) not in service_accounts:
            problem(where, f"ServiceAccount {ns}/{sa} is not defined in examples/")
        for init, cs in ((True, inits), (False, mains)):
            for c in cs:
                check_container(where, c, init)
                if SIDECAR_IMAGE in c.get("image", ""):
                    if init and c.get("restartPolicy") != "Always":
                        problem(where, "the sidecar as an init container needs restartPolicy: Always")
                    flags = check_sidecar(where, spec, c, init)
                    for g in flags.get("target-group-name", "").split(","):
                        if g:
                            tg_names.add(g.split(":")[0])

    for path, d in docs:
        if d.get("kind") == "NetworkPolicy":
            ns = d["metadata"].get("namespace", "default")
            sel = d["spec"]["podSelector"].get("matchLabels", {})
            if not any(n == ns and all(l.get(k) == v for k, v in sel.items()) for n, l in templates):
                problem(path, "the NetworkPolicy's podSelector selects none of the example pods")

    # IAM documents.
    iam = {}
    for path in JSON_FILES:
        with open(path) as f:
            iam[os.path.basename(path)] = (path, json.load(f))
    for name, (path, pol) in iam.items():
        if pol.get("Version") != "2012-10-17":
            problem(path, 'Version must be "2012-10-17"')
        if not isinstance(pol.get("Statement"), list) or not pol["Statement"]:
            problem(path, "no Statement list")
            continue
        for s in pol["Statement"]:
            if s.get("Effect") not in ("Allow", "Deny"):
                problem(path, f"bad Effect in {s}")

    irsa_sa = [((ns, name), d) for ns, name, d in sa_docs
               if "eks.amazonaws.com/role-arn" in d["metadata"].get("annotations", {})]
    accounts = set()
    for (ns, sa), d in irsa_sa:
        arn = d["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        m = re.fullmatch(r"arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+", arn)
        if not m:
            problem(f"ServiceAccount {ns}/{sa}", f"role-arn {arn!r} is not an IAM role ARN")
        else:
            accounts.add(m.group(1))

    if "policy.json" in iam:
        path, pol = iam["policy.json"]
        accounts |= check_elb_policy(path, pol, tg_names)

    if "trust-policy-irsa.json" in iam:
        path, pol = iam["trust-policy-irsa.json"]
        for s in pol["Statement"]:
            fed = s.get("Principal", {}).get("Federated", "")
            m = re.fullmatch(r"arn:aws[a-z-]*:iam::(\d{12}):oidc-provider/(.+)", fed)
            if not m:
                problem(path, f"Principal.Federated {fed!r} is not an OIDC provider ARN")
                continue
            accounts.add(m.group(1))
            issuer = m.group(2)
            if s.get("Action") != "sts:AssumeRoleWithWebIdentity":
                problem(path, "Action must be sts:AssumeRoleWithWebIdentity")
            cond = s.get("Condition", {}).get("StringEquals", {})
            if cond.get(f"{issuer}:aud") != "sts.amazonaws.com":
                problem(path, f"missing condition {issuer}:aud = sts.amazonaws.com")
            subs = [f"system:serviceaccount:{ns}:{sa}" for (ns, sa), _ in irsa_sa]
            if cond.get(f"{issuer}:sub") not in subs:
                problem(path, f"condition {issuer}:sub = {cond.get(f'{issuer}:sub')!r} names no "
                              f"annotated ServiceAccount in examples/ ({subs})")

    if "trust-policy-pod-identity.json" in iam:
        path, pol = iam["trust-policy-pod-identity.json"]
        for s in pol["Statement"]:
            if s.get("Principal", {}).get("Service") != "pods.eks.amazonaws.com":
                problem(path, "Principal.Service must be pods.eks.amazonaws.com")
            if set(as_list(s.get("Action"))) != {"sts:AssumeRole", "sts:TagSession"}:
                problem(path, "Action must be sts:AssumeRole and sts:TagSession")
            cond = s.get("Condition", {}).get("StringEquals", {})
            ns = cond.get("aws:RequestTag/kubernetes-namespace")
            sa = cond.get("aws:RequestTag/kubernetes-service-account")
            if (ns or sa) and (ns, sa) not in service_accounts:
                problem(path, f"session tag conditions name {ns}/{sa}, not a ServiceAccount in examples/")

    # Cross-account (-role-arn): the networking account's role (its permissions and
    # its trust in the workload role, with an ExternalId), and the workload role's
    # permission to assume it. The networking account is the one other account.
    net_accounts, net_roles = set(), set()
    if "cross-account-role-policy.json" in iam:
        path, pol = iam["cross-account-role-policy.json"]
        net_accounts |= check_elb_policy(path, pol, tg_names)
    if "workload-assume-role-policy.json" in iam:
        path, pol = iam["workload-assume-role-policy.json"]
        for s in pol["Statement"]:
            if as_list(s.get("Action")) != ["sts:AssumeRole"]:
                problem(path, "Action must be sts:AssumeRole only")
            for r in as_list(s.get("Resource")):
                m = re.fullmatch(r"arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+", r or "")
                if not m:
                    problem(path, f"Resource {r!r} is not an IAM role ARN (never '*')")
                    continue
                net_accounts.add(m.group(1))
                net_roles.add(r)
    if "cross-account-role-trust-policy.json" in iam:
        path, pol = iam["cross-account-role-trust-policy.json"]
        irsa_roles = {d["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] for _, d in irsa_sa}
        for s in pol["Statement"]:
            if s.get("Action") != "sts:AssumeRole":
                problem(path, "Action must be sts:AssumeRole")
            for who in as_list(s.get("Principal", {}).get("AWS")):
                m = re.fullmatch(r"arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+", who or "")
                if not m:
                    problem(path, f"Principal.AWS {who!r} is not the workload's IAM role ARN")
                    continue
                accounts.add(m.group(1))
                if irsa_roles and who not in irsa_roles:
                    problem(path, f"Principal.AWS {who!r} is not the role of an annotated "
                                  f"ServiceAccount in examples/ ({sorted(irsa_roles)})")
            ext = s.get("Condition", {}).get("StringEquals", {}).get("sts:ExternalId")
            if not isinstance(ext, str) or not re.fullmatch(r"[\w+=,.@:/-]{2,1224}", ext):
                problem(path, "missing condition StringEquals sts:ExternalId (what -role-external-id sends)")
    if len(net_accounts) > 1:
        problem("examples/iam", f"several networking account ids in the cross-account documents: "
                                f"{sorted(net_accounts)}")
    if net_accounts & accounts:
        problem("examples/iam", f"the networking account {sorted(net_accounts & accounts)} is also the "
                                f"workload account: cross-account examples need two accounts")

    if len(accounts) > 1:
        problem("examples/iam", f"several AWS account ids in use: {sorted(accounts)}")

    # Files that the Markdown files mention exist.
    for md in glob.glob("examples/*.md"):
        with open(md) as f:
            text = f.read()
        for ref in set(re.findall(r"[`(]((?:iam/|monitoring/|\.\./docs/)?[\w.-]+\.(?:yaml|json|md))[`)]", text)):
            if not os.path.exists(os.path.join("examples", ref)):
                problem(md, f"mentions {ref}, which is not in examples/")

    for p in problems:
        print("FAIL check: " + p)
    if problems:
        return 1
    print(f"ok   checks: {len(docs)} manifests, {len(JSON_FILES)} IAM documents")
    return 0


def validate(py):
    """Everything, in the python that has kubernetes-validate; returns the exit status."""
    global YAML_FILES, JSON_FILES
    kv = [sys.executable, "-m", "kubernetes_validate"]
    version = subprocess.run(kv + ["--version"], stdout=subprocess.PIPE, text=True).stdout
    version = version.rstrip("\n")
    print(f"kubernetes-validate {version} ({py})")
    min_k8s = env_or("MIN_K8S", "1.29")
    versions, newest = kubernetes_versions(kv, min_k8s)
    print(f"schemas: Kubernetes {min_k8s} to {newest}, --strict")

    YAML_FILES = sorted(glob.glob("examples/*.yaml"))
    JSON_FILES = sorted(glob.glob("examples/iam/*.json"))
    if not YAML_FILES:
        fatal("no examples/*.yaml found", code=1)
    sys.stdout.flush()

    failed = False
    for path in YAML_FILES:
        failed |= not schemas_ok(kv, versions, path)
    for path in JSON_FILES:
        failed |= not json_ok(path)
    try:
        failed |= cross_checks() != 0
    except Exception:
        traceback.print_exc()
        failed = True

    if failed:
        print("validate-manifests: FAILED")
        return 1
    print(f"validate-manifests: {len(YAML_FILES)} manifest files and "
          f"{len(JSON_FILES)} IAM documents passed")
    return 0


def main():
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    py = os.environ.get(PY_ENV)
    if py is None:
        # Re-run in the python that has kubernetes-validate and PyYAML.
        py = python_with_kubernetes_validate()
        sys.stdout.flush()
        sys.stderr.flush()
        os.execvpe(py, [py, os.path.abspath(__file__)] + sys.argv[1:],
                   dict(os.environ, **{PY_ENV: py}))
    return validate(py)


if __name__ == "__main__":
    sys.exit(main())
