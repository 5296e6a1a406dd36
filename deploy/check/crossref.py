#!/usr/bin/env python3
"""Checks the rendered manifests against each other and against the server's source:
what kubernetes-validate (one object at a time, no CRDs) cannot see.

  crossref.py --flags server/app/serve_flags.cc --metrics server/metrics/metrics.cc \
              --envoy deploy/envoy/envoy.yaml --adapter RENDERED_MONITORING.yaml \
              --envoy-version 1.40.0 RENDERED_OVERLAY.yaml...

Checked, per overlay: every Service/PDB/ServiceMonitor selector matches the pods of a
Deployment; every named targetPort/probe port exists on the container; every ConfigMap,
Secret and PVC a pod uses exists; every RWKVX_FLAG_<NAME> key is a flag of `rwkvx serve`
(the table in serve_flags.cc); the HPA targets an existing Deployment and scales on a
metric the server exports (metrics.cc) that the prometheus-adapter rule serves; the
ServiceMonitor's shape (the Prometheus Operator CRD is not in kubernetes-validate); the
front Envoy's cluster points at the headless Service's name and router port; the pod
router forwards to the ports the server is told to listen on (ConfigMap) and listens on
the container's `router` port; the Envoy image tags are the validated Envoy version. Exits 1 with one line per problem.
"""
import argparse
import re
import sys

import yaml

problems = []


def fail(msg):
    problems.append(msg)


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def serve_flags(path):
    src = open(path).read()
    return set(re.findall(r'(?:STR|NUM)\(\w+,\s*"([a-z0-9-]+)"', src)) | set(
        re.findall(r'FlagDef\{"([a-z0-9-]+)"', src))


