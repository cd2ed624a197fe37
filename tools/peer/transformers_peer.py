#!/usr/bin/env python3
"""The peer that moetrace's GPU speed is measured against (docs/cuda.md, tools/bench/gpu_vs_peer.sh).

Builds a random model with the real layer shapes of Qwen3-30B-A3B or Mixtral-8x7B (transformers'
own config and model classes, fewer layers), bf16 on the GPU with SDPA attention, and times causal
tracing the way a transformers user writes it (ROME-style forward hooks):

  layer sweep of one fact: ONE batch with the clean sequence, the noised sequence and one restored
    sequence per layer of the real model. A hook on the embeddings adds the same Gaussian noise to
    the subject tokens of every non-clean row; a hook on each layer's MoE block copies the clean
    row's MoE output into the restored rows of that layer at the sweep positions (the subject by
    default). With B bench layers and L real layers the batch still has L + 2 rows (restored row i
    restores layer i mod B), so one forward costs what a real-depth forward costs per layer; the time
    is scaled by L / B.
  expert sweep of one layer (Qwen3): ONE batch with clean, noised and one row per clean-routed
    expert of the final position (top-k) at the middle layer; the hook adds
    w_clean(e) E_e(u_clean) - w_own(e) E_e(u_own) at the final position (the expert's update
    restored, routing never recomputed, as moetrace's Experts site). Scaled by L / B as above.

It saves the random weights (safetensors) and config.json, plus prompts.json (token ids, subject
spans, noise scale, real depth), so that moetrace_gpu_sweep_bench loads the SAME model and prompts.
Prints one JSON object on stdout.

The GEMM floor (docs/benchmarks.md, "The peers' BLAS floor"): before building the model it times the
peer's own 512 x 2048 x 2048 bf16 product on the device (torch.matmul, i.e. cuBLAS; CUDA events over
50 back-to-back products, best of 5) and holds it against --gemm-floor (0.05) x the device's dense
bf16 peak (tools/bench/blas_probe.py: GPU_BF16_PEAK_TFLOPS, by device name). Below the floor it
refuses: exit 2, the reason on stderr, nothing on stdout. A device with no known peak is measured and
printed, with no floor. The JSON holds the check under "gemm".

Runs on the GPU machine (PyTorch 2.11, transformers 5.17); nothing is downloaded.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import blas_probe  # noqa: E402  (tools/bench/blas_probe.py: the floor product and the GPU floor)

SHAPES = {
    # name: (config class, kwargs at real depth, real depth)
    "qwen3": ("Qwen3MoeConfig", dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144,
                                     moe_intermediate_size=768, num_attention_heads=32, num_key_value_heads=4,
                                     head_dim=128, num_experts=128, num_experts_per_tok=8, norm_topk_prob=True,
                                     decoder_sparse_step=1, mlp_only_layers=[], rms_norm_eps=1e-6,
                                     rope_theta=1e6, max_position_embeddings=4096, tie_word_embeddings=False,
                                     attention_bias=False, hidden_act="silu"), 48),
    "mixtral": ("MixtralConfig", dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                                      num_attention_heads=32, num_key_value_heads=8, num_local_experts=8,
                                      num_experts_per_tok=2, rms_norm_eps=1e-5, rope_theta=1e6,
                                      max_position_embeddings=4096, tie_word_embeddings=False, hidden_act="silu",
                                      sliding_window=None), 32),
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def build_model(arch, layers, seed):
    import transformers
    cls_name, kw, full = SHAPES[arch]
    cfg = getattr(transformers, cls_name)(num_hidden_layers=layers, **kw)
    if getattr(cfg, "rope_scaling", None):
        cfg.rope_scaling = None
    torch.manual_seed(seed)
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
    model.eval()
    return model, cfg, full


def moe_block(layer):
    blk = getattr(layer, "block_sparse_moe", None)
    return blk if blk is not None else layer.mlp


def expert_weights(moe, e, H):
    """(gate [I, H], up [I, H], down [H, I]) of expert e, whatever the module layout."""
    ex = moe.experts
    if hasattr(ex, "gate_up_proj"):  # transformers 5 fused experts
        gu = ex.gate_up_proj[e]
        if gu.shape[-1] != H:
            gu = gu.t()
        i = gu.shape[0] // 2
        down = ex.down_proj[e]
        if down.shape[0] != H:
            down = down.t()
        return gu[:i], gu[i:], down
    m = ex[e]
    if hasattr(m, "gate_proj"):
        return m.gate_proj.weight, m.up_proj.weight, m.down_proj.weight
    return m.w1.weight, m.w3.weight, m.w2.weight


def expert_apply(moe, e, x, H):
    g, u, d = expert_weights(moe, e, H)
    return torch.nn.functional.linear(torch.nn.functional.silu(torch.nn.functional.linear(x, g)) *
                                      torch.nn.functional.linear(x, u), d)


def route(moe, u, k, renorm):
    """Top-k experts and weights of rows u [n, H] (float32 softmax, as the model does)."""
    logits = torch.nn.functional.linear(u, moe.gate.weight).float()
    p = torch.softmax(logits, dim=-1)
    w, idx = torch.topk(p, k, dim=-1)
    if renorm:
        w = w / w.sum(dim=-1, keepdim=True)
    return idx, w


def block_output(output):
    return output[0] if isinstance(output, tuple) else output


class Tracer:
    """Hooks for one batch: row 0 clean, row 1 noised, rows 2.. restored."""

    def __init__(self, model, cfg):
        self.model, self.cfg = model, cfg
        self.H = cfg.hidden_size
        self.k = cfg.num_experts_per_tok
        self.renorm = bool(getattr(cfg, "norm_topk_prob", True))
        self.layers = model.model.layers
        self.handles = []
        self.noise = None
        self.subject = (0, 0)
        self.layer_rows = {}  # layer -> [rows]
        self.positions = []
        self.expert_layer = None
        self.expert_rows = []  # (row, expert) or (row, None): expert from the clean top-k slot
        self.last = None
        self.handles.append(model.model.embed_tokens.register_forward_hook(self._embed_hook))
        for l, layer in enumerate(self.layers):
            self.handles.append(moe_block(layer).register_forward_hook(self._make_moe_hook(l), with_kwargs=True))

    def _embed_hook(self, mod, args, out):
        if self.noise is not None:
            s0, s1 = self.subject
            out[1:, s0:s1] += self.noise.to(out.dtype)
        return out

    def _make_moe_hook(self, l):
        def hook(mod, args, kwargs, output):
            out = block_output(output)
            u = args[0] if args else kwargs["hidden_states"]
            if out.dim() == 2:  # some versions return [B*T, H]
                out = out.view(u.shape[0], u.shape[1], -1)
            rows = self.layer_rows.get(l)
            if rows:  # restore the clean MoE output at the sweep positions
                ri = torch.tensor(rows, device=out.device)
                pi = torch.tensor(self.positions, device=out.device)
                out[ri[:, None], pi[None, :]] = out[0, pi].unsqueeze(0).expand(len(rows), -1, -1)
            if self.expert_layer == l and self.expert_rows:  # restore single experts' updates
                last = self.last
                ul = u[:, last]  # [B, H]
                idx, w = route(mod, ul, self.k, self.renorm)
                for slot, row in self.expert_rows:
                    e = int(idx[0, slot])  # the clean run's expert in that slot
                    delta = w[0, slot] * expert_apply(mod, e, ul[0:1], self.H).float()
                    own = (idx[row] == e).nonzero()
                    if own.numel():
                        delta = delta - w[row, own[0, 0]] * expert_apply(mod, e, ul[row:row + 1], self.H).float()
                    out[row, last] += delta[0].to(out.dtype)
            return output
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def forward_contrasts(model, ids, true_id, foil_id):
    try:
        logits = model(input_ids=ids, use_cache=False, logits_to_keep=1).logits
    except TypeError:
        logits = model(input_ids=ids, use_cache=False).logits
    last = logits[:, -1].float()
    return (last[:, true_id] - last[:, foil_id])


def gemm_check(fraction, inner=50, samples=5):
    """The peer's own bf16 product of the floor shape on the device, in TFLOP/s (CUDA events around
    `inner` back-to-back products, best of `samples`), against the device's floor."""
    m, n, k = blas_probe.FLOOR_SHAPE
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=gen)
    wt = torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=gen).t()
    for _ in range(5):
        torch.matmul(x, wt)
    torch.cuda.synchronize()
    rates = []
    for _ in range(samples):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            torch.matmul(x, wt)
        end.record()
        end.synchronize()
        rates.append(2.0 * m * n * k * inner / (start.elapsed_time(end) / 1e3) / 1e12)
    dev = torch.cuda.get_device_name(0)
    ok, floor, reason = blas_probe.gpu_floor_verdict(dev, max(rates), fraction)
    return dict(shape=list(blas_probe.FLOOR_SHAPE), dtype="bfloat16", device=dev, peer_tflops=max(rates),
                peer_tflops_median=statistics.median(rates), peak_tflops=blas_probe.gpu_peak_tflops(dev),
                floor_fraction=fraction, floor_tflops=floor, accepted=ok, reason=reason)


