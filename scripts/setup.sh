#!/usr/bin/env bash
# Install what building and testing need and is missing: the wasm32-wasip2 target, the tansu
# Kafka-compatible broker, and (via scripts/brokers.sh) RabbitMQ.
set -euo pipefail

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "Installing the wasm32-wasip2 target…"
  rustup target add wasm32-wasip2
fi

if ! command -v tansu >/dev/null 2>&1; then
  echo "Installing tansu 0.6.0 (a Kafka-compatible broker; takes several minutes the first time)…"
  cargo install tansu --version 0.6.0 --locked --features dynostore,libsql
fi


# The TLS tests make their certificates with openssl.
if ! command -v openssl >/dev/null 2>&1; then
  echo "Installing openssl…"
  apt-get install -y openssl >/dev/null
fi
