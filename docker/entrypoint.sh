#!/usr/bin/env bash
# Entrypoint of the medn image. One image, four roles:
#   head    - the Ray head node (GCS on RAY_PORT, default 6379; dashboard + job API on 8265)
#   worker  - a Ray worker node joining RAY_HEAD_ADDRESS (GPUs detected, extra RAY_WORKER_RESOURCES)
#   mlflow  - the MLflow tracking server on PostgreSQL, serving artifacts from /mlartifacts
#   <cmd>   - anything else is run as is (e.g. `medn study ablation-components ...`)
# Secrets come from the environment or mounted files at run time, never from the image:
#   Ray token:  RAY_AUTH_TOKEN_PATH (a mounted secret file, preferred) or RAY_AUTH_TOKEN
#   PostgreSQL: POSTGRES_PASSWORD_FILE (a mounted secret) or POSTGRES_PASSWORD
set -euo pipefail

die() { echo "medn-entrypoint: $*" >&2; exit 64; }

require_ray_token() {
    [[ "${RAY_AUTH_MODE:-token}" == "token" ]] || return 0
    if [[ -n "${RAY_AUTH_TOKEN:-}" ]]; then return 0; fi
    local path="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
    [[ -s "$path" ]] || die "Ray token authentication is on (RAY_AUTH_MODE=token) but no token was" \
        "found: mount the cluster's token file and set RAY_AUTH_TOKEN_PATH (checked '$path')," \
        "or set RAY_AUTH_TOKEN. Every node and the driver need the same token."
    [[ -r "$path" ]] || die "the Ray token file '$path' is not readable by uid $(id -u)"
}

postgres_uri() {
    local password="${POSTGRES_PASSWORD:-}"
    if [[ -n "${POSTGRES_PASSWORD_FILE:-}" ]]; then
        [[ -r "$POSTGRES_PASSWORD_FILE" ]] || die "POSTGRES_PASSWORD_FILE='$POSTGRES_PASSWORD_FILE' is not readable"
        password="$(<"$POSTGRES_PASSWORD_FILE")"
    fi
    : "${POSTGRES_USER:?set POSTGRES_USER (see docker/.env.example)}"
    : "${POSTGRES_DB:?set POSTGRES_DB (see docker/.env.example)}"
    [[ -n "$password" ]] || die "set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (see docker/.env.example)"
    # URL-encode the credentials so that any password works in the SQLAlchemy URI.
    MEDN_PG_USER="$POSTGRES_USER" MEDN_PG_PASSWORD="$password" python - <<'PY'
import os
from urllib.parse import quote

user = quote(os.environ["MEDN_PG_USER"], safe="")
password = quote(os.environ["MEDN_PG_PASSWORD"], safe="")
host = os.environ.get("POSTGRES_HOST", "postgres")
port = os.environ.get("POSTGRES_PORT", "5432")
print(f"postgresql+psycopg2://{user}:{password}@{host}:{port}/{os.environ['POSTGRES_DB']}")
PY
}

role="${1:-worker}"
case "$role" in
    head)
        shift
        require_ray_token
        args=(--head --block --port "${RAY_PORT:-6379}"
              --dashboard-host 0.0.0.0 --dashboard-port 8265 --disable-usage-stats)
        [[ -n "${RAY_HEAD_NUM_CPUS:-}" ]] && args+=(--num-cpus "$RAY_HEAD_NUM_CPUS")
        [[ -n "${RAY_HEAD_NUM_GPUS:-}" ]] && args+=(--num-gpus "$RAY_HEAD_NUM_GPUS")
        exec ray start "${args[@]}" "$@"
        ;;
    worker)
        shift
        require_ray_token
        args=(--address "${RAY_HEAD_ADDRESS:-ray-head:6379}" --block --disable-usage-stats)
        [[ -n "${RAY_WORKER_NUM_CPUS:-}" ]] && args+=(--num-cpus "$RAY_WORKER_NUM_CPUS")
        [[ -n "${RAY_WORKER_RESOURCES:-}" ]] && args+=(--resources "$RAY_WORKER_RESOURCES")
        exec ray start "${args[@]}" "$@"
        ;;
    mlflow)
        shift
        uri="$(postgres_uri)"
        exec mlflow server \
            --backend-store-uri "$uri" \
            --serve-artifacts --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/mlartifacts}" \
            --host "${MLFLOW_HOST:-0.0.0.0}" --port "${MLFLOW_PORT:-5000}" \
            --workers "${MLFLOW_WORKERS:-2}" \
            --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*}" \
            "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
