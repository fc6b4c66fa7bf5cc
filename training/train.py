#!/usr/bin/env python3
"""Train, evaluate and export the bundled tiny Llamas (exact HF Llama semantics, plain torch).

--task picks the recipe (task generator, architecture, training defaults, output folder):
  arith (default): models/sirius-tiny-arith, training/task.py
  gsm:             models/sirius-tiny-gsm,   training/task_gsm.py

  /usr/bin/python3 training/train.py [--task T]            # full reproducible run: train + eval + export
  /usr/bin/python3 training/train.py [--task T] --smoke    # a few steps, tiny eval, exports to a temp dir; exits 0
  /usr/bin/python3 training/train.py [--task T] --eval-only [--out DIR]   # evaluate an exported model

Resuming: a run saves a checkpoint (model, optimizer, step, eval log, elapsed time) every --ckpt-every
steps to tmp/train-<model>-<hash of the recipe>/ckpt.pt (git-ignored). Re-running the same command
continues from the latest checkpoint; the batch stream is replayed up to that step, so an interrupted
and resumed run produces the same bytes as an uninterrupted one. --fresh ignores the checkpoint.

Threads: torch.set_num_threads(--threads, default 1) and OPENBLAS_NUM_THREADS=1 unless already set.
On the shared 2-core machine 1 thread was faster than 2 (other work competes for the cores).
"""
import argparse
import hashlib
import json
import math
import os
import struct
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the recorded run used 1 BLAS thread
import numpy as np  # noqa: E402
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import task  # noqa: E402  (rebound to the chosen task's module in main())
import task as task_arith  # noqa: E402
import task_gsm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(ROOT, "models", "sirius-tiny-arith")
MAX_NEW = 80  # greedy evaluation budget (new tokens); set per task in main()

# Per-task recipes: the architecture (CONFIG overrides), the training defaults and where the results go.
RECIPES = {
    "arith": dict(
        module=task_arith, name="sirius-tiny-arith", config={}, max_new=80,
        defaults=dict(steps=4000, batch=32, lr=3e-3, warmup=200, wd=0.1, eval_every=1000, bf16=1,
                      drill_frac=0.375),
        reference="reference-logits.json", report="train-report.json"),
    "gsm": dict(
        module=task_gsm, name="sirius-tiny-gsm",
        config=dict(hidden_size=128, intermediate_size=1024, num_hidden_layers=5, num_attention_heads=4,
                    num_key_value_heads=1, head_dim=32, max_position_embeddings=512),
        max_new=200,
        defaults=dict(steps=3600, batch=22, lr=3e-3, warmup=200, wd=0.1, eval_every=500, bf16=0,
                      drill_frac=0.27),
        reference="reference-logits-gsm.json", report="train-report-gsm.json"),
}

CONFIG = dict(
    vocab_size=len(task.VOCAB),
    hidden_size=128,
    intermediate_size=512,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=4,
    head_dim=32,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=False,
)


