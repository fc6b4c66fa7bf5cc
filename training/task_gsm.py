#!/usr/bin/env python3
"""Synthetic multi-step word problems in the spirit of GSM8K ("tiny GSM") for sirius-tiny-gsm.

One example (prompt + completion, then the </s> token):

    Q: Mia has 4 boxes of 23 shells. She gives away 17. Then her aunt gives her 3 bags of 8 shells.
    She doubles them. How many shells does Mia have now?
    A: 23*4=92. 92-17=75. 3*8=24. 75+24=99. 99*2=198. The answer is 198.

* prompt     = "Q: <question>\\nA:"            (ends with "A:", no trailing space or newline)
* completion = " <eq>. <eq>. ... The answer is <n>.\\n"   then </s>
  each <eq> is "<x><op><y>=<z>", op in + - * /.
* Answer extraction: the integer after the LAST "The answer is " (regex `The answer is (-?[0-9]+)`).

What makes it harder and less peaked than the arith task (training/task.py):
* 2-7 events after the start sentence (one or two equations each), so 2-12 equations in all;
* values up to 999 (three-digit carries and borrows), operands up to 99, products of 2-9 groups of 2-25,
  multiplication by 2-5, halving;
* 4-5 phrasings per operation, optional "Then", name or pronoun, 3 question forms;
* MORE THAN ONE VALID SOLUTION: every commutative equation is written in either operand order
  ("92+24=116" or "24+92=116", "3*8=24" or "8*3=24"), each with probability 1/2 in the training data,
  so the model's next-token distribution there has about one bit of entropy.

Tokenizer (word level): every word of the generator's vocabulary, with its leading space, is one token
(" apples", " How"); every other character (digits, punctuation, space, newline) is a token of its own,
so numbers are spelled digit by digit. Exported as tokenizer.json with a regex Split pre-tokenizer and a
merge-free BPE model with ignore_merges (see PRE_TOKENIZER_REGEX); `training/verify_tokenizer.py` checks
`encode` against @huggingface/tokenizers.

Splits (disjoint by construction): every problem has a canonical key, its sequence of operations and
numbers (phrasing, names, objects and operand order left out). sha256(key) decides the split:
bucket 0 of 50 is test, bucket 1 is validation, the rest is training. A test problem's chain of
arithmetic therefore never occurs in training under any phrasing.

CLI:  /usr/bin/python3 training/task_gsm.py --write-test     (writes data/gsm/test.jsonl)
      /usr/bin/python3 training/task_gsm.py --show 5         (prints a few training examples)
"""
import argparse
import hashlib
import json
import os
import random
import re

import task  # the arith task: its JSONL writer

NAME = "sirius-tiny-gsm"
DATA_DIR = "gsm"

# ---------------------------------------------------------------- problem generator
HE = ["Tom", "Sam", "Ben", "Max", "Leo", "Jack"]
SHE = ["Ann", "Mia", "Lily", "Sara", "Emma", "Zoe"]
GIVERS = ["{poss} friend", "{poss} aunt", "{poss} dad", "{poss} mom", "{poss} sister", "a neighbor"]
OBJECTS = ["apples", "pens", "coins", "cards", "books", "eggs", "shells", "stamps", "marbles", "stickers",
           "beads", "rocks", "candies", "toys", "cookies"]
CONTAINERS = ["bags", "boxes", "packs", "jars", "baskets"]

MAX_VALUE = 999
MAX_OPERAND = 99      # n in "+n" / "-n"
MAX_GROUPS = 12       # a in "a bags of b"
MAX_GROUP_SIZE = 30   # b
MIN_EVENTS, MAX_EVENTS = 2, 6
EXEMPLAR_EVENTS = 3   # the 1-shot exemplar in front of every question has exactly this many events
SWAP_P = 0.5          # probability of writing a commutative equation with its operands swapped


