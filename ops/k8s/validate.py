"""validate.py: the checks of ops/validate-deploy on rendered deployment files.

Run by ops/validate-deploy with the Python of its tool environment (PyYAML,
jsonschema and kubernetes-validate); it needs no cluster, no Docker engine
and no network. Subcommands:

  k8s OVERLAY RENDERED.yaml   schemas (core: kubernetes-validate, strict; custom
                              resources: ops/k8s/schemas) and cross-checks of
                              one rendered overlay
  compose CONFIG.yaml         structure of `docker-compose config` output
  docker                      Dockerfile and .dockerignore against the build
  build-run                   prints the build stage's cmake RUN instruction

Each finding is printed as "FAIL <where>: <what>"; each passed group of
checks as "ok <what>". The exit code is 1 when anything failed.
"""

import argparse
import json
import os
import re
import sys
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import yaml

WORKERS = {
    # worker name: the topic it consumes (docs: contract section 3)
    "order-created": "order.created",
    "order-status": "order.status",
    "return-requested": "return.requested",
}
GRACE_MARGIN_S = 5  # terminationGracePeriodSeconds = ORDERFLOW_GRACE_PERIOD + this

failures = []


def fail(where, what):
    failures.append(f"{where}: {what}")
    print(f"FAIL {where}: {what}")


def ok(what):
    print(f"ok {what}")


