#!/usr/bin/env bash
# Create (or update) the SliceTwin Secrets in Kubernetes from `slicetwin keys init`'s output.
#
#   slicetwin keys init                      # .env (keys, mode 600) + deploy/redis/users.acl
#   deploy/k8s/create-secrets.sh [ENV_FILE] [ACL_FILE]
#
# Defaults: ENV_FILE=.env, ACL_FILE=deploy/redis/users.acl; NAMESPACE (env) defaults to slicetwin,
# KUBECTL (env) to kubectl. One Secret per service holding only that service's keys (names and
# keys: deploy/k8s/secrets.example.yaml). Values go through files of mode 600, never through the
# command line. Idempotent: `create --dry-run=client -o yaml | apply`, so re-running after
# `slicetwin keys init --force` replaces the keys (then restart the pods: kubectl rollout restart).
set -euo pipefail
ENV_FILE=${1:-.env}
ACL_FILE=${2:-deploy/redis/users.acl}
NAMESPACE=${NAMESPACE:-slicetwin}
KUBECTL=${KUBECTL:-kubectl}

# secret name -> the .env keys it holds
SECRETS=(
  "slicetwin-controller SLICETWIN_API_KEY SLICETWIN_HMAC_KEY SLICETWIN_PROMOTION_PUBLIC_KEY REDIS_CONTROLLER_PASSWORD"
  "slicetwin-twin SLICETWIN_TWIN_API_KEY SLICETWIN_HMAC_KEY SLICETWIN_PROMOTION_PUBLIC_KEY REDIS_TWIN_PASSWORD"
  "slicetwin-trainer SLICETWIN_PROMOTION_KEY SLICETWIN_TWIN_API_KEY SLICETWIN_HMAC_KEY REDIS_TRAINER_PASSWORD"
  "slicetwin-gnb SLICETWIN_API_KEY"
)

[ -f "$ENV_FILE" ] || { echo "no $ENV_FILE: run \`slicetwin keys init\` first" >&2; exit 2; }
[ -f "$ACL_FILE" ] || { echo "no $ACL_FILE: run \`slicetwin keys init\` first" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 700 "$tmp"

HERE=$(cd "$(dirname "$0")" && pwd)
if [ "$NAMESPACE" = slicetwin ]; then  # the Secrets need the namespace before the first apply -k
  "$KUBECTL" apply -f "$HERE/base/namespace.yaml"
fi

apply_secret() {  # name, then kubectl create secret generic arguments
  local name=$1; shift
  "$KUBECTL" -n "$NAMESPACE" create secret generic "$name" "$@" --dry-run=client -o yaml \
    | "$KUBECTL" -n "$NAMESPACE" apply -f -
}

for entry in "${SECRETS[@]}"; do
  read -r name keys <<<"$entry"
  part="$tmp/$name.env"
  (umask 077; : >"$part")
  for key in $keys; do
    line=$(grep -E "^${key}=" "$ENV_FILE" | tail -n 1 || true)
    if [ -z "${line#*=}" ]; then
      echo "$ENV_FILE has no value for $key (secret $name): run \`slicetwin keys init\`" >&2
      exit 2
    fi
    printf '%s\n' "$line" >>"$part"
  done
  apply_secret "$name" --from-env-file="$part"
done
apply_secret slicetwin-redis-acl --from-file=users.acl="$ACL_FILE"
echo "secrets created in namespace $NAMESPACE; next: kubectl apply -k deploy/k8s" >&2
