#!/usr/bin/env bash
# Start or stop the brokers the tests and benchmarks use, on loopback only:
#   scripts/brokers.sh start   RabbitMQ (unless one already listens on 5672) and a single-node
#                              Apache Kafka (KRaft), each on a fresh data directory
#   scripts/brokers.sh stop    exactly what `start` started, by PID
#   scripts/brokers.sh status
# Environment: KAFKA_PORT (default 9092; the controller listens on KAFKA_PORT+1),
# KAFKA_HEAP (default 512m), BRIDGE_RUN_DIR (default ./.run).
set -euo pipefail
cd "$(dirname "$0")/.."

KAFKA_PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT=$((KAFKA_PORT + 1))
RUN_DIR="${BRIDGE_RUN_DIR:-$PWD/.run}"
KAFKA_DIR="$RUN_DIR/kafka"
KAFKA_PID="$RUN_DIR/kafka.pid"
RABBIT_STARTED="$RUN_DIR/rabbitmq.started"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 what=$2 tries=${3:-60}
  for _ in $(seq "$tries"); do
    port_open "$port" && return 0
    sleep 1
  done
  echo "error: $what did not open 127.0.0.1:$port within ${tries}s" >&2
  return 1
}

start_rabbitmq() {
  port_open 5672 && return 0
  command -v rabbitmq-server >/dev/null 2>&1 ||
    { echo "error: rabbitmq-server is not installed (run scripts/setup.sh)" >&2; return 1; }
  # A fresh data directory each time, like Kafka's: the node does not recover queues left by
  # earlier runs (thousands of them make a boot take minutes). The server runs as `rabbitmq`,
  # so the directory lives under /tmp rather than in the checkout.
  local data
  data=$(mktemp -d /tmp/bridge-rabbitmq.XXXXXX)
  chown -R rabbitmq:rabbitmq "$data" 2>/dev/null || chmod 777 "$data"
  mkdir -p "$RUN_DIR"
  echo "$data" >"$RABBIT_STARTED"
  echo "Starting RabbitMQ (data in $data)…"
  # The stream protocol for stream targets and sources, on loopback like the rest.
  echo '[rabbitmq_stream].' >"$data/enabled_plugins"
  cat >"$data/rabbitmq.conf" <<CONF
stream.listeners.tcp.1 = 127.0.0.1:5552
stream.advertised_host = 127.0.0.1
stream.advertised_port = 5552
CONF
  chmod 644 "$data/enabled_plugins" "$data/rabbitmq.conf"
  # Loopback only: AMQP, the stream protocol, Erlang distribution and epmd.
  export ERL_EPMD_ADDRESS=127.0.0.1
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_ENABLED_PLUGINS_FILE="$data/enabled_plugins" \
    RABBITMQ_CONFIG_FILE="$data/rabbitmq.conf" \
    RABBITMQ_MNESIA_BASE="$data/mnesia" \
    RABBITMQ_LOG_BASE="$data/log" \
    RABBITMQ_PID_FILE="$data/rabbitmq.pid" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    rabbitmq-server -detached
  if ! wait_port 5672 RabbitMQ 120 || ! rabbitmqctl await_startup --timeout 60 >/dev/null ||
    ! wait_port 5552 "RabbitMQ streams" 60; then
    echo "RabbitMQ's log ($data/log) ends with:" >&2
    tail -20 "$data"/log/*.log >&2 2>/dev/null || true
    return 1
  fi
}

stop_rabbitmq() {
  [ -f "$RABBIT_STARTED" ] || return 0
  local data
  data=$(cat "$RABBIT_STARTED")
  # With the pid file, `stop` returns once the server process has exited.
  rabbitmqctl stop "$data/rabbitmq.pid" >/dev/null 2>&1 || true
  epmd -kill >/dev/null 2>&1 || true
  case "$data" in /tmp/bridge-rabbitmq.*) rm -rf "$data" ;; esac
  rm -f "$RABBIT_STARTED"
}

stop_kafka() {
  [ -f "$KAFKA_PID" ] || return 0
  local pid
  pid=$(cat "$KAFKA_PID")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$KAFKA_PID"
}

start_kafka() {
  stop_kafka
  if port_open "$KAFKA_PORT" || port_open "$CONTROLLER_PORT"; then
    echo "error: 127.0.0.1:$KAFKA_PORT or :$CONTROLLER_PORT is taken by a process this script did not start; stop it or set KAFKA_PORT" >&2
    return 1
  fi
  rm -rf "$KAFKA_DIR"
  mkdir -p "$KAFKA_DIR"
  echo "Starting Apache Kafka on 127.0.0.1:$KAFKA_PORT…"
  scripts/kafka.sh start "$KAFKA_DIR" 1 "$KAFKA_PORT" "$CONTROLLER_PORT" "1@127.0.0.1:$CONTROLLER_PORT" >"$KAFKA_PID"
  if ! scripts/kafka.sh wait "$KAFKA_PORT" 1 120; then
    echo "Kafka's log ($KAFKA_DIR/server.log) ends with:" >&2
    tail -20 "$KAFKA_DIR/server.log" "$KAFKA_DIR/stdout.log" >&2 || true
    return 1
  fi
}

case "${1:-}" in
  start)
    start_rabbitmq
    start_kafka
    echo "Brokers up: RabbitMQ 127.0.0.1:5672, Apache Kafka 127.0.0.1:$KAFKA_PORT"
    ;;
  stop)
    stop_kafka
    stop_rabbitmq
    ;;
  status)
    port_open 5672 && echo "RabbitMQ: up" || echo "RabbitMQ: down"
    port_open "$KAFKA_PORT" && echo "Kafka: up" || echo "Kafka: down"
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
