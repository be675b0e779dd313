#!/usr/bin/env bash
# The demo, one command on a fresh machine:
#   bash deploy/demo/run.sh
# Installs what it needs (as .ci/run does), then starts a fake LiteLLM
# exporter (with "None" series colliding with genuine 500s), a real Prometheus
# scraping it and remote-writing through rwfix into a second Prometheus, and
# prints the LiteLLM queries side by side: before rwfix (the sender's own
# TSDB) and after (the receiver). It stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
. .ci/install
exec go test -count=1 -run '^TestDemo$' -v -demo .
