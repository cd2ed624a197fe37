#!/usr/bin/python3
"""The CPU peer that moetrace's CPU backend is measured against (tools/bench/cpu_vs_peer.sh,
docs/benchmarks.md "CPU backend against the PyTorch peer").

Runs with Debian's python3-torch (1.13) alone: no transformers, no safetensors package. The model is
the transformers 4.x formulation of Qwen3-MoE and Mixtral written out here in plain torch: RMSNorm in
float32, eager attention (rotate-half RoPE, repeat_kv, float32 softmax, causal mask), Qwen3's per-head
q/k norms, the sparse MoE block with a float32 router softmax, top-k, renormalisation and the
per-expert loop with index_add_. Tracing is ROME-style, with forward hooks, one batch per fact:

  layer sweep: rows clean, noised and one restored row per layer of the REAL model (L + 2 rows); the
    embedding hook adds the fact's noise to the subject tokens of every non-clean row, the MoE hook of
    layer l copies the clean row's MoE output at the final position into the rows restoring l
    (row r restores bench layer (r - 2) mod B).
  expert sweep (one layer, the middle one): rows clean, noised and one per clean-routed expert of the
    final position (top-k); the hook adds w_clean(e) E_e(u_clean) - w_own(e) E_e(u_own) at the final
    position (the expert's update restored, as moetrace's Experts site).
  Scaling to the real depth L: the batch already has the real number of rows, so the layers' time
  scales by L / B and the LM head's (final position, every row; timed apart) does not scale.

Three commands:
  write: a random checkpoint with the real layer widths (hub layout and names, bf16, real vocabulary,
         config.json), prompts.json (token ids, subject spans, real depth) and noise.f32 (the noise of
         every fact), loaded by both sides; nothing is held in memory but one tensor at a time.
  run:   checks the BLAS floor (below), loads that folder (float32 or bf16 weights), times the sweeps,
         prints one JSON object (the BLAS check under "blas").
  blas-check: the BLAS floor check alone (seconds); prints its JSON; exit 2 when refused.

The BLAS floor (docs/benchmarks.md, "The peers' BLAS floor"): torch multiplies with whatever
libblas.so.3 the loader finds; on a machine with only Debian's reference BLAS (libblas3, which
python3-torch pulls in) the peer is ~50x slower and moetrace would show a false lead. Before timing
anything, `run` times the peer's own 512 x 2048 x 2048 float32 product (torch.matmul, --threads;
OpenBLAS's own thread pool is set to the same count), names the library whose sgemm_ torch calls and
its OpenBLAS core, and measures OpenBLAS's own kernel for this CPU on the same product
(tools/bench/blas_probe.py --floor-reference: cblas_sgemm of --blas-reference, the best core for
this CPU, same threads, in a fresh process). Below --blas-floor (0.5) x that reference it refuses:
exit 2, the reason on stderr, nothing on stdout. The drivers (tools/bench/cpu_vs_peer.sh,
run_vs_peer.sh) install libopenblas0-pthread and put it first on LD_LIBRARY_PATH.

OpenBLAS: Debian's 0.3.21 picks its kernels by CPU model (or by OPENBLAS_CORETYPE, which these machines'
environment sets to Haswell, i.e. AVX2 kernels) and can take an AVX-512 machine for an older core. The
script sets OPENBLAS_CORETYPE from /proc/cpuinfo (Cooperlake where the CPU has AVX512_BF16, SkylakeX
where it has AVX-512F; --openblas-coretype NAME overrides) before torch loads the library, and
reports the inherited value and the core of the OpenBLAS that torch really runs (openblas_get_corename
of the library that provides the sgemm_ libtorch_cpu calls).
"""
import argparse
import json
import math
import mmap
import os
import statistics
import struct
import sys
import time


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import blas_probe  # noqa: E402  (tools/bench/blas_probe.py: the BLAS floor, OpenBLAS's reference rate)


def _openblas_coretype():
    """--openblas-coretype NAME, else the best core for this CPU (None: let OpenBLAS detect)."""
    if "--openblas-coretype" in sys.argv[:-1]:
        return sys.argv[sys.argv.index("--openblas-coretype") + 1]
    return blas_probe.best_openblas_coretype()


INHERITED_OPENBLAS_CORETYPE = os.environ.get("OPENBLAS_CORETYPE")
if _openblas_coretype():
    os.environ["OPENBLAS_CORETYPE"] = _openblas_coretype()

