#!/usr/bin/env python3
"""Checks rendered manifests against Kubernetes' `restricted` Pod Security
standard, as the Pod Security admission controller would, plus a read-only
root filesystem for every container.

    check_restricted.py KUSTOMIZATION_DIR
        renders the directory (kustomize build, else kubectl kustomize) and
        exits 0 when every pod template complies and the namespaces enforce
        `restricted`; 1 with one line per violation
    check_restricted.py --expect-violations KUSTOMIZATION_DIR
        the opposite: exits 0 only when violations are found (proof that the
        check can fail: the root variant, packaging/k8s, must not pass)

The rules (kubernetes.io/docs/concepts/security/pod-security-standards,
"Restricted"): no host namespaces, ports or paths; volumes of the allowed
types only; not privileged; allowPrivilegeEscalation false; capabilities
drop ALL and add nothing but NET_BIND_SERVICE; runAsNonRoot true and
runAsUser not 0; seccomp RuntimeDefault or Localhost. Without kustomize or
kubectl the check is skipped (exit 77), under CI=true it fails.
"""

import os
import shutil
import subprocess
import sys

import yaml

ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                   "persistentVolumeClaim", "projected", "secret"}


def render(directory):
    if shutil.which("kustomize"):
        argv = ["kustomize", "build", directory]
    elif shutil.which("kubectl"):
        argv = ["kubectl", "kustomize", directory]
    else:
        if os.environ.get("CI") == "true":
            print("FAIL: neither kustomize nor kubectl (CI=true)", file=sys.stderr)
            sys.exit(1)
        print("SKIP: neither kustomize nor kubectl", file=sys.stderr)
        sys.exit(77)
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"{' '.join(argv)} failed: {result.stderr}", file=sys.stderr)
        sys.exit(1)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pod_templates(doc):
    """(where, pod spec) of every pod a workload would create."""
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return [("", spec)]
    if kind == "ScaledJob":
        return [("spec.jobTargetRef.template.spec",
                 spec["jobTargetRef"]["template"]["spec"])]
    if kind == "CronJob":
        return [("spec.jobTemplate.spec.template.spec",
                 spec["jobTemplate"]["spec"]["template"]["spec"])]
    if "template" in spec and "spec" in (spec.get("template") or {}):
        return [("spec.template.spec", spec["template"]["spec"])]
    return []


def check_pod(pod, report):
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            report(f"{field} is set")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            report(f"volume {volume['name']}: type {sorted(kinds)} not allowed")
    pod_context = pod.get("securityContext") or {}
    containers = (pod.get("initContainers", []) + pod.get("containers", []) +
                  pod.get("ephemeralContainers", []))
    for container in containers:
        name = container["name"]
        context = container.get("securityContext") or {}

        def setting(key):
            return context.get(key, pod_context.get(key))

        if context.get("privileged"):
            report(f"container {name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            report(f"container {name}: allowPrivilegeEscalation is not false")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            report(f"container {name}: capabilities do not drop ALL")
        added = set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            report(f"container {name}: adds capabilities {sorted(added)}")
        if setting("runAsNonRoot") is not True:
            report(f"container {name}: runAsNonRoot is not true")
        if setting("runAsUser") == 0:
            report(f"container {name}: runAsUser is 0")
        seccomp = (setting("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            report(f"container {name}: seccompProfile is {seccomp!r}")
        if context.get("readOnlyRootFilesystem") is not True:
            report(f"container {name}: the root filesystem is writable")
        for port in container.get("ports", []):
            if port.get("hostPort"):
                report(f"container {name}: hostPort {port['hostPort']}")


def main(argv):
    expect_violations = False
    if argv and argv[0] == "--expect-violations":
        expect_violations = True
        argv = argv[1:]
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    docs = render(argv[0])
    violations = []
    pods = 0
    for doc in docs:
        name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        if doc.get("kind") == "Namespace":
            labels = (doc.get("metadata") or {}).get("labels") or {}
            if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
                violations.append(f"{name}: does not enforce restricted")
        for where, pod in pod_templates(doc):
            pods += 1
            check_pod(pod, lambda what, n=name, w=where:
                      violations.append(f"{n} {w}: {what}"))
    if pods == 0:
        print(f"no pod templates in {argv[0]}", file=sys.stderr)
        return 1
    for violation in violations:
        print(violation)
    if expect_violations:
        if not violations:
            print(f"expected violations in {argv[0]}, found none", file=sys.stderr)
            return 1
        return 0
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