# ============================================================== model (HF Llama semantics)
class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, d = c["hidden_size"], c["head_dim"]
        self.nh, self.nkv, self.hd = c["num_attention_heads"], c["num_key_value_heads"], d
        self.input_layernorm = RMSNorm(h, c["rms_norm_eps"])
        self.q_proj = nn.Linear(h, self.nh * d, bias=False)
        self.k_proj = nn.Linear(h, self.nkv * d, bias=False)
        self.v_proj = nn.Linear(h, self.nkv * d, bias=False)
        self.o_proj = nn.Linear(self.nh * d, h, bias=False)
        self.post_attention_layernorm = RMSNorm(h, c["rms_norm_eps"])
        self.gate_proj = nn.Linear(h, c["intermediate_size"], bias=False)
        self.up_proj = nn.Linear(h, c["intermediate_size"], bias=False)
        self.down_proj = nn.Linear(c["intermediate_size"], h, bias=False)

    def mlp(self, x, sparse=None):
        """sparse: None (dense) | ("fine", keep) | ("mask", bool mask [B,1,D])."""
        a = F.silu(self.gate_proj(x).float())  # .float(): no-op in fp32; keeps bf16-autocast training fast
        if sparse is not None:
            if sparse[0] == "fine":
                keep = sparse[1]
                idx = a.abs().topk(a.shape[-1] - keep, dim=-1, largest=False).indices
                a = a.scatter(-1, idx, 0.0)
            else:
                a = a * sparse[1]
        return self.down_proj(a * self.up_proj(x))

    def forward(self, x, cos, sin, mask, cache=None, sparse=None):
        B, T, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        if self.nkv != self.nh:  # GQA: query head h uses kv head h // (nh / nkv)
            rep = self.nh // self.nkv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        s = (q @ k.transpose(-1, -2)).float() / math.sqrt(self.hd) + mask
        o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, self.nh * self.hd)
        x = x + self.o_proj(o)
        h2 = self.post_attention_layernorm(x)
        stats = h2 if sparse == "collect" else None
        x = x + self.mlp(h2, None if sparse == "collect" else sparse)
        return x, stats


class TinyLlama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        d = c["head_dim"]
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        self.register_buffer("inv_freq", inv, persistent=False)
        for m in self.modules():  # HF LlamaPreTrainedModel init: N(0, 0.02)
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)

    def rope(self, pos):
        f = pos[..., None].float() * self.inv_freq  # [B,T,d/2]
        emb = torch.cat([f, f], dim=-1)[:, None]  # [B,1,T,d]
        return emb.cos(), emb.sin()

    def forward(self, ids, pos=None, mask=None, caches=None, sparse=None):
        """ids [B,T]; pos [B,T] (default arange); mask additive [B,1,T,Tk] (default causal).
        sparse: None | ("fine", keep) | "collect" | list of per-layer ("mask", m)."""
        B, T = ids.shape
        if pos is None:
            pos = torch.arange(T)[None].expand(B, T)
        if mask is None:
            mask = torch.full((T, T), float("-inf")).triu(1)[None, None]
        cos, sin = self.rope(pos)
        x = self.embed_tokens(ids)
        collected = []
        for i, layer in enumerate(self.layers):
            sp = sparse[i] if isinstance(sparse, list) else sparse
            x, st = layer(x, cos, sin, mask, None if caches is None else caches[i], sp)
            if st is not None:
                collected.append(st)
        logits = self.lm_head(self.norm(x))
        return (logits, collected) if sparse == "collect" else logits


# ============================================================== data
def batch_from(problems):
    """Right-padded batch. Loss mask: the completion and the final </s> for word problems; for drills
    only the results (the characters after each '=' up to and including the '.'), the final newline and </s>."""
    seqs, masks = [], []
    for p in problems:
        if "exemplar" in p:  # few-shot prompt: the loss also covers the exemplar's solution
            ep, ec = p["exemplar"]
            epi, eci = task.encode(ep), task.encode(ec, add_bos=False)
            qi = task.encode(p["question"], add_bos=False)
            pi, pre = epi + eci + qi, [0] * len(epi) + [1] * len(eci) + [0] * len(qi)
        else:
            pi = task.encode(p["prompt"])
            pre = [0] * len(pi)
        ci = task.encode(p["completion"], add_bos=False) + [task.EOS_ID]
        seqs.append(pi + ci)
        if p.get("drill"):
            cm, on = [], False
            for ch in (task.VOCAB[i] for i in ci[:-1]):  # drills are digits and operators: one token per character
                cm.append(1 if on or ch == "\n" else 0)
                if ch == "=":
                    on = True
                elif ch == ".":
                    on = False
            cm.append(1)
        else:
            cm = [1] * len(ci)
        masks.append(pre + cm)
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), task.EOS_ID, dtype=torch.long)
    lm = torch.zeros((len(seqs), T))
    for b, (s, m) in enumerate(zip(seqs, masks)):
        ids[b, : len(s)] = torch.tensor(s)
        lm[b, : len(m)] = torch.tensor(m, dtype=torch.float32)
    return ids, lm


