// {{name}}: sets the header `x-tag` to its `value` setting and drops messages without a
// payload.

#include <stdlib.h>
#include <string.h>

#include "transformer.h"

static char *value;

bool exports_bridge_plugin_transform_init(exports_bridge_plugin_transform_config_t *config,
                                          transformer_string_t *err) {
  bool ok = true;
  free(value);
  value = strdup("{{name}}");
  for (size_t i = 0; i < config->len && ok; i++) {
    transformer_string_t *k = &config->ptr[i].f0, *v = &config->ptr[i].f1;
    if (k->len == 5 && memcmp(k->ptr, "value", 5) == 0) {
      free(value);
      value = malloc(v->len + 1);
      memcpy(value, v->ptr, v->len);
      value[v->len] = 0;
    } else {
      char *key = malloc(k->len + 1);
      memcpy(key, k->ptr, k->len);
      key[k->len] = 0;
      size_t n = k->len + 64;
      char *message = malloc(n);
      strcpy(message, "unknown setting `");
      strcat(message, key);
      strcat(message, "` (expected one of: `value`)");
      transformer_string_dup(err, message);
      free(message), free(key);
      ok = false;
    }
  }
  exports_bridge_plugin_transform_config_free(config);
  return ok;
}

void exports_bridge_plugin_transform_process(exports_bridge_plugin_transform_borrow_message_t msg,
                                             exports_bridge_plugin_transform_verdict_t *ret) {
  transformer_list_u8_t payload;
  if (!bridge_plugin_types_method_message_payload(msg, &payload)) {
    ret->tag = BRIDGE_PLUGIN_TYPES_VERDICT_DROP;
  } else {
    transformer_list_u8_free(&payload);
    transformer_string_t name;
    transformer_string_dup(&name, "x-tag");
    bridge_plugin_types_header_value_t header = {(uint8_t *)value, strlen(value)};
    bridge_plugin_types_method_message_set_header(msg, &name, &header);
    transformer_string_free(&name);
    ret->tag = BRIDGE_PLUGIN_TYPES_VERDICT_FORWARD;
  }
  // Give the borrowed message back before returning, or the call traps.
  bridge_plugin_types_message_drop_borrow(msg);
}
