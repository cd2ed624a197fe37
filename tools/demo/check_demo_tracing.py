#!/usr/bin/python3
"""Check that the committed demo model localises, with an independent Python implementation of the
protocol's core (read from the committed files only: config.json, model.safetensors, tokenizer.json,
counterfact_demo.json).

  noise:    Gaussian on the subject tokens' embeddings, sigma = multiplier x std(embedding matrix)
  filter:   strict: D_clean >= 1 and D_clean - D_noised >= 0.5 (D = logit[true] - logit[foil], final position)
  layer:    restore the MoE-block output of layer l at the final position from the clean run;
            rescue = D(patched) - D(noised), averaged over noise samples
  expert:   at the selected layer add c_e(clean) - c_e(noised) at the final position
            (c_e = routing weight x expert output, 0 where e is not routed)
  split:    cases split in half (seeded): layer and expert are selected on one half, reported on the other
            (held-out) with a percentile bootstrap 95% CI.

  /usr/bin/python3 tools/demo/check_demo_tracing.py [--demo demo] [--samples 3]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_demo_model import Cfg, MixtralLM, read_safetensors_bf16  # noqa: E402


def boot_ci(x, n=5000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.asarray(x)
    m = rng.choice(x, size=(n, len(x)), replace=True).mean(1)
    return np.percentile(m, 2.5), np.percentile(m, 97.5)


def main():
    ap = argparse.ArgumentParser()
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    ap.add_argument("--demo", default=os.path.join(root, "demo"))
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--multiplier", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--candidate-threshold", type=float, default=0.5)
    ap.add_argument("--layer", type=int, default=-1, help="force the expert analysis at this layer")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    mdir = os.path.join(args.demo, "model")
    cfg = Cfg.from_json(json.load(open(os.path.join(mdir, "config.json"))))
    model = MixtralLM(cfg)
    model.load_tensors(read_safetensors_bf16(os.path.join(mdir, "model.safetensors")))
    model.eval()
    tok = json.load(open(os.path.join(mdir, "tokenizer.json")))["model"]["vocab"]
    records = json.load(open(os.path.join(args.demo, "counterfact_demo.json")))
    E, L = cfg.num_local_experts, cfg.num_hidden_layers

    emb = model.w("model.embed_tokens.weight").detach()
    sigma = args.multiplier * emb.std().item()
    print(f"{len(records)} cases, sigma = {args.multiplier} x {emb.std().item():.5f} = {sigma:.5f}")

    gen = torch.Generator().manual_seed(args.seed)
    rows = []
    with torch.no_grad():
        for r in records:
            rw = r["requested_rewrite"]
            pre, post = rw["prompt"].split("{}")
            pre_w, subj_w = pre.split(), rw["subject"].split()
            ids = [tok[w] for w in (pre + rw["subject"] + post).split()]
            s0, s1 = len(pre_w), len(pre_w) + len(subj_w)
            t_id, f_id = tok[rw["target_true"]["str"]], tok[rw["target_new"]["str"]]
            T, S = len(ids), args.samples
            toks = torch.tensor([ids])
            x_clean = emb[toks]

            def D_of(logits):
                return (logits[:, -1, t_id] - logits[:, -1, f_id]).numpy()

            clean = {}

            def grab_clean(l, out, contrib):
                clean[l] = (out[:, -1].clone(), contrib[:, -1].clone())

            lg, pr = model(embeds=x_clean, hook=grab_clean, dense=True)
            D_clean = D_of(lg)[0]
            active = [set(torch.topk(pr[l][0, -1], 2).indices.tolist()) for l in range(L)]

            noise = torch.randn(S, s1 - s0, cfg.hidden_size, generator=gen) * sigma
            x_noised = x_clean.repeat(S, 1, 1)
            x_noised[:, s0:s1] += noise
            noised = {}

            def grab_noised(l, out, contrib):
                noised[l] = contrib[:, -1].clone()

            D_noised = D_of(model(embeds=x_noised, hook=grab_noised, dense=True)[0])

            layer_rescue = np.zeros(L)
            for l in range(L):
                def patch(ll, out, contrib, l=l):
                    if ll == l:
                        out = out.clone()
                        out[:, -1] = clean[l][0]
                        return out
                D_p = D_of(model(embeds=x_noised, hook=patch)[0])
                layer_rescue[l] = np.mean(D_p - D_noised)
            rows.append(dict(case_id=r["case_id"], rel=rw["relation_id"], D_clean=float(D_clean),
                             D_noised=float(np.mean(D_noised)), layer=layer_rescue, active=active, t_id=t_id, f_id=f_id,
                             state=(x_noised, D_noised, clean, noised)))

    D_clean = np.array([r["D_clean"] for r in rows])
    D_noised = np.array([r["D_noised"] for r in rows])
    keep = (D_clean >= 1.0) & (D_clean - D_noised >= 0.5)
    print(f"D_clean >= 1: {np.sum(D_clean >= 1)}/{len(rows)}; strict filter passes {keep.sum()}/{len(rows)}; "
          f"mean D_clean {D_clean.mean():.2f}, mean D_noised {D_noised.mean():.2f}")
    kept = [r for r, k in zip(rows, keep) if k]
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(kept))
    sel = [kept[i] for i in perm[: len(kept) // 2]]
    held = [kept[i] for i in perm[len(kept) // 2:]]
    print(f"selection {len(sel)} cases, held-out {len(held)} cases")

    for name, part in (("selection", sel), ("held-out", held)):
        lr = np.array([r["layer"] for r in part])
        print(f"  {name:9s} layer mean rescue: " + "  ".join(f"L{l} {lr[:, l].mean():+.3f}" for l in range(L)))
    sel_layer = int(np.argmax(np.array([r["layer"] for r in sel]).mean(0)))
    if args.layer >= 0:
        print(f"(forced layer {args.layer}; selection would pick {sel_layer})")
        sel_layer = args.layer
    hl = np.array([r["layer"][sel_layer] for r in held])
    lo, hi = boot_ci(hl)
    print(f"selected layer {sel_layer}: held-out mean rescue {hl.mean():+.3f}  95% CI [{lo:+.3f}, {hi:+.3f}]"
          f"  (mean D_clean - D_noised {np.mean([r['D_clean'] - r['D_noised'] for r in held]):.3f})")

    # experts at the selected layer (second pass, only there)
    with torch.no_grad():
        for r in sel + held:
            x_noised, D_noised, clean, noised = r.pop("state")
            er = np.zeros(E)
            for e in range(E):
                def patch(ll, out, contrib, e=e):
                    if ll == sel_layer:
                        out = out.clone()
                        out[:, -1] += clean[sel_layer][1][0, e] - noised[sel_layer][:, e]
                        return out
                lg = model(embeds=x_noised, hook=patch)[0]
                er[e] = np.mean((lg[:, -1, r["t_id"]] - lg[:, -1, r["f_id"]]).numpy() - D_noised)
            r["expert"] = {sel_layer: er}
    freq_sel = np.array([np.mean([e in r["active"][sel_layer] for r in sel]) for e in range(E)])
    er_sel = np.array([r["expert"][sel_layer] for r in sel]).mean(0)
    print("  selection clean-active frequency: " + " ".join(f"e{e} {freq_sel[e]:.2f}" for e in range(E)))
    print("  selection mean expert rescue:     " + " ".join(f"e{e} {er_sel[e]:+.2f}" for e in range(E)))
    cands = [e for e in range(E) if freq_sel[e] >= args.candidate_threshold]
    if not cands:
        print("NO candidate expert (clean-active in >= threshold of selection cases)")
        return
    best = max(cands, key=lambda e: er_sel[e])
    he = np.array([r["expert"][sel_layer][best] for r in held])
    lo, hi = boot_ci(he)
    act = [r for r in held if best in r["active"][sel_layer]]
    spec = []
    for r in act:
        other = [e for e in r["active"][sel_layer] if e != best][0]
        spec.append(r["expert"][sel_layer][best] - r["expert"][sel_layer][other])
    slo, shi = boot_ci(spec)
    print(f"selected expert {best} at layer {sel_layer}: held-out mean rescue {he.mean():+.3f} "
          f"95% CI [{lo:+.3f}, {hi:+.3f}]; clean-active in {len(act)}/{len(held)} held-out cases; "
          f"specificity (its rescue - the other clean-active expert's, where active) {np.mean(spec):+.3f} "
          f"95% CI [{slo:+.3f}, {shi:+.3f}]; share of the layer's rescue {he.mean() / hl.mean():.2f}")
    by_rel = {}
    for r in held:
        by_rel.setdefault(r["rel"], []).append(r)
    for rel, rs in sorted(by_rel.items()):
        print(f"    {rel}: n {len(rs):3d}  layer rescue {np.mean([r['layer'][sel_layer] for r in rs]):+.2f}  "
              f"expert rescue {np.mean([r['expert'][sel_layer][best] for r in rs]):+.2f}  "
              f"active {np.mean([best in r['active'][sel_layer] for r in rs]):.2f}")


if __name__ == "__main__":
    main()