def bucketed_batches(bs, n_drill, seed, pool=16):
    """Deterministic batches of (bs - n_drill) word problems + n_drill drills. Per pool of 16 batches,
    problems and drills are each sorted by length and dealt out in slices (less padding); the
    batch order inside a pool is shuffled with a seeded RNG."""
    import random
    rng = random.Random(seed)
    probs, drills = task.train_stream(), task.drill_stream()
    n_prob = bs - n_drill
    while True:
        ps = sorted((next(probs) for _ in range(n_prob * pool)), key=lambda p: len(p["prompt"] + p["completion"]))
        ds = sorted((next(drills) for _ in range(n_drill * pool)), key=lambda p: len(p["completion"]))
        bl = [ps[i * n_prob:(i + 1) * n_prob] + ds[i * n_drill:(i + 1) * n_drill] for i in range(pool)]
        rng.shuffle(bl)
        yield from bl


# ============================================================== greedy evaluation (KV cache, left padding)
@torch.no_grad()
def griffin_masks(model, hidden, prompt, density):
    """GRIFFIN's per-sequence kept sets: per layer, the int(D·density) neurons with the largest norm over the
    prompt positions (prompt: bool [B,T]) of the token-normalised SiLU(gate·x)·(up·x). hidden: each layer's MLP
    input (model(..., sparse="collect")). Returns one float mask [B,D] per layer."""
    D = model.c["intermediate_size"]
    masks = []
    for layer, h in zip(model.layers, hidden):
        z = F.silu(layer.gate_proj(h)) * layer.up_proj(h)  # [B,T,D]
        z = z / z.norm(dim=-1, keepdim=True).clamp(min=1e-30)
        z = z * prompt[..., None]
        kept = z.norm(dim=1).topk(int(D * density), dim=-1).indices  # [B,kc]
        masks.append(torch.zeros(h.shape[0], D).scatter(-1, kept, 1.0))
    return masks


def generate(model, prompts, mode="dense", density=0.5, max_new=None, sparse_prefill=False):
    """Greedy decoding. mode: dense | fine (per-token top-k |SiLU(gate x)|) | coarse (per-prompt GRIFFIN set).
    Prefill is dense (as in Sirius) unless sparse_prefill; sparsity applies to every generated token.
    Returns (completions, generated_token_lists)."""
    c = model.c
    max_new = max_new or MAX_NEW
    D = c["intermediate_size"]
    keep = D - int(D * (1 - density))  # fine: zero int(D*(1-rho)) neurons
    enc = [task.encode(p) for p in prompts]
    B, P = len(enc), max(map(len, enc))
    ids = torch.full((B, P), task.EOS_ID, dtype=torch.long)
    valid = torch.zeros((B, P), dtype=torch.bool)
    for b, e in enumerate(enc):
        ids[b, P - len(e):] = torch.tensor(e)
        valid[b, P - len(e):] = True
    pos = (valid.long().cumsum(1) - 1).clamp(min=0)
    causal = torch.ones(P, P, dtype=torch.bool).tril()
    allowed = causal[None] & valid[:, None, :]
    allowed |= torch.eye(P, dtype=torch.bool)[None]  # pad rows attend to themselves (no NaN)
    mask = torch.zeros((B, 1, P, P)).masked_fill(~allowed[:, None], float("-inf"))
    caches = [dict() for _ in range(c["num_hidden_layers"])]
    pre_sparse = None
    if sparse_prefill and mode == "fine":
        pre_sparse = ("fine", keep)
    if mode == "coarse":
        logits, hs = model(ids, pos, mask, caches, sparse="collect")
        dec_sparse = [("mask", m[:, None]) for m in griffin_masks(model, hs, valid, density)]
    else:
        logits = model(ids, pos, mask, caches, sparse=pre_sparse)
        dec_sparse = ("fine", keep) if mode == "fine" else None
    nxt = logits[:, -1].argmax(-1)
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool)
    kvalid = valid.clone()
    cur = pos[:, -1]
    for _ in range(max_new):
        for b in range(B):
            if not done[b]:
                out[b].append(int(nxt[b]))
        done |= nxt == task.EOS_ID
        if bool(done.all()):
            break
        cur = cur + 1
        kvalid = torch.cat([kvalid, torch.ones(B, 1, dtype=torch.bool)], 1)
        m = torch.zeros(B, 1, 1, kvalid.shape[1]).masked_fill(~kvalid[:, None, None], float("-inf"))
        logits = model(nxt[:, None], cur[:, None], m, caches, sparse=dec_sparse)
        nxt = logits[:, -1].argmax(-1)
    texts = [task.decode([t for t in o if t != task.EOS_ID]) for o in out]
    return texts, out


