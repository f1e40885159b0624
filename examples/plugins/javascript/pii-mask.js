// pii-mask, in JavaScript: the example plugin every supported language implements the same way.
//
// - masks the JSON payload's members named in `fields` (at any depth) as "***";
// - derives the route — the RabbitMQ routing key and the Kafka topic — from the payload's
//   top-level `route_field`, else the header `route_header`, else `default_route`;
// - dead-letters a payload that is not a JSON object, with a reason.
//
// Built into a component by `build.sh` with the Bytecode Alliance's jco (componentize-js)
// against the `transformer` world of wit/plugin.wit.

const MASK = "***";
const SETTINGS = ["fields", "route_field", "route_header", "default_route"];

const decoder = new TextDecoder();
const encoder = new TextEncoder();

let settings = null;

// The bridge gives the configuration as [key, value] pairs: nested tables and lists
// flattened with dots (`fields.0`, `fields.1`).
function parseConfig(pairs) {
  for (const [key] of pairs) {
    const top = key.split(".")[0];
    if (!SETTINGS.includes(top)) {
      throw `unknown setting \`${key}\` (expected one of: ${SETTINGS.map((s) => `\`${s}\``).join(", ")})`;
    }
  }
  const get = (key) => pairs.find(([k]) => k === key)?.[1];
  // A list: the key itself, comma-separated, or key.0, key.1, … in order.
  const list = (key) => {
    const whole = get(key);
    if (whole !== undefined) {
      return whole.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
    }
    return pairs
      .filter(([k]) => k.startsWith(`${key}.`) && /^\d+$/.test(k.slice(key.length + 1)))
      .sort(([a], [b]) => Number(a.slice(key.length + 1)) - Number(b.slice(key.length + 1)))
      .map(([, v]) => v);
  };
  const fields = list("fields");
  if (fields.length === 0) {
    throw "setting `fields` is required: the JSON fields to mask";
  }
  return {
    fields: new Set(fields),
    routeField: get("route_field"),
    routeHeader: get("route_header"),
    defaultRoute: get("default_route"),
  };
}

function mask(value) {
  if (Array.isArray(value)) {
    value.forEach(mask);
  } else if (value !== null && typeof value === "object") {
    for (const key of Object.keys(value)) {
      if (settings.fields.has(key)) {
        value[key] = MASK;
      } else {
        mask(value[key]);
      }
    }
  }
}

function route(doc, msg) {
  if (settings.routeField !== undefined) {
    const v = doc[settings.routeField];
    if (typeof v === "string" && v.length > 0) return v;
    if (typeof v === "number") return String(v);
  }
  if (settings.routeHeader !== undefined) {
    const h = msg.header(settings.routeHeader);
    if (h !== undefined && h.length > 0) return decoder.decode(h);
  }
  return settings.defaultRoute;
}

export const transform = {
  init(config) {
    settings = parseConfig(config);
  },

  process(msg) {
    const payload = msg.payload();
    let doc;
    try {
      doc = JSON.parse(decoder.decode(payload ?? new Uint8Array()));
    } catch (e) {
      return { tag: "dead-letter", val: `payload is not JSON: ${e.message}` };
    }
    if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
      return { tag: "dead-letter", val: "payload is not JSON: not an object" };
    }
    const to = route(doc, msg);
    mask(doc);
    msg.setPayload(encoder.encode(JSON.stringify(doc)));
    if (to !== undefined) {
      msg.setAmqpTarget({ exchange: undefined, routingKey: to });
      msg.setKafkaTarget({ topic: to, partition: undefined });
    }
    return { tag: "forward" };
  },
};
