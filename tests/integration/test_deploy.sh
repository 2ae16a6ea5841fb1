#!/usr/bin/env bash
# test_deploy.sh: the deployment files pass ops/validate-deploy, and the
# validation catches real mistakes: each case below breaks one thing in a
# copy of the files and expects validate-deploy to fail with a given message.
#
# usage: test_deploy.sh BUILD_DIR
#
# BUILD_DIR is a CMake build tree; its orderctl and workers tell which shared
# libraries the image's runtime stage must install. Needs no stack, no Docker
# engine and no network (the tools come from ops/install-deps).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 64
fi
BUILD="$(CDPATH='' cd -- "$1" && pwd -P)"
REPO="$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)"
VALIDATE="$REPO/ops/validate-deploy"
TMP="$(mktemp -d)"
trap 'rm -rf -- "$TMP"' EXIT

passed=0
failed=0

# 1. The files as they are: everything passes, including a build of the
# Docker build context with the Dockerfile's own cmake line.
if out="$("$VALIDATE" --binaries "$BUILD" --build-context 2>&1)"; then
  printf '%s\n' "$out"
  if grep -qx 'validate-deploy: 3 passed, 0 failed' <<<"$out"; then
    passed=$((passed + 1))
  else
    echo "FAIL: validate-deploy did not run its three steps"
    failed=$((failed + 1))
  fi
else
  printf '%s\n' "$out"
  echo "FAIL: validate-deploy rejects the repository's deployment files"
  failed=$((failed + 1))
fi

# A pristine copy of what validate-deploy reads.
mkdir -p "$TMP/pristine/ops"
(cd "$REPO" && cp -r Dockerfile .dockerignore docker-compose.yml CMakeLists.txt common workers tools \
  bench migrations "$TMP/pristine/" && cp -r ops/k8s ops/kafka "$TMP/pristine/ops/")
rm -rf "$TMP/pristine/ops/kafka/"*.jar 2>/dev/null || true

# breaks NAME FILE SED_EXPR WHAT EXPECTED: applies SED_EXPR to FILE in a fresh
# copy, runs validate-deploy --only WHAT on it, and expects a failure whose
# output contains EXPECTED.
breaks() {
  local name="$1" file="$2" expr="$3" what="$4" expected="$5" dir="$TMP/case" out
  rm -rf "$dir"
  cp -r "$TMP/pristine" "$dir"
  sed -i -e "$expr" "$dir/$file"
  if cmp -s "$TMP/pristine/$file" "$dir/$file"; then
    echo "FAIL $name: the edit \"$expr\" changed nothing in $file (the case is stale)"
    failed=$((failed + 1))
    return
  fi
  if out="$("$VALIDATE" --root "$dir" --binaries "$BUILD" --only "$what" 2>&1)"; then
    printf '%s\n' "$out" | sed 's/^/    /'
    echo "FAIL $name: validate-deploy accepted it"
    failed=$((failed + 1))
  elif grep -qF -- "$expected" <<<"$out"; then
    echo "ok $name: $(grep -F -- "$expected" <<<"$out" | head -n 1)"
    passed=$((passed + 1))
  else
    printf '%s\n' "$out" | sed 's/^/    /'
    echo "FAIL $name: failed, but without \"$expected\""
    failed=$((failed + 1))
  fi
}

# 2. Broken on purpose, one thing at a time.
breaks compose-condition docker-compose.yml \
  's/condition: service_completed_successfully/condition: service_done/' \
  compose 'not a valid Compose file'
breaks compose-missing-dependency docker-compose.yml \
  's/^  kafka:$/  broker:/' \
  compose "depends on service 'kafka' which is undefined"
breaks compose-shared-role docker-compose.yml \
  's#orderflow_order_status_login:order-status-dev@#orderflow:orderflow-dev@#' \
  compose 'want its own role'"'"'s member "orderflow_order_status_login"'
breaks compose-gateway-role docker-compose.yml \
  's#orderflow_gateway_login:gateway-dev@#orderflow_orderctl_login:orderctl-dev@#' \
  compose 'want its own role'"'"'s member "orderflow_gateway_login"'