def duration_s(text):
    """Seconds of a worker duration setting such as 25s, 1m or 1500ms."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", str(text).strip())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2) or "ms"
    return {"ms": n / 1000, "s": n, "m": n * 60, "h": n * 3600}[unit]


def host_ports(bootstrap):
    """The ports of a KAFKA_BOOTSTRAP_SERVERS value."""
    return {int(hp.rsplit(":", 1)[1]) for hp in bootstrap.split(",") if ":" in hp}


# --- Kubernetes -------------------------------------------------------------------

def k8s_schemas(docs, schema_dir, versions):
    custom = {}
    for name in os.listdir(schema_dir):
        if name.endswith(".json"):
            with open(os.path.join(schema_dir, name)) as f:
                schema = json.load(f)
            kind = name.split("-", 1)[0]
            api = name[len(kind) + 1:-len(".json")]
            group, _, version = api.rpartition("-")
            custom[(kind, f"{group}/{version}")] = schema
    n_core = n_custom = 0
    n0 = len(failures)
    for d in docs:
        where = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
        key = (d.get("kind", "").lower(), d.get("apiVersion", ""))
        if key in custom:
            seen = set()
            for e in jsonschema.Draft202012Validator(custom[key]).iter_errors(d):
                msg = "/".join(str(p) for p in e.absolute_path) + f": {e.message}"
                if msg not in seen:
                    seen.add(msg)
                    fail(where, msg)
            n_custom += 1
            continue
        for v in versions:
            try:
                kubernetes_validate.validate(d, v, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                fail(where, f"Kubernetes {v} schema, {path}: {e.message}")
                break
            except kubernetes_validate.SchemaNotFoundError:
                fail(where, f"no schema for {d.get('apiVersion')} {d.get('kind')} in Kubernetes {v}"
                            " (a custom resource needs a schema in ops/k8s/schemas)")
                break
        n_core += 1
    if len(failures) == n0:
        ok(f"schemas: {n_core} core objects (Kubernetes {', '.join(versions)}, strict), "
           f"{n_custom} custom resources (ops/k8s/schemas)")


def selects(selector, labels):
    ml = (selector or {}).get("matchLabels", {})
    return bool(ml) and all(labels.get(k) == v for k, v in ml.items())


def k8s_cross(overlay, docs, external):
    """What the schemas cannot see: the objects must agree with each other and
    with the processes (ports, probes, grace period, partitions, secrets)."""
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    cms = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    n0 = len(failures)

    config = {}
    for name, cm in cms.items():
        if name.startswith("orderflow-config"):
            config = cm.get("data", {})
    if not config:
        fail(overlay, "no ConfigMap orderflow-config")
    grace = duration_s(config.get("ORDERFLOW_GRACE_PERIOD", "25s"))
    partitions = int(config.get("ORDERFLOW_PARTITIONS", "6"))
    bootstrap = config.get("KAFKA_BOOTSTRAP_SERVERS", "")
    http_port = int(config.get("ORDERFLOW_HTTP_PORT", "8080"))
    protocol = config.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()

    def check_secret_ref(where, name, key):
        if name in secrets:
            if key is not None and key not in secrets[name].get("data", {}) \
                    and key not in secrets[name].get("stringData", {}):
                fail(where, f"secret \"{name}\" has no key \"{key}\"")
        elif name not in external:
            fail(where, f"secret \"{name}\" is neither created by the manifests nor listed in "
                        "external-secrets.txt")

    def secret_value(name, key):
        import base64
        s = secrets.get(name, {})
        if key in s.get("stringData", {}):
            return s["stringData"][key]
        if key in s.get("data", {}):
            return base64.b64decode(s["data"][key]).decode()
        return None

    def check_pod(where, spec, grace_required):
        psc = spec.get("securityContext", {})
        if grace_required and spec.get("terminationGracePeriodSeconds") != grace + GRACE_MARGIN_S:
            fail(where, f"terminationGracePeriodSeconds is {spec.get('terminationGracePeriodSeconds')}, "
                        f"want ORDERFLOW_GRACE_PERIOD ({grace:g}s) + {GRACE_MARGIN_S}")
        if spec.get("automountServiceAccountToken") is not False:
            fail(where, "automountServiceAccountToken must be false (the processes do not call the API)")
        volumes = {v["name"] for v in spec.get("volumes", [])}
        for v in spec.get("volumes", []):
            if "secret" in v:
                for item in v["secret"].get("items") or [{"key": None}]:
                    check_secret_ref(f"{where} volume {v['name']}", v["secret"]["secretName"],
                                     item["key"])
        for c in spec.get("containers", []):
            cw = f"{where} container {c['name']}"
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
                fail(cw, "runAsNonRoot is not set")
            if sc.get("readOnlyRootFilesystem") is not True:
                fail(cw, "readOnlyRootFilesystem must be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                fail(cw, "allowPrivilegeEscalation must be false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                fail(cw, "capabilities must drop ALL")
            if not c.get("resources", {}).get("requests") or not c.get("resources", {}).get("limits", {}).get("memory"):
                fail(cw, "resources need requests and a memory limit")
            for ef in c.get("envFrom", []):
                if "configMapRef" in ef and ef["configMapRef"]["name"] not in cms:
                    fail(cw, f"ConfigMap \"{ef['configMapRef']['name']}\" does not exist")
                if "secretRef" in ef:
                    check_secret_ref(cw, ef["secretRef"]["name"], None)
            env = {e["name"]: e for e in c.get("env", [])}
            for e in env.values():
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    check_secret_ref(cw, ref["name"], ref["key"])
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    fail(cw, f"volumeMount \"{m['name']}\" has no volume")
            if "SASL" in protocol and "KAFKA_SASL_PASSWORD" not in env:
                fail(cw, f"KAFKA_SECURITY_PROTOCOL is {protocol} but KAFKA_SASL_PASSWORD is not set")
            ca = config.get("KAFKA_SSL_CA_LOCATION")
            if ca and not any(ca.startswith(m["mountPath"].rstrip("/") + "/")
                              for m in c.get("volumeMounts", [])):
                fail(cw, f"KAFKA_SSL_CA_LOCATION {ca} is not inside a mounted volume")
            image = c.get("image", "")
            if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
                fail(cw, f"image \"{image}\" has no tag")
            elif image.endswith(":latest"):
                fail(cw, f"image \"{image}\" uses the latest tag")

    # Workers
    deployments = by_kind.get("Deployment", {})
    db_users = {}
    images = set()
    def check_process(w, name, d):
        """What a worker and the gateway share: pod hardening, command, port,
        probes, and a DATABASE_URL of their own role's member."""
        where = f"Deployment/{name}"
        spec = d["spec"]["template"]["spec"]
        check_pod(where, spec, grace_required=True)
        c = spec["containers"][0]
        images.add(c.get("image"))
        if c.get("command") != [f"orderflow-{w}"]:
            fail(where, f"command is {c.get('command')}, want [\"orderflow-{w}\"]")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        if http_port not in ports.values():
            fail(where, f"no containerPort {http_port} (ORDERFLOW_HTTP_PORT)")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                            ("startupProbe", "/healthz")):
            g = c.get(probe, {}).get("httpGet")
            if not g:
                fail(where, f"no {probe} (httpGet {path})")
                continue
            port = ports.get(g["port"], g["port"])
            if g.get("path") != path or port != http_port:
                fail(where, f"{probe} is {g.get('path')} on {g['port']}, want {path} on {http_port}")
        env = {e["name"]: e for e in c.get("env", [])}
        ref = env.get("DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef")
        if not ref:
            fail(where, "DATABASE_URL does not come from a secret")
        else:
            db_users[w] = ref["name"]
            url = secret_value(ref["name"], ref["key"])
            if url is not None:
                user = urlsplit(url).username
                want = f"orderflow_{w.replace('-', '_')}_login"
                if user != want:
                    fail(where, f"DATABASE_URL connects as \"{user}\", want a member of "
                                f"orderflow_{w.replace('-', '_')} such as \"{want}\"")
        return ports, env

    def check_egress(nw, n):
        egress = {(p.get("protocol", "TCP"), p.get("port"))
                  for r in n["spec"].get("egress", []) for p in r.get("ports", [])}
        for want in [("TCP", 5432), ("UDP", 53)] + [("TCP", p) for p in host_ports(bootstrap)]:
            if want not in egress:
                fail(nw, f"egress does not allow {want[0]} {want[1]}")
        extra = egress - {("TCP", 5432), ("UDP", 53), ("TCP", 53)} - \
            {("TCP", p) for p in host_ports(bootstrap)}
        if extra:
            fail(nw, f"egress allows more than PostgreSQL, Kafka and DNS: {sorted(extra)}")

    def check_exposure(where, labels, peer_ok, peer_rule):
        """One PodDisruptionBudget, and NetworkPolicies (both directions) that
        let in only peers peer_ok accepts, on the HTTP port, and let out only
        PostgreSQL, Kafka and DNS."""
        pdbs = [p for p in by_kind.get("PodDisruptionBudget", {}).values()
                if selects(p["spec"].get("selector"), labels)]
        if len(pdbs) != 1:
            fail(where, f"{len(pdbs)} PodDisruptionBudgets select its pods, want 1")
        nps = [n for n in by_kind.get("NetworkPolicy", {}).values()
               if selects(n["spec"].get("podSelector"), labels)]
        if not nps:
            fail(where, "no NetworkPolicy selects its pods")
        for n in nps:
            nw = f"NetworkPolicy/{n['metadata']['name']}"
            if set(n["spec"].get("policyTypes", [])) != {"Ingress", "Egress"}:
                fail(nw, "policyTypes must be Ingress and Egress")
            for rule in n["spec"].get("ingress", []):
                for peer in rule.get("from", [{}]):
                    if not peer_ok(peer):
                        fail(nw, f"ingress from {peer}: {peer_rule}")
                if [p.get("port") for p in rule.get("ports", [])] != [http_port]:
                    fail(nw, f"ingress ports {rule.get('ports')}: want only {http_port}")
            check_egress(nw, n)

    for w, topic in WORKERS.items():
        name = f"orderflow-{w}"
        d = deployments.get(name)
        if d is None:
            fail(overlay, f"no Deployment {name}")
            continue
        where = f"Deployment/{name}"
        tpl = d["spec"]["template"]
        labels = tpl["metadata"].get("labels", {})
        if "replicas" in d["spec"]:
            fail(where, "spec.replicas is set: the ScaledObject owns the replica count")
        check_process(w, name, d)

        # Autoscaling on lag
        so = [s for s in by_kind.get("ScaledObject", {}).values()
              if s["spec"]["scaleTargetRef"]["name"] == name]
        if len(so) != 1:
            fail(where, f"{len(so)} ScaledObjects scale it, want 1")
        else:
            s = so[0]
            sw = f"ScaledObject/{s['metadata']['name']}"
            if s["spec"].get("maxReplicaCount") != partitions:
                fail(sw, f"maxReplicaCount is {s['spec'].get('maxReplicaCount')}, want the partition "
                         f"count {partitions}")
            if w == "order-status" and s["spec"].get("minReplicaCount", 0) < 1:
                fail(sw, "order-status fires the payment deadlines: it may not scale to zero")
            kafka = [t for t in s["spec"]["triggers"] if t["type"] == "kafka"]
            if not kafka:
                fail(sw, "no kafka trigger")
            for t in kafka:
                md = t["metadata"]
                if md.get("topic") != topic:
                    fail(sw, f"topic is {md.get('topic')}, want {topic}")
                if md.get("consumerGroup") != f"orderflow-{w}":
                    fail(sw, f"consumerGroup is {md.get('consumerGroup')}, want orderflow-{w}")
                if md.get("bootstrapServers") != bootstrap:
                    fail(sw, f"bootstrapServers {md.get('bootstrapServers')} differs from "
                             f"KAFKA_BOOTSTRAP_SERVERS {bootstrap}")
                if "SASL" in protocol:
                    if md.get("sasl") not in ("scram_sha512", "scram_sha256", "plaintext"):
                        fail(sw, f"KAFKA_SECURITY_PROTOCOL is {protocol} but the trigger has no sasl")
                    auth = t.get("authenticationRef", {}).get("name")
                    if auth not in by_kind.get("TriggerAuthentication", {}):
                        fail(sw, f"authenticationRef \"{auth}\" does not exist")
                if protocol.endswith("SSL") and md.get("tls") != "enable":
                    fail(sw, f"KAFKA_SECURITY_PROTOCOL is {protocol} but the trigger has no tls: enable")

        # Disruption budget and network policy: only monitoring comes in.
        check_exposure(where, labels, lambda peer: "ipBlock" not in peer and peer.get(
            "namespaceSelector", {}).get("matchLabels", {}).get(
            "kubernetes.io/metadata.name") == "monitoring",
            "only the monitoring namespace may connect")

    # The gateway: a fixed replica count, a Service, a budget, and a policy
    # that lets clients in on the API port only.
    gw = deployments.get("orderflow-gateway")
    if gw is None:
        fail(overlay, "no Deployment orderflow-gateway")
    else:
        where = "Deployment/orderflow-gateway"
        labels = gw["spec"]["template"]["metadata"].get("labels", {})
        ports, env = check_process("gateway", "orderflow-gateway", gw)
        if gw["spec"].get("replicas", 1) < 2:
            fail(where, "fewer than 2 replicas: a rollout or a node drain would stop the API")
        if env.get("ORDERFLOW_GATEWAY_PORT", {}).get("value") != str(http_port):
            fail(where, f"ORDERFLOW_GATEWAY_PORT is not {http_port}: the API and its probes "
                        "would not be on the container port")
        if not env.get("ORDERFLOW_GATEWAY_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef"):
            fail(where, "ORDERFLOW_GATEWAY_TOKEN does not come from a secret: writes would be open")
        svcs = [v for v in by_kind.get("Service", {}).values()
                if selects({"matchLabels": v["spec"].get("selector", {})}, labels)]
        if len(svcs) != 1:
            fail(where, f"{len(svcs)} Services select its pods, want 1")
        for v in svcs:
            for p in v["spec"].get("ports", []):
                if ports.get(p.get("targetPort"), p.get("targetPort")) != http_port:
                    fail(f"Service/{v['metadata']['name']}",
                         f"targetPort {p.get('targetPort')} is not the API port {http_port}")
        # Clients come in from namespaces picked by label (and monitoring).
        check_exposure(where, labels, lambda peer: "ipBlock" not in peer and bool(
            peer.get("namespaceSelector", {}).get("matchLabels")),
            "only labelled namespaces may connect")

    if len(set(db_users.values())) != len(db_users):
        fail(overlay, f"processes share a database secret: {db_users}")

    # The migration Job
    jobs = [j for j in by_kind.get("Job", {}).values()
            if "orderctl migrate up" in " ".join(j["spec"]["template"]["spec"]["containers"][0].get("command", []))]
    if len(jobs) != 1:
        fail(overlay, "want exactly one Job running orderctl migrate up")
    for j in jobs:
        jw = f"Job/{j['metadata']['name']}"
        c = j["spec"]["template"]["spec"]["containers"][0]
        images.add(c.get("image"))
        if "orderctl topics create" not in " ".join(c.get("command", [])):
            fail(jw, "does not run orderctl topics create")
        check_pod(jw, j["spec"]["template"]["spec"], grace_required=False)
        labels = j["spec"]["template"]["metadata"].get("labels", {})
        if not any(selects(n["spec"].get("podSelector"), labels)
                   for n in by_kind.get("NetworkPolicy", {}).values()):
            fail(jw, "no NetworkPolicy selects its pods")
    if len(images) != 1:
        fail(overlay, f"the processes use different images: {sorted(images)}")

    # Topics
    topics = {t["spec"].get("topicName", t["metadata"]["name"]): t
              for t in by_kind.get("KafkaTopic", {}).values()}
    for topic in WORKERS.values():
        for name in (topic, topic + ".dlq"):
            t = topics.get(name)
            if t is None:
                fail(overlay, f"no KafkaTopic for {name}")
            elif t["spec"]["partitions"] != partitions:
                fail(f"KafkaTopic/{t['metadata']['name']}",
                     f"partitions is {t['spec']['partitions']}, want ORDERFLOW_PARTITIONS {partitions}")
            else:
                isr = int(t["spec"].get("config", {}).get("min.insync.replicas", 1))
                if isr > t["spec"]["replicas"]:
                    fail(f"KafkaTopic/{t['metadata']['name']}",
                         f"min.insync.replicas {isr} > replicas {t['spec']['replicas']}")
    if len(failures) == n0:
        ok(f"{overlay}: {len(WORKERS)} workers and the gateway: probes, security, grace period, "
           "secrets, autoscaling, service, budgets, network policy, migration job and topics agree")