def accuracy(model, problems, mode="dense", density=0.5, bs=200, **kw):
    correct, comps = 0, []
    for i in range(0, len(problems), bs):
        chunk = problems[i : i + bs]
        texts, _ = generate(model, [p["prompt"] for p in chunk], mode, density, **kw)
        for p, t in zip(chunk, texts):
            correct += task.extract_answer(t) == p["answer"]
            comps.append(t)
    return correct / len(problems), comps


def by_steps(problems, comps):
    r = {}
    for n in sorted({p["steps"] for p in problems}):
        sel = [(p, t) for p, t in zip(problems, comps) if p["steps"] == n]
        if sel:
            r[n] = sum(task.extract_answer(t) == p["answer"] for p, t in sel) / len(sel)
    return r


@torch.no_grad()
def result_digit_accuracy(model, problems):
    """Teacher-forced argmax accuracy on the digits right of each '=' in the completions."""
    ids, _ = batch_from(problems)
    pred = model(ids).argmax(-1)
    ok = tot = 0
    for b, p in enumerate(problems):
        P, on = len(task.encode(p["prompt"])), False
        for k, ch in enumerate(task.VOCAB[i] for i in task.encode(p["completion"], add_bos=False)):
            if ch == "=":
                on = True
            elif not ch.isdigit():
                on = False
            elif on:
                tot += 1
                ok += int(pred[b, P + k - 1] == ids[b, P + k])
    return ok / max(1, tot)


@torch.no_grad()
def token_agreement(model, problems, density=0.5, bs=200):
    """Teacher-forced over the reference completions: fraction of completion positions where the
    fine-sparse (decode-position) argmax equals the dense argmax. Sparsity applied at all positions."""
    D = model.c["intermediate_size"]
    keep = D - int(D * (1 - density))
    agree = tot = 0
    for i in range(0, len(problems), bs):
        ids, lm = batch_from(problems[i : i + bs])
        a = model(ids).argmax(-1)
        s = model(ids, sparse=("fine", keep)).argmax(-1)
        m = lm[:, 1:].bool()
        agree += int(((a[:, :-1] == s[:, :-1]) & m).sum())
        tot += int(m.sum())
    return agree / tot


# ============================================================== export
def write_safetensors(path, tensors, dtype="F32"):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        a = t.detach().float().contiguous().numpy()
        if dtype == "F32":
            b = a.astype("<f4").tobytes()
        else:  # BF16 by round-to-nearest-even of the f32 bits
            u = a.astype("<f4").view("<u4").astype(np.uint64)
            u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
            b = u.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b0, b1 = info["data_offsets"]
        assert info["dtype"] == "F32"
        out[name] = torch.from_numpy(np.frombuffer(data[b0:b1], dtype="<f4").copy()).view(*info["shape"])
    return out


