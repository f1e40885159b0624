// pii-mask, in Go: the example plugin every supported language implements the same way.
//
//   - masks the JSON payload's members named in `fields` (at any depth) as "***";
//   - derives the route — the RabbitMQ routing key and the Kafka topic — from the payload's
//     top-level `route_field`, else the header `route_header`, else `default_route`;
//   - dead-letters a payload that is not a JSON object, with a reason.
//
// Built with the standard Go toolchain (GOOS=wasip1, go:wasmexport) and bindings from the
// Bytecode Alliance's wit-bindgen-go; see build.sh.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/kafka-rabbitmq-bridge/bridge/examples/plugins/go/internal/bridge/plugin/transform"
	"github.com/kafka-rabbitmq-bridge/bridge/examples/plugins/go/internal/bridge/plugin/types"
	"go.bytecodealliance.org/cm"
)

const mask = "***"

var settingNames = []string{"fields", "route_field", "route_header", "default_route"}

// The configuration init accepted.
var (
	fields                                    map[string]bool
	routeField, routeHeader, defaultRoute     string
	hasRouteField, hasRouteHeader, hasDefault bool
)

func init() {
	transform.Exports.Init = initPlugin
	transform.Exports.Process = process
}

func initPlugin(config transform.Config) cm.Result[string, struct{}, string] {
	defer unpin()
	pairs := cm.List[[2]string](config).Slice()
	fields = map[string]bool{}
	hasRouteField, hasRouteHeader, hasDefault = false, false, false
	var indexed []struct {
		i int
		v string
	}
	whole := false
	for _, kv := range pairs {
		key, value := kv[0], kv[1]
		top, rest, _ := strings.Cut(key, ".")
		known := false
		for _, s := range settingNames {
			known = known || s == top
		}
		if !known {
			quoted := make([]string, len(settingNames))
			for i, s := range settingNames {
				quoted[i] = "`" + s + "`"
			}
			return cm.Err[cm.Result[string, struct{}, string]](fmt.Sprintf(
				"unknown setting `%s` (expected one of: %s)", key, strings.Join(quoted, ", ")))
		}
		switch {
		case key == "fields":
			whole = true
			for _, f := range strings.Split(value, ",") {
				if f = strings.TrimSpace(f); f != "" {
					fields[f] = true
				}
			}
		case top == "fields":
			if i, err := strconv.Atoi(rest); err == nil {
				indexed = append(indexed, struct {
					i int
					v string
				}{i, value})
			}
		case key == "route_field":
			routeField, hasRouteField = value, true
		case key == "route_header":
			routeHeader, hasRouteHeader = value, true
		case key == "default_route":
			defaultRoute, hasDefault = value, true
		}
	}
	if !whole {
		sort.Slice(indexed, func(a, b int) bool { return indexed[a].i < indexed[b].i })
		for _, f := range indexed {
			fields[f.v] = true
		}
	}
	if len(fields) == 0 {
		return cm.Err[cm.Result[string, struct{}, string]]("setting `fields` is required: the JSON fields to mask")
	}
	return cm.OK[cm.Result[string, struct{}, string]](struct{}{})
}

func process(rep cm.Rep) types.Verdict {
	unpin()
	msg := cm.Reinterpret[types.Message](rep)
	// The message is borrowed for this call: the component model requires the plugin to
	// give the handle back before it returns, or the call traps.
	defer msg.ResourceDrop()
	var payload []byte
	stored := msg.Payload()
	if p := stored.Some(); p != nil {
		payload = p.Slice()
	}
	decoder := json.NewDecoder(bytes.NewReader(payload))
	decoder.UseNumber()
	var doc any
	if err := decoder.Decode(&doc); err != nil {
		return types.VerdictDeadLetter("payload is not JSON: " + err.Error())
	}
	if decoder.More() {
		return types.VerdictDeadLetter("payload is not JSON: trailing characters")
	}
	object, ok := doc.(map[string]any)
	if !ok {
		return types.VerdictDeadLetter("payload is not JSON: not an object")
	}
	route, routed := routeOf(object, msg)
	maskValue(object)
	out, err := json.Marshal(object)
	if err != nil {
		return types.VerdictDeadLetter("cannot write the masked payload: " + err.Error())
	}
	msg.SetPayload(cm.Some(cm.ToList(out)))
	if routed {
		msg.SetAmqpTarget(types.AmqpTarget{RoutingKey: cm.Some(route)})
		msg.SetKafkaTarget(types.KafkaTarget{Topic: cm.Some(route)})
	}
	return types.VerdictForward()
}

// The route: the field (a string or a number), else the header, else the default.
func routeOf(doc map[string]any, msg types.Message) (string, bool) {
	if hasRouteField {
		switch v := doc[routeField].(type) {
		case string:
			if v != "" {
				return v, true
			}
		case json.Number:
			return v.String(), true
		}
	}
	if hasRouteHeader {
		header := msg.Header(routeHeader)
		if h := header.Some(); h != nil && len(cm.List[uint8](*h).Slice()) > 0 {
			return string(cm.List[uint8](*h).Slice()), true
		}
	}
	return defaultRoute, hasDefault
}

func maskValue(value any) {
	switch v := value.(type) {
	case map[string]any:
		for k, inner := range v {
			if fields[k] {
				v[k] = mask
			} else {
				maskValue(inner)
			}
		}
	case []any:
		for _, inner := range v {
			maskValue(inner)
		}
	}
}

func main() {}
