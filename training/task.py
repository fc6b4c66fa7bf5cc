#!/usr/bin/env python3
"""Synthetic multi-step arithmetic word problems ("tiny GSM8K") for sirius-tiny-arith.

Format of one example (prompt + completion, then the </s> token):

    Q: Tom has 23 apples. He buys 15 more. He gives away 9. How many apples now?
    A: 23+15=38. 38-9=29. The answer is 29.

* prompt     = "Q: <question>\\nA:"            (ends with "A:", NO trailing space / newline)
* completion = " <step>. <step>. The answer is <n>.\\n"   (starts with a space, ends with "\\n")
  each <step> is "<x><op><y>=<z>" with op in "+", "-", "*".
* The model is trained to emit </s> right after the final "\\n".
* Answer extraction: the integer (regex -?[0-9]+) right after the LAST occurrence of
  "The answer is " in the generated completion; no such occurrence -> no answer (counted wrong).

Problems have 2-4 steps; every intermediate value and the answer lie in [1, 99]:
  start 5..60, "+n" with n in 2..19, "-n" with n in 2..19 (result >= 1), "*2"/"*3" (result <= 99);
  each step's operation is uniform over the feasible ones.

Splits (disjoint by prompt text): validation and test are drawn first from their own seeded
streams; the training stream (its own seed) skips every prompt that is in validation or test.

CLI:  /usr/bin/python3 training/task.py --write-test   (writes data/arith/test.jsonl)
      /usr/bin/python3 training/task.py --show 5       (prints a few training examples)
"""
import argparse
import json
import os
import random
import re

# ---------------------------------------------------------------- vocabulary (character level)
SPECIALS = ["<unk>", "<s>", "</s>"]
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
CHARS = (
    [" ", "\n"]
    + list(".,?:+-*=")
    + list("0123456789")
    + list("ABHLMQST")  # every capital letter the generator uses
    + list("abcdefghijklmnopqrstuvwxyz")
)
VOCAB = SPECIALS + CHARS  # id = index
STOI = {c: i for i, c in enumerate(VOCAB)}


def encode(text, add_bos=True):
    """Character-level encoding; identical to tokenizer.json (BOS prepended like Llama)."""
    ids = [STOI.get(c, UNK_ID) for c in text]
    return ([BOS_ID] + ids) if add_bos else ids


def decode(ids):
    return "".join(VOCAB[i] for i in ids if i >= len(SPECIALS))


# ---------------------------------------------------------------- problem generator
HE = ["Tom", "Sam", "Ben", "Max"]
SHE = ["Ann", "Mia", "Lily", "Sara"]
OBJECTS = ["apples", "pens", "coins", "cards", "books", "eggs", "shells", "stamps", "marbles", "stickers"]
ADD = ["buys {n} more", "finds {n} more", "gets {n} more"]
SUB = ["gives away {n}", "loses {n}", "sells {n}"]
MUL = {2: "doubles them", 3: "triples them"}
MAX_VALUE = 99
MAX_OPERAND = 19  # largest n in "+n" / "-n"


def _step(rng, x):
    """One arithmetic step from value x: (equation, clause, new value)."""
    ops = []
    if x > 2:
        ops.append("-")
    if x + 2 <= MAX_VALUE:
        ops.append("+")
    if x * 2 <= MAX_VALUE:
        ops.append("*")
    op = rng.choice(ops)
    if op == "+":
        n = rng.randint(2, min(MAX_OPERAND, MAX_VALUE - x))
        y = x + n
        clause = rng.choice(ADD).format(n=n)
    elif op == "-":
        n = rng.randint(2, min(MAX_OPERAND, x - 1))
        y = x - n
        clause = rng.choice(SUB).format(n=n)
    else:
        n = 3 if (x * 3 <= MAX_VALUE and rng.random() < 0.5) else 2
        y = x * n
        clause = MUL[n]
    return f"{x}{op}{n}={y}", clause, y


def make_problem(rng):
    name = rng.choice(HE + SHE)
    pron = "he" if name in HE else "she"
    obj = rng.choice(OBJECTS)
    nsteps = rng.choice([2, 3, 4])
    x = start = rng.randint(5, 60)
    clauses, steps = [], []
    for _ in range(nsteps):
        eq, clause, x = _step(rng, x)
        steps.append(eq)
        clauses.append(clause)
    sentences = [f"{name} has {start} {obj}."]
    for c in clauses:
        sentences.append(f"{pron.capitalize()} {c}.")
    sentences.append(f"How many {obj} now?")
    prompt = "Q: " + " ".join(sentences) + "\nA:"
    completion = " " + ". ".join(steps) + f". The answer is {x}.\n"
    return {"prompt": prompt, "completion": completion, "answer": str(x), "steps": nsteps}


def make_drill(rng, nsteps=None):
    """Auxiliary training text (train split only): a bare chain of equations in the completion's
    format, e.g. " 23+15=38. 38-9=29. 29*2=58.\n". Returned as a problem with an empty prompt."""
    nsteps = nsteps or rng.randint(10, 16)
    x = rng.randint(5, 60)
    steps = []
    for _ in range(nsteps):
        eq, _, x = _step(rng, x)
        steps.append(eq)
    return {"prompt": "", "completion": " " + ". ".join(steps) + ".\n", "answer": str(x), "steps": nsteps,
            "drill": True}


ANSWER_RE = re.compile(r"The answer is (-?[0-9]+)")


def extract_answer(completion):
    """Integer after the LAST 'The answer is ' (as a string), or None."""
    m = ANSWER_RE.findall(completion)
    return m[-1] if m else None


# ---------------------------------------------------------------- splits
VAL_SEED, TEST_SEED, TRAIN_SEED, DRILL_SEED = 1001, 2002, 3003, 4004
N_VAL, N_TEST = 400, 400


def _draw(seed, n, exclude):
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        p = make_problem(rng)
        if p["prompt"] in exclude or p["prompt"] in seen:
            continue
        seen.add(p["prompt"])
        out.append(p)
    return out


def eval_splits():
    """(validation, test): fixed lists, disjoint by prompt text."""
    val = _draw(VAL_SEED, N_VAL, set())
    test = _draw(TEST_SEED, N_TEST, {p["prompt"] for p in val})
    return val, test


def drill_stream(seed=DRILL_SEED):
    """Infinite deterministic stream of equation drills (training only)."""
    rng = random.Random(seed)
    while True:
        yield make_drill(rng)


def train_stream(seed=TRAIN_SEED, exclude=None):
    """Infinite deterministic stream of training problems, never a validation/test prompt."""
    if exclude is None:
        val, test = eval_splits()
        exclude = {p["prompt"] for p in val + test}
    rng = random.Random(seed)
    while True:
        p = make_problem(rng)
        if p["prompt"] not in exclude:
            yield p


def write_problems(path, problems):
    """A split as JSONL, one {"prompt", "answer"} per line (the format `sirius eval --data` reads)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="\n") as f:
        for p in problems:
            f.write(json.dumps({"prompt": p["prompt"], "answer": p["answer"]}) + "\n")
    return len(problems)


def write_test(path):
    return write_problems(path, eval_splits()[1])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-test", action="store_true")
    ap.add_argument("--show", type=int, default=0)
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if a.write_test:
        n = write_test(os.path.join(root, "data", "arith", "test.jsonl"))
        print(f"wrote {n} test problems")
    if a.show:
        for p, _ in zip(train_stream(), range(a.show)):
            print(p["prompt"] + p["completion"], end="")
