"""The checks behind scripts/check-k8s (see there). Prints one line per problem and a summary
`k8s: N passed; M failed` that scripts/test counts."""

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

K8S_VERSION = os.environ.get("K8S_VERSION", "1.30.0")
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
# Custom resources and the schema file in k8s/schemas that checks them.
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("secrets-store.csi.x-k8s.io/v1", "SecretProviderClass"): "secretproviderclass.json",
    ("core.spinkube.dev/v1alpha1", "SpinApp"): "spinapp.json",
}


def build(overlay: Path) -> list:
    out = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay}: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def name_of(obj) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def schema_problems(objects, schemas: Path) -> list:
    problems = []
    for obj in objects:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in CUSTOM:
            schema = json.loads((schemas / CUSTOM[key]).read_text())
            for e in jsonschema.Draft7Validator(schema).iter_errors(obj):
                where = "/".join(str(p) for p in e.absolute_path)
                problems.append(f"{name_of(obj)}: {where}: {e.message}")
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = "/".join(str(p) for p in e.path)
            problems.append(f"{name_of(obj)}: {where}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{name_of(obj)}: no schema for {key[0]} {key[1]} (add one to k8s/schemas)")
    return problems


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def pod_labels(obj):
    return obj["spec"]["template"].get("metadata", {}).get("labels", {})


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def own_problems(objects) -> list:
    problems = []
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    workloads = [o for o in objects if o["kind"] in WORKLOADS]
    names = lambda kind: {o["metadata"]["name"] for o in by_kind.get(kind, [])}  # noqa: E731
    secrets = names("Secret") | {
        s["secretName"]
        for spc in by_kind.get("SecretProviderClass", [])
        for s in spc["spec"].get("secretObjects", [])
    }
    configmaps = names("ConfigMap")
    claims = names("PersistentVolumeClaim")
    services = {o["metadata"]["name"]: o for o in by_kind.get("Service", [])}

    for w in workloads:
        n = name_of(w)
        selector = w["spec"].get("selector", {}).get("matchLabels", {})
        if not matches(selector, pod_labels(w)):
            problems.append(f"{n}: selector {selector} does not match its pod labels {pod_labels(w)}")
        spec = pod_spec(w)
        templates = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
        volumes = {v["name"] for v in spec.get("volumes", [])} | templates
        for v in spec.get("volumes", []):
            claim = v.get("persistentVolumeClaim", {}).get("claimName")
            if claim and claim not in claims:
                problems.append(f"{n}: volume {v['name']} claims {claim}, which is not defined")
            cm = v.get("configMap", {}).get("name")
            if cm and cm not in configmaps:
                problems.append(f"{n}: volume {v['name']} uses ConfigMap {cm}, which is not defined")
        if w["kind"] == "StatefulSet" and w["spec"].get("serviceName") not in services:
            problems.append(f"{n}: serviceName {w['spec'].get('serviceName')} is not a Service here")
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            cn = f"{n} container {c['name']}"
            image = c.get("image", "")
            last = image.rsplit("/", 1)[-1]
            if "@sha256:" not in image and (":" not in last or last.endswith(":latest")):
                problems.append(f"{cn}: image '{image}' is not pinned to a tag or digest")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(part, {}):
                        problems.append(f"{cn}: no {part}.{r}")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                p = c.get(probe)
                if not p:
                    continue
                port = (p.get("httpGet") or p.get("tcpSocket") or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    problems.append(f"{cn}: {probe} port '{port}' is not one of its ports {sorted(ports)}")
                if isinstance(port, int) and port not in ports.values():
                    problems.append(f"{cn}: {probe} port {port} is not one of its ports")
            if probe_missing := [p for p in ("livenessProbe", "readinessProbe") if p not in c]:
                problems.append(f"{cn}: no {' or '.join(probe_missing)}")
            sc = {**spec.get("securityContext", {}), **c.get("securityContext", {})}
            if not sc.get("runAsNonRoot"):
                problems.append(f"{cn}: does not set runAsNonRoot")
            if sc.get("allowPrivilegeEscalation", True):
                problems.append(f"{cn}: allows privilege escalation")
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    problems.append(f"{cn}: mounts volume {m['name']}, which the pod does not have")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                if "secretKeyRef" in ref and ref["secretKeyRef"]["name"] not in secrets:
                    problems.append(f"{cn}: env {e['name']} reads Secret {ref['secretKeyRef']['name']}, which is not defined")
                if "configMapKeyRef" in ref and ref["configMapKeyRef"]["name"] not in configmaps:
                    problems.append(f"{cn}: env {e['name']} reads ConfigMap {ref['configMapKeyRef']['name']}, which is not defined")
            for src in c.get("envFrom", []):
                if "configMapRef" in src and src["configMapRef"]["name"] not in configmaps:
                    problems.append(f"{cn}: envFrom ConfigMap {src['configMapRef']['name']} is not defined")
                if "secretRef" in src and src["secretRef"]["name"] not in secrets:
                    problems.append(f"{cn}: envFrom Secret {src['secretRef']['name']} is not defined")

    for s in services.values():
        n = name_of(s)
        selector = s["spec"].get("selector", {})
        targets = [w for w in workloads if matches(selector, pod_labels(w))]
        if not targets:
            problems.append(f"{n}: selector {selector} matches no pods")
            continue
        for port in s["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            for w in targets:
                ports = [p for c in pod_spec(w)["containers"] for p in c.get("ports", [])]
                if not any(p.get("name") == target or p["containerPort"] == target for p in ports):
                    problems.append(f"{n}: targetPort {target} is not a port of {name_of(w)}")

    def scale_target(obj, ref):
        found = [w for w in workloads if w["kind"] == ref.get("kind", "Deployment") and w["metadata"]["name"] == ref["name"]]
        if not found:
            problems.append(f"{name_of(obj)}: scale target {ref.get('kind')}/{ref['name']} is not defined")

    for h in by_kind.get("HorizontalPodAutoscaler", []):
        scale_target(h, h["spec"]["scaleTargetRef"])
    for so in by_kind.get("ScaledObject", []):
        scale_target(so, so["spec"]["scaleTargetRef"])
        for t in so["spec"]["triggers"]:
            auth = t.get("authenticationRef", {}).get("name")
            if auth and auth not in names("TriggerAuthentication"):
                problems.append(f"{name_of(so)}: trigger authentication {auth} is not defined")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        selector = pdb["spec"]["selector"].get("matchLabels", {})
        if not any(matches(selector, pod_labels(w)) for w in workloads):
            problems.append(f"{name_of(pdb)}: selector {selector} matches no pods")
    for np in by_kind.get("NetworkPolicy", []):
        selector = np["spec"]["podSelector"].get("matchLabels", {})
        if selector and not any(matches(selector, pod_labels(w)) for w in workloads):
            problems.append(f"{name_of(np)}: podSelector {selector} matches no pods")
    for ing in by_kind.get("Ingress", []):
        for rule in ing["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                svc = path["backend"]["service"]
                target = services.get(svc["name"])
                if not target:
                    problems.append(f"{name_of(ing)}: backend Service {svc['name']} is not defined")
                    continue
                wanted = svc["port"].get("name") or svc["port"].get("number")
                if not any(p.get("name") == wanted or p["port"] == wanted for p in target["spec"]["ports"]):
                    problems.append(f"{name_of(ing)}: Service {svc['name']} has no port {wanted}")
    for sm in by_kind.get("ServiceMonitor", []):
        selector = sm["spec"]["selector"].get("matchLabels", {})
        scraped = [s for s in services.values() if matches(selector, s["metadata"].get("labels", {}))]
        for ep in sm["spec"]["endpoints"]:
            if not any(p.get("name") == ep.get("port") for s in scraped for p in s["spec"]["ports"]):
                problems.append(f"{name_of(sm)}: no selected Service has a port named {ep.get('port')}")
    return problems


def check(objects, schemas: Path) -> list:
    return schema_problems(objects, schemas) + own_problems(objects)


def find(objects, kind, name):
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


# Each break: what it does to a good build, and a word the problem it causes must contain.
def breaks():
    def selector(objs):
        find(objs, "Deployment", "api")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "apy"

    def unpinned(objs):
        pod_spec(find(objs, "Deployment", "analyze"))["containers"][0]["image"] = "media-analyzer:latest"

    def probe_port(objs):
        pod_spec(find(objs, "StatefulSet", "ingest"))["containers"][0]["livenessProbe"]["httpGet"]["port"] = "htp"

    def service_port(objs):
        find(objs, "Service", "rtmp")["spec"]["ports"][0]["targetPort"] = "rtmps"

    def missing_secret(objs):
        env = pod_spec(find(objs, "Deployment", "api"))["containers"][0]["env"]
        env[0]["valueFrom"]["secretKeyRef"]["name"] = "no-such-secret"

    def no_limits(objs):
        del pod_spec(find(objs, "Deployment", "api"))["containers"][0]["resources"]["limits"]

    def root(objs):
        pod_spec(find(objs, "Deployment", "api"))["securityContext"]["runAsNonRoot"] = False

    def schema_type(objs):
        find(objs, "Deployment", "api")["spec"]["replicas"] = "two"

    def unknown_field(objs):
        find(objs, "Service", "api")["spec"]["selektor"] = {}

    def scale_target(objs):
        find(objs, "HorizontalPodAutoscaler", "api")["spec"]["scaleTargetRef"]["name"] = "apis"

    def pdb(objs):
        find(objs, "PodDisruptionBudget", "ingest")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "x"

    def ingress_backend(objs):
        find(objs, "Ingress", "api")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "apii"

    def custom_schema(objs):
        find(objs, "ServiceMonitor", "media-analyzer")["spec"]["endpoints"][0]["interval"] = "often"

    def monitor_port(objs):
        find(objs, "ServiceMonitor", "media-analyzer")["spec"]["endpoints"][0]["port"] = "metrics"

    return [
        (selector, "does not match its pod labels"),
        (unpinned, "not pinned"),
        (probe_port, "livenessProbe port 'htp'"),
        (service_port, "targetPort rtmps"),
        (missing_secret, "no-such-secret"),
        (no_limits, "no limits.cpu"),
        (root, "runAsNonRoot"),
        (schema_type, "replicas"),
        (unknown_field, "selektor"),
        (scale_target, "scale target"),
        (pdb, "PodDisruptionBudget/ingest"),
        (ingress_backend, "backend Service apii"),
        (custom_schema, "interval"),
        (monitor_port, "port named metrics"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    root = Path(args.root)
    schemas = root / "k8s" / "schemas"
    overlays = sorted(p for p in (root / "k8s" / "overlays").iterdir() if p.is_dir())
    passed = failed = 0
    if args.self_test:
        good = build(root / "k8s" / "overlays" / "gke")
        base = check(good, schemas)
        if base:
            print("the gke overlay is not clean, so breaks can't be told apart:", *base, sep="\n  ")
            print("k8s: 0 passed; 1 failed")
            return 1
        for brk, expected in breaks():
            objs = copy.deepcopy(good)
            brk(objs)
            found = check(objs, schemas)
            if any(expected in p for p in found):
                passed += 1
            else:
                failed += 1
                print(f"FAIL {brk.__name__}: no problem mentions '{expected}'; found {found}")
        print(f"k8s self-test: {passed} breaks caught, {failed} missed")
        print(f"k8s: {passed} passed; {failed} failed")
        return 1 if failed else 0
    for overlay in overlays:
        try:
            objects = build(overlay)
        except RuntimeError as e:
            print(f"FAIL {overlay.name}: {e}")
            failed += 1
            continue
        problems = check(objects, schemas)
        if problems:
            failed += 1
            print(f"FAIL {overlay.name} ({len(objects)} objects):", *problems, sep="\n  ")
        else:
            passed += 1
            kinds = sorted({o["kind"] for o in objects})
            print(f"ok   {overlay.name}: {len(objects)} objects valid for Kubernetes {K8S_VERSION} ({', '.join(kinds)})")
    print(f"k8s: {passed} passed; {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
