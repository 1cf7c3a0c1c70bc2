#!/usr/bin/env bash
# Offline checks of everything under deploy/: Prometheus rules, their unit tests and the
# example config (promtool), the Kubernetes manifests (PyYAML: structure and the security
# settings the agent depends on; plus kubernetes-validate's schemas when it is installed), the
# Grafana dashboard (JSON, and every PromQL expression through promtool) and the systemd unit
# (systemd-analyze verify, when available). Exits non-zero on the first problem.
#
#   bash deploy/check.sh
#
# Needs promtool (Debian: prometheus) and python3. Installs nothing except PyYAML (pip) when
# it is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

fail() { echo "check.sh: FAIL: $*" >&2; exit 1; }
step() { echo; echo "== $*"; }

command -v promtool >/dev/null || fail "promtool not found (Debian: apt-get install prometheus)"
command -v python3 >/dev/null || fail "python3 not found"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if ! python3 -c 'import yaml' 2>/dev/null; then
    echo "PyYAML missing: pip install --quiet pyyaml"
    # An "externally managed" system Python (PEP 668, Debian 12) refuses a plain install: then
    # install it for this run only, into the temporary directory.
    if ! python3 -m pip install --quiet pyyaml; then
        python3 -m pip install --quiet --target "$tmp/pylib" pyyaml
        export PYTHONPATH="$tmp/pylib${PYTHONPATH:+:$PYTHONPATH}"
    fi
    python3 -c 'import yaml' || fail "PyYAML could not be installed"
fi

step "promtool check rules prometheus/connlife-alerts.yml"
promtool check rules prometheus/connlife-alerts.yml

step "promtool check config prometheus/prometheus-example.yml"
promtool check config prometheus/prometheus-example.yml

step "promtool test rules prometheus/connlife-alerts.test.yml"
promtool test rules prometheus/connlife-alerts.test.yml

