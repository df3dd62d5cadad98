"""Installs (or upgrades) the chart into the current kube context with the Helm library, for the
e2e tests when no `helm` CLI is on PATH.

Usage: python install.py CHART_DIR RELEASE NAMESPACE VALUES_JSON     (install or upgrade)
       python install.py --uninstall RELEASE NAMESPACE
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
    if sys.argv[1] == "--uninstall":
        _, _, release, namespace = sys.argv
        with_cfg = config(namespace)
        with_cfg.uninstall(release, ignore_not_found=True)
        print(f"uninstalled {release}")
        return
    _, chart, release, namespace, values = sys.argv
    cfg = config(namespace)
    values = json.loads(values)
    installed = any(r.get("name") == release for r in cfg.list() or [])
    if installed:
        rel = cfg.upgrade(chart, release, values, namespace=namespace)
    else:
        rel = cfg.install(chart, release, values, namespace=namespace, create_namespace=True)
    print(f"{'upgraded' if installed else 'installed'} {release}: {rel.get('info', {}).get('status', '?')}")


if __name__ == "__main__":
    main()
