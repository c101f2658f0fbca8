#!/usr/bin/env bash
# Install dlp-proxy as systemd services on this host (Debian/Ubuntu, systemd >= 250, as root).
#
#   deploy/systemd/install.sh                 one worker per core on 127.0.0.1:8081.. (PROXY
#                                             protocol on), metrics on 127.0.0.1:9465..; put
#                                             HAProxy (deploy/haproxy/) in front of them
#   deploy/systemd/install.sh --single        one proxy on 0.0.0.0:3128, metrics 127.0.0.1:9464
#
# Options: --workers N, --first-port P (8081), --first-metrics-port P (9465), --ca-name NAME,
# --no-start (install and enable, start nothing), --root DIR (stage the whole tree under DIR:
# no user, no ownership, no systemctl; for images and tests), --no-venv (leave
# /opt/dlp-proxy/.venv to the caller). Needs Python >= 3.12 ($DLP_PYTHON or on PATH).
#
# Safe to run again: the policy, the HMAC key, the CA and existing worker files are kept;
# the code, the virtual environment and the unit files are replaced.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
root="" single=0 workers="" first_port=8081 first_metrics=9465 start=1 venv=1
ca_name="DLP proxy CA"
while [ $# -gt 0 ]; do
  case "$1" in
    --single) single=1 ;;
    --workers) workers="$2"; shift ;;
    --first-port) first_port="$2"; shift ;;
    --first-metrics-port) first_metrics="$2"; shift ;;
    --ca-name) ca_name="$2"; shift ;;
    --no-start) start=0 ;;
    --no-venv) venv=0 ;;
    --root) root=$(realpath -m "$2"); shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$workers" ] || workers=$(nproc)
case "$workers" in ''|*[!0-9]*|0) echo "install.sh: --workers needs a positive number" >&2; exit 2 ;; esac
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (or stage with --root DIR)" >&2; exit 1
fi

prefix=$root/opt/dlp-proxy
etc=$root/etc/dlp-proxy
units=$root/etc/systemd/system
say() { echo "install.sh: $*"; }

# 1. The service's own user: no shell, no home of its own outside its state directory.
if [ -z "$root" ] && ! getent passwd dlp-proxy >/dev/null; then
  say "creating system user dlp-proxy"
  useradd --system --user-group --home-dir /var/lib/dlp-proxy --no-create-home \
    --shell /usr/sbin/nologin --comment "DLP egress proxy" dlp-proxy
fi

# 2. The code, read-only for the service (the package carries its data in dlp_addon/patterns/),
#    an editable install of this copy.
say "installing the code in $prefix"
install -d -m 0755 "$prefix"
rm -rf "$prefix/dlp_addon" "$prefix/patterns"
tar -C "$src" -cf - dlp_addon docs deploy pyproject.toml README.md | tar -C "$prefix" -xf -
if [ "$venv" = 1 ]; then
  py=${DLP_PYTHON:-}
  if [ -z "$py" ]; then
    for c in python3.14 python3.13 python3.12 python3; do
      if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
        py=$(command -v "$c"); break
      fi
    done
  fi
  [ -n "$py" ] || { echo "install.sh: no Python >= 3.12 found; set DLP_PYTHON" >&2; exit 1; }
  say "creating $prefix/.venv with $py"
  rm -rf "$prefix/.venv"
  "$py" -m venv "$prefix/.venv"
  "$prefix/.venv/bin/pip" install --quiet --disable-pip-version-check -e "$prefix"
  "$prefix/.venv/bin/python" -m compileall -q "$prefix/dlp_addon" >/dev/null || true
fi
[ -n "$root" ] || chown -R root:root "$prefix"
chmod -R go-w "$prefix"

# 3. Configuration. Secrets are root's alone: systemd hands the service a private copy
#    (LoadCredential=), which no other process, not even another of this user, can read.
install -d -m 0755 "$etc"
if [ ! -f "$etc/policy.yaml" ]; then
  say "installing the shipped policy as $etc/policy.yaml (edit it: docs/policy.md)"
  install -m 0644 "$prefix/dlp_addon/patterns/policy.yaml" "$etc/policy.yaml"
fi
if [ ! -f "$etc/hmac.key" ]; then
  say "creating the HMAC key $etc/hmac.key"
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$etc/hmac.key")
fi
chmod 0600 "$etc/hmac.key"
if [ ! -f "$etc/ca/mitmproxy-ca.pem" ]; then
  say "creating the proxy CA '$ca_name' in $etc/ca (distribute mitmproxy-ca-cert.pem: docs/deploy.md)"
  install -d -m 0700 "$etc/ca"
  pybin="$prefix/.venv/bin/python"
  [ -x "$pybin" ] || pybin=${DLP_PYTHON:-}
  [ -n "$pybin" ] || { [ -x "$src/.venv/bin/python" ] && pybin="$src/.venv/bin/python"; } || pybin=python3
  "$pybin" - "$etc/ca" "$ca_name" <<'PY'
import sys
from pathlib import Path

from mitmproxy.certs import CertStore

CertStore.create_store(Path(sys.argv[1]), "mitmproxy", 2048, "dlp-proxy", sys.argv[2])
PY
fi
chmod 0700 "$etc/ca"
chmod 0600 "$etc/ca"/*

# 4. Instances: one environment file each, never overwritten once written.
if [ "$single" = 1 ]; then
  [ -f "$etc/proxy.env" ] || cat > "$etc/proxy.env" <<EOF
# dlp-proxy.service: where it listens. DLP_ARGS takes any other --set option.
DLP_LISTEN_HOST=0.0.0.0
DLP_LISTEN_PORT=3128
DLP_METRICS_HOST=127.0.0.1
DLP_METRICS_PORT=9464
DLP_ARGS=
EOF
  instances=(dlp-proxy.service)
else
  instances=()
  for n in $(seq 1 "$workers"); do
    f="$etc/worker-$n.env"
    [ -f "$f" ] || cat > "$f" <<EOF
# dlp-proxy@$n.service: one worker behind HAProxy, which sends the PROXY protocol.
DLP_LISTEN_HOST=127.0.0.1
DLP_LISTEN_PORT=$((first_port + n - 1))
DLP_METRICS_HOST=127.0.0.1
DLP_METRICS_PORT=$((first_metrics + n - 1))
DLP_ARGS=--set dlp_proxy_protocol=true --set dlp_proxy_protocol_from=127.0.0.1
EOF
    instances+=("dlp-proxy@$n.service")
  done
fi

# 5. Units.
install -d -m 0755 "$units"
install -m 0644 "$src/deploy/systemd/dlp-proxy.service" "$src/deploy/systemd/dlp-proxy@.service" \
  "$src/deploy/systemd/dlp-proxy.target" "$units/"
if [ -n "$root" ] || [ ! -d /run/systemd/system ]; then
  say "staged; on the host: systemctl daemon-reload && systemctl enable --now ${instances[*]}"
  exit 0
fi
systemctl daemon-reload
systemctl enable dlp-proxy.target "${instances[@]}"
if [ "$start" = 1 ]; then
  systemctl restart "${instances[@]}"
  say "started ${instances[*]}; logs: journalctl -u 'dlp-proxy*'"
fi
