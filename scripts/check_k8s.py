"""The checks behind scripts/check-k8s (see there). Prints one line per problem and a summary
`k8s: N passed; M failed` that scripts/test counts."""

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import re
import tomllib

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
    ("core.spinkube.dev/v1alpha1", "SpinAppExecutor"): "spinappexecutor.json",
}
# The labels SpinKube's operator gives a SpinApp's pods (besides spec.podLabels).
SPINAPP_POD_LABEL = "core.spinkube.dev/app-name"


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


def own_problems(objects, spin_variables=None) -> list:
    """`spin_variables`: the application variables spin.toml declares (SpinApp variables must be
    among them)."""
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
    # SpinApps: their pods (made by the operator) carry the app-name label and spec.podLabels.
    spin_pods = []
    executors = names("SpinAppExecutor")
    for app in by_kind.get("SpinApp", []):
        n, spec = name_of(app), app["spec"]
        spin_pods.append({SPINAPP_POD_LABEL: app["metadata"]["name"], **spec.get("podLabels", {})})
        image = spec.get("image", "")
        if "@sha256:" not in image and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
            problems.append(f"{n}: image '{image}' is not pinned to a tag or digest")
        if spec.get("executor") not in executors:
            problems.append(f"{n}: executor {spec.get('executor')} is not a SpinAppExecutor here")
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in spec.get("resources", {}).get(part, {}):
                    problems.append(f"{n}: no {part}.{r}")
        for v in spec.get("variables", []):
            ref = v.get("valueFrom", {})
            if "secretKeyRef" in ref and ref["secretKeyRef"]["name"] not in secrets:
                problems.append(f"{n}: variable {v['name']} reads Secret {ref['secretKeyRef']['name']}, which is not defined")
            if "configMapKeyRef" in ref and ref["configMapKeyRef"]["name"] not in configmaps:
                problems.append(f"{n}: variable {v['name']} reads ConfigMap {ref['configMapKeyRef']['name']}, which is not defined")
            if spin_variables is not None and v["name"] not in spin_variables:
                problems.append(f"{n}: variable {v['name']} is not declared in spin.toml [variables]")
    for np in by_kind.get("NetworkPolicy", []):
        selector = np["spec"]["podSelector"].get("matchLabels", {})
        if selector and not any(matches(selector, pod_labels(w)) for w in workloads) and not any(
            matches(selector, labels) for labels in spin_pods
        ):
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


def check(objects, schemas: Path, spin_variables=None) -> list:
    return schema_problems(objects, schemas) + own_problems(objects, spin_variables)


TEMPLATE = re.compile(r"\{\{\s*([^}\s]+)\s*\}\}")