def cmd_k8s(args):
    with open(args.rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    external = set()
    ext_file = os.path.join(args.overlay, "external-secrets.txt")
    if os.path.exists(ext_file):
        with open(ext_file) as f:
            external = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    name = os.path.basename(os.path.normpath(args.overlay))
    if not docs:
        fail(name, "the overlay renders nothing")
        return
    k8s_schemas(docs, args.schemas, args.k8s_versions.split(","))
    k8s_cross(f"overlay {name}", docs, external)


# --- docker-compose ------------------------------------------------------------------

def cmd_compose(args):
    with open(args.config) as f:
        cfg = yaml.safe_load(f)
    services = cfg.get("services", {})
    n0 = len(failures)
    for name, s in services.items():
        for dep in (s.get("depends_on") or {}):
            if dep not in services:
                fail(f"service {name}", f"depends_on \"{dep}\", which does not exist")
    with open(args.pom) as f:
        m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", f.read())
    want_kafka = f"apache/kafka:{m.group(1) if m else '?'}"
    if services.get("kafka", {}).get("image") != want_kafka:
        fail("service kafka", f"image is {services.get('kafka', {}).get('image')}, want {want_kafka} "
                              "(the version of ops/kafka/pom.xml)")
    if services.get("postgres", {}).get("image") != "postgres:15":
        fail("service postgres", "image must be postgres:15")
    for name in ("postgres", "kafka"):
        if not services.get(name, {}).get("healthcheck", {}).get("test"):
            fail(f"service {name}", "no healthcheck")
    init = services.get("init", {})
    command = " ".join(init.get("command") or [])
    if "orderctl migrate up" not in command or "orderctl topics create" not in command:
        fail("service init", "must run orderctl migrate up and orderctl topics create")
    for dep, cond in (("postgres", "service_healthy"), ("kafka", "service_healthy")):
        if (init.get("depends_on") or {}).get(dep, {}).get("condition") != cond:
            fail("service init", f"must wait for {dep} with condition {cond}")
    users = {}
    # The gateway runs like a worker: its own role's member, the same checks.
    for w in list(WORKERS) + ["gateway"]:
        s = services.get(w)
        if s is None:
            fail("compose", f"no service {w}")
            continue
        where = f"service {w}"
        if s.get("command") != [f"orderflow-{w}"]:
            fail(where, f"command is {s.get('command')}, want [\"orderflow-{w}\"]")
        deps = s.get("depends_on") or {}
        for dep, cond in (("postgres", "service_healthy"), ("kafka", "service_healthy"),
                          ("init", "service_completed_successfully")):
            if deps.get(dep, {}).get("condition") != cond:
                fail(where, f"must wait for {dep} with condition {cond}")
        hc = s.get("healthcheck", {})
        if hc.get("disable") or "/healthz" not in " ".join(hc.get("test") or []):
            fail(where, "needs a healthcheck on /healthz")
        env = s.get("environment", {})
        user = urlsplit(env.get("DATABASE_URL", "")).username
        want = f"orderflow_{w.replace('-', '_')}_login"
        if user != want:
            fail(where, f"DATABASE_URL connects as \"{user}\", want its own role's member \"{want}\"")
        users[w] = user
        if not s.get("read_only") or "ALL" not in (s.get("cap_drop") or []):
            fail(where, "must run read_only with cap_drop ALL")
        if "no-new-privileges:true" not in (s.get("security_opt") or []):
            fail(where, "must set no-new-privileges")
        grace = duration_s(env.get("ORDERFLOW_GRACE_PERIOD", "25s"))
        stop = duration_s(s.get("stop_grace_period", "10s"))
        if stop is None or stop < grace + GRACE_MARGIN_S:
            fail(where, f"stop_grace_period {s.get('stop_grace_period')} is shorter than "
                        f"ORDERFLOW_GRACE_PERIOD + {GRACE_MARGIN_S}s")
    if len(set(users.values())) != len(users):
        fail("compose", f"workers share a database role: {users}")
    if len(failures) == n0:
        ok(f"compose structure: {len(services)} services, dependencies, health checks, roles, hardening")


# --- Dockerfile ------------------------------------------------------------------------

def dockerfile_stages(path):
    """[(base image, stage name, [instructions as (KEYWORD, text)])] with
    continuation lines joined and comments dropped."""
    with open(path) as f:
        text = re.sub(r"\\\n", " ", "\n".join(l for l in f.read().splitlines()
                                              if not l.lstrip().startswith("#")))
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        kw, _, rest = line.partition(" ")
        kw = kw.upper()
        if kw == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.I)
            stages.append((m.group(1), m.group(2), []))
        elif stages:
            stages[-1][2].append((kw, rest.strip()))
    return stages


