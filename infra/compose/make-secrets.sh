#!/bin/sh
# Writes random credentials to ./secrets (mode 600) unless they exist. Hex only: the
# PostgreSQL password goes into a database URI.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
for name in postgres_password s3_access_key s3_secret_key mlflow_admin_password mlflow_flask_key; do
  [ -s "secrets/$name" ] || openssl rand -hex 20 | tr -d '\n' > "secrets/$name"
done
echo "credentials in $(pwd)/secrets"
