#!/usr/bin/env bash
# Builds rwfix's container image without Docker and without a registry, with
# buildah: the Dockerfile's final stage — a static rwfix binary and the CA
# bundle on an empty (scratch) image, run as 65534:65534 — from a binary built
# here. (`docker build -f deploy/container/Dockerfile .` gives the same image
# where a registry is reachable for the golang build stage.)
#   bash deploy/container/build.sh [TAG]        default TAG: rwfix:dev
# BUILDAH_STORAGE_DRIVER (default vfs) picks buildah's storage driver.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag="${1:-rwfix:dev}"
b=(buildah --storage-driver "${BUILDAH_STORAGE_DRIVER:-vfs}")
out=$(mktemp -d)
ctr=""
cleanup() { [ -n "$ctr" ] && "${b[@]}" rm "$ctr" >/dev/null; rm -rf "$out"; }
trap cleanup EXIT
CGO_ENABLED=0 go build -trimpath -buildvcs=auto -ldflags="-s -w" -o "$out/rwfix" .
ctr=$("${b[@]}" from scratch)
"${b[@]}" copy "$ctr" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
"${b[@]}" copy "$ctr" "$out/rwfix" /usr/local/bin/rwfix >/dev/null
"${b[@]}" config --user 65534:65534 --port 9201 --volume /var/lib/rwfix \
  --entrypoint '["/usr/local/bin/rwfix"]' \
  --cmd '["--config.file=/etc/rwfix/rwfix.yml", "--storage.path=/var/lib/rwfix"]' \
  --label org.opencontainers.image.source=https://github.com/rwfix/rwfix "$ctr"
"${b[@]}" commit --quiet "$ctr" "$tag"
echo "built $tag"
