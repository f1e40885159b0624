#!/usr/bin/env bash
# Apache Kafka from Maven Central, run with `java` in KRaft combined mode.
#   scripts/kafka.sh fetch
#       Downloads the pinned broker's jars (scripts/kafka/pom.xml) once into
#       $KAFKA_HOME_CACHE (default ~/.cache/bridge-host/kafka-$KAFKA_VERSION) and prints the libs dir.
#   scripts/kafka.sh fetch-mirror
#       Downloads MirrorMaker 2 of the same version (scripts/kafka/mirror/pom.xml, the benchmark's
#       peer) once into $KAFKA_HOME_CACHE/mirror-libs and prints that dir.
#   scripts/kafka.sh wait PORT [BROKERS] [TIMEOUT_SECS]
#       Waits until 127.0.0.1:PORT answers a Metadata request with BROKERS brokers and a controller,
#       and names a group coordinator.
#   scripts/kafka.sh start DIR NODE_ID PORT CONTROLLER_PORT VOTERS [KEY=VALUE ...]
#       Writes DIR/server.properties (extra properties override the defaults), formats DIR/data
#       for the cluster id in DIR/cluster.id (made on first use; every node of one cluster shares
#       the file through KAFKA_CLUSTER_ID), starts the broker in the background and prints its PID.
#       VOTERS is the static controller quorum, e.g. 1@127.0.0.1:9093.
# Environment: KAFKA_HEAP (default 512m), KAFKA_CLUSTER_ID, KAFKA_FORMAT_ARGS (more arguments
# for the storage format, e.g. --add-scram SCRAM-SHA-512=[name=u,password=p]).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/kafka/pom.xml")"
KAFKA_HOME_CACHE="${KAFKA_HOME_CACHE:-$HOME/.cache/bridge-host/kafka-$KAFKA_VERSION}"
LIBS="$KAFKA_HOME_CACHE/libs"

fetch() {
  if [ -f "$LIBS/.complete" ]; then
    echo "$LIBS"
    return 0
  fi
  command -v java >/dev/null || { echo "error: java is not installed (Kafka needs a JDK 17+)" >&2; return 1; }
  command -v mvn >/dev/null || { echo "error: mvn is not installed (it fetches Kafka from Maven Central)" >&2; return 1; }
  echo "Fetching Apache Kafka $KAFKA_VERSION from Maven Central…" >&2
  rm -rf "$LIBS"
  mkdir -p "$LIBS"
  if ! mvn -q -B -f "$HERE/kafka/pom.xml" dependency:copy-dependencies -DoutputDirectory="$LIBS" >&2; then
    echo "error: could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION from Maven Central" >&2
    return 1
  fi
  [ -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] || { echo "error: kafka_2.13-$KAFKA_VERSION.jar missing after the fetch" >&2; return 1; }
  touch "$LIBS/.complete"
  echo "$LIBS"
}

fetch_mirror() {
  local libs="$KAFKA_HOME_CACHE/mirror-libs"
  if [ -f "$libs/.complete" ]; then
    echo "$libs"
    return 0
  fi
  command -v mvn >/dev/null || { echo "error: mvn is not installed (it fetches MirrorMaker 2 from Maven Central)" >&2; return 1; }
  echo "Fetching MirrorMaker 2 (connect-mirror $KAFKA_VERSION) from Maven Central…" >&2
  rm -rf "$libs"
  mkdir -p "$libs"
  if ! mvn -q -B -f "$HERE/kafka/mirror/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DoutputDirectory="$libs" >&2; then
    echo "error: could not fetch org.apache.kafka:connect-mirror:$KAFKA_VERSION from Maven Central" >&2
    return 1
  fi
  [ -f "$libs/connect-mirror-$KAFKA_VERSION.jar" ] || { echo "error: connect-mirror-$KAFKA_VERSION.jar missing after the fetch" >&2; return 1; }
  touch "$libs/.complete"
  echo "$libs"
}