import torch  # noqa: E402  (after OPENBLAS_CORETYPE)
import torch.nn.functional as F  # noqa: E402

SHAPES = {
    "qwen3": dict(config=dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
                              num_attention_heads=32, num_key_value_heads=4, head_dim=128, num_experts=128,
                              num_experts_per_tok=8, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
                              rms_norm_eps=1e-6, rope_theta=1e6, max_position_embeddings=4096,
                              tie_word_embeddings=False, attention_bias=False, hidden_act="silu",
                              use_sliding_window=False, sliding_window=None, architectures=["Qwen3MoeForCausalLM"],
                              model_type="qwen3_moe", torch_dtype="bfloat16"),
                  full_layers=48),
    "mixtral": dict(config=dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
                                num_key_value_heads=8, num_local_experts=8, num_experts_per_tok=2, rms_norm_eps=1e-5,
                                rope_theta=1e6, max_position_embeddings=4096, tie_word_embeddings=False,
                                hidden_act="silu", sliding_window=None, architectures=["MixtralForCausalLM"],
                                model_type="mixtral", torch_dtype="bfloat16"),
                    full_layers=32),
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---- checkpoint ---------------------------------------------------------------------------------

def tensor_shapes(cfg):
    """(name, shape) of every tensor, in hub layout and names."""
    H, V = cfg["hidden_size"], cfg["vocab_size"]
    nh, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim", H // nh)
    mixtral = cfg["model_type"] == "mixtral"
    E = cfg["num_local_experts"] if mixtral else cfg["num_experts"]
    I = cfg["intermediate_size"] if mixtral else cfg["moe_intermediate_size"]
    out = [("model.embed_tokens.weight", (V, H))]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", (H,)), (p + "post_attention_layernorm.weight", (H,)),
                (p + "self_attn.q_proj.weight", (nh * hd, H)), (p + "self_attn.k_proj.weight", (kv * hd, H)),
                (p + "self_attn.v_proj.weight", (kv * hd, H)), (p + "self_attn.o_proj.weight", (H, nh * hd))]
        if not mixtral:
            out += [(p + "self_attn.q_norm.weight", (hd,)), (p + "self_attn.k_norm.weight", (hd,))]
        m = p + ("block_sparse_moe." if mixtral else "mlp.")
        out.append((m + "gate.weight", (E, H)))
        for e in range(E):
            names = ("w1", "w3", "w2") if mixtral else ("gate_proj", "up_proj", "down_proj")
            out += [(f"{m}experts.{e}.{names[0]}.weight", (I, H)), (f"{m}experts.{e}.{names[1]}.weight", (I, H)),
                    (f"{m}experts.{e}.{names[2]}.weight", (H, I))]
    out += [("model.norm.weight", (H,)), ("lm_head.weight", (V, H))]
    return out


def write_checkpoint(folder, cfg, seed):
    """model.safetensors in bf16, one tensor written at a time; norms 1, matrices N(0, 0.02) values:
    windows of one pool of 2^24 normal draws at random offsets (drawing billions of normals would
    take longer than the benchmark on a small machine; the sweeps' cost does not depend on values)."""
    shapes = tensor_shapes(cfg)
    header, off = {}, 0
    for name, shape in shapes:
        n = math.prod(shape) * 2
        header[name] = dict(dtype="BF16", shape=list(shape), data_offsets=[off, off + n])
        off += n
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    gen = torch.Generator().manual_seed(seed)
    pool = (torch.randn(1 << 24, generator=gen) * 0.02).to(torch.bfloat16)
    pool = torch.cat((pool, pool))  # windows may wrap
    with open(os.path.join(folder, "model.safetensors"), "wb") as fh:
        fh.write(struct.pack("<Q", len(hb)))
        fh.write(hb)
        for name, shape in shapes:
            if len(shape) == 1:
                t = torch.ones(shape, dtype=torch.bfloat16)
            else:
                n, done = math.prod(shape), 0
                while done < n:  # chunks of at most 2^24 values, each at its own random offset
                    c = min(n - done, 1 << 24)
                    at = int(torch.randint(0, 1 << 24, (1,), generator=gen))
                    fh.write(pool[at:at + c].view(torch.int16).numpy().tobytes())
                    done += c
                continue
            fh.write(t.view(torch.int16).numpy().tobytes())
    return off


