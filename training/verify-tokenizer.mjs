// Checks models/sirius-tiny-arith/tokenizer.json with @huggingface/tokenizers against the Python encoder.
// Usage: node training/verify-tokenizer.mjs CASES.json [MODEL_DIR]   (run by training/verify_tokenizer.py)
// CASES.json: [{"text": "...", "ids": [...], "roundtrip": bool}]  (ids = Python task.encode(text), with <s>)
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

import { pathToFileURL } from "node:url";
const dir = process.argv[3]
  ? pathToFileURL(process.argv[3].replace(/\/?$/, "/"))
  : new URL("../models/sirius-tiny-arith/", import.meta.url);
const tok = new Tokenizer(
  JSON.parse(readFileSync(new URL("tokenizer.json", dir), "utf8")),
  JSON.parse(readFileSync(new URL("tokenizer_config.json", dir), "utf8")),
);
const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
let bad = 0;
for (const { text, ids, roundtrip } of cases) {
  const enc = tok.encode(text).ids;
  const noSpecial = tok.encode(text, { add_special_tokens: false }).ids;
  const dec = tok.decode(enc, { skip_special_tokens: true });
  const decRaw = tok.decode(noSpecial);
  const ok =
    JSON.stringify(enc) === JSON.stringify(ids) &&
    JSON.stringify(noSpecial) === JSON.stringify(ids.slice(1)) &&
    (!roundtrip || (dec === text && decRaw === text));
  if (!ok) {
    if (bad++ < 3) console.error("MISMATCH", JSON.stringify({ text, ids, enc, dec, decRaw }));
  }
}
// special tokens: ids and decoding
const sp = { "<unk>": 0, "<s>": 1, "</s>": 2 };
for (const [t, id] of Object.entries(sp)) {
  if (tok.token_to_id(t) !== id) { bad++; console.error("special", t, tok.token_to_id(t)); }
}
console.log(`${cases.length} cases, ${bad} failures; vocab ${tok.get_vocab().size}`);
process.exit(bad ? 1 : 0);
