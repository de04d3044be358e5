#!/usr/bin/env bash
# Makes sure PostgreSQL answers on 127.0.0.1:5432 with trust auth for local TCP (the store's
# tests use it): installs Debian's postgresql if missing, starts the cluster, waits.
set -euo pipefail

say() { echo "[postgres] $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
answers() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

if answers; then
  say "PostgreSQL answers on 127.0.0.1:5432"
  exit 0
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  say "installing postgresql from Debian's packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -1)
hba=/etc/postgresql/$version/main/pg_hba.conf
if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
  say "allowing trust auth for 127.0.0.1 (a test machine)"
  as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
fi
as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 60); do
  if answers; then
    say "PostgreSQL answers on 127.0.0.1:5432"
    exit 0
  fi
  sleep 1
done
say "ERROR: PostgreSQL did not answer on 127.0.0.1:5432 within 60s (see /var/log/postgresql/)."
exit 1