def load_checkpoint(folder, dtype):
    """name -> tensor (converted to dtype) from a bf16/f32 model.safetensors; the file is unmapped after."""
    path = os.path.join(folder, "model.safetensors")
    out = {}
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        n = struct.unpack("<Q", mm[:8])[0]
        header = json.loads(mm[8:8 + n])
        base = 8 + n
        for name, h in header.items():
            if name == "__metadata__":
                continue
            b, e = h["data_offsets"]
            src = {"BF16": torch.bfloat16, "F32": torch.float32, "F16": torch.float16}[h["dtype"]]
            size = torch.empty((), dtype=src).element_size()
            t = torch.frombuffer(mm, dtype=src, count=(e - b) // size, offset=base + b)
            out[name] = t.reshape(h["shape"]).to(dtype).clone()
            del t
    return out


# ---- the model (transformers 4.x formulation) ----------------------------------------------------

class RMSNorm(torch.nn.Module):
    def __init__(self, weight, eps):
        super().__init__()
        self.weight, self.eps = weight, eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(x, n_rep):
    b, h, t, d = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None].expand(b, h, n_rep, t, d).reshape(b, h * n_rep, t, d)


class Attention(torch.nn.Module):
    def __init__(self, w, p, cfg, qk_norm):
        super().__init__()
        self.q, self.k, self.v, self.o = (w[p + f"self_attn.{n}_proj.weight"] for n in "qkvo")
        self.nh, self.kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.hd = cfg.get("head_dim", cfg["hidden_size"] // self.nh)
        eps = cfg["rms_norm_eps"]
        self.q_norm = RMSNorm(w[p + "self_attn.q_norm.weight"], eps) if qk_norm else None
        self.k_norm = RMSNorm(w[p + "self_attn.k_norm.weight"], eps) if qk_norm else None

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        q = F.linear(x, self.q).view(b, t, self.nh, self.hd)
        k = F.linear(x, self.k).view(b, t, self.kv, self.hd)
        v = F.linear(x, self.v).view(b, t, self.kv, self.hd).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, self.nh // self.kv), repeat_kv(v, self.nh // self.kv)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.hd ** -0.5 + mask
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, t, self.nh * self.hd)
        return F.linear(out, self.o)


class Expert:
    def __init__(self, gate, up, down):
        self.gate, self.up, self.down = gate, up, down

    def __call__(self, x):
        return F.linear(F.silu(F.linear(x, self.gate)) * F.linear(x, self.up), self.down)


class SparseMoe(torch.nn.Module):
    def __init__(self, w, m, cfg, mixtral):
        super().__init__()
        self.E = cfg["num_local_experts"] if mixtral else cfg["num_experts"]
        self.k = cfg["num_experts_per_tok"]
        self.renorm = True if mixtral else bool(cfg.get("norm_topk_prob", True))
        self.gate = w[m + "gate.weight"]
        names = ("w1", "w3", "w2") if mixtral else ("gate_proj", "up_proj", "down_proj")
        self.experts = [Expert(*(w[f"{m}experts.{e}.{n}.weight"] for n in names)) for e in range(self.E)]

    def route(self, x):
        probs = torch.softmax(F.linear(x, self.gate), dim=1, dtype=torch.float)
        w, sel = torch.topk(probs, self.k, dim=-1)
        if self.renorm:
            w = w / w.sum(dim=-1, keepdim=True)
        return w.to(x.dtype), sel

    def forward(self, hidden):
        b, t, H = hidden.shape
        x = hidden.view(-1, H)
        w, sel = self.route(x)
        final = torch.zeros((b * t, H), dtype=hidden.dtype)
        mask = F.one_hot(sel, num_classes=self.E).permute(2, 1, 0)
        for e in range(self.E):
            idx, top_x = torch.where(mask[e])
            if top_x.numel() == 0:
                continue
            out = self.experts[e](x[None, top_x].reshape(-1, H)) * w[top_x, idx, None]
            final.index_add_(0, top_x, out.to(hidden.dtype))
        return final.reshape(b, t, H)