start() {
  local dir=$1 node_id=$2 port=$3 controller_port=$4 voters=$5
  shift 5
  [ -f "$LIBS/.complete" ] || { echo "error: Kafka's jars are not fetched: run scripts/kafka.sh fetch (scripts/setup.sh does)" >&2; return 1; }
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  {
    echo "process.roles=broker,controller"
    echo "node.id=$node_id"
    echo "controller.quorum.voters=$voters"
    echo "listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port"
    echo "advertised.listeners=PLAINTEXT://127.0.0.1:$port"
    echo "controller.listener.names=CONTROLLER"
    echo "inter.broker.listener.name=PLAINTEXT"
    echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"
    echo "log.dirs=$dir/data"
    echo "num.partitions=1"
    echo "offsets.topic.replication.factor=1"
    echo "offsets.topic.num.partitions=10"
    echo "transaction.state.log.replication.factor=1"
    echo "transaction.state.log.min.isr=1"
    echo "share.coordinator.state.topic.replication.factor=1"
    echo "share.coordinator.state.topic.min.isr=1"
    echo "group.initial.rebalance.delay.ms=0"
    echo "auto.create.topics.enable=false"
    echo "log.segment.bytes=67108864"
    echo "log.retention.check.interval.ms=60000"
    for kv in "$@"; do echo "$kv"; done
  } >"$dir/server.properties"
  cat >"$dir/log4j2.properties" <<PROPS
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
PROPS
  local java_opts=(-Xms"${KAFKA_HEAP:-512m}" -Xmx"${KAFKA_HEAP:-512m}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$LIBS/*")
  if [ ! -f "$dir/data/meta.properties" ]; then
    local id="${KAFKA_CLUSTER_ID:-}"
    if [ -z "$id" ]; then
      [ -f "$dir/cluster.id" ] || java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1 >"$dir/cluster.id"
      id="$(cat "$dir/cluster.id")"
    fi
    local format_args=()
    read -ra format_args <<<"${KAFKA_FORMAT_ARGS:-}"
    java "${java_opts[@]}" kafka.tools.StorageTool format -c "$dir/server.properties" --cluster-id="$id" \
      "${format_args[@]}" >>"$dir/format.log" 2>&1 ||
      { echo "error: formatting Kafka storage in $dir failed: $(grep -v '^[[:space:]]*at ' "$dir/format.log" | tail -5)" >&2; return 1; }
  fi
  nohup java "${java_opts[@]}" kafka.Kafka "$dir/server.properties" >>"$dir/stdout.log" 2>&1 </dev/null &
  echo $!
}

# Waits until the broker at 127.0.0.1:PORT answers a Metadata request listing BROKERS brokers
# and a controller, and a group coordinator: a listening socket alone does not mean the broker
# serves requests yet.
wait_ready() {
  local port=$1 brokers=${2:-1} timeout=${3:-90}
  python3 - "$port" "$brokers" "$timeout" <<'PY'
import socket, struct, sys, time
port, want, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
deadline = time.time() + timeout
def metadata():
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        client = b"bridge-ready"
        body = struct.pack(">hhih", 3, 1, 1, len(client)) + client + struct.pack(">i", 0)
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        data = s.recv(size, socket.MSG_WAITALL)
    n = struct.unpack_from(">i", data, 4)[0]
    at = 8
    for _ in range(n):
        at += 4
        hlen = struct.unpack_from(">h", data, at)[0]; at += 2 + hlen + 4
        rlen = struct.unpack_from(">h", data, at)[0]; at += 2 + max(rlen, 0)
    controller = struct.unpack_from(">i", data, at)[0]
    return n, controller
def coordinator():
    # FindCoordinator v0 for a group: the first one makes the broker create its offsets topic,
    # which on a fresh broker takes seconds that would otherwise fall on the first test's
    # consumer group.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        client, group = b"bridge-ready", b"bridge-ready"
        body = struct.pack(">hhih", 10, 0, 2, len(client)) + client + struct.pack(">h", len(group)) + group
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        data = s.recv(size, socket.MSG_WAITALL)
    return struct.unpack_from(">h", data, 4)[0]
last = "no answer"
while time.time() < deadline:
    try:
        n, controller = metadata()
        if n >= want and controller >= 0:
            error = coordinator()
            if error == 0:
                sys.exit(0)
            last = f"no group coordinator yet (error {error})"
        else:
            last = f"{n} broker(s), controller {controller}"
    except Exception as e:
        last = str(e) or type(e).__name__
    time.sleep(0.5)
print(f"error: Kafka on 127.0.0.1:{port} not ready within {timeout:.0f}s ({last})", file=sys.stderr)
sys.exit(1)
PY
}

case "${1:-}" in
  fetch) fetch ;;
  fetch-mirror) fetch_mirror ;;
  wait) shift; wait_ready "$@" ;;
  start) shift; start "$@" ;;
  libs) echo "$LIBS" ;;
  *) echo "usage: $0 fetch | fetch-mirror | wait PORT [BROKERS] [TIMEOUT] | start DIR NODE_ID PORT CONTROLLER_PORT VOTERS [KEY=VALUE ...] | libs" >&2; exit 2 ;;
esac