def spin_problems(manifest: dict, schemas: Path, components: Path) -> list:
    """spin.toml: the manifest v2 schema, then what it cannot see: each trigger's component is
    defined, each `{{ name }}` is a declared variable, each source is a component crate here."""
    schema = json.loads((schemas / "spin-manifest-v2.json").read_text())
    problems = []
    for e in jsonschema.Draft7Validator(schema).iter_errors(manifest):
        where = "/".join(str(p) for p in e.absolute_path)
        problems.append(f"spin.toml: {where}: {e.message}")
    declared = set(manifest.get("variables", {}))
    defined = manifest.get("component", {})
    for t in manifest.get("trigger", {}).get("redis", []):
        if t.get("component") not in defined:
            problems.append(f"spin.toml: [[trigger.redis]] {t.get('channel')} names component {t.get('component')}, which is not defined")

    def templates(node, where):
        if isinstance(node, dict):
            for k, v in node.items():
                templates(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                templates(v, f"{where}[{i}]")
        elif isinstance(node, str):
            for name in TEMPLATE.findall(node):
                if name not in declared:
                    problems.append(f"spin.toml: {where} uses {{{{ {name} }}}}, which [variables] does not declare")

    templates({k: v for k, v in manifest.items() if k != "variables"}, "")
    crates = {p.parent.name.replace("-", "_") for p in components.glob("*/Cargo.toml")}
    for cid, c in defined.items():
        source = c.get("source")
        if isinstance(source, str) and Path(source).stem not in crates:
            problems.append(f"spin.toml: component {cid}: source {source} is not built from a crate in components/")
    return problems


# What Cloud Build substitutes by itself.
CLOUD_BUILD_BUILTINS = {"PROJECT_ID", "PROJECT_NUMBER", "BUILD_ID", "LOCATION", "SHORT_SHA",
                        "COMMIT_SHA", "REVISION_ID", "BRANCH_NAME", "TAG_NAME", "REPO_NAME",
                        "REPO_FULL_NAME", "TRIGGER_NAME", "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT"}


def cloudbuild_problems(build: dict, schemas: Path, gke: list) -> list:
    """cloudbuild.yaml: its schema; every ${NAME} defined; waitFor ids exist; the image it pushes
    is the one it lists; and its deploy step's rewrite finds the gke overlay's image."""
    schema = json.loads((schemas / "cloudbuild.json").read_text())
    problems = [f"cloudbuild.yaml: {'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
                for e in jsonschema.Draft7Validator(schema).iter_errors(build)]
    if problems:
        return problems
    defined = set(build.get("substitutions", {})) | CLOUD_BUILD_BUILTINS
    text = json.dumps(build)
    for name in sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))):
        if name not in defined:
            problems.append(f"cloudbuild.yaml: ${{{name}}} is neither a substitution nor built in")
    ids = [s.get("id") for s in build["steps"]]
    for step in build["steps"]:
        for w in step.get("waitFor", []):
            if w != "-" and w not in ids:
                problems.append(f"cloudbuild.yaml: step {step.get('id')} waits for {w}, which no step is")
    pushed = {s["args"][1] for s in build["steps"] if s.get("args", [""])[0] == "push"}
    for image in build.get("images", []):
        if image not in pushed:
            problems.append(f"cloudbuild.yaml: images lists {image}, which no step pushes")
    images = {c["image"] for o in gke if o["kind"] in WORKLOADS for c in pod_spec(o)["containers"]}
    rewrites = re.findall(r"s#([^#]+)#", text)
    if rewrites and not any(r in images for r in rewrites):
        problems.append(f"cloudbuild.yaml: the deploy step rewrites {rewrites[0]}, which the gke overlay's images {sorted(images)} do not contain")
    return problems


def spin_manifest(root: Path) -> dict:
    return tomllib.loads((root / "spin.toml").read_text())


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

    def spin_executor(objs):
        find(objs, "SpinApp", "brand-rules")["spec"]["executor"] = "containerd-shim-spinn"

    def spin_variable(objs):
        find(objs, "SpinApp", "brand-rules")["spec"]["variables"][0]["name"] = "tennant"

    def spin_schema(objs):
        find(objs, "SpinApp", "brand-rules")["spec"]["replica"] = 1

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
        (spin_executor, "containerd-shim-spinn"),
        (spin_variable, "tennant"),
        (spin_schema, "replica"),
    ]


# Breaks of spin.toml, with a word the problem must contain.
def spin_breaks():
    def undeclared(m):
        m["trigger"]["redis"][0]["channel"] = "ma:detections:{{ tenant_id }}"

    def unknown_field(m):
        m["component"]["brand-rules"]["allowed_hosts"] = []

    def no_component(m):
        m["trigger"]["redis"][0]["component"] = "brand-rulez"

    def foreign_source(m):
        m["component"]["brand-rules"]["source"] = "elsewhere/other.wasm"

    return [
        (undeclared, "tenant_id"),
        (unknown_field, "allowed_hosts"),
        (no_component, "brand-rulez"),
        (foreign_source, "elsewhere/other.wasm"),
    ]