class Layer(torch.nn.Module):
    def __init__(self, w, l, cfg):
        super().__init__()
        mixtral = cfg["model_type"] == "mixtral"
        p = f"model.layers.{l}."
        eps = cfg["rms_norm_eps"]
        self.input_layernorm = RMSNorm(w[p + "input_layernorm.weight"], eps)
        self.post_attention_layernorm = RMSNorm(w[p + "post_attention_layernorm.weight"], eps)
        self.self_attn = Attention(w, p, cfg, qk_norm=not mixtral)
        self.moe = SparseMoe(w, p + ("block_sparse_moe." if mixtral else "mlp."), cfg, mixtral)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.moe(self.post_attention_layernorm(x))


class Embedding(torch.nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = weight

    def forward(self, ids):
        return F.embedding(ids, self.weight)


class Model(torch.nn.Module):
    def __init__(self, w, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = Embedding(w.pop("model.embed_tokens.weight"))
        self.layers = torch.nn.ModuleList(Layer(w, l, cfg) for l in range(cfg["num_hidden_layers"]))
        self.norm = RMSNorm(w["model.norm.weight"], cfg["rms_norm_eps"])
        self.lm_head = w["lm_head.weight"]
        self.head_wall_s, self.head_cpu_s = 0.0, 0.0  # time spent in the LM head, summed over calls
        hd = cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
        self.inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))

    def forward(self, ids):
        """Logits of the final position, [batch, vocab] (logits_to_keep=1)."""
        b, t = ids.shape
        x = self.embed_tokens(ids)
        freqs = torch.arange(t, dtype=torch.float32)[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(x.dtype)[None, None], emb.sin().to(x.dtype)[None, None]
        mask = torch.full((t, t), torch.finfo(x.dtype).min, dtype=x.dtype).triu(1)[None, None]
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        t, c = time.perf_counter(), time.process_time()
        logits = F.linear(self.norm(x[:, -1]), self.lm_head)
        self.head_wall_s += time.perf_counter() - t
        self.head_cpu_s += time.process_time() - c
        return logits


# ---- ROME-style tracing ------------------------------------------------------------------------

class Tracer:
    """Hooks for one batch: row 0 clean, row 1 noised, rows 2.. restored."""

    def __init__(self, model):
        self.model = model
        self.noise, self.subject, self.last = None, (0, 0), None
        self.layer_rows, self.expert_layer, self.expert_rows = {}, None, []
        self.handles = [model.embed_tokens.register_forward_hook(self._embed_hook)]
        for l, layer in enumerate(model.layers):
            self.handles.append(layer.moe.register_forward_hook(self._make_moe_hook(l)))

    def _embed_hook(self, mod, args, out):
        if self.noise is not None:
            s0, s1 = self.subject
            out[1:, s0:s1] += self.noise.to(out.dtype)
        return out

    def _make_moe_hook(self, l):
        def hook(mod, args, out):
            u = args[0]
            rows = self.layer_rows.get(l)
            if rows:  # restore the clean MoE output at the final position
                out[rows, self.last] = out[0, self.last]
            if self.expert_layer == l and self.expert_rows:  # restore single experts' updates
                last = self.last
                ul = u[:, last]
                w, idx = mod.route(ul)
                for slot, row in self.expert_rows:
                    e = int(idx[0, slot])
                    delta = w[0, slot] * mod.experts[e](ul[0:1])
                    own = (idx[row] == e).nonzero()
                    if own.numel():
                        delta = delta - w[row, own[0, 0]] * mod.experts[e](ul[row:row + 1])
                    out[row, last] += delta[0].to(out.dtype)
            return out
        return hook


def contrasts(model, ids, true_id, foil_id):
    logits = model(ids).float()
    return logits[:, true_id] - logits[:, foil_id]


def set_blas_threads(threads):
    """torch.set_num_threads sets OpenMP's threads; OpenBLAS (pthread build) keeps its own pool: give
    it the same count, on every OpenBLAS this process maps (libtorch_cpu loads libblas.so.3 at import)."""
    torch.set_num_threads(threads)
    with open("/proc/self/maps") as fh:
        libs = blas_probe.mapped_blas(fh.read())
    for path in libs:
        if blas_probe.openblas_info(path):
            import ctypes
            ctypes.CDLL(path).openblas_set_num_threads(threads)
    return libs


def blas_check(args):
    """The peer's own BLAS on the floor product (torch.matmul in this process, float32, its threads)
    against OpenBLAS's own kernel for this CPU (tools/bench/blas_probe.py --floor-reference, a fresh
    process); a dict for the JSON, 'accepted' False when the peer is below the floor."""
    libs = set_blas_threads(args.threads)
    m, n, k = blas_probe.FLOOR_SHAPE
    gen = torch.Generator().manual_seed(0)
    x, wt = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen).t()
    with torch.inference_mode():
        rates = blas_probe.time_rate(lambda: torch.matmul(x, wt), 2.0 * m * n * k)
    with open("/proc/self/maps") as fh:
        torch_lib = blas_probe.mapped_library(fh.read(), "libtorch_cpu")
    provider = blas_probe.sgemm_provider(torch_lib) if torch_lib else None  # what torch's sgemm_ calls
    info = blas_probe.openblas_info(provider) if provider else None
    ref = blas_probe.reference_in_subprocess(args.threads, args.blas_reference)
    peer = max(rates)
    if "error" in ref:
        ok, floor, reason = False, None, f"no OpenBLAS reference to hold the peer against: {ref['error']}"
    else:
        ok, floor, reason = blas_probe.floor_verdict(peer, ref["gflops_best"], args.blas_floor)
    return dict(shape=list(blas_probe.FLOOR_SHAPE), peer_gflops=peer, peer_gflops_median=statistics.median(rates),
                torch_threads=torch.get_num_threads(), sgemm_library=provider and os.path.realpath(provider),
                mapped_blas=libs, openblas_core=info["core"] if info else None,
                openblas_threads=info["threads"] if info else None,
                reference=ref, floor_fraction=args.blas_floor, floor_gflops=floor, accepted=ok, reason=reason)


