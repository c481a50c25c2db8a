#!/bin/sh
# packaging/kubernetes: every manifest validates against the Kubernetes
# OpenAPI schemas (kubernetes-validate --strict: unknown fields fail), the
# kustomization lists exactly the manifests, the names the DaemonSet refers
# to exist, and nftopo loads the ConfigMap's config.yaml. (The ClusterRole's
# rules are checked against the code by crates/nftopo/tests/rbac.rs.)
# Usage: kubernetes.sh VENV NFTOPO   (root: a network namespace)
#   VENV: a virtualenv with kubernetes-validate (and so PyYAML)
set -eu

VENV=$1
NFTOPO=$2
K=packaging/kubernetes
NS=nftopo-pkg-k8s-$$
TMP=$(mktemp -d)

fail() { echo "kubernetes.sh: FAIL: $*" >&2; exit 1; }
trap 'ip netns del "$NS" 2>/dev/null || true; rm -rf "$TMP"' EXIT INT TERM

manifests=$(cd "$K" && ls -- *.yaml | grep -vx kustomization.yaml)
echo "== kubernetes-validate --strict ($("$VENV/bin/kubernetes-validate" --version))"
# shellcheck disable=SC2046 # one argument per file
"$VENV/bin/kubernetes-validate" --strict $(for m in $manifests; do echo "$K/$m"; done) |
	tee "$TMP/validate"
if grep -Eqv '^INFO .* passed ' "$TMP/validate"; then fail "schema validation"; fi

echo "== kustomization, references"
# shellcheck disable=SC2086
"$VENV/bin/python" - "$K" "$TMP/config.yaml" $manifests <<'EOF'
import os, sys
import yaml

k, config_out, manifests = sys.argv[1], sys.argv[2], sorted(sys.argv[3:])
kust = yaml.safe_load(open(os.path.join(k, "kustomization.yaml")))
assert sorted(kust["resources"]) == manifests, (kust["resources"], manifests)
objs = {}
for m in manifests:
    for doc in yaml.safe_load_all(open(os.path.join(k, m))):
        objs[(doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])] = doc
ds = objs[("DaemonSet", "kube-system", "nftopo")]
pod = ds["spec"]["template"]["spec"]
assert ("ServiceAccount", "kube-system", pod["serviceAccountName"]) in objs
binding = objs[("ClusterRoleBinding", None, "nftopo")]
assert binding["roleRef"]["name"] in {n for (kind, _, n) in objs if kind == "ClusterRole"}
assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
cm = objs[("ConfigMap", "kube-system", pod["volumes"][0]["configMap"]["name"])]
c = pod["containers"][0]
assert c["image"].split(":")[0] in {i["name"] for i in kust["images"]}
assert c["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
assert not c["securityContext"].get("privileged")
assert pod["hostNetwork"] and pod["priorityClassName"] == "system-node-critical"
assert pod["tolerations"] == [{"operator": "Exists"}]
assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
env = {e["name"]: e for e in c["env"]}
assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
mount = c["volumeMounts"][0]["mountPath"]
assert c["args"] == ["run", "--config", mount + "/config.yaml"], c["args"]
open(config_out, "w").write(cm["data"]["config.yaml"])
print("kustomization lists", manifests, "; references resolve")
EOF

echo "== nftopo loads the ConfigMap's config.yaml"
ip netns add "$NS"
out=$(ip netns exec "$NS" "$NFTOPO" run --config "$TMP/config.yaml" --kubeconfig /nonexistent \
	--hostname-override node-2 --healthz-bind-address= --metrics-bind-address= 2>&1 || true)
echo "$out" | grep -q 'kubeconfig /nonexistent' || { echo "$out"; fail "the ConfigMap's config.yaml does not load"; }

echo "kubernetes.sh: ok"
