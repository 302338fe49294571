// Reference encodings for tests/cli/tokenizer_reference.sh, from tokenizers.js (the pure-JavaScript
// @huggingface/tokenizers package), which is independent of ess's C++ tokenizer.
//   node tools/node/encode.mjs DIR DOCS.json > IDS.txt
// DIR holds tokenizer.json (and optionally tokenizer_config.json); DOCS.json is a list of strings.
// Prints one line per document: its ids with the post-processor's special tokens.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";

const [dir, docsPath] = process.argv.slice(2);
const tokenizerJson = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
let config = {};
try {
  config = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
} catch {
  config = {};
}
const tokenizer = new Tokenizer(tokenizerJson, config);
const docs = JSON.parse(readFileSync(docsPath, "utf8"));
const t0 = process.hrtime.bigint();
const lines = [];
let total = 0;
for (const doc of docs) {
  const ids = tokenizer.encode(doc, { add_special_tokens: true }).ids;
  total += ids.length;
  lines.push(ids.join(" "));
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
process.stdout.write(lines.join("\n") + "\n");
process.stderr.write(`tokenizers.js: ${docs.length} documents, ${total} tokens, ${seconds.toFixed(2)} s, ${Math.round(total / seconds)} tokens/s\n`);
