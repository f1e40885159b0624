// pii-mask, in C: the example plugin every supported language implements the same way.
//
// - masks the JSON payload's members named in `fields` (at any depth) as "***";
// - derives the route — the RabbitMQ routing key and the Kafka topic — from the payload's
//   top-level `route_field`, else the header `route_header`, else `default_route`;
// - dead-letters a payload that is not a JSON object, with a reason.
//
// The payload is checked and scanned by a small JSON parser that records where the masked
// values are; the output is the input with those values replaced, so everything else keeps
// its bytes. Bindings come from wit-bindgen's C generator (`transformer.h`); see build.sh.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transformer.h"

#define MAX_FIELDS 64
#define MAX_DEPTH 128

static const char *const SETTINGS[] = {"fields", "route_field", "route_header", "default_route"};
#define SETTING_COUNT (sizeof(SETTINGS) / sizeof(SETTINGS[0]))

// The configuration `init` accepted.
static char *fields[MAX_FIELDS];
static size_t field_count;
static char *route_field, *route_header, *default_route;

static char *dup_n(const uint8_t *p, size_t n) {
  char *s = malloc(n + 1);
  if (s) {
    memcpy(s, p, n);
    s[n] = 0;
  }
  return s;
}

static void set_error(transformer_string_t *err, const char *text) {
  transformer_string_dup(err, text);
}

static bool key_is(const transformer_string_t *k, const char *name) {
  return k->len == strlen(name) && memcmp(k->ptr, name, k->len) == 0;
}

static bool add_field(const uint8_t *p, size_t n) {
  while (n > 0 && (*p == ' ' || *p == '\t')) p++, n--;
  while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
  if (n == 0) return true;
  if (field_count == MAX_FIELDS) return false;
  fields[field_count++] = dup_n(p, n);
  return true;
}

static void reset(void) {
  for (size_t i = 0; i < field_count; i++) free(fields[i]);
  field_count = 0;
  free(route_field), free(route_header), free(default_route);
  route_field = route_header = default_route = NULL;
}

bool exports_bridge_plugin_transform_init(exports_bridge_plugin_transform_config_t *config,
                                          transformer_string_t *err) {
  reset();
  bool ok = true, whole = false, too_many = false;
  char message[512];
  // Pass 1: every key known; `fields` as one comma-separated value.
  for (size_t i = 0; i < config->len && ok; i++) {
    transformer_string_t *k = &config->ptr[i].f0, *v = &config->ptr[i].f1;
    size_t top = 0;
    while (top < k->len && k->ptr[top] != '.') top++;
    bool known = false;
    for (size_t s = 0; s < SETTING_COUNT; s++)
      known |= top == strlen(SETTINGS[s]) && memcmp(k->ptr, SETTINGS[s], top) == 0;
    if (!known) {
      snprintf(message, sizeof message,
               "unknown setting `%.*s` (expected one of: `fields`, `route_field`, "
               "`route_header`, `default_route`)",
               (int)k->len, (const char *)k->ptr);
      set_error(err, message);
      ok = false;
    } else if (key_is(k, "fields")) {
      whole = true;
      size_t start = 0;
      for (size_t j = 0; j <= v->len && ok; j++) {
        if (j == v->len || v->ptr[j] == ',') {
          ok = add_field(v->ptr + start, j - start);
          too_many |= !ok;
          start = j + 1;
        }
      }
    } else if (key_is(k, "route_field")) {
      route_field = dup_n(v->ptr, v->len);
    } else if (key_is(k, "route_header")) {
      route_header = dup_n(v->ptr, v->len);
    } else if (key_is(k, "default_route")) {
      default_route = dup_n(v->ptr, v->len);
    }
  }
  // Pass 2: `fields.0`, `fields.1`, … in index order.
  for (size_t index = 0; ok && !whole && index < MAX_FIELDS; index++) {
    char want[32];
    snprintf(want, sizeof want, "fields.%zu", index);
    bool found = false;
    for (size_t i = 0; i < config->len && !found; i++) {
      if (key_is(&config->ptr[i].f0, want)) {
        found = add_field(config->ptr[i].f1.ptr, config->ptr[i].f1.len);
        too_many |= !found;
      }
    }
    if (!found) break;
  }
  if (ok && !too_many && field_count == 0) {
    set_error(err, "setting `fields` is required: the JSON fields to mask");
    ok = false;
  }
  if (too_many) {
    set_error(err, "setting `fields`: at most 64 fields");
    ok = false;
  }
  exports_bridge_plugin_transform_config_free(config);
  return ok;
}

