#!/usr/bin/env python3
"""Round-trip check of an exported tokenizer with the npm package @huggingface/tokenizers.

  /usr/bin/python3 training/verify_tokenizer.py [MODEL_DIR]              # arith task (models/sirius-tiny-arith)
  /usr/bin/python3 training/verify_tokenizer.py --task gsm [MODEL_DIR]   # gsm task (models/sirius-tiny-gsm)

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
args = sys.argv[1:]
task_name = "arith"
if args[:1] == ["--task"]:
    task_name, args = args[1], args[2:]
if task_name == "gsm":
    import task_gsm as task  # noqa: E402
    default_dir = "sirius-tiny-gsm"
else:
    import task  # noqa: E402
    default_dir = "sirius-tiny-arith"

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
val, test = task.eval_splits()
texts = [p["prompt"] for p in test] + [p["prompt"] + p["completion"] for p in test + val]
texts += [" ", "\n\n", "  A:\n 1+1=2.\n", "Zoe has 7 pencils!"]  # edge cases; the last has <unk> chars (arith)
if task_name == "gsm":
    # unknown words fall back to characters, partial words to their longest known prefix chain
    texts += ["Tommy has apples", " applesauce", "the  answer is", "Q:\nA: Then\n", " ap app", "HowMany"]
    import random
    rng = random.Random(7)
    drills = [task.make_drill(rng)["completion"] for _ in range(50)]
    texts += drills
# texts with <unk> characters cannot round-trip; those are checked by ids only
cases = [{"text": t, "ids": task.encode(t), "roundtrip": all(task.STOI.get(ch, 0) != 0 for ch in t)} for t in texts]
with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    json.dump(cases, f)
model_dir = args[0] if args else os.path.join(root, "models", default_dir)
cmd = ["node", os.path.join(root, "training", "verify-tokenizer.mjs"), f.name, model_dir]
r = subprocess.run(cmd, cwd=root)
os.unlink(f.name)
sys.exit(r.returncode)
