"""Installs (or upgrades) the chart into the current kube context with the Helm library, for the
e2e tests when no `helm` CLI is on PATH.

Usage: python install.py CHART_DIR RELEASE NAMESPACE VALUES_JSON     (install or upgrade)
Uses $KUBECONFIG (or ~/.kube/config) and its current context. Run it from outside the helm_python
package directory.
"""
import json
import os
import sys

import helm_python as helm


def config(namespace):
    path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")
    return helm.Config(kubeconfig_path=path, namespace=namespace)


def main():
    _, chart, release, namespace, values = sys.argv
    cfg = config(namespace)
    values = json.loads(values)
    try:
        rel = cfg.upgrade(chart, release, values, namespace=namespace)
        what = "upgraded"
    except helm.HelmNotFoundError:
        rel = cfg.install(chart, release, values, namespace=namespace, create_namespace=True)
        what = "installed"
    print(f"{what} {release}: {str(rel)[:300]}")


if __name__ == "__main__":
    main()