def check_overlay(path, flags, metrics, adapter_metrics, envoy_cfg, envoy_version):
    docs = load_all(path)
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    deps = by_kind.get("Deployment", {})
    services = by_kind.get("Service", {})
    pods = {n: d["spec"]["template"] for n, d in deps.items()}

    for name, dep in deps.items():
        sel = dep["spec"]["selector"]["matchLabels"]
        if not matches(sel, pods[name]["metadata"]["labels"]):
            fail(f"{path}: Deployment {name}: selector does not match its pod labels")
        spec = pods[name]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                pr = c.get(probe)
                if not pr:
                    continue
                port = (pr.get("httpGet") or pr.get("tcpSocket") or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    fail(f"{path}: {name}/{c['name']} {probe}: no port named {port}")
            for ef in c.get("envFrom", []):
                cm = ef.get("configMapRef", {}).get("name")
                if cm and cm not in by_kind.get("ConfigMap", {}):
                    fail(f"{path}: {name}: envFrom ConfigMap {cm} missing")
                elif cm:
                    for key in by_kind["ConfigMap"][cm]["data"]:
                        if key.startswith("RWKVX_FLAG_"):
                            flag = key[len("RWKVX_FLAG_"):].lower().replace("_", "-")
                            if flag not in flags:
                                fail(f"{path}: ConfigMap {cm}: {key}: --{flag} is not a flag of rwkvx serve")
            if "envoyproxy/envoy" in c["image"]:
                tag = c["image"].rsplit(":", 1)[-1]
                if tag != f"v{envoy_version}":
                    fail(f"{path}: Envoy image {c['image']} is not the validated v{envoy_version}")
            mounts = {m["name"] for m in c.get("volumeMounts", [])}
            vols = {v["name"] for v in spec.get("volumes", [])}
            for m in mounts - vols:
                fail(f"{path}: {name}/{c['name']}: volumeMount {m} has no volume")
        for v in spec.get("volumes", []):
            ref = (("ConfigMap", v["configMap"]["name"]) if "configMap" in v else
                   ("Secret", v["secret"]["secretName"]) if "secret" in v else
                   ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"])
                   if "persistentVolumeClaim" in v else None)
            if ref and ref[1] not in by_kind.get(ref[0], {}):
                fail(f"{path}: {name}: volume {v['name']}: {ref[0]} {ref[1]} missing")

    def pods_of(selector):
        return [n for n, p in pods.items() if matches(selector, p["metadata"]["labels"])]

    for name, svc in services.items():
        targets = pods_of(svc["spec"]["selector"])
        if not targets:
            fail(f"{path}: Service {name}: selector matches no Deployment's pods")
        for t in targets:
            names = {p["name"] for c in pods[t]["spec"].get("initContainers", []) + pods[t]["spec"]["containers"]
                     for p in c.get("ports", [])}
            for p in svc["spec"]["ports"]:
                if isinstance(p.get("targetPort"), str) and p["targetPort"] not in names:
                    fail(f"{path}: Service {name}: targetPort {p['targetPort']} not on {t}")

    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        if not pods_of(pdb["spec"]["selector"]["matchLabels"]):
            fail(f"{path}: PDB {name}: selector matches no pods")

    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        ref = hpa["spec"]["scaleTargetRef"]
        if ref["kind"] != "Deployment" or ref["name"] not in deps:
            fail(f"{path}: HPA {name}: target {ref['kind']}/{ref['name']} missing")
        for m in hpa["spec"].get("metrics", []):
            if m["type"] == "Pods":
                metric = m["pods"]["metric"]["name"]
                if metric not in metrics:
                    fail(f"{path}: HPA {name}: {metric} is not exported by the server")
                if metric not in adapter_metrics:
                    fail(f"{path}: HPA {name}: {metric} is not served by the prometheus-adapter rule")

    for name, sm in by_kind.get("ServiceMonitor", {}).items():
        if sm.get("apiVersion") != "monitoring.coreos.com/v1":
            fail(f"{path}: ServiceMonitor {name}: apiVersion {sm.get('apiVersion')}")
        spec = sm.get("spec", {})
        sel = spec.get("selector", {}).get("matchLabels")
        eps = spec.get("endpoints")
        if not sel or not eps:
            fail(f"{path}: ServiceMonitor {name}: needs spec.selector.matchLabels and spec.endpoints")
            continue
        svcs = [s for s in services.values() if matches(sel, s["metadata"].get("labels", {}))]
        if len(svcs) != 1:
            fail(f"{path}: ServiceMonitor {name}: selects {len(svcs)} Services (want exactly 1)")
        allowed = {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels",
                   "relabelings", "metricRelabelings", "bearerTokenSecret", "authorization"}
        for ep in eps:
            if set(ep) - allowed:
                fail(f"{path}: ServiceMonitor {name}: unknown endpoint keys {set(ep) - allowed}")
            for s in svcs:
                if ep.get("port") not in {p["name"] for p in s["spec"]["ports"]}:
                    fail(f"{path}: ServiceMonitor {name}: Service {s['metadata']['name']} has no port {ep.get('port')}")
            if ep.get("path") != "/metrics":
                fail(f"{path}: ServiceMonitor {name}: path {ep.get('path')} (the server serves /metrics)")

    router_cm = [d for n, d in by_kind.get("ConfigMap", {}).items() if n.startswith("rwkvx-pod-router")]
    flags_cm = by_kind.get("ConfigMap", {}).get("rwkvx-flags", {}).get("data", {})
    if len(router_cm) != 1:
        fail(f"{path}: want one rwkvx-pod-router ConfigMap, found {len(router_cm)}")
    else:
        router = yaml.safe_load(router_cm[0]["data"]["pod-router.yaml"])
        local = {c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
                 ["address"]["socket_address"]["port_value"] for c in router["static_resources"]["clusters"]}
        for cluster, key in (("local_http", "RWKVX_FLAG_HTTP_PORT"), ("local_grpc", "RWKVX_FLAG_GRPC_PORT")):
            if str(local.get(cluster)) != flags_cm.get(key):
                fail(f"{path}: pod router {cluster} -> :{local.get(cluster)}, but {key}={flags_cm.get(key)}")
        listen = router["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
        ports = {p["name"]: p["containerPort"] for d in pods.values()
                 for c in d["spec"].get("initContainers", []) for p in c.get("ports", [])}
        if ports.get("router") != listen:
            fail(f"{path}: pod router listens on {listen}, container port router is {ports.get('router')}")

    headless = [s for s in services.values() if s["spec"].get("clusterIP") == "None"]
    if len(headless) != 1:
        fail(f"{path}: want exactly one headless Service for Envoy, found {len(headless)}")
    else:
        h = headless[0]
        ports = {p["port"] for p in h["spec"]["ports"]}
        for cl in envoy_cfg["static_resources"]["clusters"]:
            for ep in cl["load_assignment"]["endpoints"][0]["lb_endpoints"]:
                sa = ep["endpoint"]["address"]["socket_address"]
                if sa["address"] != h["metadata"]["name"] or sa["port_value"] not in ports:
                    fail(f"{path}: Envoy cluster {cl['name']} -> {sa['address']}:{sa['port_value']}"
                         f" is not the headless Service {h['metadata']['name']} {sorted(ports)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flags", required=True)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--envoy-version", required=True)
    ap.add_argument("overlays", nargs="+")
    a = ap.parse_args()
    flags = serve_flags(a.flags)
    if len(flags) < 20:
        fail(f"{a.flags}: found only {len(flags)} flags: has the flag table changed shape?")
    metrics = set(re.findall(r'"(rwkvx_[a-z_]+)"', open(a.metrics).read()))
    adapter_metrics = set()
    for d in load_all(a.adapter):
        for rule in yaml.safe_load(d["data"]["config.yaml"])["rules"]:
            adapter_metrics.add(rule["name"]["as"])
    envoy_cfg = yaml.safe_load(open(a.envoy))
    for o in a.overlays:
        check_overlay(o, flags, metrics, adapter_metrics, envoy_cfg, a.envoy_version)
    for p in problems:
        print("crossref: " + p)
    print(f"crossref: {len(a.overlays)} overlays, {len(flags)} server flags known: "
          + ("FAILED" if problems else "ok"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