class Ctx:
    """Who the problem is about, and how the sentences refer to them."""

    def __init__(self, rng):
        self.he = rng.random() < 0.5
        self.name = rng.choice(HE if self.he else SHE)
        self.obj = rng.choice(OBJECTS)
        self.rng = rng

    def subj(self):  # sentence-initial reference: the name or the pronoun
        return self.name if self.rng.random() < 0.3 else ("He" if self.he else "She")

    def objp(self):
        return "him" if self.he else "her"

    def poss(self):
        return "his" if self.he else "her"

    def giver(self):
        return self.rng.choice(GIVERS).format(poss=self.poss())


def _eq(rng, a, op, b, c, swap_ok):
    if swap_ok and rng.random() < SWAP_P:
        a, b = b, a
    return f"{a}{op}{b}={c}"


def _group(rng):
    return rng.randint(2, MAX_GROUPS), rng.randint(2, MAX_GROUP_SIZE)


def _event(rng, ctx, x):
    """One sentence from value x: (canonical op, sentence, equations, new value) or None if infeasible."""
    kind = rng.choice(["add", "add", "sub", "sub", "gadd", "gsub", "mul", "half"])
    S, o, C = ctx.subj(), ctx.obj, rng.choice(CONTAINERS)
    if kind == "add":
        if x + 2 > MAX_VALUE:
            return None
        n = rng.randint(2, min(MAX_OPERAND, MAX_VALUE - x))
        s = rng.choice([f"{S} buys {n} more.", f"{S} finds {n} more {o}.", f"{S} gets {n} more.",
                        f"{ctx.giver().capitalize()} gives {ctx.objp()} {n} {o}.",
                        f"{S} wins {n} more {o}."])
        return ("+", n), s, [_eq(rng, x, "+", n, x + n, True)], x + n
    if kind == "sub":
        if x < 3:
            return None
        n = rng.randint(2, min(MAX_OPERAND, x - 1))
        s = rng.choice([f"{S} gives away {n}.", f"{S} loses {n}.", f"{S} sells {n} {o}.",
                        f"{S} gives {n} {o} to {ctx.giver()}.", f"{S} uses {n} of them."])
        return ("-", n), s, [_eq(rng, x, "-", n, x - n, False)], x - n
    if kind == "gadd":
        a, b = _group(rng)
        if x + a * b > MAX_VALUE:
            return None
        m = a * b
        s = rng.choice([f"{S} buys {a} {C} of {b} {o}.", f"{S} gets {a} {C} with {b} {o} each.",
                        f"{ctx.giver().capitalize()} gives {ctx.objp()} {a} {C} of {b} {o}."])
        return ("g+", a, b), s, [_eq(rng, a, "*", b, m, True), _eq(rng, x, "+", m, x + m, True)], x + m
    if kind == "gsub":
        a, b = _group(rng)
        if a * b >= x:
            return None
        m = a * b
        s = rng.choice([f"{S} sells {a} {C} of {b} {o}.", f"{S} gives away {a} {C} with {b} {o} each.",
                        f"{S} fills {a} {C} with {b} {o} each and gives them away."])
        return ("g-", a, b), s, [_eq(rng, a, "*", b, m, True), _eq(rng, x, "-", m, x - m, False)], x - m
    if kind == "mul":
        ks = [k for k in (2, 3, 4, 5) if x * k <= MAX_VALUE]
        if not ks:
            return None
        k = rng.choice(ks)
        words = {2: "doubles", 3: "triples"}
        opts = [f"Now {S.lower() if S in ('He', 'She') else S} has {k} times as many {o}.",
                f"{S} ends up with {k} times as many."]
        if k in words:
            opts += [f"{S} {words[k]} them.", f"{S} {words[k]} the {o}."]
        return ("*", k), rng.choice(opts), [_eq(rng, x, "*", k, x * k, True)], x * k
    # half
    if x % 2 or x < 4:
        return None
    s = rng.choice([f"{S} gives half of them away.", f"{S} loses half of the {o}.",
                    f"{S} sells half of them.", f"{S} gives half of the {o} to {ctx.giver()}."])
    return ("/", 2), s, [f"{x}/2={x // 2}"], x // 2


