#!/usr/bin/env python3
"""Round-trip check of the exported tokenizer with the npm package @huggingface/tokenizers.

  /usr/bin/python3 training/verify_tokenizer.py [MODEL_DIR]

For every test prompt, every test prompt+reference completion and every validation prompt+completion,
node must give encode(text).ids == Python task.encode(text) (with <s>), encode without special tokens ==
ids without <s>, and decode(ids, skip_special_tokens) == text exactly. Exits non-zero on any mismatch.
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import task  # noqa: E402

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
val, test = task.eval_splits()
texts = [p["prompt"] for p in test] + [p["prompt"] + p["completion"] for p in test + val]
texts += [" ", "\n\n", "  A:\n 1+1=2.\n", "Zoe has 7 pencils!"]  # edge cases; the last has <unk> chars
# texts with <unk> characters cannot round-trip; those are checked by ids only
cases = [{"text": t, "ids": task.encode(t), "roundtrip": all(ch in task.STOI for ch in t)} for t in texts]
with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    json.dump(cases, f)
cmd = ["node", os.path.join(root, "training", "verify-tokenizer.mjs"), f.name] + sys.argv[1:2]
r = subprocess.run(cmd, cwd=root)
os.unlink(f.name)
sys.exit(r.returncode)
