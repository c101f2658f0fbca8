#!/usr/bin/env bash
# Install dlp-proxy as systemd services on this host (Debian/Ubuntu, systemd >= 250, as root).
#
#   deploy/systemd/install.sh                 one worker per core on 127.0.0.1:8081.. (PROXY
#                                             protocol on), metrics on 127.0.0.1:9465..; HAProxy
#                                             in front of them: /etc/dlp-proxy/haproxy.cfg
#   deploy/systemd/install.sh --single        one proxy on 0.0.0.0:3128, metrics 127.0.0.1:9464
#   install.sh --switch N [--release ID]      point worker N (or "single") at a release (default:
#                                             current), restart it, wait until it is ready
#
# Each run installs this checkout as a new release, /opt/dlp-proxy/releases/<version>-<time>-
# <commit>/ (code and its own venv, the C pass built in it), and points /opt/dlp-proxy/current
# at it. Each instance runs the release its own link names, /opt/dlp-proxy/worker/N (or
# worker/single): a new instance starts on the new release, a running one keeps its release
# until it is switched with --switch, one at a time (docs/operations.md). Rolling back is
# --switch N --release OLD. The three newest releases and every one in use are kept.
#
# Options: --workers N, --first-port P (8081), --first-metrics-port P (9465), --ca-name NAME,
# --no-start (install and enable, start nothing), --restart-all (switch every instance to the
# new release and restart them all at once), --root DIR (stage the whole tree under DIR: no
# user, no ownership, no systemctl; for images and tests), --no-venv (leave the release's venv
# to the caller). Needs Python >= 3.12 ($DLP_PYTHON or on PATH), gcc and OpenSSL's headers
# (apt-installed when missing).
#
# Safe to run again: the policy, the HMAC key, the CA, the worker files and the HAProxy file
# are kept; a new release and the unit files are installed.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
root="" single=0 workers="" first_port=8081 first_metrics=9465 start=1 venv=1
ca_name="DLP proxy CA" switch="" release="" restart_all=0
while [ $# -gt 0 ]; do
  case "$1" in
    --single) single=1 ;;
    --workers) workers="$2"; shift ;;
    --first-port) first_port="$2"; shift ;;
    --first-metrics-port) first_metrics="$2"; shift ;;
    --ca-name) ca_name="$2"; shift ;;
    --no-start) start=0 ;;
    --no-venv) venv=0 ;;
    --switch) switch="$2"; shift ;;
    --release) release="$2"; shift ;;
    --restart-all) restart_all=1 ;;
    --root) root=$(realpath -m "$2"); shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
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
live() { [ -z "$root" ] && [ -d /run/systemd/system ]; }

unit_of() { if [ "$1" = single ]; then echo dlp-proxy.service; else echo "dlp-proxy@$1.service"; fi; }
env_of() { if [ "$1" = single ]; then echo "$etc/proxy.env"; else echo "$etc/worker-$1.env"; fi; }

# Point instance $1 at release directory $2 (a relative link, so a staged tree stays valid).
link_instance() {
  install -d -m 0755 "$prefix/worker"
  ln -sfn "../releases/$(basename "$2")" "$prefix/worker/$1.tmp"
  mv -T "$prefix/worker/$1.tmp" "$prefix/worker/$1"
}

# Restart instance $1 and wait (60 s at most) until its /readyz answers 200.
restart_ready() {
  local unit port
  unit=$(unit_of "$1")
  systemctl restart "$unit"
  port=$(sed -n 's/^DLP_METRICS_PORT=//p' "$(env_of "$1")" | tail -1)
  for _ in $(seq 1 120); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then
      say "$unit runs $(readlink "$prefix/worker/$1") and is ready"; return 0
    fi
    sleep 0.5
  done
  echo "install.sh: $unit is not ready after 60 s: journalctl -u $unit" >&2; return 1
}