step "alert rules: names and 'for:' lines"
python3 - prometheus/connlife-alerts.yml <<'EOF'
import re, sys, yaml
path = sys.argv[1]
text = open(path).read()
doc = yaml.safe_load(text)
alerts = [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
names = {r["alert"] for r in alerts}
required = {"ConnlifeCloseWaitStuck", "ConnlifeConnectionPoolPerRequest", "ConnlifeFdExhaustionSoon",
            "ConnlifeLostEvents", "ConnlifeAgentDown"}
problems = [f"missing alert {n}" for n in sorted(required - names)]
problems += [f"{r['alert']}: no for:" for r in alerts if "for" not in r]
# Tests rewrite durations with a line-based substitution: one `for: <duration>` line per alert.
for_lines = re.findall(r"^\s+for: [0-9]+(?:ms|s|m|h|d|w|y)\s*$", text, re.M)
if len(for_lines) != len(alerts):
    problems.append(f"{len(alerts)} alerts but {len(for_lines)} lines of the form 'for: <duration>'")
problems += [f"{r['alert']}: no severity label" for r in alerts if "severity" not in r.get("labels", {})]
if problems:
    sys.exit("\n".join(problems))
print(f"OK: {len(alerts)} alerts, each with its own 'for:' line: {', '.join(sorted(names))}")
EOF

step "docs/agent.md lists the same alerts (expression and for:)"
python3 - prometheus/connlife-alerts.yml ../docs/agent.md <<'EOF'
import sys, yaml
rules, docs = sys.argv[1], sys.argv[2]
text = open(docs).read()
rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| Connlife")}
problems = []
for g in yaml.safe_load(open(rules))["groups"]:
    for r in g["rules"]:
        if "alert" not in r:
            continue
        row = rows.get(r["alert"])
        expr = " ".join(r["expr"].split())
        if row is None:
            problems.append(f"{r['alert']}: not in the alerts table of {docs}")
        elif f"`{expr}`" not in row or f"| {r['for']} |" not in row:
            problems.append(f"{r['alert']}: {docs} differs from the rules file (expr `{expr}`, for {r['for']})")
if problems:
    sys.exit("\n".join(problems))
print(f"OK: {len(rows)} alerts documented as in the rules file")
EOF

step "Kubernetes manifests (PyYAML structural checks)"
python3 - kubernetes <<'EOF'
import glob, os, sys, yaml
root = sys.argv[1]
problems = []
def bad(msg):
    problems.append(msg)

docs = {}
for path in sorted(glob.glob(os.path.join(root, "*.yaml")) + glob.glob(os.path.join(root, "*.yml"))):
    for d in yaml.safe_load_all(open(path)):
        if d is None:
            continue
        for key in ("apiVersion", "kind", "metadata"):
            if key not in d:
                bad(f"{path}: a document without {key}")
        docs.setdefault(d.get("kind"), []).append((path, d))
        print(f"  {os.path.basename(path)}: {d.get('kind')} {d.get('metadata', {}).get('namespace', '-')}/{d.get('metadata', {}).get('name')}")

for kind in ("Namespace", "ServiceAccount", "DaemonSet", "Service", "ServiceMonitor"):
    if kind not in docs:
        bad(f"no {kind} in {root}")

def walk(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield path + "." + str(k), k, v
            yield from walk(v, path + "." + str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")

# Nothing anywhere may be privileged.
for kind, items in docs.items():
    for path, d in items:
        for where, k, v in walk(d):
            if k == "privileged" and v is not False:
                bad(f"{path}: {kind} {where} = {v!r} (must be false)")

NEEDED_CAPS = {"BPF", "PERFMON", "SYS_ADMIN", "SYSLOG", "SYS_PTRACE", "DAC_READ_SEARCH", "SYS_RESOURCE"}
namespace = None
for path, ns in docs.get("Namespace", []):
    namespace = ns["metadata"]["name"]
for path, ds in docs.get("DaemonSet", []):
    if ds["metadata"].get("namespace") != namespace:
        bad(f"{path}: DaemonSet not in namespace {namespace}")
    tpl = ds["spec"]["template"]
    spec = tpl["spec"]
    sel = ds["spec"]["selector"]["matchLabels"]
    if any(tpl["metadata"].get("labels", {}).get(k) != v for k, v in sel.items()):
        bad(f"{path}: selector {sel} does not match the pod template labels")
    if spec.get("hostPID") is not True:
        bad(f"{path}: hostPID must be true")
    if not any(t.get("operator") == "Exists" and "key" not in t for t in spec.get("tolerations", [])):
        bad(f"{path}: no catch-all toleration (operator: Exists): the agent would skip tainted nodes")
    ann = tpl["metadata"].get("annotations", {})
    for k in ("prometheus.io/scrape", "prometheus.io/port"):
        if not isinstance(ann.get(k), str):
            bad(f"{path}: annotation {k} missing or not a string")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    host_paths = {v.get("hostPath", {}).get("path"): name for name, v in volumes.items()}
    for hp in ("/sys/kernel/tracing", "/sys/kernel/btf"):
        if hp not in host_paths:
            bad(f"{path}: no hostPath volume for {hp}")
    containers = spec.get("containers", [])
    if len(containers) != 1:
        bad(f"{path}: expected one container, found {len(containers)}")
    for c in containers:
        sc = c.get("securityContext", {})
        caps = sc.get("capabilities", {})
        added = set(caps.get("add", []))
        if caps.get("drop") != ["ALL"]:
            bad(f"{path}: container {c['name']}: capabilities.drop must be [ALL]")
        if not added:
            bad(f"{path}: container {c['name']}: no capabilities added")
        if added != NEEDED_CAPS:
            bad(f"{path}: container {c['name']}: capabilities.add {sorted(added)} != {sorted(NEEDED_CAPS)}")
        if any(a.startswith("CAP_") for a in added):
            bad(f"{path}: container {c['name']}: write capabilities without CAP_ (BPF, not CAP_BPF)")
        if sc.get("privileged") is not False:
            bad(f"{path}: container {c['name']}: securityContext.privileged must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            bad(f"{path}: container {c['name']}: readOnlyRootFilesystem must be true")
        if sc.get("runAsUser") != 0:
            bad(f"{path}: container {c['name']}: runAsUser must be 0 (Kubernetes gives added capabilities to uid 0 only)")
        args = c.get("args", [])
        if not args or args[0] != "agent":
            bad(f"{path}: container {c['name']}: args must start with 'agent'")
        listen = args[args.index("--listen") + 1] if "--listen" in args else "127.0.0.1:9464"
        if listen.startswith("127."):
            bad(f"{path}: container {c['name']}: --listen {listen} is unreachable from outside the pod")
        port = int(listen.rsplit(":", 1)[1])
        ports = {p.get("name"): p for p in c.get("ports", [])}
        if "metrics" not in ports or ports["metrics"].get("containerPort") != port:
            bad(f"{path}: container {c['name']}: no port 'metrics' = {port} (the --listen port)")
        if ann.get("prometheus.io/port") != str(port):
            bad(f"{path}: prometheus.io/port annotation != {port}")
        probe = c.get("livenessProbe", {}).get("httpGet", {})
        if probe.get("path") != "/healthz":
            bad(f"{path}: container {c['name']}: livenessProbe must GET /healthz")
        limits = c.get("resources", {}).get("limits", {})
        if "memory" not in limits or "memory" not in c.get("resources", {}).get("requests", {}):
            bad(f"{path}: container {c['name']}: memory request and limit required")
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        for mp in ("/sys/kernel/tracing", "/sys/kernel/btf"):
            m = mounts.get(mp)
            if m is None:
                bad(f"{path}: container {c['name']}: {mp} not mounted")
            elif m["name"] != host_paths.get(mp):
                bad(f"{path}: container {c['name']}: {mp} mounts volume {m['name']}, not the hostPath {mp}")
            elif mp == "/sys/kernel/btf" and m.get("readOnly") is not True:
                bad(f"{path}: container {c['name']}: {mp} must be readOnly")

for path, svc in docs.get("Service", []):
    if svc["spec"].get("clusterIP") != "None":
        bad(f"{path}: Service {svc['metadata']['name']} must be headless (clusterIP: None)")
    pod_labels = docs["DaemonSet"][0][1]["spec"]["template"]["metadata"]["labels"] if "DaemonSet" in docs else {}
    if any(pod_labels.get(k) != v for k, v in svc["spec"].get("selector", {}).items()):
        bad(f"{path}: Service selector does not match the DaemonSet's pods")
    if not any(p.get("name") == "metrics" for p in svc["spec"].get("ports", [])):
        bad(f"{path}: Service has no port named metrics")
    service = svc
for path, sm in docs.get("ServiceMonitor", []):
    sel = sm["spec"]["selector"]["matchLabels"]
    svc_labels = service["metadata"].get("labels", {}) if "Service" in docs else {}
    if any(svc_labels.get(k) != v for k, v in sel.items()):
        bad(f"{path}: ServiceMonitor selector {sel} does not match the Service labels")
    if not any(e.get("port") == "metrics" for e in sm["spec"].get("endpoints", [])):
        bad(f"{path}: ServiceMonitor does not scrape port metrics")
    job_label = sm["spec"].get("jobLabel")
    if job_label and svc_labels.get(job_label) != "connlife":
        bad(f"{path}: jobLabel {job_label} would not give job=\"connlife\" (ConnlifeAgentDown)")

if problems:
    sys.exit("\n".join(problems))
print("OK: kinds " + ", ".join(sorted(k for k in docs if k)) + "; hostPID, capabilities, no privileged: true")
EOF

if command -v kubernetes-validate >/dev/null; then
    step "kubernetes-validate --strict (schemas of the Kubernetes API; ServiceMonitor is a CRD it does not know)"
    kubernetes-validate --strict --no-warn kubernetes/daemonset.yaml
else
    echo "(kubernetes-validate not installed: schema check skipped; pip install kubernetes-validate adds it)"
fi

step "Grafana dashboard: JSON and PromQL"
python3 - grafana/connlife-dashboard.json "$tmp/dashboard-rules.yml" <<'EOF'
import json, sys, yaml
path, out = sys.argv[1], sys.argv[2]
dash = json.load(open(path))
problems = []
if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
    problems.append("schemaVersion missing or too old")
var_names = {v["name"] for v in dash.get("templating", {}).get("list", [])}
if "DS_PROMETHEUS" not in var_names:
    problems.append("no DS_PROMETHEUS datasource variable")
exprs, ids = [], set()
def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))
for p in panels(dash.get("panels", [])):
    if p["id"] in ids:
        problems.append(f"duplicate panel id {p['id']}")
    ids.add(p["id"])
    if p.get("type") == "row":
        continue
    if p.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
        problems.append(f"panel {p.get('title')!r}: datasource is not ${{DS_PROMETHEUS}}")
    if not p.get("targets"):
        problems.append(f"panel {p.get('title')!r}: no query")
    for t in p.get("targets", []):
        exprs.append((p["title"], t["expr"]))
if problems:
    sys.exit("\n".join(problems))
# Grafana variables replaced by plain values so that promtool can parse each expression.
def plain(e):
    return e.replace("$__rate_interval", "1m").replace("$comm", ".*").replace("$instance", ".*")
rules = [{"record": f"dashboard:expr_{i}", "expr": plain(e)} for i, (_, e) in enumerate(exprs)]
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(out, "w"))
missing = [m for m in ("connlife_stuck_connections", "connlife_connections", "connlife_process_open_fds",
                       "connlife_process_fd_limit", "connlife_fd_exhaustion_eta_seconds",
                       "connlife_connections_opened_total", "connlife_connections_closed_total",
                       "connlife_lost_events_total", "connlife_agent_rss_bytes")
           if not any(m + "{" in e or m + ")" in e for _, e in exprs)]
if missing:
    sys.exit("dashboard does not chart: " + ", ".join(missing))
print(f"OK: {len(ids)} panels, {len(exprs)} queries")
EOF
promtool check rules "$tmp/dashboard-rules.yml" | sed 's#^Checking .*#Checking the dashboard queries#'

if command -v systemd-analyze >/dev/null; then
    step "systemd-analyze verify systemd/connlife.service"
    unit="$tmp/connlife.service"
    if [ -x /usr/local/bin/connlife ]; then
        cp systemd/connlife.service "$unit"
    else
        # verify insists that ExecStart's binary exists; check the rest of the unit against /bin/true.
        echo "(/usr/local/bin/connlife is not installed here: verifying with ExecStart=/bin/true)"
        sed 's#^ExecStart=/usr/local/bin/connlife#ExecStart=/bin/true#' systemd/connlife.service > "$unit"
    fi
    systemd-analyze verify "$unit"
    # Settings that would break the agent, and the capabilities it needs.
    python3 - systemd/connlife.service <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
settings = {}
for line in text.splitlines():
    m = re.match(r"^([A-Za-z]+)=(.*)$", line)
    if m:
        settings.setdefault(m.group(1), []).append(m.group(2))
problems = []
caps = set(" ".join(settings.get("CapabilityBoundingSet", [])).split())
need = {"CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_SYSLOG", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH", "CAP_SYS_RESOURCE"}
if caps != need:
    problems.append(f"CapabilityBoundingSet {sorted(caps)} != {sorted(need)}")
breaking = {"ProtectKernelTunables": "yes", "ProtectKernelLogs": "yes", "ProtectProc": "invisible",
            "ProcSubset": "pid", "PrivateUsers": "yes", "PrivateNetwork": "yes"}
for key, value in breaking.items():
    if value in settings.get(key, []):
        problems.append(f"{key}={value} breaks the agent (see the comments in the unit)")
for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "KillSignal": "SIGTERM",
                   "Restart": "on-failure", "RestrictNamespaces": "net"}.items():
    if settings.get(key) != [value]:
        problems.append(f"expected {key}={value}")
families = set(" ".join(settings.get("RestrictAddressFamilies", [])).split())
if families != {"AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"}:
    problems.append(f"RestrictAddressFamilies {sorted(families)}")
filt = " ".join(settings.get("SystemCallFilter", [])).split()
if not {"bpf", "perf_event_open"} <= set(filt):
    problems.append("SystemCallFilter must allow bpf and perf_event_open")
if "MemoryMax" not in settings:
    problems.append("no MemoryMax=")
if settings.get("DynamicUser") != ["yes"] or "User" in settings:
    problems.append("the agent runs as a dedicated user (DynamicUser=yes), not root")
ambient = set(" ".join(settings.get("AmbientCapabilities", [])).split())
if ambient != need:
    problems.append(f"AmbientCapabilities {sorted(ambient)} != {sorted(need)}")
if settings.get("StateDirectory") != ["connlife"] or "--postmortem-dir /var/lib/connlife/" not in text:
    problems.append("post-mortems go to the StateDirectory (/var/lib/connlife)")
if problems:
    sys.exit("\n".join(problems))
print("OK: capabilities, hardening and the settings the agent cannot run with")
EOF
else
    echo "(systemd-analyze not found: unit check skipped)"
fi

echo
echo "check.sh: all deploy/ checks passed"