def hf_state_dict(model):
    sd = {"model.embed_tokens.weight": model.embed_tokens.weight}
    for i, L in enumerate(model.layers):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = L.input_layernorm.weight
        for n in ("q", "k", "v", "o"):
            sd[p + f"self_attn.{n}_proj.weight"] = getattr(L, f"{n}_proj").weight
        sd[p + "post_attention_layernorm.weight"] = L.post_attention_layernorm.weight
        for n in ("gate", "up", "down"):
            sd[p + f"mlp.{n}_proj.weight"] = getattr(L, f"{n}_proj").weight
    sd["model.norm.weight"] = model.norm.weight
    if not model.c["tie_word_embeddings"]:
        sd["lm_head.weight"] = model.lm_head.weight
    return sd


def load_hf(model_dir):
    c = json.load(open(os.path.join(model_dir, "config.json")))
    cfg = {k: c[k] for k in CONFIG}
    model = TinyLlama(cfg)
    sd = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    mine = hf_state_dict(model)
    with torch.no_grad():
        for k, p in mine.items():
            p.copy_(sd[k])
        if cfg["tie_word_embeddings"]:
            model.lm_head.weight.copy_(sd["model.embed_tokens.weight"])
    return model.eval()


def tokenizer_files():
    vocab = {tok: i for i, tok in enumerate(task.VOCAB)}
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, t in enumerate(task.SPECIALS)
    ]
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": None if not hasattr(task, "PRE_TOKENIZER_REGEX") else {
            "type": "Split", "pattern": {"Regex": task.PRE_TOKENIZER_REGEX}, "behavior": "Isolated",
            "invert": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [task.BOS_ID], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "Fuse"},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": hasattr(task, "PRE_TOKENIZER_REGEX"),
            "vocab": vocab, "merges": [list(m) for m in getattr(task, "MERGES", [])],
        },
    }
    tcfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": None,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": CONFIG["max_position_embeddings"],
        "added_tokens_decoder": {
            str(i): {k: v for k, v in a.items() if k != "id"} for i, a in enumerate(added)
        },
    }
    return tok, tcfg


def reference_cases(model, test, n=2):
    """Full-model float32 next-token logits at the last prompt position, plus greedy completions."""
    refs = []
    with torch.no_grad():
        for p in test[:n]:
            ids = task.encode(p["prompt"])
            lg = model(torch.tensor([ids]))[0, -1]
            refs.append({
                "prompt": p["prompt"], "token_ids": ids, "logits_first10": [float(x) for x in lg[:10]],
                "argmax": int(lg.argmax()), "argmax_token": task.VOCAB[int(lg.argmax())],
                "greedy_dense": generate(model, [p["prompt"]])[0][0],
                "greedy_fine_0.5": generate(model, [p["prompt"]], "fine", 0.5)[0][0],
                "greedy_coarse_0.5": generate(model, [p["prompt"]], "coarse", 0.5)[0][0],
            })
    return refs


def write_reference(path, refs, name="sirius-tiny-arith"):
    head = {"model": name, "dtype": "float32",
            "note": "full (dense) model, next-token logits at the last prompt position (token_ids include <s>); "
                    "greedy_* are greedy completions (stop at </s>) with dense / fine / coarse MLP at density 0.5"}
    body = ",\n  ".join(json.dumps(r) for r in refs)
    with open(path, "w") as f:
        f.write(json.dumps(head)[:-1] + ',\n "cases": [\n  ' + body + "\n ]\n}\n")


