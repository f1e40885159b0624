// {{name}}: sets the header `x-tag` to its `value` setting and drops messages without a
// payload.

const encoder = new TextEncoder();
let value = "{{name}}";

export const transform = {
  // `config` is a list of [key, value] pairs; throw a string to reject it.
  init(config) {
    for (const [key, v] of config) {
      if (key !== "value") throw `unknown setting \`${key}\` (expected one of: \`value\`)`;
      value = v;
    }
  },

  process(msg) {
    if (msg.payload() === undefined) return { tag: "drop" };
    msg.setHeader("x-tag", encoder.encode(value));
    return { tag: "forward" };
  },
};