# --switch N: one instance to another release (an upgrade or a rollback), nothing else.
if [ -n "$switch" ]; then
  if [ -n "$release" ]; then target=$prefix/releases/$release; else target=$(readlink -f "$prefix/current"); fi
  [ -d "$target" ] || { echo "install.sh: no release ${release:-current} in $prefix/releases" >&2; exit 1; }
  [ -f "$(env_of "$switch")" ] || { echo "install.sh: no instance $switch ($(env_of "$switch"))" >&2; exit 1; }
  link_instance "$switch" "$target"
  say "$(unit_of "$switch") -> $(basename "$target")"
  if live; then restart_ready "$switch"; fi
  exit 0
fi

# 1. The service's own user: no shell, no home of its own outside its state directory.
if [ -z "$root" ] && ! getent passwd dlp-proxy >/dev/null; then
  say "creating system user dlp-proxy"
  useradd --system --user-group --home-dir /var/lib/dlp-proxy --no-create-home \
    --shell /usr/sbin/nologin --comment "DLP egress proxy" dlp-proxy
fi

# 2. The code, read-only for the service: a new release beside the old ones, never over one in
#    use. A non-editable install (the package carries what it needs); the C pass is built here.
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$src/pyproject.toml" | head -1)
commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || true)
id="${version:-unknown}-$(date -u +%Y%m%dT%H%M%SZ)${commit:+-$commit}"
n=1; base=$id
while [ -e "$prefix/releases/$id" ]; do n=$((n + 1)); id="$base.$n"; done
rel=$prefix/releases/$id
say "installing release $id in $rel"
install -d -m 0755 "$prefix" "$prefix/releases" "$rel"
files=(dlp_addon docs deploy pyproject.toml setup.py README.md)
for f in LICENSE MANIFEST.in; do [ -e "$src/$f" ] && files+=("$f"); done
tar -C "$src" --exclude='__pycache__' --exclude='*.so' --exclude='*.egg-info' -cf - "${files[@]}" \
  | tar -C "$rel" -xf -
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
  # The scanner's C pass (setup.py) needs a compiler, OpenSSL's and Python's headers.
  build=()
  command -v gcc >/dev/null 2>&1 || build+=(gcc)
  [ -f /usr/include/openssl/sha.h ] || build+=(libssl-dev)
  # OCR of pictures (dlp_addon/extract/ocr.py): Tesseract and its Simplified Chinese model.
  command -v tesseract >/dev/null 2>&1 || build+=(tesseract-ocr)
  [ -f /usr/share/tesseract-ocr/5/tessdata/chi_sim.traineddata ] || build+=(tesseract-ocr-chi-sim)
  if [ ${#build[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
      || { echo "install.sh: needs ${build[*]} (the scanner's C pass, OCR)" >&2; exit 1; }
    say "installing ${build[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${build[@]}"
  fi
  "$py" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || { echo "install.sh: $py has no Python.h: install its -dev package" >&2; exit 1; }
  say "creating $rel/venv with $py"
  "$py" -m venv "$rel/venv"
  "$rel/venv/bin/pip" install --quiet --disable-pip-version-check "$rel"
  rm -rf "$rel/build" "$rel"/*.egg-info
  # The compiled pass loads (OpenSSL linked): loaded by its path, so this checks the build alone.
  "$rel/venv/bin/python" - <<'PY' || { echo "install.sh: the scanner's C pass did not build in $rel/venv" >&2; exit 1; }
import glob
import importlib.util
import sysconfig

(path,) = glob.glob(sysconfig.get_paths()["platlib"] + "/dlp_addon/detect/_numscan*.so")
spec = importlib.util.spec_from_file_location("dlp_addon.detect._numscan", path)
assert spec and spec.loader
spec.loader.exec_module(importlib.util.module_from_spec(spec))
PY
fi
[ -n "$root" ] || chown -R root:root "$rel"
chmod -R go-w "$rel"
ln -sfn "releases/$id" "$prefix/current.tmp" && mv -T "$prefix/current.tmp" "$prefix/current"

# 3. Configuration. Secrets are root's alone: systemd hands the service a private copy
#    (LoadCredential=), which no other process, not even another of this user, can read.
install -d -m 0755 "$etc"
if [ ! -f "$etc/policy.yaml" ]; then
  say "installing the shipped policy as $etc/policy.yaml (edit it: docs/policy.md)"
  install -m 0644 "$rel/dlp_addon/patterns/policy.yaml" "$etc/policy.yaml"
fi
if [ ! -f "$etc/hmac.key" ]; then
  say "creating the HMAC key $etc/hmac.key"
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$etc/hmac.key")
fi
chmod 0600 "$etc/hmac.key"
if [ ! -f "$etc/ca/mitmproxy-ca.pem" ]; then
  say "creating the proxy CA '$ca_name' in $etc/ca (distribute mitmproxy-ca-cert.pem: docs/deploy.md)"
  install -d -m 0700 "$etc/ca"
  pybin="$rel/venv/bin/python"
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

# 5. Which release each instance runs: a new instance the new release; with --restart-all
#    every instance; otherwise a running instance keeps its own until switched.
fresh=() kept=()
for unit in "${instances[@]}"; do
  i=${unit#dlp-proxy@}; i=${i%.service}; [ "$unit" = dlp-proxy.service ] && i=single
  if [ "$restart_all" = 1 ] || [ ! -e "$prefix/worker/$i" ]; then
    link_instance "$i" "$rel"; fresh+=("$unit")
  else
    kept+=("$i")
  fi
done

# 6. HAProxy in front of the workers: backend dlp_workers, server wN for dlp-proxy@N, the
#    runtime API on /run/haproxy/admin.sock (docs/operations.md drains through it).
if [ "$single" = 0 ] && [ ! -f "$etc/haproxy.cfg" ]; then
  say "writing $etc/haproxy.cfg (HAProxy on 0.0.0.0:3128 in front of the workers)"
  servers=""
  for n in $(seq 1 "$workers"); do
    eval "$(grep -E '^DLP_(LISTEN|METRICS)_PORT=[0-9]+$' "$etc/worker-$n.env")"
    servers+="    server w$n 127.0.0.1:$DLP_LISTEN_PORT check port $DLP_METRICS_PORT send-proxy-v2"$'\n'
  done
  DLP_SERVERS=$servers "${DLP_PYTHON:-python3}" - "$rel/dlp_addon/haproxy.cfg" "$etc/haproxy.cfg" <<'PY'
import os
import string
import sys

template = open(sys.argv[1]).read()
text = string.Template(template).substitute(
    bind="0.0.0.0:3128",
    nbthread=1,
    stats_socket="/run/haproxy/admin.sock",
    servers=os.environ["DLP_SERVERS"].rstrip("\n"),
)
with open(sys.argv[2], "w") as f:
    f.write(text)
PY
  chmod 0644 "$etc/haproxy.cfg"
fi

# 7. Units, pruning releases no instance uses (the three newest stay for a rollback).
install -d -m 0755 "$units"
install -m 0644 "$src/deploy/systemd/dlp-proxy.service" "$src/deploy/systemd/dlp-proxy@.service" \
  "$src/deploy/systemd/dlp-proxy.target" "$units/"
in_use=" $(readlink "$prefix"/current "$prefix"/worker/* 2>/dev/null | xargs -rn1 basename | tr '\n' ' ') "
for old in $(ls -1t "$prefix/releases" | tail -n +4); do
  case "$in_use" in *" $old "*) ;; *) say "removing release $old (no instance uses it)"; rm -rf "${prefix:?}/releases/$old" ;; esac
done
if [ ${#kept[@]} -gt 0 ]; then
  say "instances ${kept[*]} still run their release; switch them one at a time:"
  say "  $rel/deploy/systemd/install.sh --switch N   (drain first: docs/operations.md)"
fi
if ! live; then
  say "staged; on the host: systemctl daemon-reload && systemctl enable --now ${instances[*]}"
  exit 0
fi
systemctl daemon-reload
systemctl enable dlp-proxy.target "${instances[@]}"
if [ "$start" = 1 ] && [ ${#fresh[@]} -gt 0 ]; then
  systemctl restart "${fresh[@]}"
  say "started ${fresh[*]}; logs: journalctl -u 'dlp-proxy*'"
fi
