#!/usr/bin/env bash
# Start or stop the brokers the tests and benchmarks use, on loopback only:
#   scripts/brokers.sh start   RabbitMQ (if not running) and a tansu Kafka broker on a fresh SQLite database
#   scripts/brokers.sh stop    the tansu broker this script started (RabbitMQ is left as found)
#   scripts/brokers.sh status
# Environment: KAFKA_PORT (default 9092), BRIDGE_RUN_DIR (default ./.run).
set -euo pipefail
cd "$(dirname "$0")/.."

KAFKA_PORT="${KAFKA_PORT:-9092}"
RUN_DIR="${BRIDGE_RUN_DIR:-$PWD/.run}"
TANSU_DIR="$RUN_DIR/tansu"
PID_FILE="$TANSU_DIR/tansu.pid"

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
  if port_open 5672; then
    return 0
  fi
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    echo "Installing rabbitmq-server (Debian package)…"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server >/dev/null
  fi
  echo "Starting RabbitMQ…"
  rabbitmq-server -detached
  wait_port 5672 RabbitMQ 120
}

stop_tansu() {
  if [ -f "$PID_FILE" ]; then
    local pid
    pid=$(cat "$PID_FILE")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
  fi
}

start_tansu() {
  stop_tansu
  if port_open "$KAFKA_PORT"; then
    echo "error: 127.0.0.1:$KAFKA_PORT is taken by a process this script did not start; stop it or set KAFKA_PORT" >&2
    return 1
  fi
  command -v tansu >/dev/null 2>&1 || { echo "error: tansu is not installed (run scripts/setup.sh)" >&2; return 1; }
  # Every run starts on a fresh database: tansu slows down as its database grows.
  rm -rf "$TANSU_DIR"
  mkdir -p "$TANSU_DIR"
  (
    cd "$TANSU_DIR"
    exec tansu broker \
      --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --storage-engine "sqlite://tansu.db" >"$TANSU_DIR/tansu.log" 2>&1
  ) &
  echo $! >"$PID_FILE"
  wait_port "$KAFKA_PORT" tansu 60
}

case "${1:-}" in
  start)
    start_rabbitmq
    start_tansu
    echo "Brokers up: RabbitMQ 127.0.0.1:5672, Kafka (tansu) 127.0.0.1:$KAFKA_PORT"
    ;;
  stop) stop_tansu ;;
  status)
    port_open 5672 && echo "RabbitMQ: up" || echo "RabbitMQ: down"
    port_open "$KAFKA_PORT" && echo "Kafka: up" || echo "Kafka: down"
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