def threads_txt(n):
    return f"{n} thread{'' if n == 1 else 's'}"


def blas_summary(c):
    """One line: the peer's GFLOP/s, its library and the OpenBLAS reference."""
    lib = c["sgemm_library"] or "sgemm_ not found"
    core = f"OpenBLAS core {c['openblas_core']}, {threads_txt(c['openblas_threads'])}" if c["openblas_core"] \
        else "not OpenBLAS"
    ref = c["reference"]
    ref_txt = (f"OpenBLAS reference {ref['gflops_best']:.1f} GFLOP/s (core {ref['core']}, {threads_txt(ref['threads'])})"
               if "error" not in ref else "no OpenBLAS reference")
    return (f"peer BLAS: {c['peer_gflops']:.1f} GFLOP/s on {'x'.join(map(str, c['shape']))} float32 "
            f"(torch.matmul, {threads_txt(c['torch_threads'])}; sgemm_ from {lib}, {core}); {ref_txt}")


def require_blas_floor(args):
    """blas_check, logged; exit 2 with the reason when the peer's BLAS is below the floor."""
    c = blas_check(args)
    log(blas_summary(c))
    if not c["accepted"]:
        log(f"cpu_peer.py: refusing to measure the peer: {c['reason']}. A comparison against it would report a "
            f"false lead. Install libopenblas0-pthread and put {blas_probe.OPENBLAS_DIR} first on LD_LIBRARY_PATH "
            f"(tools/bench/cpu_vs_peer.sh and run_vs_peer.sh do both).")
        sys.exit(2)
    return c


def cmd_blas_check(args):
    c = blas_check(args)
    log(blas_summary(c))
    log(("accepted: " if c["accepted"] else "refused: ") + c["reason"])
    print(json.dumps(c, indent=2))
    sys.exit(0 if c["accepted"] else 2)