def make_problem(rng, nev=None):
    """One question with its solution (no exemplar): prompt "Q: ...\nA:", completion " ... The answer is N.\n"."""
    ctx = Ctx(rng)
    C = rng.choice(CONTAINERS)
    key, eqs, sents = [], [], []
    if rng.random() < 0.35:
        a, b = _group(rng)
        x = a * b
        sents.append(f"{ctx.name} has {a} {C} of {b} {ctx.obj}.")
        eqs.append(_eq(rng, a, "*", b, x, True))
        key.append(("start*", a, b))
    else:
        x = rng.randint(10, 300)
        sents.append(f"{ctx.name} has {x} {ctx.obj}.")
        key.append(("start", x))
    nev = nev or rng.randint(MIN_EVENTS, MAX_EVENTS)
    while len(key) - 1 < nev:
        ev = _event(rng, ctx, x)
        if ev is None:
            continue
        k, s, e, x = ev
        if not s.startswith("Now") and rng.random() < 0.15:
            s = "Then " + (s if s.startswith(ctx.name) else s[0].lower() + s[1:])
        sents.append(s)
        eqs.extend(e)
        key.append(k)
    q = rng.choice([f"How many {ctx.obj} does {ctx.name} have now?",
                    f"How many {ctx.obj} does {'he' if ctx.he else 'she'} have now?",
                    f"How many {ctx.obj} does {ctx.name} have in the end?"])
    sents.append(q)
    prompt = "Q: " + " ".join(sents) + "\nA:"
    completion = " " + ". ".join(eqs) + f". The answer is {x}.\n"
    return {"prompt": prompt, "completion": completion, "answer": str(x), "steps": nev,
            "key": json.dumps(key, separators=(",", ":"))}


def make_drill(rng, nsteps=None):
    """Auxiliary training text (train split only): a bare chain of equations in the completion's format,
    drawn like the events' arithmetic; loss only on the results. Returned as a problem with an empty prompt."""
    nsteps = nsteps or rng.randint(8, 14)
    ctx = Ctx(rng)
    x = rng.randint(10, 300)
    eqs = []
    while len(eqs) < nsteps:
        ev = _event(rng, ctx, x)
        if ev is None:
            continue
        _, _, e, x = ev
        eqs.extend(e)
    return {"prompt": "", "completion": " " + ". ".join(eqs) + ".\n", "answer": str(x), "steps": nsteps,
            "drill": True}


ANSWER_RE = re.compile(r"The answer is (-?[0-9]+)")
ANSWER_REGEX_JS = r"The answer is (-?\d+)"


def extract_answer(completion):
    m = ANSWER_RE.findall(completion)
    return m[-1] if m else None


# ---------------------------------------------------------------- tokenizer (word level, exported as BPE)
SPECIALS = ["<unk>", "<s>", "</s>"]
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
CHARS = [" ", "\n"] + list(".,?:+-*/=") + list("0123456789") + \
    [chr(c) for c in range(ord("A"), ord("Z") + 1)] + [chr(c) for c in range(ord("a"), ord("z") + 1)]


def _words():
    """Every word the generator writes (its sentences, questions and the answer line), sorted."""
    rng = random.Random(0)
    ws = set()
    for _ in range(20000):
        p = make_problem(rng)
        ws.update(re.findall(r"[A-Za-z]+", p["prompt"] + p["completion"]))
    for lst in (HE, SHE, OBJECTS, CONTAINERS):
        ws.update(lst)
    for g in GIVERS:
        for poss in ("his", "her"):
            w = g.format(poss=poss).split()
            ws.update(w)
            ws.add(w[0].capitalize())
    return sorted(ws)


WORDS = _words()
WORD_TOKENS = [" " + w for w in WORDS]
VOCAB = SPECIALS + CHARS + WORD_TOKENS  # id = index
STOI = {t: i for i, t in enumerate(VOCAB)}
MERGES = []  # none: see PRE_TOKENIZER_REGEX

# tokenizer.json: a Split pre-tokenizer isolates every space-led word and every other character; the BPE
# model has no merges and ignore_merges=true, so a piece in the vocabulary is one token and any other
# piece (an unknown word) falls back to its characters (unknown characters to <unk>).
PRE_TOKENIZER_REGEX = " ?[A-Za-z]+|[^A-Za-z]"
_SPLIT = re.compile(PRE_TOKENIZER_REGEX)


