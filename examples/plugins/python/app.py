"""pii-mask, in Python: the example plugin every supported language implements the same way.

- masks the JSON payload's members named in `fields` (at any depth) as "***";
- derives the route — the RabbitMQ routing key and the Kafka topic — from the payload's
  top-level `route_field`, else the header `route_header`, else `default_route`;
- dead-letters a payload that is not a JSON object, with a reason.

Built into a component by `build.sh` with componentize-py against the `transformer` world of
wit/plugin.wit.
"""

import json
from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

MASK = "***"
SETTINGS = ["fields", "route_field", "route_header", "default_route"]


def _list(pairs: List[Tuple[str, str]], key: str) -> List[str]:
    """A list setting: the key itself, comma-separated, or key.0, key.1, … in order."""
    for k, v in pairs:
        if k == key:
            return [s.strip() for s in v.split(",") if s.strip()]
    items = []
    for k, v in pairs:
        rest = k[len(key) + 1:] if k.startswith(key + ".") else ""
        if rest.isdigit():
            items.append((int(rest), v))
    return [v for _, v in sorted(items)]


class Settings:
    """The configuration `init` accepted. Module state: componentize-py makes a new
    `Transform` object for every call, so nothing set on `self` outlives the call."""

    fields: frozenset = frozenset()
    route_field: Optional[str] = None
    route_header: Optional[str] = None
    default_route: Optional[str] = None


SETTINGS_NOW = Settings()


class Transform(exports.Transform):
    def init(self, config: List[Tuple[str, str]]) -> None:
        for key, _ in config:
            if key.split(".")[0] not in SETTINGS:
                expected = ", ".join(f"`{s}`" for s in SETTINGS)
                raise Err(f"unknown setting `{key}` (expected one of: {expected})")
        fields = _list(config, "fields")
        if not fields:
            raise Err("setting `fields` is required: the JSON fields to mask")
        settings = dict(config)
        SETTINGS_NOW.fields = frozenset(fields)
        SETTINGS_NOW.route_field = settings.get("route_field")
        SETTINGS_NOW.route_header = settings.get("route_header")
        SETTINGS_NOW.default_route = settings.get("default_route")

    def process(self, msg: types.Message) -> types.Verdict:
        try:
            doc = json.loads(msg.payload() or b"")
        except ValueError as e:
            return types.Verdict_DeadLetter(f"payload is not JSON: {e}")
        if not isinstance(doc, dict):
            return types.Verdict_DeadLetter("payload is not JSON: not an object")
        route = _route(doc, msg)
        _mask(doc)
        msg.set_payload(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())
        if route is not None:
            msg.set_amqp_target(types.AmqpTarget(exchange=None, routing_key=route))
            msg.set_kafka_target(types.KafkaTarget(topic=route, partition=None))
        return types.Verdict_Forward()



def _route(doc: dict, msg: types.Message) -> Optional[str]:
    if SETTINGS_NOW.route_field is not None:
        value = doc.get(SETTINGS_NOW.route_field)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    if SETTINGS_NOW.route_header is not None:
        header = msg.header(SETTINGS_NOW.route_header)
        if header:
            return header.decode("utf-8", errors="replace")
    return SETTINGS_NOW.default_route


def _mask(value) -> None:
    if isinstance(value, dict):
        for key in value:
            if key in SETTINGS_NOW.fields:
                value[key] = MASK
            else:
                _mask(value[key])
    elif isinstance(value, list):
        for item in value:
            _mask(item)
