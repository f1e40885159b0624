// Builds pii-mask.js into a WebAssembly component with componentize-js:
//   node build.mjs [OUT.wasm]      (default: pii-mask.wasm beside this file)
// The component targets the `transformer` world of the bridge's WIT and uses no WASI
// feature (no clocks, random, stdio or HTTP), so it needs nothing the bridge does not give.
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { dirname, join, resolve } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, "pii-mask.wasm"));
const { component } = await componentize({
  sourcePath: join(here, "pii-mask.js"),
  witPath: join(here, "..", "..", "..", "wit"),
  worldName: "transformer",
  disableFeatures: ["stdio", "random", "clocks", "http", "fetch-event"],
});
await writeFile(out, component);
console.log(`wrote ${out} (${component.byteLength} bytes)`);