def tokenize(text):
    """Token strings of text (no specials), exactly as tokenizer.json splits it."""
    out = []
    for piece in _SPLIT.findall(text):
        out.extend([piece] if piece in STOI else list(piece))
    return out


def encode(text, add_bos=True):
    ids = [STOI.get(t, UNK_ID) for t in tokenize(text)]
    return ([BOS_ID] + ids) if add_bos else ids


def decode(ids):
    return "".join(VOCAB[i] for i in ids if i >= len(SPECIALS))


# ---------------------------------------------------------------- splits
SPLIT_BUCKETS = 50
TEST_BUCKET, VAL_BUCKET = 0, 1
VAL_SEED, TEST_SEED, TRAIN_SEED, DRILL_SEED = 1101, 2202, 3303, 4404
N_VAL, N_TEST = 400, 400


def bucket(p):
    return int.from_bytes(hashlib.sha256(p["key"].encode()).digest()[:8], "big") % SPLIT_BUCKETS


def _draw(seed, n, want):
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        p = make_problem(rng)
        if bucket(p) != want or p["key"] in seen:
            continue
        seen.add(p["key"])
        out.append(p)
    return out


def eval_splits():
    """(validation, test): fixed lists from their own buckets (disjoint from each other and from training),
    each question behind its own exemplar (drawn from the training buckets)."""
    out = []
    for seed, n, b in ((VAL_SEED, N_VAL, VAL_BUCKET), (TEST_SEED, N_TEST, TEST_BUCKET)):
        exs = _exemplars(seed + 1)
        out.append([with_exemplar(p, next(exs)) for p in _draw(seed, n, b)])
    return tuple(out)


def _exemplars(seed):
    """Infinite stream of 1-shot exemplars (solved problems with EXEMPLAR_EVENTS events), training buckets only."""
    rng = random.Random(seed)
    while True:
        p = make_problem(rng, EXEMPLAR_EVENTS)
        if bucket(p) not in (TEST_BUCKET, VAL_BUCKET):
            yield p


def with_exemplar(p, ex):
    """The few-shot prompt: the exemplar's question and solution, then the question. Training also puts
    the loss on the exemplar's solution (two problems packed in one sequence)."""
    q = dict(p)
    q["prompt"] = ex["prompt"] + ex["completion"] + p["prompt"]
    q["exemplar"] = (ex["prompt"], ex["completion"])
    q["question"] = p["prompt"]
    return q


def train_stream(seed=TRAIN_SEED):
    """Infinite deterministic stream of training problems (with their exemplars), never from the
    validation or test buckets."""
    rng = random.Random(seed)
    exs = _exemplars(seed + 1)
    while True:
        p = make_problem(rng)
        if bucket(p) not in (TEST_BUCKET, VAL_BUCKET):
            yield with_exemplar(p, next(exs))


def drill_stream(seed=DRILL_SEED):
    rng = random.Random(seed)
    while True:
        yield make_drill(rng)


def write_test(path):
    return task.write_problems(path, eval_splits()[1])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-test", action="store_true")
    ap.add_argument("--show", type=int, default=0)
    ap.add_argument("--stats", action="store_true")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if a.write_test:
        n = write_test(os.path.join(root, "data", DATA_DIR, "test.jsonl"))
        print(f"wrote {n} test problems")
    if a.show:
        for p, _ in zip(train_stream(), range(a.show)):
            print(p["prompt"] + p["completion"], end="")
    if a.stats:
        ps = [p for p, _ in zip(train_stream(), range(2000))]
        nt = [len(encode(p["prompt"] + p["completion"])) for p in ps]
        nc = [len(encode(p["completion"], False)) for p in ps]
        ch = [len(p["prompt"] + p["completion"]) for p in ps]
        print(f"vocab {len(VOCAB)} (words {len(WORD_TOKENS)})")
        print(f"tokens/example mean {sum(nt) / len(nt):.1f} max {max(nt)}; completion mean {sum(nc) / len(nc):.1f} "
              f"max {max(nc)}; chars mean {sum(ch) / len(ch):.1f}")