def export(model, out_dir, test, max_new_tokens=80, eval_json=None):
    os.makedirs(out_dir, exist_ok=True)
    sd = hf_state_dict(model)
    nbytes = 4 * sum(t.numel() for t in sd.values())
    dtype = "F32" if nbytes <= 10 * 2**20 else "BF16"
    write_safetensors(os.path.join(out_dir, "model.safetensors"), sd, dtype)
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        **CONFIG,
        "bos_token_id": task.BOS_ID,
        "eos_token_id": task.EOS_ID,
        "pad_token_id": None,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "rope_scaling": None,
        "initializer_range": 0.02,
        "torch_dtype": "float32" if dtype == "F32" else "bfloat16",
        "use_cache": True,
    }
    json.dump(cfg, open(os.path.join(out_dir, "config.json"), "w"), indent=2)
    tok, tcfg = tokenizer_files()
    json.dump(tok, open(os.path.join(out_dir, "tokenizer.json"), "w"), indent=1, ensure_ascii=False)
    json.dump(tcfg, open(os.path.join(out_dir, "tokenizer_config.json"), "w"), indent=2)
    gen = {"bos_token_id": task.BOS_ID, "eos_token_id": task.EOS_ID, "max_new_tokens": max_new_tokens,
           "do_sample": False}
    json.dump(gen, open(os.path.join(out_dir, "generation_config.json"), "w"), indent=2)
    if eval_json is not None:
        json.dump(eval_json, open(os.path.join(out_dir, "eval.json"), "w"), indent=2)
    refs = reference_cases(model, test)
    return dtype, refs


# ============================================================== checkpoints (resumable training)
def recipe_hash(a):
    """Everything that determines the trained weights; a checkpoint is resumed only under the same hash."""
    key = dict(task=a.task, seed=a.seed, steps=a.steps, batch=a.batch, lr=a.lr, warmup=a.warmup, wd=a.wd,
               bf16=a.bf16, drill_frac=a.drill_frac, config=CONFIG,
               task_source=hashlib.sha256(open(task.__file__, "rb").read()).hexdigest())
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def save_checkpoint(path, step, model, opt, log, train_time):
    tmp = path + ".tmp"
    torch.save({"step": step, "model": model.state_dict(), "opt": opt.state_dict(), "log": log,
                "train_time": train_time}, tmp)
    os.replace(tmp, path)  # atomic: an interruption leaves the previous checkpoint intact