def apt_packages(instructions):
    pkgs = set()
    for kw, text in instructions:
        if kw == "RUN":
            for m in re.finditer(r"apt-get install ([^&;|]*)", text):
                pkgs |= {w for w in m.group(1).split() if not w.startswith("-")}
    return pkgs


def cmd_docker(args):
    stages = dockerfile_stages(args.dockerfile)
    n0 = len(failures)
    if len(stages) < 2:
        fail("Dockerfile", "want a build stage and a runtime stage")
        return
    build, runtime = stages[0], stages[-1]
    if build[0] != "debian:12":
        fail("Dockerfile", f"build stage is FROM {build[0]}, want debian:12")
    if runtime[0] != "debian:12-slim":
        fail("Dockerfile", f"runtime stage is FROM {runtime[0]}, want debian:12-slim")
    build_pkgs, runtime_pkgs = apt_packages(build[2]), apt_packages(runtime[2])
    for p in filter(None, args.need_build.split(",")):
        if p not in build_pkgs:
            fail("Dockerfile", f"build stage does not install {p} (CMakeLists.txt needs its pkg-config file)")
    for p in filter(None, args.need_runtime.split(",")):
        if p not in runtime_pkgs and p not in args.base_packages.split(","):
            fail("Dockerfile", f"runtime stage does not install {p} (a binary links its library)")
    for p in runtime_pkgs:
        if p.endswith("-dev") or p in ("gcc", "cmake", "ninja-build", "pkg-config"):
            fail("Dockerfile", f"runtime stage installs build tool {p}")
    users = [t for k, t in runtime[2] if k == "USER"]
    if not users or not re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", users[-1]):
        fail("Dockerfile", "runtime stage must end as a numeric non-root USER (runAsNonRoot)")
    if not any(k == "HEALTHCHECK" and "/healthz" in t for k, t in runtime[2]):
        fail("Dockerfile", "runtime stage has no HEALTHCHECK on /healthz")
    with open(args.context_files) as f:
        context = {line.rstrip("\n") for line in f}
    for stage in stages:
        for kw, text in stage[2]:
            if kw not in ("COPY", "ADD") or "--from=" in text:
                continue
            srcs = [w for w in text.split() if not w.startswith("--")][:-1]
            for src in srcs:
                s = src.rstrip("/")
                if s not in context and not any(c.startswith(s + "/") for c in context):
                    fail("Dockerfile", f"{kw} {src}: not in the build context (.dockerignore)")
    for c in context:
        top = c.split("/", 1)[0]
        if re.match(r"(build|\.stack|\.cache|\.git)", top) or re.search(r"(^|/)build[^/]*/", c):
            fail(".dockerignore", f"{c} is sent to the build context")
            break
    if len(failures) == n0:
        ok(f"Dockerfile: stages {build[0]} -> {runtime[0]}, {len(runtime_pkgs)} runtime packages cover "
           f"the binaries' libraries, non-root USER, HEALTHCHECK, {len(context)} context files cover COPY")