# Breaks of cloudbuild.yaml, with a word the problem must contain.
def cloudbuild_breaks():
    def undefined(b):
        b["steps"][1]["args"][-1] = b["steps"][1]["args"][-1].replace("${_REGION}", "${_REGON}")

    def wait_for(b):
        b["steps"][2]["waitFor"] = ["imagee"]

    def unknown_field(b):
        b["steps"][0]["entry_point"] = "bash"

    def stale_image(b):
        b["steps"][3]["args"][1] = b["steps"][3]["args"][1].replace("media-analyzer:0.1.0", "media-analyzer:0.0.9")

    return [(undefined, "_REGON"), (wait_for, "imagee"), (unknown_field, "entry_point"), (stale_image, "0.0.9")]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    root = Path(args.root)
    schemas = root / "k8s" / "schemas"
    overlays = sorted(p for p in (root / "k8s" / "overlays").iterdir() if p.is_dir())
    passed = failed = 0
    manifest = spin_manifest(root)
    spin_variables = set(manifest.get("variables", {}))
    components = root / "components"
    if args.self_test:
        # The gke overlay, plus the Spin app's objects of the spin overlay.
        good = build(root / "k8s" / "overlays" / "gke") + [
            o
            for o in build(root / "k8s" / "overlays" / "spin")
            if o["kind"].startswith("SpinApp")
            or o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "spin-brand-rules"
        ]
        base = check(good, schemas, spin_variables) + spin_problems(manifest, schemas, components)
        if base:
            print("the gke overlay or spin.toml is not clean, so breaks can't be told apart:", *base, sep="\n  ")
            print("k8s: 0 passed; 1 failed")
            return 1
        for brk, expected in breaks():
            objs = copy.deepcopy(good)
            brk(objs)
            found = check(objs, schemas, spin_variables)
            if any(expected in p for p in found):
                passed += 1
            else:
                failed += 1
                print(f"FAIL {brk.__name__}: no problem mentions '{expected}'; found {found}")
        for brk, expected in spin_breaks():
            m = copy.deepcopy(manifest)
            brk(m)
            found = spin_problems(m, schemas, components)
            if any(expected in p for p in found):
                passed += 1
            else:
                failed += 1
                print(f"FAIL spin.toml {brk.__name__}: no problem mentions '{expected}'; found {found}")
        cloudbuild = yaml.safe_load((root / "cloudbuild.yaml").read_text())
        gke = build(root / "k8s" / "overlays" / "gke")
        for brk, expected in cloudbuild_breaks():
            b = copy.deepcopy(cloudbuild)
            brk(b)
            found = cloudbuild_problems(b, schemas, gke)
            if any(expected in p for p in found):
                passed += 1
            else:
                failed += 1
                print(f"FAIL cloudbuild.yaml {brk.__name__}: no problem mentions '{expected}'; found {found}")
        print(f"k8s self-test: {passed} breaks caught, {failed} missed")
        print(f"k8s: {passed} passed; {failed} failed")
        return 1 if failed else 0
    cloudbuild = yaml.safe_load((root / "cloudbuild.yaml").read_text())
    problems = cloudbuild_problems(cloudbuild, schemas, build(root / "k8s" / "overlays" / "gke"))
    if problems:
        failed += 1
        print("FAIL cloudbuild.yaml:", *problems, sep="\n  ")
    else:
        passed += 1
        print(f"ok   cloudbuild.yaml: {len(cloudbuild['steps'])} steps, substitutions defined, deploys the gke overlay's image")
    problems = spin_problems(manifest, schemas, components)
    if problems:
        failed += 1
        print("FAIL spin.toml:", *problems, sep="\n  ")
    else:
        passed += 1
        print(f"ok   spin.toml: manifest v2, {len(manifest['trigger']['redis'])} Redis trigger(s), every variable declared")
    for overlay in overlays:
        try:
            objects = build(overlay)
        except RuntimeError as e:
            print(f"FAIL {overlay.name}: {e}")
            failed += 1
            continue
        problems = check(objects, schemas, spin_variables)
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
