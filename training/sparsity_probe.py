#!/usr/bin/env python3
"""How much a model's MLP sparsity would cost Sirius, in two minutes instead of a full evaluation.

Teacher-forced over the reference completions of the first N validation problems, the dense model and its
sparse variants predict every completion token; per variant the probe reports the share of completion tokens
where the sparse argmax differs from the dense one ("differs"), where the dense model gives the sparse
argmax less than the acceptance threshold ("rejected": a Sirius verification would roll back there) and
where the sparse argmax is not the reference token ("wrong"). The variants are the ones train.py evaluates:
fine (per token, keep the `density` share of neurons with the largest |SiLU(gate·x)|) and coarse (GRIFFIN:
per problem, the neurons with the largest prompt statistic; the prompt itself stays dense). It also reports,
per layer, the share of Σ|SiLU(gate·x)·(up·x)| held by the largest 50% and 20% of neurons (how concentrated
a token's MLP activations are: fine sparsity at density ρ is cheap when the top ρ hold nearly everything).

Calibration on sirius-tiny-gsm (its model card): coarse rejected 1.10% ↔ Sirius AAL 13.48 of 16 and
accuracy 0.333; fine rejected 0.00% ↔ AAL 15.99 and accuracy 0.902; on the first, 512-wide recipe coarse
rejected 2.16% ↔ AAL 11.62. training/README.md has the probe's figures for the recipe variants tried for
issue #16's fine-sparsity target.

  /usr/bin/python3 training/sparsity_probe.py --task gsm [--model DIR] [--n 200] [--density 0.5]
      [--threshold 0.1] [--threads 1]            (prints one JSON object)
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402


@torch.no_grad()
def probe(model, problems, density=0.5, threshold=0.1):
    task = train.task
    D = model.c["intermediate_size"]
    ids, lm = train.batch_from(problems)
    B, T = ids.shape
    prompt_len = torch.tensor([len(task.encode(p["prompt"])) for p in problems])
    in_prompt = torch.arange(T)[None] < prompt_len[:, None]  # (B, T) positions whose MLP stays dense
    scored = lm[:, 1:].bool()  # predicted positions of completion tokens
    dense, hidden = model(ids, sparse="collect")
    p_dense = dense.softmax(-1)[:, :-1]
    dense_argmax = p_dense.argmax(-1)
    out = {"problems": len(problems), "density": density, "threshold": threshold, "layers": []}
    for layer, h in zip(model.layers, hidden):
        z = (F.silu(layer.gate_proj(h)) * layer.up_proj(h)).abs()[~in_prompt]
        s = z.sort(-1, descending=True).values
        total = s.sum(-1)
        out["layers"].append({"top50": round(float((s[:, : D // 2].sum(-1) / total).mean()), 4),
                              "top20": round(float((s[:, : D // 5].sum(-1) / total).mean()), 4)})

    def rates(logits):
        a = logits[:, :-1].argmax(-1)
        n = scored.sum()
        rejected = (p_dense.gather(-1, a[..., None])[..., 0] < threshold) & scored
        return {"differs": round(float(((a != dense_argmax) & scored).sum() / n), 5),
                "rejected": round(float(rejected.sum() / n), 5),
                "wrong": round(float(((a != ids[:, 1:]) & scored).sum() / n), 5)}

    out["dense"] = rates(dense)
    # fine everywhere, prompt included: a completion token's prediction then also sees sparse prompt KV,
    # slightly pessimistic against Sirius's dense prefill (train.py's fine rows: 0.940 vs 0.9375 both ways)
    out["fine"] = rates(model(ids, sparse=("fine", D - int(D * (1 - density)))))
    masks = []
    for kept in train.griffin_masks(model, hidden, in_prompt, density):
        m = kept[:, None].expand(B, T, D).clone()
        m[in_prompt] = 1.0  # the prompt's own positions stay dense
        masks.append(("mask", m))
    out["coarse"] = rates(model(ids, sparse=masks))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(train.RECIPES), default="gsm")
    ap.add_argument("--model", help="exported model directory (default: the task's bundled model)")
    ap.add_argument("--n", type=int, default=200, help="validation problems")
    ap.add_argument("--density", type=float, default=0.5)
    ap.add_argument("--threshold", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    recipe = train.RECIPES[a.task]
    train.task = recipe["module"]
    torch.set_num_threads(a.threads)
    model = train.load_hf(a.model or os.path.join(train.ROOT, "models", recipe["name"]))
    model.eval()
    val, _ = train.task.eval_splits()
    print(json.dumps(probe(model, val[: a.n], a.density, a.threshold)))


if __name__ == "__main__":
    main()