def cmd_build_run(args):
    """Prints the build stage's RUN instruction that runs cmake, for
    ops/validate-deploy --build-context to run the very same commands."""
    runs = [t for k, t in dockerfile_stages(args.dockerfile)[0][2] if k == "RUN" and t.startswith("cmake")]
    if len(runs) != 1:
        fail("Dockerfile", "want one RUN instruction starting with cmake in the build stage")
        return
    print(re.sub(r"\s+", " ", runs[0]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("k8s")
    k.add_argument("overlay")
    k.add_argument("rendered")
    k.add_argument("--schemas", required=True)
    k.add_argument("--k8s-versions", required=True)
    c = sub.add_parser("compose")
    c.add_argument("config")
    c.add_argument("--pom", required=True)
    d = sub.add_parser("docker")
    d.add_argument("--dockerfile", required=True)
    d.add_argument("--context-files", required=True)
    d.add_argument("--need-build", default="")
    d.add_argument("--need-runtime", default="")
    d.add_argument("--base-packages", default="libc6")
    b = sub.add_parser("build-run")
    b.add_argument("--dockerfile", required=True)
    args = ap.parse_args()
    {"k8s": cmd_k8s, "compose": cmd_compose, "docker": cmd_docker, "build-run": cmd_build_run}[args.cmd](args)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