# ============================================================== training
def main():
    global task, MODEL_DIR, MAX_NEW
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=sorted(RECIPES), default="arith")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--wd", type=float)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int)
    ap.add_argument("--hidden", type=int)
    ap.add_argument("--inter", type=int)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--heads", type=int)
    ap.add_argument("--kv-heads", type=int)
    ap.add_argument("--bf16", type=int, help="bf16 autocast for training matmuls (fp32 master weights)")
    ap.add_argument("--drill-frac", type=float, help="fraction of each batch that are equation drills")
    ap.add_argument("--ckpt", default="", help="also save the model's state dict here at every eval (optional)")
    ap.add_argument("--ckpt-every", type=int, default=250, help="resumable checkpoint every N steps (0: never)")
    ap.add_argument("--fresh", action="store_true", help="ignore an existing resumable checkpoint")
    ap.add_argument("--stop-after", type=int, default=0, help="exit after this many steps (testing resumption)")
    ap.add_argument("--eval-sparse", type=int, default=None, help="periodic evals also measure fine/coarse 0.5")
    ap.add_argument("--skip-eval", action="store_true", help="export without the final evaluation (determinism checks)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--bench", type=int, default=0, help="time this many steps and exit")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    recipe = RECIPES[a.task]
    task = recipe["module"]
    MAX_NEW = recipe["max_new"]
    MODEL_DIR = os.path.join(ROOT, "models", recipe["name"])
    for k, v in recipe["defaults"].items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.eval_sparse is None:
        a.eval_sparse = int(a.task != "arith")
    a.out = a.out or MODEL_DIR
    CONFIG.update(vocab_size=len(task.VOCAB), **recipe["config"])
    if a.heads:
        CONFIG.update(num_attention_heads=a.heads)
    if a.hidden or a.heads:
        CONFIG.update(hidden_size=a.hidden or CONFIG["hidden_size"])
        CONFIG.update(head_dim=CONFIG["hidden_size"] // CONFIG["num_attention_heads"])
    if a.inter:
        CONFIG.update(intermediate_size=a.inter)
    if a.layers:
        CONFIG.update(num_hidden_layers=a.layers)
    if a.kv_heads:
        CONFIG.update(num_key_value_heads=a.kv_heads)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    torch.use_deterministic_algorithms(True)
    val, test = task.eval_splits()

    if a.eval_only:
        model = load_hf(a.out)
        report = evaluate(model, val, test)
        print(json.dumps(report, indent=1))
        return

    light = False
    if a.smoke:
        # the code path, not the recipe: a few small steps and a tiny eval (it runs in the test suite)
        a.steps, a.warmup, a.eval_every, a.ckpt_every, a.batch = 6, 2, 10**9, 0, min(a.batch, 32)
        a.out = tempfile.mkdtemp(prefix=recipe["name"] + "-smoke-")
        val, test = val[:8], test[:8]
        light = a.task != "arith"  # arith keeps its evaluation; gsm's is lighter (short completions)
        if light:
            a.batch, MAX_NEW = 8, 24

    model = TinyLlama(CONFIG)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"task {a.task}  params {nparams:,}  config {CONFIG}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    nodecay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)

    def lr_at(s):
        if s < a.warmup:
            return a.lr * (s + 1) / a.warmup
        t = (s - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))

    batches = bucketed_batches(a.batch, round(a.batch * a.drill_frac), a.seed)
    log, start, prior_time = [], 0, 0.0
    ckpt_path = None
    if a.ckpt_every and not a.bench:
        ckpt_dir = os.path.join(ROOT, "tmp", f"train-{recipe['name']}-{recipe_hash(a)}")
        os.makedirs(ckpt_dir, exist_ok=True)
        ckpt_path = os.path.join(ckpt_dir, "ckpt.pt")
        if os.path.exists(ckpt_path) and not a.fresh:
            ck = torch.load(ckpt_path)
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            start, log, prior_time = ck["step"], ck["log"], ck["train_time"]
            for _ in range(start):  # replay the deterministic batch stream up to the checkpoint
                next(batches)
            print(f"resumed from {ckpt_path} at step {start} ({prior_time:.0f}s of training so far)", flush=True)
    t0 = time.time()
    nsteps = a.bench or a.steps
    for step in range(start, nsteps):
        ids, lm = batch_from(next(batches))
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(a.bf16)):
            logits = model(ids[:, :-1]).float()
        loss = (F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
                * lm[:, 1:].reshape(-1)).sum() / lm[:, 1:].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == nsteps - 1:
            el = time.time() - t0
            print(f"step {step} loss {loss.item():.4f} lr {lr_at(step):.2e} elapsed {el + prior_time:.0f}s "
                  f"({el / (step + 1 - start):.3f} s/step)", flush=True)
        if (step + 1) % a.eval_every == 0 and step + 1 < nsteps:
            model.eval()
            te = time.time()
            acc, _ = accuracy(model, val[:200])
            dig = result_digit_accuracy(model, val[:200])
            entry = {"step": step + 1, "val200_dense": acc, "result_digit_acc": dig, "loss": loss.item()}
            msg = f"  eval step {step + 1}: val[:200] dense acc {acc:.3f}, teacher-forced result-digit acc {dig:.4f}"
            if a.eval_sparse:
                entry["val200_fine"] = accuracy(model, val[:200], "fine")[0]
                entry["val200_coarse"] = accuracy(model, val[:200], "coarse")[0]
                msg += f", fine {entry['val200_fine']:.3f}, coarse {entry['val200_coarse']:.3f}"
            print(msg + f" ({time.time() - te:.0f}s)", flush=True)
            t0 += time.time() - te  # evaluation time is not training time
            log.append(entry)
            if a.ckpt:
                torch.save(model.state_dict(), a.ckpt)
            model.train()
        if ckpt_path and ((step + 1) % a.ckpt_every == 0 or step + 1 == nsteps):
            tc = time.time()
            save_checkpoint(ckpt_path, step + 1, model, opt, log, prior_time + tc - t0)
            t0 += time.time() - tc
        if a.stop_after and step + 1 >= a.stop_after:
            print(f"stopping after step {step + 1} (--stop-after)", flush=True)
            return
    train_time = prior_time + time.time() - t0
    print(f"training wall time {train_time:.0f}s ({train_time / max(1, nsteps):.3f} s/step)", flush=True)
    if a.bench:
        return
    model.eval()
    report = {} if a.skip_eval else evaluate(model, val, test, light=light)
    report.update(task=a.task, params=nparams, steps=a.steps, batch=a.batch, lr=a.lr, warmup=a.warmup, wd=a.wd,
                  drill_frac=a.drill_frac, bf16=a.bf16,
                  seed=a.seed, threads=a.threads, train_seconds=round(train_time, 1),
                  s_per_step=round(train_time / a.steps, 4), eval_log=log, config=CONFIG)
    eval_json = {"answer_regex": task.ANSWER_REGEX_JS} if hasattr(task, "ANSWER_REGEX_JS") else None
    dtype, refs = export(model, a.out, test, max_new_tokens=recipe["max_new"], eval_json=eval_json)
    report["weights_dtype"] = dtype
    # the exported file must reproduce the in-memory model exactly
    re = load_hf(a.out)
    with torch.no_grad():
        ids, _ = batch_from(test[:4])
        assert torch.equal(re(ids), model(ids)), "export round trip mismatch"
    official = os.path.abspath(a.out) == os.path.abspath(MODEL_DIR)
    ref_path = os.path.join(ROOT, "training", recipe["reference"]) if official else \
        os.path.join(a.out, "reference-logits.json")
    write_reference(ref_path, refs, recipe["name"])
    rep_path = os.path.join(ROOT, "training", recipe["report"]) if official else \
        os.path.join(a.out, "train-report.json")
    json.dump(report, open(rep_path, "w"), indent=1)
    print(json.dumps({k: v for k, v in report.items() if k not in ("eval_log", "samples")}, indent=1))
    print(f"exported to {a.out}")