// ---- A JSON scanner that validates and records the spans of masked values. ----

typedef struct {
  size_t start, end;
} span_t;

typedef struct {
  const uint8_t *p;
  size_t len, at;
  const char *error;
  span_t *masked;
  size_t masked_len, masked_cap;
  // The top-level route field's value, if found: a string (unescaped) or a number's text.
  char *route;
} scan_t;

static void skip_ws(scan_t *s) {
  while (s->at < s->len && (s->p[s->at] == ' ' || s->p[s->at] == '\t' || s->p[s->at] == '\n' ||
                            s->p[s->at] == '\r'))
    s->at++;
}

static bool fail(scan_t *s, const char *why) {
  if (!s->error) s->error = why;
  return false;
}

static int hex(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static size_t put_utf8(char *out, unsigned cp) {
  if (cp < 0x80) return out[0] = (char)cp, 1;
  if (cp < 0x800) return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), 2;
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

// A string at s->at (the opening quote); its unescaped text in *out (malloc'd) if out.
static bool scan_string(scan_t *s, char **out) {
  s->at++;
  char *text = out ? malloc(s->len - s->at + 1) : NULL;
  size_t n = 0;
  if (out && !text) return fail(s, "out of memory");
  while (s->at < s->len) {
    uint8_t c = s->p[s->at++];
    if (c == '"') {
      if (out) text[n] = 0, *out = text;
      return true;
    }
    if (c < 0x20) break;
    if (c != '\\') {
      if (text) text[n++] = (char)c;
      continue;
    }
    if (s->at >= s->len) break;
    uint8_t e = s->p[s->at++];
    const char *simple = strchr("\"\\/bfnrt", e);
    if (simple && e) {
      if (text) text[n++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
      continue;
    }
    if (e != 'u' || s->at + 4 > s->len) break;
    unsigned cp = 0;
    for (int i = 0; i < 4; i++) {
      int h = hex(s->p[s->at++]);
      if (h < 0) goto bad;
      cp = cp << 4 | (unsigned)h;
    }
    if (cp >= 0xD800 && cp < 0xDC00 && s->at + 6 <= s->len && s->p[s->at] == '\\' &&
        s->p[s->at + 1] == 'u') {
      unsigned lo = 0;
      for (int i = 2; i < 6; i++) {
        int h = hex(s->p[s->at + i]);
        if (h < 0) goto bad;
        lo = lo << 4 | (unsigned)h;
      }
      if (lo >= 0xDC00 && lo < 0xE000) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        s->at += 6;
      }
    }
    if (text) n += put_utf8(text + n, cp);
  }
bad:
  free(text);
  return fail(s, "invalid string");
}

static bool scan_value(scan_t *s, int depth);

static bool is_field(const char *key) {
  for (size_t i = 0; i < field_count; i++)
    if (strcmp(fields[i], key) == 0) return true;
  return false;
}

static bool record_mask(scan_t *s, size_t start, size_t end) {
  if (s->masked_len == s->masked_cap) {
    size_t cap = s->masked_cap ? s->masked_cap * 2 : 16;
    span_t *grown = realloc(s->masked, cap * sizeof *grown);
    if (!grown) return fail(s, "out of memory");
    s->masked = grown, s->masked_cap = cap;
  }
  s->masked[s->masked_len++] = (span_t){start, end};
  return true;
}

static bool scan_object(scan_t *s, int depth) {
  s->at++;
  skip_ws(s);
  if (s->at < s->len && s->p[s->at] == '}') return s->at++, true;
  for (;;) {
    skip_ws(s);
    if (s->at >= s->len || s->p[s->at] != '"') return fail(s, "expected a member name");
    char *key = NULL;
    if (!scan_string(s, &key)) return false;
    skip_ws(s);
    if (s->at >= s->len || s->p[s->at] != ':') return free(key), fail(s, "expected `:`");
    s->at++;
    skip_ws(s);
    size_t start = s->at;
    bool masked = is_field(key);
    bool routed = depth == 0 && route_field && strcmp(key, route_field) == 0;
    free(key);
    // A masked value is still checked, but nothing inside it counts.
    scan_t inner = *s;
    if (masked) inner.masked = NULL, inner.masked_len = inner.masked_cap = 0;
    if (!scan_value(masked ? &inner : s, depth + 1)) {
      if (masked) free(inner.masked), s->error = inner.error;
      return false;
    }
    if (masked) {
      free(inner.masked);
      s->at = inner.at;
      if (!record_mask(s, start, s->at)) return false;
    }
    if (routed && !s->route) {
      uint8_t c = s->p[start];
      if (c == '"') {
        scan_t again = *s;
        again.at = start;
        char *text = NULL;
        if (scan_string(&again, &text)) {
          if (text[0]) s->route = text;
          else free(text);
        }
      } else if (c == '-' || (c >= '0' && c <= '9')) {
        s->route = dup_n(s->p + start, s->at - start);
      }
    }
    skip_ws(s);
    if (s->at < s->len && s->p[s->at] == ',') {
      s->at++;
      continue;
    }
    if (s->at < s->len && s->p[s->at] == '}') return s->at++, true;
    return fail(s, "expected `,` or `}`");
  }
}

static bool scan_array(scan_t *s, int depth) {
  s->at++;
  skip_ws(s);
  if (s->at < s->len && s->p[s->at] == ']') return s->at++, true;
  for (;;) {
    skip_ws(s);
    if (!scan_value(s, depth + 1)) return false;
    skip_ws(s);
    if (s->at < s->len && s->p[s->at] == ',') {
      s->at++;
      continue;
    }
    if (s->at < s->len && s->p[s->at] == ']') return s->at++, true;
    return fail(s, "expected `,` or `]`");
  }
}

static bool scan_literal(scan_t *s, const char *word) {
  size_t n = strlen(word);
  if (s->at + n > s->len || memcmp(s->p + s->at, word, n) != 0) return fail(s, "invalid value");
  s->at += n;
  return true;
}

static bool scan_number(scan_t *s) {
  size_t start = s->at;
  if (s->p[s->at] == '-') s->at++;
  size_t digits = s->at;
  while (s->at < s->len && s->p[s->at] >= '0' && s->p[s->at] <= '9') s->at++;
  if (s->at == digits) return fail(s, "invalid number");
  if (s->at < s->len && s->p[s->at] == '.') {
    size_t frac = ++s->at;
    while (s->at < s->len && s->p[s->at] >= '0' && s->p[s->at] <= '9') s->at++;
    if (s->at == frac) return fail(s, "invalid number");
  }
  if (s->at < s->len && (s->p[s->at] == 'e' || s->p[s->at] == 'E')) {
    s->at++;
    if (s->at < s->len && (s->p[s->at] == '+' || s->p[s->at] == '-')) s->at++;
    size_t exp = s->at;
    while (s->at < s->len && s->p[s->at] >= '0' && s->p[s->at] <= '9') s->at++;
    if (s->at == exp) return fail(s, "invalid number");
  }
  return s->at > start;
}

static bool scan_value(scan_t *s, int depth) {
  if (depth > MAX_DEPTH) return fail(s, "nested too deeply");
  skip_ws(s);
  if (s->at >= s->len) return fail(s, "unexpected end of input");
  switch (s->p[s->at]) {
    case '{': return scan_object(s, depth);
    case '[': return scan_array(s, depth);
    case '"': return scan_string(s, NULL);
    case 't': return scan_literal(s, "true");
    case 'f': return scan_literal(s, "false");
    case 'n': return scan_literal(s, "null");
    default:
      if (s->p[s->at] == '-' || (s->p[s->at] >= '0' && s->p[s->at] <= '9')) return scan_number(s);
      return fail(s, "unexpected character");
  }
}

// ---- The transform. ----

static void dead_letter(exports_bridge_plugin_transform_verdict_t *ret, const char *reason) {
  ret->tag = BRIDGE_PLUGIN_TYPES_VERDICT_DEAD_LETTER;
  transformer_string_dup(&ret->val.dead_letter, reason);
}

static transformer_option_string_t some(char *text) {
  transformer_option_string_t o = {.is_some = true};
  o.val.ptr = (uint8_t *)text;
  o.val.len = strlen(text);
  return o;
}

static void process(exports_bridge_plugin_transform_borrow_message_t msg,
                    exports_bridge_plugin_transform_verdict_t *ret) {
  transformer_list_u8_t payload = {0};
  bool has_payload = bridge_plugin_types_method_message_payload(msg, &payload);
  scan_t s = {.p = payload.ptr, .len = has_payload ? payload.len : 0};
  skip_ws(&s);
  bool object = s.at < s.len && s.p[s.at] == '{';
  bool valid = scan_value(&s, 0);
  skip_ws(&s);
  if (valid && s.at != s.len) valid = fail(&s, "trailing characters");
  if (!valid || !object) {
    char reason[160];
    if (!valid) {
      snprintf(reason, sizeof reason, "payload is not JSON: %s at byte %zu", s.error, s.at);
    } else {
      snprintf(reason, sizeof reason, "payload is not JSON: not an object");
    }
    dead_letter(ret, reason);
    free(s.masked), free(s.route);
    if (has_payload) transformer_list_u8_free(&payload);
    return;
  }
  // The route: the field, else the header, else the default.
  char *route = s.route;
  if (!route && route_header) {
    transformer_string_t name = {(uint8_t *)route_header, strlen(route_header)};
    bridge_plugin_types_header_value_t value;
    if (bridge_plugin_types_method_message_header(msg, &name, &value)) {
      if (value.len > 0) route = dup_n(value.ptr, value.len);
      bridge_plugin_types_header_value_free(&value);
    }
  }
  if (!route && default_route) route = strdup(default_route);
  if (s.masked_len > 0) {
    static const char MASK[] = "\"***\"";
    size_t size = payload.len + s.masked_len * (sizeof MASK - 1);
    uint8_t *out = malloc(size);
    size_t n = 0, from = 0;
    for (size_t i = 0; out && i < s.masked_len; i++) {
      memcpy(out + n, payload.ptr + from, s.masked[i].start - from);
      n += s.masked[i].start - from;
      memcpy(out + n, MASK, sizeof MASK - 1);
      n += sizeof MASK - 1;
      from = s.masked[i].end;
    }
    if (!out) {
      dead_letter(ret, "out of memory");
      free(s.masked), free(route);
      transformer_list_u8_free(&payload);
      return;
    }
    memcpy(out + n, payload.ptr + from, payload.len - from);
    n += payload.len - from;
    transformer_list_u8_t edited = {out, n};
    bridge_plugin_types_method_message_set_payload(msg, &edited);
    free(out);
  }
  if (route) {
    bridge_plugin_types_amqp_target_t amqp = {.routing_key = some(route)};
    bridge_plugin_types_method_message_set_amqp_target(msg, &amqp);
    bridge_plugin_types_kafka_target_t kafka = {.topic = some(route)};
    bridge_plugin_types_method_message_set_kafka_target(msg, &kafka);
    free(route);
  }
  free(s.masked);
  transformer_list_u8_free(&payload);
  ret->tag = BRIDGE_PLUGIN_TYPES_VERDICT_FORWARD;
}

void exports_bridge_plugin_transform_process(exports_bridge_plugin_transform_borrow_message_t msg,
                                             exports_bridge_plugin_transform_verdict_t *ret) {
  process(msg, ret);
  // The C bindings hand the borrowed message over to the plugin: it must be given back
  // before the call returns, or the call traps.
  bridge_plugin_types_message_drop_borrow(msg);
}
