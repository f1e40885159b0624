// Builds plugin.js into {{name}}.wasm with componentize-js, against the bridge's WIT (in
// ./wit) and without any WASI feature.
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { dirname, join, resolve } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, "{{name}}.wasm"));
const { component } = await componentize({
  sourcePath: join(here, "plugin.js"),
  witPath: join(here, "wit"),
  worldName: "transformer",
  disableFeatures: ["stdio", "random", "clocks", "http", "fetch-event"],
});
await writeFile(out, component);
console.log(`wrote ${out}`);
