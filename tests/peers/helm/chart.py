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
A job Helm refuses answers {"ok": false, "error": "<type>: <message>"}; the script itself only fails
(exit 2) on unusable input. Run it from outside the helm_python package directory (its logging.py
shadows the standard library's).
"""
import base64
import json
import sys

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


def run(chart_dir, job):
    op = job["op"]
    values = job.get("values", {})
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