breaks k8s-gateway-one-replica ops/k8s/base/deployment-gateway.yaml \
  's/^  replicas: 2$/  replicas: 1/' \
  k8s 'fewer than 2 replicas'
breaks k8s-gateway-open-ingress ops/k8s/base/networkpolicy.yaml \
  's#orderflow.io/gateway-client: "true"#{}#' \
  k8s 'only labelled namespaces may connect'
breaks compose-kafka-version docker-compose.yml \
  's#apache/kafka:3.9.1#apache/kafka:3.8.0#' \
  compose 'want apache/kafka:3.9.1'
breaks k8s-writable-root ops/k8s/base/deployment-order-status.yaml \
  's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/' \
  k8s 'readOnlyRootFilesystem must be true'
breaks k8s-unknown-field ops/k8s/base/deployment-order-created.yaml \
  's/readinessProbe:/readinesProbe:/' \
  k8s "'readinesProbe' was unexpected"
breaks k8s-grace-period ops/k8s/base/deployment-return-requested.yaml \
  's/terminationGracePeriodSeconds: 30/terminationGracePeriodSeconds: 20/' \
  k8s 'terminationGracePeriodSeconds is 20'
breaks k8s-no-readiness-probe ops/k8s/base/deployment-order-status.yaml \
  's#path: /readyz#path: /healthz#' \
  k8s 'readinessProbe is /healthz'
breaks keda-metadata-type ops/k8s/base/scaledobjects.yaml \
  '0,/lagThreshold: "100"/s//lagThreshold: 100/' \
  k8s "100 is not of type 'string'"
breaks keda-max-replicas ops/k8s/base/scaledobjects.yaml \
  '0,/maxReplicaCount: 6/s//maxReplicaCount: 12/' \
  k8s 'maxReplicaCount is 12, want the partition count 6'
breaks strimzi-partitions ops/k8s/base/kafkatopics.yaml \
  '0,/partitions: 6/s//partitions: 3/' \
  k8s 'partitions is 3, want ORDERFLOW_PARTITIONS 6'
breaks strimzi-unknown-field ops/k8s/base/kafkatopics.yaml \
  '0,/partitions: 6/s//partition: 6/' \
  k8s "'partition' was unexpected"
breaks netpol-ingress ops/k8s/base/networkpolicy.yaml \
  '0,/kubernetes.io\/metadata.name: monitoring/s//kubernetes.io\/metadata.name: default/' \
  k8s 'only the monitoring namespace may connect'
breaks netpol-kafka-port ops/k8s/overlays/prod/kustomization.yaml \
  's/value: 9093$/value: 9094/' \
  k8s 'egress does not allow TCP 9093'
breaks prod-sasl ops/k8s/overlays/prod/kustomization.yaml \
  's/value: scram_sha512/value: none/' \
  k8s 'the trigger has no sasl'
breaks prod-unlisted-secret ops/k8s/overlays/prod/external-secrets.txt \
  '/^orderflow-order-status-db$/d' \
  k8s 'secret "orderflow-order-status-db" is neither created by the manifests nor listed'
breaks dev-owner-login ops/k8s/overlays/dev/kustomization.yaml \
  's#DATABASE_URL=postgresql://orderflow_order_created_login:order-created-dev@#DATABASE_URL=postgresql://orderflow:orderflow-dev@#' \
  k8s 'DATABASE_URL connects as "orderflow"'
breaks docker-runtime-library Dockerfile \
  's/ libmicrohttpd12 / /' \
  docker 'runtime stage does not install libmicrohttpd12'
breaks docker-build-package Dockerfile \
  's/ libuv1-dev / /' \
  docker 'build stage does not install libuv1-dev'
breaks docker-root-user Dockerfile \
  's/^USER 10001:10001$/USER root/' \
  docker 'numeric non-root USER'
breaks docker-lint Dockerfile \
  's/^WORKDIR \/src$/RUN cd \/src/' \
  docker 'DL3003'
breaks dockerignore-context .dockerignore \
  '/^!bench\/$/d' \
  docker 'COPY bench/: not in the build context'

echo "$passed passed, $failed failed"
((failed == 0))