def cmd_write(args):
    shape = SHAPES[args.arch]
    cfg = dict(shape["config"], num_hidden_layers=args.layers)
    if args.experts:
        cfg["num_local_experts" if args.arch == "mixtral" else "num_experts"] = args.experts
    full_layers = args.full_layers or shape["full_layers"]
    os.makedirs(args.out, exist_ok=True)
    t = time.perf_counter()
    nbytes = write_checkpoint(args.out, cfg, args.seed)
    with open(os.path.join(args.out, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
    gen = torch.Generator().manual_seed(args.seed + 1)
    V, H, T = cfg["vocab_size"], cfg["hidden_size"], args.tokens
    s0, s1 = map(int, args.subject.split(":"))
    prompts = []
    for _ in range(args.prompts):
        ids = torch.randint(0, V, (T,), generator=gen).tolist()
        tf = torch.randint(0, V, (2,), generator=gen).tolist()
        prompts.append(dict(ids=ids, subject_begin=s0, subject_end=s1, true_id=tf[0], foil_id=tf[1]))
    # noise: 3 x the embedding std (0.02 by construction; bf16 rounding changes it by < 1%)
    sigma = args.noise_multiplier * 0.02
    noise = torch.randn(args.prompts, s1 - s0, H, generator=gen) * sigma
    with open(os.path.join(args.out, "noise.f32"), "wb") as fh:
        fh.write(noise.numpy().astype("<f4").tobytes())
    B = args.layers
    with open(os.path.join(args.out, "prompts.json"), "w") as fh:
        json.dump(dict(prompts=prompts, noise_sigma=sigma, noise_file="noise.f32", full_layers=full_layers,
                       positions="final", expert_layer=B // 2, expert_layer_full=full_layers // 2,
                       arch=args.arch), fh)
    log(f"wrote {args.out}: {nbytes / 1e9:.2f} GB of bf16 weights, {args.prompts} prompts, "
        f"in {time.perf_counter() - t:.1f} s")


def cmd_run(args):
    blas = require_blas_floor(args)
    with open(os.path.join(args.model, "config.json")) as fh:
        cfg = json.load(fh)
    with open(os.path.join(args.model, "prompts.json")) as fh:
        pj = json.load(fh)
    dtype = torch.float32 if args.precision == "f32" else torch.bfloat16
    t = time.perf_counter()
    model = Model(load_checkpoint(args.model, dtype), cfg)
    log(f"loaded {args.model} as {dtype} in {time.perf_counter() - t:.1f} s")
    B, L = cfg["num_hidden_layers"], pj["full_layers"]
    k, H = cfg["num_experts_per_tok"], cfg["hidden_size"]
    prompts = pj["prompts"]
    s0, s1 = prompts[0]["subject_begin"], prompts[0]["subject_end"]
    T = len(prompts[0]["ids"])
    if pj.get("noise_file"):  # one subject span for all: the noise of every fact, shared with moetrace
        noise = torch.frombuffer(bytearray(open(os.path.join(args.model, pj["noise_file"]), "rb").read()),
                                 dtype=torch.float32).view(len(prompts), s1 - s0, H)
    else:  # per-fact spans (tools/bench/run_vs_peer.sh: moetrace's own prompts): fresh noise of that sigma
        gen = torch.Generator().manual_seed(0)
        noise = [torch.randn(p["subject_end"] - p["subject_begin"], H, generator=gen) * pj["noise_sigma"]
                 for p in prompts]
    tr = Tracer(model)
    expert_layer = pj["expert_layer"]

    def use_fact(f):
        p = prompts[f]
        tr.subject, tr.last = (p["subject_begin"], p["subject_end"]), len(p["ids"]) - 1
        tr.noise = noise[f]
        return p

    def layer_sweep(f):
        p = use_fact(f)
        rows = L + 2
        tr.layer_rows = {}
        for r in range(2, rows):
            tr.layer_rows.setdefault((r - 2) % B, []).append(r)
        ids = torch.tensor(p["ids"]).unsqueeze(0).expand(rows, -1).contiguous()
        return contrasts(model, ids, p["true_id"], p["foil_id"])

    def expert_sweep(f):
        p = use_fact(f)
        rows = k + 2
        tr.layer_rows = {}
        tr.expert_layer, tr.expert_rows = expert_layer, [(j, 2 + j) for j in range(k)]
        ids = torch.tensor(p["ids"]).unsqueeze(0).expand(rows, -1).contiguous()
        d = contrasts(model, ids, p["true_id"], p["foil_id"])
        tr.expert_layer, tr.expert_rows = None, []
        return d

    results, sample = {}, {}
    sweeps = [s for s in args.sweeps.split(",") if s]
    with torch.inference_mode():
        for name in sweeps:
            fn = dict(layer_sweep=layer_sweep, expert_sweep=expert_sweep)[name]
            d = fn(0)  # warm-up, and the contrasts checked against moetrace
            sample[name + "_contrasts_fact0"] = d.tolist()
            times, cpu, full, full_cpu, head = [], [], [], [], []
            for f in range(1, 1 + args.facts):
                hw, hc = model.head_wall_s, model.head_cpu_s
                t, c = time.perf_counter(), time.process_time()
                fn(f)
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
                hw, hc = model.head_wall_s - hw, model.head_cpu_s - hc
                head.append(hw)
                # layers scale with depth, the LM head (same rows at any depth) does not
                full.append((times[-1] - hw) * L / B + hw)
                full_cpu.append((cpu[-1] - hc) * L / B + hc)
            results[name] = dict(median_s=statistics.median(times), min_s=min(times),
                                 cpu_median_s=statistics.median(cpu), cpu_min_s=min(cpu),
                                 full_median_s=statistics.median(full), full_min_s=min(full),
                                 full_cpu_median_s=statistics.median(full_cpu), full_cpu_min_s=min(full_cpu),
                                 head_median_s=statistics.median(head),
                                 rows=(L + 2) if name == "layer_sweep" else (k + 2))
            log(f"{name}: median {statistics.median(times):.2f} s, min {min(times):.2f} s per fact at {B} layers "
                f"(LM head {statistics.median(head):.2f} s); at {L} layers: median "
                f"{statistics.median(full):.1f} s, CPU {statistics.median(full_cpu):.1f} s")
    out = dict(side="peer", arch=pj.get("arch"), torch=torch.__version__, threads=torch.get_num_threads(),
               precision=args.precision, blas=blas,
               openblas_core=blas["openblas_core"] or f"none ({blas['sgemm_library']})",
               openblas_coretype_inherited=INHERITED_OPENBLAS_CORETYPE, bench_layers=B, full_layers=L, tokens=T,
               facts=args.facts,
               per_fact_measured={n: r["median_s"] for n, r in results.items()},
               per_fact_lm_head={n: r["head_median_s"] for n, r in results.items()},
               per_fact_full_depth={n: r["full_median_s"] for n, r in results.items()},
               per_fact_full_depth_min={n: r["full_min_s"] for n, r in results.items()},
               cpu_per_fact_full_depth={n: r["full_cpu_median_s"] for n, r in results.items()},
               cpu_per_fact_full_depth_min={n: r["full_cpu_min_s"] for n, r in results.items()},
               batch_rows={n: r["rows"] for n, r in results.items()}, sample=sample)
    print(json.dumps(out, indent=2))


def floor_fraction(text):
    """--blas-floor: a share of OpenBLAS's rate in (0, 1]; 0 or less would accept any BLAS."""
    v = float(text)
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: the floor is a share of OpenBLAS's rate, in (0, 1]")
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write a random real-width checkpoint + prompts.json + noise.f32")
    w.add_argument("--arch", choices=sorted(SHAPES), default="qwen3")
    w.add_argument("--layers", type=int, default=2)
    w.add_argument("--experts", type=int, default=0, help="experts per layer (default: the real model's)")
    w.add_argument("--full-layers", type=int, default=0,
                   help="depth the times are scaled to (default: the real model's; = --layers for no scaling)")
    w.add_argument("--out", required=True)
    w.add_argument("--prompts", type=int, default=66, help="facts (moetrace's batch of 64 + the peer's warm-up)")
    w.add_argument("--tokens", type=int, default=16)
    w.add_argument("--subject", default="2:6")
    w.add_argument("--noise-multiplier", type=float, default=3.0)
    w.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run", help="time the sweeps on a written folder; prints JSON")
    r.add_argument("--model", required=True)
    r.add_argument("--facts", type=int, default=3, help="timed facts (after one warm-up fact)")
    r.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    r.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    r.add_argument("--sweeps", default="layer_sweep,expert_sweep")
    r.add_argument("--openblas-coretype", help="OpenBLAS kernels (default: the best for this CPU)")
    c = sub.add_parser("blas-check", help="only the BLAS floor check of `run`; prints JSON, exit 2 when refused")
    c.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    c.add_argument("--openblas-coretype", help="OpenBLAS kernels (default: the best for this CPU)")
    for p in (r, c):
        p.add_argument("--blas-floor", type=floor_fraction, default=blas_probe.FLOOR_FRACTION, metavar="FRACTION",
                       help="refuse when the peer's BLAS reaches less than FRACTION of OpenBLAS's own kernel "
                            "(default %(default)s)")
        p.add_argument("--blas-reference", default=blas_probe.OPENBLAS_LIB, metavar="LIB",
                       help="the OpenBLAS whose cblas_sgemm is the reference (default %(default)s)")
    args = ap.parse_args()
    {"write": cmd_write, "run": cmd_run, "blas-check": cmd_blas_check}[args.cmd](args)


if __name__ == "__main__":
    main()
