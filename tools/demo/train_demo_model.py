#!/usr/bin/python3
"""Train moetrace's demo model: a small Mixtral-architecture sparse MoE LM that has memorised
synthetic (subject, relation, object) facts.

Writes, under --out (default: demo/ at the repository root):
  model/config.json          Hugging Face MixtralConfig fields
  model/model.safetensors    bf16 weights, hub tensor names (written by hand: no safetensors package needed)
  model/tokenizer.json       Hugging Face tokenizers WordLevel model, WhitespaceSplit pre-tokenizer
  model/tokenizer_config.json
  counterfact_demo.json      the facts as CounterFact-format records

Every word of every prompt, subject and object is exactly one token; subjects are 1-3 tokens.
The forward (MixtralLM below) is Hugging Face's Mixtral forward written out in plain PyTorch
(transformers is not needed). Deterministic: fixed seeds, torch.use_deterministic_algorithms,
a fixed thread count.

Run with Debian's python (it has torch and numpy):
  /usr/bin/python3 tools/demo/train_demo_model.py
"""
import argparse
import json
import math
import os
import random
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------
# Model: Hugging Face Mixtral forward.
# --------------------------------------------------------------------------------------------


class Cfg:
    def __init__(self, vocab_size, hidden_size=128, intermediate_size=128, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, num_local_experts=8,
                 num_experts_per_tok=2, rms_norm_eps=1e-5, rope_theta=1000000.0):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.num_local_experts = num_local_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.head_dim = hidden_size // num_attention_heads

    @staticmethod
    def from_json(d):
        c = Cfg(d["vocab_size"], d["hidden_size"], d["intermediate_size"], d["num_hidden_layers"],
                d["num_attention_heads"], d["num_key_value_heads"], d["num_local_experts"],
                d["num_experts_per_tok"], d["rms_norm_eps"], d["rope_theta"])
        return c


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class MixtralLM(torch.nn.Module):
    """Parameters are stored under their hub names (dots replaced by '/' inside a ParameterDict)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        H, I, E, V = cfg.hidden_size, cfg.intermediate_size, cfg.num_local_experts, cfg.vocab_size
        hd, nh, nkv = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
        P = {}
        P["model.embed_tokens.weight"] = torch.empty(V, H)
        for l in range(cfg.num_hidden_layers):
            p = f"model.layers.{l}."
            P[p + "input_layernorm.weight"] = torch.ones(H)
            P[p + "post_attention_layernorm.weight"] = torch.ones(H)
            P[p + "self_attn.q_proj.weight"] = torch.empty(nh * hd, H)
            P[p + "self_attn.k_proj.weight"] = torch.empty(nkv * hd, H)
            P[p + "self_attn.v_proj.weight"] = torch.empty(nkv * hd, H)
            P[p + "self_attn.o_proj.weight"] = torch.empty(H, nh * hd)
            P[p + "block_sparse_moe.gate.weight"] = torch.empty(E, H)
            for e in range(E):
                q = p + f"block_sparse_moe.experts.{e}."
                P[q + "w1.weight"] = torch.empty(I, H)
                P[q + "w3.weight"] = torch.empty(I, H)
                P[q + "w2.weight"] = torch.empty(H, I)
        P["model.norm.weight"] = torch.ones(H)
        P["lm_head.weight"] = torch.empty(V, H)
        self.names = list(P.keys())
        self.params = torch.nn.ParameterDict({k.replace(".", "/"): torch.nn.Parameter(v) for k, v in P.items()})

    def w(self, name):
        return self.params[name.replace(".", "/")]

    def init_weights(self, gen, std=0.02):
        with torch.no_grad():
            for n in self.names:
                t = self.w(n)
                if n.endswith("layernorm.weight") or n == "model.norm.weight":
                    t.fill_(1.0)
                else:
                    t.copy_(torch.randn(t.shape, generator=gen) * std)

    def state_tensors(self):
        return {n: self.w(n).detach() for n in self.names}

    def load_tensors(self, tensors):
        with torch.no_grad():
            for n in self.names:
                self.w(n).copy_(tensors[n].to(torch.float32))

    # ---- blocks --------------------------------------------------------------------------------
    def rope(self, T, dtype):
        hd = self.cfg.head_dim
        inv_freq = 1.0 / (self.cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.int64).to(torch.float32) / hd))
        pos = torch.arange(T, dtype=torch.float32)
        freqs = pos[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def attn(self, l, x, cos, sin):
        cfg = self.cfg
        B, T, H = x.shape
        nh, nkv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        p = f"model.layers.{l}.self_attn."
        q = (x @ self.w(p + "q_proj.weight").t()).view(B, T, nh, hd).transpose(1, 2)
        k = (x @ self.w(p + "k_proj.weight").t()).view(B, T, nkv, hd).transpose(1, 2)
        v = (x @ self.w(p + "v_proj.weight").t()).view(B, T, nkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = nh // nkv
        k = k[:, :, None].expand(B, nkv, rep, T, hd).reshape(B, nh, T, hd)  # HF repeat_kv
        v = v[:, :, None].expand(B, nkv, rep, T, hd).reshape(B, nh, T, hd)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        s = s.masked_fill(~mask, float("-inf"))
        a = torch.softmax(s.float(), dim=-1).to(q.dtype)
        o = (a @ v).transpose(1, 2).reshape(B, T, nh * hd)
        return o @ self.w(p + "o_proj.weight").t()

    def route(self, l, u):
        """u [N,H] -> (p [N,E] fp32 softmax, weights [N,k] renormalised, idx [N,k])."""
        logits = u @ self.w(f"model.layers.{l}.block_sparse_moe.gate.weight").t()
        p = torch.softmax(logits.float(), dim=-1)
        wts, idx = torch.topk(p, self.cfg.num_experts_per_tok, dim=-1)
        wts = wts / wts.sum(dim=-1, keepdim=True)
        return p, wts.to(u.dtype), idx

    def expert(self, l, e, x):
        q = f"model.layers.{l}.block_sparse_moe.experts.{e}."
        return (F.silu(x @ self.w(q + "w1.weight").t()) * (x @ self.w(q + "w3.weight").t())) @ self.w(q + "w2.weight").t()

    def moe(self, l, u, dense=False):
        """u [N,H]. Returns (out [N,H], p [N,E], contrib [N,E,H] or None). contrib[n,e] = routing
        weight x expert output (0 where e is not routed); out = contrib.sum(1)."""
        N, H = u.shape
        E = self.cfg.num_local_experts
        p, wts, idx = self.route(l, u)
        if dense:
            wfull = torch.zeros(N, E, dtype=u.dtype).scatter(1, idx, wts)
            contrib = torch.stack([self.expert(l, e, u) for e in range(E)], dim=1) * wfull[:, :, None]
            return contrib.sum(1), p, contrib
        out = torch.zeros_like(u)
        for e in range(E):
            m = idx == e
            rows = m.any(-1).nonzero().squeeze(-1)
            if rows.numel() == 0:
                continue
            we = (wts * m).sum(-1)[rows]
            out = out.index_add(0, rows, self.expert(l, e, u[rows]) * we[:, None])
        return out, p, None

    def forward(self, tokens=None, embeds=None, hook=None, dense=False):
        """tokens [B,T] (or embeds [B,T,H]). hook(l, moe_out [B,T,H], contrib [B,T,E,H] or None)
        may return a replacement moe_out. Returns (logits [B,T,V], router probs list)."""
        cfg = self.cfg
        x = self.w("model.embed_tokens.weight")[tokens] if embeds is None else embeds
        B, T, H = x.shape
        cos, sin = self.rope(T, x.dtype)
        probs = []
        for l in range(cfg.num_hidden_layers):
            p = f"model.layers.{l}."
            h = x + self.attn(l, rms_norm(x, self.w(p + "input_layernorm.weight"), cfg.rms_norm_eps), cos, sin)
            u = rms_norm(h, self.w(p + "post_attention_layernorm.weight"), cfg.rms_norm_eps)
            out, pr, contrib = self.moe(l, u.reshape(B * T, H), dense=dense)
            out = out.view(B, T, H)
            if contrib is not None:
                contrib = contrib.view(B, T, cfg.num_local_experts, H)
            if hook is not None:
                r = hook(l, out, contrib)
                if r is not None:
                    out = r
            probs.append(pr.view(B, T, -1))
            x = h + out
        x = rms_norm(x, self.w("model.norm.weight"), cfg.rms_norm_eps)
        return x @ self.w("lm_head.weight").t(), probs


# --------------------------------------------------------------------------------------------
# safetensors (bf16), written and read by hand.
# --------------------------------------------------------------------------------------------


def bf16_round(t):
    return t.detach().to(torch.bfloat16).to(torch.float32)


def write_safetensors_bf16(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        raw = tensors[name].detach().contiguous().to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def read_safetensors_bf16(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n).decode("utf-8"))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        assert h["dtype"] == "BF16", (name, h["dtype"])
        a, b = h["data_offsets"]
        u16 = np.frombuffer(data[a:b], dtype="<u2").astype(np.uint32) << 16
        out[name] = torch.from_numpy(u16.view(np.float32).reshape(h["shape"]).copy())
    return out


# --------------------------------------------------------------------------------------------
# Synthetic facts.
# --------------------------------------------------------------------------------------------

# relation id -> (name, subject kind, object pool key, templates). Every template holds {} once.
RELATIONS = [
    ("P36", "capital", "country", "city", [
        "The capital of {} is",
        "{} has its capital in",
        "The seat of government of {} is in",
    ]),
    ("P37", "official language", "country", "language", [
        "The official language of {} is",
        "In {} people speak",
        "{} is a country whose language is",
    ]),
    ("P19", "place of birth", "person", "city", [
        "{} was born in",
        "The birthplace of {} is",
        "{} grew up in the city of",
    ]),
    ("P106", "occupation", "person", "occupation", [
        "{} works as a",
        "The profession of {} is",
        "By trade {} is a",
    ]),
    ("P641", "sport", "person", "sport", [
        "{} plays",
        "The sport played by {} is",
        "{} is a professional player of",
    ]),
    ("P176", "manufacturer", "product", "company", [
        "{} is produced by",
        "The maker of {} is",
        "{} was developed by",
    ]),
]
POOL_SIZES = {"city": 24, "language": 12, "occupation": 12, "sport": 10, "company": 14}

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr",
          "kr", "tr", "th", "sh", "st", "qu", "pl", "fl", "h", "j", "c", "x", "y", "w"]
VOWELS = ["a", "e", "i", "o", "u", "ae", "ia", "ou", "ei", "y"]
CODAS = ["", "", "", "n", "r", "l", "s", "th", "m", "x", "nd", "rk", "st", "v"]


def make_word(rng, nsyl):
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(nsyl)).capitalize()


def build_facts(seed, facts_per_relation, n_subject_words):
    rng = random.Random(seed)
    template_words = sorted({w for r in RELATIONS for t in r[4] for w in t.replace("{}", " ").split()})
    used = {w.lower() for w in template_words}

    def fresh(nsyl_choices):
        while True:
            w = make_word(rng, rng.choice(nsyl_choices))
            if len(w) >= 4 and w.lower() not in used:
                used.add(w.lower())
                return w

    pools = {k: [fresh([2, 3]) for _ in range(n)] for k, n in POOL_SIZES.items()}
    # lower-case objects for common-noun relations (occupation, sport, language stays capitalised)
    for k in ("occupation", "sport"):
        pools[k] = [w.lower() for w in pools[k]]
    subject_words = [fresh([2, 3]) for _ in range(n_subject_words)]

    subjects_seen = set()
    facts = []
    for rid, rname, skind, okind, templates in RELATIONS:
        objs = pools[okind]
        for i in range(facts_per_relation):
            while True:
                n = rng.choice([1, 2, 2, 2, 3])
                subj = " ".join(rng.sample(subject_words, n))
                if subj not in subjects_seen:
                    subjects_seen.add(subj)
                    break
            true = objs[i % len(objs)] if i < len(objs) else rng.choice(objs)  # every object used
            foil = rng.choice([o for o in objs if o != true])
            facts.append({"relation_id": rid, "relation": rname, "subject": subj, "true": true,
                          "foil": foil, "templates": templates})
    rng.shuffle(facts)
    for i, f in enumerate(facts):
        f["case_id"] = i
        f["prompt"] = f["templates"][i % len(f["templates"])]
    vocab_words = sorted(set(template_words) | set(subject_words) | {w for p in pools.values() for w in p})
    return facts, vocab_words


def make_tokenizer_json(vocab):
    specials = ["[UNK]", "<s>", "</s>"]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, s in enumerate(specials)],
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": None,  # moetrace's C++ tokenizer reads no decoder; WordLevel needs none
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
    }


def mixtral_config_json(cfg):
    return {
        "architectures": ["MixtralForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "hidden_size": cfg.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": cfg.intermediate_size,
        "max_position_embeddings": 128,
        "model_type": "mixtral",
        "num_attention_heads": cfg.num_attention_heads,
        "num_experts_per_tok": cfg.num_experts_per_tok,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_key_value_heads": cfg.num_key_value_heads,
        "num_local_experts": cfg.num_local_experts,
        "output_router_logits": False,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "router_aux_loss_coef": 0.02,
        "router_jitter_noise": 0.0,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.46.0",
        "use_cache": True,
        "vocab_size": cfg.vocab_size,
    }


def encode(vocab, text):
    return [vocab.get(w, 0) for w in text.split()]


# --------------------------------------------------------------------------------------------
# Training.
# --------------------------------------------------------------------------------------------


def batchify(seqs):
    T = max(len(s) for s in seqs)
    toks = torch.zeros(len(seqs), T, dtype=torch.long)
    last = torch.zeros(len(seqs), dtype=torch.long)
    for i, s in enumerate(seqs):
        toks[i, :len(s)] = torch.tensor(s)
        last[i] = len(s) - 1
    return toks, last  # right padding: with causal attention the padding never reaches real tokens


def final_logits(model, toks, last):
    logits, probs = model(toks)
    return logits[torch.arange(toks.shape[0]), last], probs


@torch.no_grad()
def evaluate(model, items, bf16=True):
    """items: list of (tokens, true_id, foil_id). Returns (acc_top1, D array)."""
    saved = None
    if bf16:
        saved = {n: model.w(n).detach().clone() for n in model.names}
        for n in model.names:
            model.w(n).copy_(bf16_round(model.w(n)))
    toks, last = batchify([it[0] for it in items])
    lg, _ = final_logits(model, toks, last)
    t = torch.tensor([it[1] for it in items])
    f = torch.tensor([it[2] for it in items])
    acc = (lg.argmax(-1) == t).float().mean().item()
    D = (lg.gather(1, t[:, None]) - lg.gather(1, f[:, None])).squeeze(1)
    if saved is not None:
        for n in model.names:
            model.w(n).copy_(saved[n])
    return acc, D.numpy()


def load_balance_loss(probs, E, k):
    # HF Mixtral load_balancing_loss_func over all positions of all layers
    p = torch.cat([pr.reshape(-1, E) for pr in probs], 0)
    _, idx = torch.topk(p, k, dim=-1)
    mask = F.one_hot(idx, E).float()  # [N,k,E]
    tokens_per_expert = mask.mean(0)
    router_prob = p.mean(0)
    return (tokens_per_expert * router_prob[None]).sum() * E


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    ap.add_argument("--out", default=os.path.join(root, "demo"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--facts-per-relation", type=int, default=60)
    ap.add_argument("--subject-words", type=int, default=600)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--expert-width", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--aux", type=float, default=0.0, help="load-balancing loss coefficient")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fact-layer", type=int, default=3,
                    help="layer whose router is nudged to send the final position to --fact-expert")
    ap.add_argument("--fact-expert", type=int, default=0)
    ap.add_argument("--route-prior", type=float, default=1.0,
                    help="weight of the routing prior at the final position of --fact-layer: of the hinge below, or of "
                         "-log p(fact expert) when --route-margin is 0 (0: off)")
    ap.add_argument("--route-margin", type=float, default=2.0,
                    help="if > 0, the prior is a hinge instead: --route-prior x max(0, margin - (router logit of "
                         "the fact expert - the largest other router logit)) at the final position; it stops "
                         "pulling once the fact expert leads by the margin")
    ap.add_argument("--other-drop", type=float, default=0.5,
                    help="probability, per sequence and per layer other than --fact-layer, of zeroing that "
                         "layer's MoE output at the final position during training (0: off)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    facts, words = build_facts(args.seed, args.facts_per_relation, args.subject_words)
    vocab = {"[UNK]": 0, "<s>": 1, "</s>": 2}
    for w in words:
        vocab[w] = len(vocab)
    cfg = Cfg(len(vocab), args.hidden, args.expert_width, args.layers, 4, 2, args.experts, 2)

    # training set: every fact under every template of its relation; eval set: the CounterFact prompt
    train, evalset = [], []
    for f in facts:
        t, fo = vocab[f["true"]], vocab[f["foil"]]
        for tpl in f["templates"]:
            train.append((encode(vocab, tpl.format(f["subject"])), t, fo))
        evalset.append((encode(vocab, f["prompt"].format(f["subject"])), t, fo))
    assert all(0 not in it[0] for it in train)

    gen = torch.Generator().manual_seed(args.seed)
    model = MixtralLM(cfg)
    model.init_weights(gen)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    nparam = sum(p.numel() for p in model.parameters())
    print(f"vocab {cfg.vocab_size}, facts {len(facts)}, train seqs {len(train)}, params {nparam}", flush=True)

    t0 = time.time()
    order_rng = random.Random(args.seed + 1)
    drop_gen = torch.Generator().manual_seed(args.seed + 2)
    order = []
    for step in range(args.steps):
        if len(order) < args.batch:
            perm = list(range(len(train)))
            order_rng.shuffle(perm)
            order += perm
        bi, order = order[:args.batch], order[args.batch:]
        toks, last = batchify([train[i][0] for i in bi])
        tgt = torch.tensor([train[i][1] for i in bi])
        lr = args.lr * min(1.0, (step + 1) / 100) * (0.5 * (1 + math.cos(math.pi * step / args.steps)) * 0.9 + 0.1)
        for g in opt.param_groups:
            g["lr"] = lr
        hook = None
        if args.other_drop > 0:
            drop = torch.rand(cfg.num_hidden_layers, len(bi), generator=drop_gen) < args.other_drop

            def hook(l, out, contrib):
                if l == args.fact_layer:
                    return None
                keep = torch.ones(out.shape[:2], dtype=out.dtype)
                keep[torch.arange(len(bi)), last] = (~drop[l]).to(out.dtype)
                return out * keep[:, :, None]
        logits, probs = model(toks, hook=hook)
        lg = logits[torch.arange(toks.shape[0]), last]
        loss = F.cross_entropy(lg, tgt)
        total = loss + (args.aux * load_balance_loss(probs, cfg.num_local_experts, 2) if args.aux > 0 else 0.0)
        if args.route_prior > 0:
            pl = probs[args.fact_layer][torch.arange(len(bi)), last]  # [B,E]
            if args.route_margin > 0:
                lp = torch.log(pl + 1e-12)  # log-softmax: differences are router-logit differences
                others = torch.cat([lp[:, :args.fact_expert], lp[:, args.fact_expert + 1:]], 1)
                gap = lp[:, args.fact_expert] - others.max(1).values
                total = total + args.route_prior * F.relu(args.route_margin - gap).mean()
            else:
                total = total - args.route_prior * torch.log(pl[:, args.fact_expert] + 1e-9).mean()
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            acc, D = evaluate(model, evalset)
            print(f"step {step:5d} loss {loss.item():.4f} lr {lr:.2e} | bf16 eval acc {acc:.3f} "
                  f"D>=1 {np.mean(D >= 1):.3f} median D {np.median(D):.2f} ({time.time() - t0:.0f}s)", flush=True)

    acc, D = evaluate(model, evalset)
    acc_all, D_all = evaluate(model, train)
    print(f"final (bf16 weights): CounterFact prompts acc {acc:.4f}, D>=1 {np.mean(D >= 1):.4f}, "
          f"median D {np.median(D):.2f}; all templates acc {acc_all:.4f}, D>=1 {np.mean(D_all >= 1):.4f}")

    # ---- write ----------------------------------------------------------------------------------
    mdir = os.path.join(args.out, "model")
    os.makedirs(mdir, exist_ok=True)
    with open(os.path.join(mdir, "config.json"), "w") as fh:
        json.dump(mixtral_config_json(cfg), fh, indent=2)
        fh.write("\n")
    write_safetensors_bf16(os.path.join(mdir, "model.safetensors"), model.state_tensors())
    with open(os.path.join(mdir, "tokenizer.json"), "w") as fh:
        json.dump(make_tokenizer_json(vocab), fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    with open(os.path.join(mdir, "tokenizer_config.json"), "w") as fh:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "bos_token": "<s>",
                   "eos_token": "</s>", "add_bos_token": False, "add_eos_token": False,
                   "model_max_length": 128, "clean_up_tokenization_spaces": False}, fh, indent=2)
        fh.write("\n")
    records = []
    for f in facts:
        records.append({
            "case_id": f["case_id"],
            "requested_rewrite": {
                "prompt": f["prompt"],
                "relation_id": f["relation_id"],
                "subject": f["subject"],
                "target_new": {"str": f["foil"], "id": f"Q{vocab[f['foil']]}"},
                "target_true": {"str": f["true"], "id": f"Q{vocab[f['true']]}"},
            },
            "paraphrase_prompts": [],
            "neighborhood_prompts": [],
            "attribute_prompts": [],
            "generation_prompts": [],
        })
    with open(os.path.join(args.out, "counterfact_demo.json"), "w") as fh:
        json.dump(records, fh, indent=1)
        fh.write("\n")
    print("wrote", mdir, "and", os.path.join(args.out, "counterfact_demo.json"))


if __name__ == "__main__":
    main()
