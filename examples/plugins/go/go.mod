module github.com/kafka-rabbitmq-bridge/bridge/examples/plugins/go

go 1.24

require go.bytecodealliance.org/cm v0.3.0