def floor_fraction(text):
    """--gemm-floor: a share of the device's peak in (0, 1]; 0 or less would accept any rate."""
    v = float(text)
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: the floor is a share of the device's peak, in (0, 1]")
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=sorted(SHAPES), default="qwen3")
    ap.add_argument("--layers", type=int, default=4, help="bench layers (the real depth is used for scaling)")
    ap.add_argument("--facts", type=int, default=8, help="timed facts (after 2 warm-up facts)")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--subject", default="2:6", help="subject token span B:E")
    ap.add_argument("--positions", choices=["subject", "final"], default="subject")
    ap.add_argument("--noise-multiplier", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="save the model, config.json and prompts.json here (for moetrace)")
    ap.add_argument("--prompts", type=int, default=64, help="prompts written to prompts.json")
    ap.add_argument("--gemm-floor", type=floor_fraction, default=blas_probe.GPU_FLOOR_FRACTION, metavar="FRACTION",
                    help="refuse when the device's bf16 product reaches less than FRACTION of its dense bf16 "
                         "peak (default %(default)s)")
    args = ap.parse_args()

    gemm = gemm_check(args.gemm_floor)
    log(f"peer GEMM: {gemm['peer_tflops']:.1f} TFLOP/s on {'x'.join(map(str, gemm['shape']))} bf16 (torch.matmul) "
        f"on {gemm['device']}; " + ("accepted: " if gemm["accepted"] else "refused: ") + gemm["reason"])
    if not gemm["accepted"]:
        log("transformers_peer.py: refusing to measure the peer: a comparison against it would report a false lead")
        sys.exit(2)
    import transformers
    dev = torch.cuda.get_device_name(0)
    t0 = time.perf_counter()
    model, cfg, full = build_model(args.arch, args.layers, args.seed)
    log(f"built {args.arch} with {args.layers} layers in {time.perf_counter() - t0:.1f} s on {dev}")
    B, L, T = args.layers, full, args.tokens
    s0, s1 = map(int, args.subject.split(":"))
    H, V, k = cfg.hidden_size, cfg.vocab_size, cfg.num_experts_per_tok
    emb = model.model.embed_tokens.weight
    sigma = float(args.noise_multiplier * emb[:1024].float().std())
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    n_prompts = max(args.prompts, args.facts + 2)
    prompts = []
    for _ in range(n_prompts):
        ids = torch.randint(0, V, (T,), generator=gen).tolist()
        tf = torch.randint(0, V, (2,), generator=gen).tolist()
        prompts.append(dict(ids=ids, subject_begin=s0, subject_end=s1, true_id=tf[0], foil_id=tf[1]))

    tr = Tracer(model, cfg)
    positions = list(range(s0, s1)) if args.positions == "subject" else [T - 1]
    expert_layer = B // 2

    def layer_sweep(p):
        rows = L + 2
        tr.noise = torch.randn(s1 - s0, H, device="cuda") * sigma
        tr.subject = (s0, s1)
        tr.positions = positions
        tr.layer_rows = {}
        for r in range(2, rows):  # restored row r restores layer (r - 2) mod B
            tr.layer_rows.setdefault((r - 2) % B, []).append(r)
        tr.expert_rows = []
        ids = torch.tensor(p["ids"], device="cuda").unsqueeze(0).expand(rows, -1).contiguous()
        return forward_contrasts(model, ids, p["true_id"], p["foil_id"])

    def expert_sweep(p):
        rows = k + 2
        tr.noise = torch.randn(s1 - s0, H, device="cuda") * sigma
        tr.subject = (s0, s1)
        tr.layer_rows = {}
        tr.expert_layer = expert_layer
        tr.last = T - 1
        tr.expert_rows = [(j, 2 + j) for j in range(k)]
        ids = torch.tensor(p["ids"], device="cuda").unsqueeze(0).expand(rows, -1).contiguous()
        d = forward_contrasts(model, ids, p["true_id"], p["foil_id"])
        tr.expert_rows = []
        tr.expert_layer = None
        return d

    def head_seconds(rows):
        """Time of the LM head on one batch's final rows (it runs once per row at any depth, so it
        is taken out of the time that scales with the layers)."""
        x = torch.randn(rows, 1, H, device="cuda", dtype=model.lm_head.weight.dtype)
        for _ in range(3):
            model.lm_head(x)
        torch.cuda.synchronize()
        ts = []
        for _ in range(10):
            t = time.perf_counter()
            model.lm_head(x)
            torch.cuda.synchronize()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    results = {}
    sample = {}
    with torch.inference_mode():
        for name, fn in (("layer_sweep", layer_sweep), ("expert_sweep", expert_sweep)):
            if name == "expert_sweep" and args.arch != "qwen3":
                continue
            for w in range(2):  # warm-up
                d = fn(prompts[w])
                if w == 0:
                    sample[name + "_contrasts_fact0"] = d.tolist()
            torch.cuda.synchronize()
            times = []
            for f in range(args.facts):
                t = time.perf_counter()
                fn(prompts[2 + f])
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            rows = (L + 2) if name == "layer_sweep" else (k + 2)
            head = min(head_seconds(rows), statistics.median(times))
            results[name] = dict(median_s=statistics.median(times), mean_s=statistics.fmean(times),
                                 head_s=head, rows=rows)
            log(f"{name}: {statistics.median(times) * 1e3:.1f} ms per fact at {B} layers")
    tr.close()

    out = dict(side="peer", arch=args.arch, device=dev, torch=torch.__version__, transformers=transformers.__version__,
               gemm=gemm,
               bench_layers=B, full_layers=L, tokens=T, subject=[s0, s1], positions=args.positions,
               facts=args.facts, peak_memory_bytes=torch.cuda.max_memory_allocated(),
               per_fact_measured={n: r["median_s"] for n, r in results.items()},
               per_fact_lm_head={n: r["head_s"] for n, r in results.items()},
               # the layers' time scales with depth, the LM head's (once per row) does not
               per_fact_full_depth={n: (r["median_s"] - r["head_s"]) * L / B + r["head_s"] for n, r in results.items()},
               batch_rows={n: r["rows"] for n, r in results.items()}, sample=sample)

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        t = time.perf_counter()
        model.save_pretrained(args.out, safe_serialization=True)
        with open(os.path.join(args.out, "prompts.json"), "w") as fh:
            json.dump(dict(prompts=prompts, noise_sigma=sigma, full_layers=L, positions=args.positions,
                           expert_layer=expert_layer, expert_layer_full=L // 2, arch=args.arch), fh)
        log(f"saved the model and prompts to {args.out} in {time.perf_counter() - t:.1f} s")
        out["saved"] = args.out
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
