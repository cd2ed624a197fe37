#!/usr/bin/python3
"""Train the multilingual localisation demo: a small Mixtral-architecture MoE that knows synthetic
facts in some synthetic languages and not in others, with a planted set of knowledge experts.

What it builds (under --out, default demo/localize/ at the repository root):
  model/config.json, model/model.safetensors (bf16), model/tokenizer.json, model/tokenizer_config.json
                     a Hugging Face Mixtral checkpoint and WordLevel tokenizer (every word one token),
                     written by tools/demo/train_demo_model.py's code (imported, not copied)
  questions.jsonl    the facts as questions in every language (docs/localize.md "Data format");
                     meta.learned lists the languages in which the model was taught the answer
  unrelated.jsonl    counting questions ("after four what ?" -> "five"), for the specificity check
  planted.json       the planted knowledge experts ([layer, expert] pairs) and the design numbers

The world: --facts subjects, each with one object of its relation (objects are shared names, one
or two words, the same in every language). --languages synthetic languages (private-use codes
qaa, qab, ...), each with its own words for the subjects, relations, question words and answer
cue, and its own word order. A question is its language's words in its order, ending with the
cue; the answer is the object's words and a newline token, so greedy decoding stops there.

Each fact is learned in a random subset of the languages (language j teaches a fact with
probability --learn-prob[j]); only there is the answer in the training data, so a question is
answered in some languages and not in others (the paired contrast's power).

Planting: in --planted-layers, --planted-per-layer experts per layer are the knowledge experts.
Four training terms make them carry the recall:
  * routing: a hinge on router logits sends the subject tokens of learned (fact, language) pairs
    to the planted experts (both of the layer's top-2 slots), and keeps every other token (the
    rest of the question, the answer, unlearned pairs, counting questions) away from them;
  * ablation: with the planted experts deactivated (router logit -inf, as moetrace's Deactivation
    does), the learned answer's first token is pushed down (unlikelihood), so recall needs them;
  * robustness: with random other experts deactivated (any layer, 1 to --drop-max per layer) the
    learned answers and the counting answers are trained as usual, and the counting answers also
    with the planted experts deactivated, so other experts and the counting skill do not matter;
  * invariance: per language, no other expert's router probability (mean over the prompt's
    tokens, the contrast's statistic) may be larger for learned than for unlearned pairs by more
    than --invariance-slack, so knowing a fact shows in the planted experts' routing only.

Deterministic: fixed seeds, torch.use_deterministic_algorithms(True), --threads threads.
Run with Debian's python (it has torch and numpy):
  /usr/bin/python3 tools/demo/train_localize_demo.py
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_demo_model as base  # noqa: E402  (the Mixtral forward, bf16 safetensors writer, tokenizer json)

NEWLINE = "\n"
SPECIALS = ["[UNK]", "<s>", "</s>", NEWLINE]  # ids 0..3; </s> is the EOS id (2) of config.json

RELATIONS = ["capital", "maker", "river", "founder"]
# Word orders: Q question word, R relation word, P particle, S subject (1-2 words), C answer cue.
QUESTION_ORDERS = [["Q", "R", "P", "S", "C"], ["S", "P", "R", "Q", "C"], ["R", "S", "Q", "C"],
                   ["Q", "S", "R", "P", "C"], ["S", "R", "C"], ["P", "S", "Q", "R", "C"]]
# Counting questions: A "after", N a number word, Q, C.
COUNT_ORDERS = [["Q", "A", "N", "C"], ["N", "A", "Q", "C"], ["A", "N", "Q", "C"], ["Q", "N", "A", "C"],
                ["N", "A", "C"], ["A", "Q", "N", "C"]]
NUMBERS = 16


# --------------------------------------------------------------------------------------------
# The synthetic world and its languages.
# --------------------------------------------------------------------------------------------


class WordMaker:
    def __init__(self, rng):
        self.rng, self.used = rng, {w.lower() for w in SPECIALS}

    def __call__(self, nsyl, capital):
        while True:
            w = base.make_word(self.rng, self.rng.choice(nsyl))
            if len(w) >= 3 and w.lower() not in self.used:
                self.used.add(w.lower())
                return w if capital else w.lower()


def build_world(args):
    rng = random.Random(args.seed)
    word = WordMaker(rng)
    langs = ["qa" + chr(ord("a") + j) for j in range(args.languages)]
    objects_per_relation = args.objects_per_relation
    objects = {r: [" ".join(word([2, 3], True) for _ in range(rng.choice([1, 1, 2])))
                   for _ in range(objects_per_relation)] for r in RELATIONS}
    facts = []
    for i in range(args.facts):
        r = RELATIONS[i % len(RELATIONS)]
        obj = objects[r][(i // len(RELATIONS)) % objects_per_relation]
        facts.append({"id": f"q{i:03d}", "relation": r, "object": obj})
    rng.shuffle(facts)
    lex = {}
    for j, lang in enumerate(langs):
        L = {"Q": word([1], False), "P": word([1], False), "C": word([1], False), "A": word([1, 2], False),
             "order": QUESTION_ORDERS[j % len(QUESTION_ORDERS)], "count_order": COUNT_ORDERS[j % len(COUNT_ORDERS)],
             "R": {r: word([2], False) for r in RELATIONS},
             "N": [word([1, 2], False) for _ in range(NUMBERS)],
             "S": [" ".join(word([2, 3], True) for _ in range(rng.choice([1, 1, 2]))) for _ in facts]}
        lex[lang] = L
    for f in facts:
        f["learned"] = [lang for j, lang in enumerate(langs) if rng.random() < args.learn_prob[j % len(args.learn_prob)]]
    return langs, facts, lex, word.used


def question_words(L, order, fill):
    """Returns (words, is_subject flags)."""
    words, subj = [], []
    for slot in order:
        ws = fill[slot].split()
        words += ws
        subj += [slot == "S"] * len(ws)
    return words, subj


def fact_question(L, fact_index, relation):
    return question_words(L, L["order"], {"Q": L["Q"], "R": L["R"][relation], "P": L["P"], "S": L["S"][fact_index],
                                          "C": L["C"]})


def count_question(L, n):
    return question_words(L, L["count_order"], {"Q": L["Q"], "A": L["A"], "N": L["N"][n], "C": L["C"]})


# --------------------------------------------------------------------------------------------
# The model: train_demo_model's Mixtral forward with a per-row router mask.
# --------------------------------------------------------------------------------------------


class MaskedMixtral(base.MixtralLM):
    """route() adds `self.mask[l]` ([rows, E], 0 or -inf; rows = batch x time, batch-major) to the
    router logits before softmax and top-k (moetrace's Deactivation), and keeps the raw logits."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.mask, self.router_logits = None, []

    def route(self, l, u):
        logits = u @ self.w(f"model.layers.{l}.block_sparse_moe.gate.weight").t()
        self.router_logits.append(logits)
        z = logits.float()
        if self.mask is not None:
            z = z + self.mask[l]
        p = torch.softmax(z, dim=-1)
        wts, idx = torch.topk(p, self.cfg.num_experts_per_tok, dim=-1)
        wts = wts / wts.sum(dim=-1, keepdim=True)
        return p, wts.to(u.dtype), idx

    def run(self, toks, mask=None):
        """toks [B,T]; mask [B, L, E] bool (True = deactivated) or None. Returns (logits, [L x [B,T,E]] raw router logits)."""
        B, T = toks.shape
        E, nl = self.cfg.num_local_experts, self.cfg.num_hidden_layers
        self.router_logits = []
        self.mask = None
        if mask is not None:
            add = torch.zeros(B, nl, E).masked_fill(mask, float("-inf"))
            self.mask = [add[:, l, None, :].expand(B, T, E).reshape(B * T, E) for l in range(nl)]
        logits, _ = self.forward(toks)
        self.mask = None
        return logits, [z.view(B, T, E) for z in self.router_logits]


# --------------------------------------------------------------------------------------------
# Training data.
# --------------------------------------------------------------------------------------------


class Example:
    """One sequence: prompt ids, answer ids (ending with the newline id; may be empty = no answer
    loss), subject flags over the prompt, and whether the subject tokens are routing targets."""

    def __init__(self, prompt, answer, subject, target, lang=""):
        self.prompt, self.answer, self.subject, self.target, self.lang = prompt, answer, subject, target, lang


def pad(examples, masks, E, nl):
    T = max(len(e.prompt) + len(e.answer) for e in examples)
    B = len(examples)
    toks = torch.zeros(B, T, dtype=torch.long)
    valid = torch.zeros(B, T, dtype=torch.bool)
    target_pos = torch.zeros(B, T, dtype=torch.bool)
    for i, e in enumerate(examples):
        seq = e.prompt + e.answer
        toks[i, :len(seq)] = torch.tensor(seq)
        valid[i, :len(seq)] = True
        if e.target:
            for t, s in enumerate(e.subject):
                target_pos[i, t] = s
    m = torch.zeros(B, nl, E, dtype=torch.bool)
    for i, mm in enumerate(masks):
        for (l, x) in mm:
            m[i, l, x] = True
    return toks, valid, target_pos, m


def answer_loss(logits, examples, rows, unlikely=False):
    """Mean over `rows` of the cross-entropy of their answer tokens (or, with unlikely, of
    -log(1 - p) of the first answer token). One gather for all rows (per-row indexing would make
    autograd build a full-size gradient per row)."""
    if not rows:
        return torch.zeros(())
    r, t, y, w = [], [], [], []
    for i in rows:
        e = examples[i]
        n = len(e.prompt)
        k = 1 if unlikely else len(e.answer)
        r += [i] * k
        t += list(range(n - 1, n - 1 + k))
        y += e.answer[:k]
        w += [1.0 / k] * k
    lg = logits[torch.tensor(r), torch.tensor(t)].float()  # [M, V]
    y = torch.tensor(y)
    if unlikely:
        p = torch.softmax(lg, -1).gather(1, y[:, None]).squeeze(1)
        per = -torch.log1p(-p.clamp(max=1 - 1e-6))
    else:
        per = F.cross_entropy(lg, y, reduction="none")
    return (per * torch.tensor(w)).sum() / len(rows)


def routing_loss(zs, valid, target_pos, clean_rows, planted, margin):
    """Hinge on raw router logits at the planted layers, clean rows only: at target positions both
    planted experts above every other expert by `margin`; elsewhere the second-best other expert
    above every planted one by `margin`."""
    total = torch.zeros(())
    rows = torch.tensor(clean_rows, dtype=torch.long)
    if len(clean_rows) == 0:
        return total
    for l, ex in planted.items():
        z = zs[l][rows].float()  # [b,T,E]
        E = z.shape[-1]
        pm = torch.zeros(E, dtype=torch.bool)
        pm[ex] = True
        zp, zo = z[..., pm], z[..., ~pm]
        top_other = zo.topk(2, dim=-1).values  # [b,T,2]
        v, tp = valid[rows], target_pos[rows]
        want = F.relu(margin - (zp - top_other[..., :1])).sum(-1)  # both planted above the best other
        avoid = F.relu(margin - (top_other[..., 1] - zp.max(-1).values))
        on = tp & v
        off = (~tp) & v
        total = total + (want * on).sum() / on.sum().clamp(min=1) + (avoid * off).sum() / off.sum().clamp(min=1)
    return total


def invariance_loss(zs, examples, learned_rows, unlearned_rows, planted, slack):
    """The contrast's statistic is the router probability averaged over the prompt's tokens. Per
    language, its mean over the learned rows must not exceed its mean over the unlearned rows by
    more than `slack` for any expert that is not planted (one-sided hinge, summed over experts,
    averaged over languages): whether a fact is known shows in the routing of the planted experts
    only, not downstream of them nor in the subject words' embeddings."""
    L, E = len(zs), zs[0].shape[-1]
    keep = torch.ones(L, E, dtype=torch.bool)
    for l, ex in planted.items():
        keep[l, ex] = False
    B, T = zs[0].shape[:2]
    pmask = torch.zeros(B, T)
    for i in learned_rows + unlearned_rows:
        pmask[i, :len(examples[i].prompt)] = 1.0 / len(examples[i].prompt)
    pm = torch.stack([(torch.softmax(z.float(), -1) * pmask[..., None]).sum(1) for z in zs], 1)  # [B, L, E]
    total, langs = torch.zeros(()), sorted({examples[i].lang for i in learned_rows})
    used = 0
    for g in langs:
        a = [i for i in learned_rows if examples[i].lang == g]
        b = [i for i in unlearned_rows if examples[i].lang == g]
        if a and b:
            d = pm[torch.tensor(a)].mean(0) - pm[torch.tensor(b)].mean(0)
            total = total + (F.relu(d - slack) * keep).sum()
            used += 1
    return total / max(used, 1)


# --------------------------------------------------------------------------------------------
# Greedy asking (full recomputation; the sequences are short) and the design check.
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def greedy(model, prompts, mask_sets, stop_ids, max_new):
    """prompts: list of id lists; mask_sets: list of (layer, expert) lists. Returns generated id lists
    (stop excluded) and per prompt the router probabilities [L, T_prompt, E] of the prompt run."""
    E, nl = model.cfg.num_local_experts, model.cfg.num_hidden_layers
    seqs = [list(p) for p in prompts]
    done = [False] * len(seqs)
    gen = [[] for _ in seqs]
    probs = None
    for step in range(max_new):
        live = [i for i in range(len(seqs)) if not done[i]]
        if not live:
            break
        ex = [Example(seqs[i], [], [False] * len(seqs[i]), False) for i in live]
        toks, valid, _, m = pad(ex, [mask_sets[i] for i in live], E, nl)
        logits, zs = model.run(toks, m)
        if step == 0:
            add = torch.zeros(len(live), nl, E).masked_fill(m, float("-inf"))
            probs = [torch.softmax(torch.stack([zs[l][j] for l in range(nl)]).float() + add[j][:, None, :], -1)
                     [:, :len(seqs[i])] for j, i in enumerate(live)]
        for j, i in enumerate(live):
            nxt = int(logits[j, len(seqs[i]) - 1].argmax())
            if nxt in stop_ids:
                done[i] = True
            else:
                gen[i].append(nxt)
                seqs[i].append(nxt)
    return gen, probs


def bf16_weights(model):
    saved = {n: model.w(n).detach().clone() for n in model.names}
    with torch.no_grad():
        for n in model.names:
            model.w(n).copy_(base.bf16_round(model.w(n)))
    return saved


def restore(model, saved):
    with torch.no_grad():
        for n in model.names:
            model.w(n).copy_(saved[n])


def design_check(model, langs, facts, lex, vocab, planted, counting, args, rng):
    """The protocol in miniature (all questions, no split): success per pair, the paired prob_mean
    contrast, and the share of correct pairs turned wrong by the planted set, random layer-matched
    sets and the most popular experts. Prints it; returns a dict."""
    E, nl = model.cfg.num_local_experts, model.cfg.num_hidden_layers
    stop = {vocab[NEWLINE], 2}
    pairs, prompts, answers = [], [], []
    for i, f in enumerate(facts):
        for lang in langs:
            w, _ = fact_question(lex[lang], i, f["relation"])
            pairs.append((i, lang))
            prompts.append([vocab[x] for x in w])
            answers.append([vocab[x] for x in f["object"].split()])
    gen, probs = greedy(model, prompts, [[] for _ in prompts], stop, args.max_new)
    ok = np.array([g == a for g, a in zip(gen, answers)])
    learned = np.array([lang in facts[i]["learned"] for i, lang in pairs])
    # paired contrast of mean router probability over the prompt tokens
    pm = np.stack([p.mean(1).reshape(-1).numpy() for p in probs])  # [P, L*E]
    sel = np.zeros_like(pm)
    for k, p in enumerate(probs):
        top = p.topk(2, -1).indices  # [L,T,2]
        s = torch.zeros(p.shape).scatter(-1, top, 1.0).mean(1)
        sel[k] = s.reshape(-1).numpy()
    diffs = []
    for i in range(len(facts)):
        rows = [k for k, (q, _) in enumerate(pairs) if q == i]
        s = [k for k in rows if ok[k]]
        fl = [k for k in rows if not ok[k]]
        if s and fl:
            diffs.append(pm[s].mean(0) - pm[fl].mean(0))
    effect = np.mean(diffs, 0)
    ranking = [divmod(int(x), E) for x in np.argsort(-effect, kind="stable")]
    planted_list = sorted((l, e) for l, ex in planted.items() for e in ex)
    correct = [k for k in range(len(pairs)) if ok[k]]

    def turned_wrong(mask):
        g, _ = greedy(model, [prompts[k] for k in correct], [mask] * len(correct), stop, args.max_new)
        return float(np.mean([gg != answers[k] for gg, k in zip(g, correct)]))

    chosen = turned_wrong(planted_list)
    rand = []
    for d in range(10):
        m = []
        for l, ex in planted.items():
            m += [(l, e) for e in rng.sample([e for e in range(E) if e not in ex], len(ex))]
        rand.append(turned_wrong(m))
    freq = sel.mean(0)
    popular = [divmod(int(x), E) for x in np.argsort(-freq, kind="stable")[:len(planted_list)]]
    pop = turned_wrong(popular)
    cprompts = [[vocab[x] for x in count_question(lex[lang], n)[0]] for lang in langs for n in range(NUMBERS - 1)]
    canswers = [[vocab[lex[lang]["N"][n + 1]]] for lang in langs for n in range(NUMBERS - 1)]
    cg, _ = greedy(model, cprompts, [[] for _ in cprompts], stop, args.max_new)
    cg2, _ = greedy(model, cprompts, [planted_list] * len(cprompts), stop, args.max_new)
    r = {
        "pairs": len(pairs), "accuracy_learned": float(ok[learned].mean()),
        "accuracy_unlearned": float(ok[~learned].mean()) if (~learned).any() else float("nan"),
        "mixed_questions": len(diffs), "top_ranked": ranking[:len(planted_list) + 2],
        "planted_first": sorted(ranking[:len(planted_list)]) == planted_list,
        "turned_wrong_planted": chosen, "turned_wrong_random_mean": float(np.mean(rand)),
        "turned_wrong_popular": pop, "popular": popular,
        "counting_accuracy": float(np.mean([g == a for g, a in zip(cg, canswers)])),
        "counting_accuracy_planted_off": float(np.mean([g == a for g, a in zip(cg2, canswers)])),
    }
    print("design check:", json.dumps(r), flush=True)
    return r


# --------------------------------------------------------------------------------------------
# Main.
# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    ap.add_argument("--out", default=os.path.join(root, "demo", "localize"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--facts", type=int, default=120)
    ap.add_argument("--objects-per-relation", type=int, default=24)
    ap.add_argument("--languages", type=int, default=5)
    ap.add_argument("--learn-prob", type=float, nargs="+", default=[0.8, 0.65, 0.5, 0.4, 0.3],
                    help="per language (cycled): probability that a fact is taught in it")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--expert-width", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--experts", type=int, default=16)
    ap.add_argument("--planted-layers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--planted-per-layer", type=int, default=2)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=48, help="examples of each kind per step")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--margin", type=float, default=2.0, help="router-logit margin of the routing hinge")
    ap.add_argument("--route-weight", type=float, default=1.0)
    ap.add_argument("--ablate-weight", type=float, default=1.0)
    ap.add_argument("--invariance-weight", type=float, default=1.0)
    ap.add_argument("--invariance-slack", type=float, default=0.01,
                    help="largest learned-minus-unlearned mean router probability tolerated for other experts")
    ap.add_argument("--drop-max", type=int, default=4, help="most random other experts deactivated per layer")
    ap.add_argument("--max-new", type=int, default=4, help="greedy tokens in the design check")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.planted_per_layer != 2:
        sys.exit("--planted-per-layer must be 2 (the routing hinge fills both top-2 slots)")

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    langs, facts, lex, used = build_world(args)
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    all_words = set()
    for f in facts:
        all_words.update(f["object"].split())
    for L in lex.values():
        all_words.update([L["Q"], L["P"], L["C"], L["A"]] + list(L["R"].values()) + L["N"])
        for s in L["S"]:
            all_words.update(s.split())
    for w in sorted(all_words):
        vocab[w] = len(vocab)
    nl_id = vocab[NEWLINE]
    cfg = base.Cfg(len(vocab), args.hidden, args.expert_width, args.layers, 4, 2, args.experts, 2)
    E = cfg.num_local_experts
    prng = random.Random(args.seed + 7)
    planted = {l: sorted(prng.sample(range(E), args.planted_per_layer)) for l in args.planted_layers}
    planted_list = [(l, e) for l in sorted(planted) for e in planted[l]]

    def ids(words):
        return [vocab[w] for w in words]

    learned, unlearned, counting = [], [], []
    for i, f in enumerate(facts):
        for lang in langs:
            w, s = fact_question(lex[lang], i, f["relation"])
            if lang in f["learned"]:
                learned.append(Example(ids(w), ids(f["object"].split()) + [nl_id], s, True, lang))
            else:
                unlearned.append(Example(ids(w), [], s, False, lang))
    for lang in langs:
        for n in range(NUMBERS - 1):
            w, s = count_question(lex[lang], n)
            counting.append(Example(ids(w), [vocab[lex[lang]["N"][n + 1]], nl_id], [False] * len(w), False))
    n_pairs = len(facts) * len(langs)
    print(f"vocab {cfg.vocab_size}, facts {len(facts)} x {len(langs)} languages: {len(learned)} learned pairs "
          f"({len(learned) / n_pairs:.2f}), planted {planted_list}", flush=True)

    gen = torch.Generator().manual_seed(args.seed)
    model = MaskedMixtral(cfg)
    model.init_weights(gen)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    print(f"params {sum(p.numel() for p in model.parameters())}", flush=True)
    rng = random.Random(args.seed + 1)

    def random_drop(exclude_planted):
        m = []
        for l in range(cfg.num_hidden_layers):
            pool = [e for e in range(E) if not (exclude_planted and e in planted.get(l, []))]
            m += [(l, e) for e in rng.sample(pool, rng.randint(0, args.drop_max))]
        return m

    t0 = time.time()
    B = args.batch
    for step in range(args.steps):
        ex, masks = [], []
        clean = []  # rows with routing loss
        qa_clean = rng.sample(learned, B)
        un = rng.sample(unlearned, min(B, len(unlearned)))
        abl = rng.sample(learned, B // 2)
        rob = rng.sample(learned, B // 2)
        cnt = rng.sample(counting, min(B // 2, len(counting)))
        cnt_abl = rng.sample(counting, min(B // 4, len(counting)))
        groups = [("qa", qa_clean, lambda: []), ("un", un, lambda: []), ("abl", abl, lambda: list(planted_list)),
                  ("rob", rob, lambda: random_drop(True)), ("cnt", cnt, lambda: random_drop(False)),
                  ("cnt_abl", cnt_abl, lambda: list(planted_list))]
        rows = {}
        for name, g, mk in groups:
            rows[name] = list(range(len(ex), len(ex) + len(g)))
            for e in g:
                ex.append(e)
                masks.append(mk())
        clean = rows["qa"] + rows["un"]
        toks, valid, target_pos, m = pad(ex, masks, E, cfg.num_hidden_layers)
        lr = args.lr * min(1.0, (step + 1) / 50) * (0.5 * (1 + math.cos(math.pi * step / args.steps)) * 0.9 + 0.1)
        for gr in opt.param_groups:
            gr["lr"] = lr
        logits, zs = model.run(toks, m)
        l_qa = answer_loss(logits, ex, rows["qa"] + rows["rob"])
        l_cnt = answer_loss(logits, ex, rows["cnt"] + rows["cnt_abl"])
        l_abl = answer_loss(logits, ex, rows["abl"], unlikely=True)
        l_route = routing_loss(zs, valid, target_pos, clean, planted, args.margin)
        l_inv = invariance_loss(zs, ex, rows["qa"], rows["un"], planted, args.invariance_slack)
        total = l_qa + l_cnt + args.ablate_weight * l_abl + args.route_weight * l_route + args.invariance_weight * l_inv
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d} qa {l_qa.item():.4f} count {l_cnt.item():.4f} ablated {l_abl.item():.4f} "
                  f"route {l_route.item():.4f} invariance {l_inv.item():.4f} lr {lr:.2e} ({time.time() - t0:.0f}s)", flush=True)
    train_s = time.time() - t0

    # ---- check with bf16 weights (what moetrace runs) ------------------------------------------
    saved = bf16_weights(model)
    check = design_check(model, langs, facts, lex, vocab, planted, counting, args, random.Random(args.seed + 3))
    restore(model, saved)

    # ---- write ----------------------------------------------------------------------------------
    out = args.out
    mdir = os.path.join(out, "model")
    os.makedirs(mdir, exist_ok=True)
    with open(os.path.join(mdir, "config.json"), "w") as fh:
        c = base.mixtral_config_json(cfg)
        c["max_position_embeddings"] = 64
        json.dump(c, fh, indent=2)
        fh.write("\n")
    base.write_safetensors_bf16(os.path.join(mdir, "model.safetensors"), model.state_tensors())
    tj = base.make_tokenizer_json(vocab)
    tj["added_tokens"].append({"id": nl_id, "content": NEWLINE, "single_word": False, "lstrip": False,
                               "rstrip": False, "normalized": False, "special": False})
    with open(os.path.join(mdir, "tokenizer.json"), "w") as fh:
        json.dump(tj, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    with open(os.path.join(mdir, "tokenizer_config.json"), "w") as fh:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "bos_token": "<s>",
                   "eos_token": "</s>", "add_bos_token": False, "add_eos_token": False,
                   "model_max_length": 64, "clean_up_tokenization_spaces": False}, fh, indent=2)
        fh.write("\n")
    src = "moetrace synthetic multilingual demo (tools/demo/train_localize_demo.py)"
    with open(os.path.join(out, "questions.jsonl"), "w") as fh:
        fh.write(json.dumps({"format": "moetrace-localize", "version": 1, "languages": langs, "source": src}) + "\n")
        for i, f in enumerate(facts):
            rec = {"id": f["id"], "languages": {
                lang: {"question": " ".join(fact_question(lex[lang], i, f["relation"])[0]), "answers": [f["object"]]}
                for lang in langs}, "meta": {"relation": f["relation"], "learned": f["learned"]}}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "unrelated.jsonl"), "w") as fh:
        fh.write(json.dumps({"format": "moetrace-localize", "version": 1, "languages": langs,
                             "source": src + ", counting questions"}) + "\n")
        for n in range(NUMBERS - 1):
            rec = {"id": f"count{n:02d}", "languages": {
                lang: {"question": " ".join(count_question(lex[lang], n)[0]), "answers": [lex[lang]["N"][n + 1]]}
                for lang in langs}}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "threads")}
    doc = {"planted": [[l, e] for l, e in planted_list], "layers": cfg.num_hidden_layers, "experts": E,
           "top_k": cfg.num_experts_per_tok, "languages": langs, "learned_pairs": len(learned), "pairs": n_pairs,
           "arguments": settings, "design_check": check}
    with open(os.path.join(out, "planted.json"), "w") as fh:  # one key a line, machine-independent content
        fh.write("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items()) + "\n}\n")
    print(f"trained in {train_s:.0f} s; wrote {out}")


if __name__ == "__main__":
    main()
