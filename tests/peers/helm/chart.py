"""Drives the real Helm library (PyPI helm-python-sdk 0.2.2 = Helm v4 in-process) for the chart tests.

Usage: python chart.py CHART_DIR < jobs.json > results.json

jobs.json is a JSON list; each job is one of
  {"op": "render", "values": {...}, "release": "mcp-warden", "namespace": "mcp-warden"}
      -> {"ok": true, "manifests": {template path: text}, "crds": {file name: text}, "certs": [...]}
         certs: for each kubernetes.io/tls Secret rendered, its name, the SANs of tls.crt and whether
         ca.crt signed tls.crt (checked with `cryptography`).
  {"op": "lint", "values": {...}, "strict": true, "kube_version": "v1.29.0"}
      -> {"ok": true, "report": <helm lint report>}
  {"op": "schema", "values": {...}}
      -> {"ok": true} or {"ok": false, "error": "<Helm's message>"}
  {"op": "render-live", "values": {...}, "objects": [<Secret>, ...], ...}
      -> like render, but cluster-aware (as `helm upgrade` renders): `lookup` asks a stand-in API
         server on 127.0.0.1 that serves exactly `objects` (core v1 Secrets), and records in
         "requests" the paths Helm asked for.
A job Helm refuses answers {"ok": false, "error": "<type>: <message>"}; the script itself only fails
(exit 2) on unusable input. Run it from outside the helm_python package directory (its logging.py
shadows the standard library's).
"""
import base64
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import helm_python as helm
import yaml


def cert_facts(manifests):
    """SANs and CA signature of every kubernetes.io/tls Secret in the rendered manifests."""
    from cryptography import x509

    facts = []
    for path, text in manifests.items():
        if not path.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if not doc or doc.get("kind") != "Secret" or doc.get("type") != "kubernetes.io/tls":
                continue
            data = doc.get("data", {})
            cert = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
            ca = x509.load_pem_x509_certificate(base64.b64decode(data["ca.crt"]))
            try:
                cert.verify_directly_issued_by(ca)
                signed = True
            except Exception:  # noqa: BLE001 - any failure means "not signed by this CA"
                signed = False
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            facts.append({
                "secret": doc["metadata"]["name"],
                "dns_names": sans.value.get_values_for_type(x509.DNSName),
                "signed_by_ca": signed,
                "ca_is_ca": ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca,
            })
    return facts


class StandIn(ThreadingHTTPServer):
    """Just enough of the API server for Helm's `lookup` of core v1 Secrets: discovery of
    /api/v1 and GET of one Secret; 404 (a Kubernetes Status) for anything else."""

    def __init__(self, objects):
        super().__init__(("127.0.0.1", 0), Handler)
        self.objects = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects}
        self.requests = []


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send_json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - the http.server interface
        path = self.path.split("?")[0]
        self.server.requests.append(path)
        parts = path.strip("/").split("/")
        if path == "/api/v1":
            self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
                                 "resources": [{"name": "secrets", "singularName": "secret",
                                                "namespaced": True, "kind": "Secret",
                                                "verbs": ["get", "list"]}]})
        elif path == "/api":
            self.send_json(200, {"kind": "APIVersions", "versions": ["v1"]})
        elif len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "secrets":
            obj = self.server.objects.get((parts[3], parts[5]))
            if obj:
                self.send_json(200, obj)
            else:
                self.not_found()
        else:
            self.not_found()

    def not_found(self):
        self.send_json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "reason": "NotFound", "code": 404, "message": "not found"})


def render_live(chart_dir, job):
    server = StandIn(job.get("objects", []))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = helm.Config(kube_apiserver=f"http://127.0.0.1:{server.server_address[1]}",
                          namespace=job.get("namespace", "mcp-warden"), storage_driver="memory")
        with helm.Chart.load(chart_dir) as chart:
            manifests = cfg.render(chart, job.get("values", {}), name=job.get("release", "mcp-warden"),
                                   namespace=job.get("namespace", "mcp-warden"), is_upgrade=True)
        cfg.close()
        return {"ok": True, "manifests": manifests, "crds": {}, "certs": cert_facts(manifests),
                "requests": server.requests}
    finally:
        server.shutdown()


def run(chart_dir, job):
    op = job["op"]
    values = job.get("values", {})
    if op == "render-live":
        return render_live(chart_dir, job)
    if op == "lint":
        report = helm.lint(chart_dir, values, strict=job.get("strict", True),
                           kube_version=job.get("kube_version"))
        return {"ok": True, "report": report}
    with helm.Chart.load(chart_dir) as chart:
        if op == "schema":
            chart.validate_schema(values)
            return {"ok": True}
        if op == "render":
            manifests = chart.render(values, name=job.get("release", "mcp-warden"),
                                     namespace=job.get("namespace", "mcp-warden"), is_install=True)
            crds = {c["filename"]: c["data"] for c in chart.crds}
            return {"ok": True, "manifests": manifests, "crds": crds, "certs": cert_facts(manifests)}
    raise ValueError(f"unknown op {op!r}")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: chart.py CHART_DIR < jobs.json")
    results = []
    for job in json.load(sys.stdin):
        try:
            results.append(run(sys.argv[1], job))
        except helm.HelmError as e:
            results.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