def evaluate(model, val, test, light=False):
    """Greedy accuracies (float32). Sparse modes sparsify every generated token's MLP, prefill dense
    (Sirius convention), unless *_sparse_prefill. light: accuracies only (smoke tests)."""
    t = time.time()
    r = {}
    for split, probs in (("val", val), ("test", test)):
        for mode in ("dense", "fine", "coarse"):
            acc, comps = accuracy(model, probs, mode)
            r[f"{split}_{mode}"] = acc
            r[f"{split}_{mode}_by_steps"] = by_steps(probs, comps)
            if split == "test" and mode != "dense":
                r.setdefault("samples", {})[mode] = [
                    {"prompt": p["prompt"], "expected": p["completion"], "got": c}
                    for p, c in zip(probs, comps) if task.extract_answer(c) != p["answer"]][:3]
        if light:
            continue
        r[f"{split}_fine_sparse_prefill"] = accuracy(model, probs, "fine", sparse_prefill=True)[0]
    if light:
        r["eval_seconds"] = round(time.time() - t, 1)
        return r
    # density sweep on validation (density = fraction of MLP neurons kept)
    r["val_density_sweep"] = {
        f"{mode}@{d}": accuracy(model, val, mode, d)[0]
        for mode, d in (("fine", 0.4), ("fine", 0.3), ("fine", 0.2), ("coarse", 0.7), ("coarse", 0.6))}
    r["val_token_agreement_fine"] = token_agreement(model, val)
    r["eval_seconds"] = round(time.time() - t, 1)
    return r


if __name__ == "__main__":
    main()
