#!/usr/bin/env bash
# System packages the build needs beyond the base image (Debian). Idempotent.
set -euo pipefail
need=(libgloo-dev libturbojpeg0-dev)
missing=()
for pkg in "${need[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
