#!/usr/bin/env python3
"""Plots of a moetrace results file (Debian's python3-h5py and python3-matplotlib).

  python3 tools/plot_results.py results/demo.h5 [--out-dir DIR]

Writes, beside the results file unless --out-dir is given:
  <stem>.layer_sweep.png   mean rescue by layer with 95% bootstrap intervals (discovery and validation)
  <stem>.experts.png       rescue distribution of every clean-active expert at the selected layer
  <stem>.heatmap.png       ROME-style token x layer heat maps (hidden, attn, moe), when they were run,
                           rows labelled with the decoded token text (subject tokens marked *, bold)
  <stem>.expert_layers.png layer x expert mean rescue, when [experts] mode = "all_layers"

For a results file of `moetrace localize` (group /localize), instead:
  <stem>.contrast.png      layer x expert contrast effect (success - failure) on discovery pairs, the
                           deactivated (chosen) experts marked
  <stem>.accuracy.png      accuracy per language on the validation pairs before and with the chosen
                           set deactivated, 95% bootstrap intervals (and the accuracy over all asked pairs)
  <stem>.curve.png         share of previously correct validation pairs turned wrong against the number N
                           of top experts deactivated, with the random- and popular-control levels

Every figure is checked for overlapping text (titles, labels, annotations); an overlap is an error.
"""
import argparse
import os
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def bootstrap_ci(values, resamples=2000, seed=0):
    """Percentile bootstrap interval of the mean (for the plot only; the report holds the exact stats)."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return np.nan, np.nan, np.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    return values.mean(), np.percentile(means, 2.5), np.percentile(means, 97.5)


def plot_layer_sweep(f, out):
    rescue = f["layer_sweep/rescue"][:]
    split = f["cases/split"][:]
    selected = int(f["layer_sweep"].attrs["selected_layer"])
    layers = np.arange(rescue.shape[1])
    fig, ax = plt.subplots(figsize=(7, 4))
    for value, label, color in ((0, "discovery", "tab:blue"), (1, "validation", "tab:orange")):
        rows = rescue[split == value]
        stats = np.array([bootstrap_ci(rows[:, layer]) for layer in layers])
        ax.plot(layers, stats[:, 0], marker="o", color=color, label=f"{label} (n={len(rows)})")
        ax.fill_between(layers, stats[:, 1], stats[:, 2], color=color, alpha=0.2)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.axvline(selected, color="gray", linestyle="--", label=f"selected layer {selected}")
    site = f["layer_sweep/rescue"].attrs.get("site", "moe")
    ax.set_xticks(layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("rescue  D(patched) - D(noised)")
    ax.set_title(f"Layer sweep: restore {site} output at the final position")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def check_no_overlap(fig, out):
    """Fail if any two texts of one axes (title, tick labels, annotations) overlap."""
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        texts = [ax.title] + list(ax.texts) + ax.get_xticklabels()
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_visible() and t.get_text()]
        for i, (a, box_a) in enumerate(boxes):
            for b, box_b in boxes[i + 1:]:
                if box_a.overlaps(box_b):
                    sys.exit(f"plot_results: in {out}, the text {a!r} overlaps {b!r}")


def plot_experts(f, out):
    layer = int(f["experts"].attrs["selected_layer"])
    selected = int(f["experts"].attrs["selected_expert"])
    group = f[f"experts/layer_{layer}"]
    rescue, active = group["rescue"][:], group["clean_active"][:]
    counts = active.sum(axis=0)
    experts = [e for e in range(rescue.shape[1]) if counts[e] > 0]
    data = [rescue[active[:, e] > 0, e] for e in experts]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(experts)), 4.4))
    # The case counts go under each expert's tick, never above the axes where the title is.
    ax.boxplot(data, labels=[f"{e}\nn={int(counts[e])}" for e in experts], showfliers=False)
    for i, (e, values) in enumerate(zip(experts, data), start=1):
        jitter = np.random.default_rng(e).uniform(-0.15, 0.15, len(values))
        ax.scatter(i + jitter, values, s=8, alpha=0.5, color="tab:red" if e == selected else "tab:blue")
    ax.tick_params(axis="x", labelsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"expert at layer {layer} (selected: {selected}, red); n = cases where clean-active")
    ax.set_ylabel("single-expert rescue (cases where clean-active)")
    ax.set_title("Expert rescues at the selected layer")
    fig.tight_layout()
    check_no_overlap(fig, out)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def traced_layers(f):
    """Layers whose experts were traced, ascending."""
    if "experts" not in f:
        return []
    return sorted(int(k[len("layer_"):]) for k in f["experts"] if k.startswith("layer_") and "rescue" in f["experts"][k])


def plot_expert_layers(f, out, layers):
    """Layer x expert mean rescue over all cases, counted 0 where the expert is not clean-active (the
    protocol's selection convention); the best candidate of each layer (chosen on discovery) boxed."""
    num_experts = f[f"experts/layer_{layers[0]}/rescue"].shape[1]
    grid = np.zeros((len(layers), num_experts))
    for row, layer in enumerate(layers):
        rescue = f[f"experts/layer_{layer}/rescue"][:]
        active = f[f"experts/layer_{layer}/clean_active"][:] > 0
        grid[row] = np.where(active & np.isfinite(rescue), rescue, 0.0).mean(axis=0)
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * num_experts + 2), max(3, 0.45 * len(layers) + 1.5)))
    limit = max(np.nanmax(np.abs(grid)), 1e-12)
    im = ax.imshow(grid, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, origin="lower")
    for row, layer in enumerate(layers):
        key = f"experts/layer_{layer}/validation"
        best = int(f[key].attrs.get("best_expert", -1)) if key in f else -1
        if best >= 0:
            ax.add_patch(plt.Rectangle((best - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.5))
    ax.set_xticks(range(num_experts))
    ax.set_yticks(range(len(layers)))
    ax.set_yticklabels([str(layer) for layer in layers])
    ax.set_xlabel("expert")
    ax.set_ylabel("layer")
    ax.set_title("Mean single-expert rescue by layer (0 where not clean-active; box: best candidate)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="rescue")
    fig.tight_layout()
    check_no_overlap(fig, out)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def token_labels(f, row, case, T):
    """Decoded token texts of heat-map row `row` (ids when the file has no texts), subject marked *."""
    s0, s1 = f["cases/subject_span"][case]
    if "heatmap/token_text" in f:
        width = int(f["heatmap/token_text"].attrs["tokens"])
        texts = [t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t)
                 for t in f["heatmap/token_text"][row * width:row * width + T]]
    else:
        texts = [str(t) for t in f["cases/token_ids"][case][:T]]
    return [("*" if s0 <= t < s1 else "") + repr(texts[t])[1:-1] for t in range(T)], (s0, s1)


def plot_heatmaps(f, out):
    sites = [s for s in ("hidden", "attn", "moe") if f"heatmap/{s}" in f]
    index = f["heatmap/case_index"][:]
    num_tokens = f["cases/num_tokens"][:]
    n = len(index)
    fig, axes = plt.subplots(n, len(sites), figsize=(4.4 * len(sites), 2.8 * n), squeeze=False)
    for row, case in enumerate(index):
        T = int(num_tokens[case])
        labels, (s0, s1) = token_labels(f, row, case, T)
        for col, site in enumerate(sites):
            ds = f[f"heatmap/{site}"]
            layers, tokens = int(ds.attrs["layers"]), int(ds.attrs["tokens"])
            grid = ds[row].reshape(layers, tokens)[:, :T].T  # tokens x layers
            ax = axes[row][col]
            im = ax.imshow(grid, aspect="auto", cmap={"hidden": "Purples", "attn": "Reds", "moe": "Greens"}[site])
            ax.set_yticks(range(T))
            ax.set_yticklabels(labels, fontsize=6)
            for t, tick in enumerate(ax.get_yticklabels()):
                if s0 <= t < s1:
                    tick.set_fontweight("bold")
            ax.set_xlabel("layer")
            ax.set_title(f"case {int(f['cases/case_id'][case])}: restore {site}", fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    check_no_overlap(fig, out)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def text(value):
    """An HDF5 string as str (h5py returns bytes or str depending on how it was stored)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def summary(f, path):
    """(n, mean, ci_low, ci_high) of a summary record, or None when it is not in the file."""
    if path not in f:
        return None
    a = f[path].attrs
    return int(a["n"]), float(a["mean"]), float(a["ci_low"]), float(a["ci_high"])


def plot_localize_contrast(f, out):
    root = f["localize"]
    layers, experts = int(root.attrs["layers"]), int(root.attrs["experts"])
    effect = f["localize/contrast/effect"][:].reshape(layers, experts)
    fig, ax = plt.subplots(figsize=(min(18, max(6, 0.35 * experts + 2)), min(14, max(3, 0.3 * layers + 1.8))))
    finite = effect[np.isfinite(effect)]
    limit = max(float(np.abs(finite).max()) if finite.size else 0.0, 1e-12)
    im = ax.imshow(effect, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, origin="lower",
                   interpolation="nearest")
    xlabel = "expert"
    if "localize/conditions/chosen/experts" in f:
        pairs = f["localize/conditions/chosen/experts"][:].reshape(-1, 2)
        ax.scatter(pairs[:, 1], pairs[:, 0], marker="s", s=60 if experts <= 64 else 30, facecolors="none",
                   edgecolors="black", linewidths=1.2)
        xlabel = f"expert  (squares: the {len(pairs)} deactivated experts of the chosen set)"
    if experts <= 32:
        ax.set_xticks(range(experts))
    if layers <= 32:
        ax.set_yticks(range(layers))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("layer")
    stat = text(root.attrs.get("statistic", ""))
    ax.set_title(f"Router contrast on discovery pairs: effect of {stat} (success - failure)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="effect")
    fig.tight_layout()
    check_no_overlap(fig, out)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_localize_accuracy(f, out):
    languages = [text(v) for v in f["localize/languages"][:]] + ["overall"]
    series = (("asked", "all asked pairs", "tab:gray"), ("validation_before", "validation, before", "tab:blue"),
              ("validation_after", "validation, chosen deactivated", "tab:red"))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(min(20, max(6, 0.45 * len(languages) + 3)), 4.4))
    x = np.arange(len(languages))
    for k, (name, label, color) in enumerate(series):
        rows = [summary(f, f"localize/accuracy/{lang}/{name}") for lang in languages]
        mean = np.array([r[1] if r else np.nan for r in rows])
        low = np.array([r[2] if r else np.nan for r in rows])
        high = np.array([r[3] if r else np.nan for r in rows])
        err = np.vstack([np.clip(mean - low, 0, None), np.clip(high - mean, 0, None)])
        ax.bar(x + (k - 1) * width, mean, width, color=color, label=label,
               yerr=np.where(np.isfinite(err), err, 0), capsize=2)
    ax.set_xticks(x)
    ax.set_xticklabels(languages, rotation=90 if len(languages) > 12 else 0, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (share answered correctly)")
    ax.set_title("Accuracy per language before and with the chosen experts deactivated", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    check_no_overlap(fig, out)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_localize_curve(f, out):
    points = []
    for name in f["localize/curve"]:
        if name.startswith("n_") and name[2:].isdigit():
            points.append((int(name[2:]),) + summary(f, f"localize/curve/{name}"))
    points.sort()
    n = np.array([p[0] for p in points], dtype=float)
    mean, low, high = (np.array([p[k] for p in points]) for k in (2, 3, 4))
    fig, ax = plt.subplots(figsize=(7, 4.4))
    ax.plot(n, mean, marker="o", color="tab:red", label="global top N deactivated")
    ax.fill_between(n, low, high, color="tab:red", alpha=0.2)
    for name, label, color in (("random", "random control (chosen size)", "tab:gray"),
                               ("popular", "popular-expert control", "tab:green")):
        s = summary(f, f"localize/effect/{name}")
        if s and np.isfinite(s[1]):
            ax.axhline(s[1], color=color, linestyle="--", label=label)
            ax.axhspan(s[2], s[3], color=color, alpha=0.12)
    chosen = f["localize/conditions/chosen/experts"].shape[0] // 2 if "localize/conditions/chosen/experts" in f else 0
    if chosen:
        ax.axvline(chosen, color="black", linewidth=0.8, linestyle=":", label=f"chosen set size {chosen}")
    if len(n) and n.min() > 0:
        ax.set_xscale("log")
        ax.set_xticks(n)
        ax.set_xticklabels([str(int(v)) for v in n])
        ax.minorticks_off()
    ax.set_ylim(-0.03, 1.05)  # points at 0 stay visible
    ax.set_xlabel("experts deactivated (N)")
    ax.set_ylabel("previously correct pairs turned wrong")
    ax.set_title("Deactivation effect against N on validation pairs (95% bootstrap bands)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    check_no_overlap(fig, out)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_localize(f, stem, path):
    """The three figures of a localize file, each when its stage is in the file; returns the paths."""
    written = []
    if "localize/contrast/effect" in f:
        plot_localize_contrast(f, stem + ".contrast.png")
        written.append(stem + ".contrast.png")
    if "localize/accuracy" in f:
        plot_localize_accuracy(f, stem + ".accuracy.png")
        written.append(stem + ".accuracy.png")
    if "localize/curve" in f and any(k.startswith("n_") for k in f["localize/curve"]):
        plot_localize_curve(f, stem + ".curve.png")
        written.append(stem + ".curve.png")
    if not written:
        sys.exit(f"plot_results: {path} has no finished localisation stage yet (no contrast, accuracy or curve)")
    return written


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="results file written by `moetrace run` or `moetrace localize`")
    parser.add_argument("--out-dir", help="folder for the PNGs (default: beside the results file)")
    args = parser.parse_args(argv)
    if not os.path.exists(args.results):
        sys.exit(f"plot_results: {args.results} does not exist")
    out_dir = args.out_dir or os.path.dirname(os.path.abspath(args.results))
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, os.path.splitext(os.path.basename(args.results))[0])
    written = []
    with h5py.File(args.results, "r") as f:
        if "localize" in f:
            for path in plot_localize(f, stem, args.results):
                print(path)
            return
        if "layer_sweep/rescue" not in f or "selected_layer" not in f["layer_sweep"].attrs:
            sys.exit(f"plot_results: {args.results} has no finished layer sweep yet")
        plot_layer_sweep(f, stem + ".layer_sweep.png")
        written.append(stem + ".layer_sweep.png")
        if "experts" in f and int(f["experts"].attrs.get("selected_expert", -1)) >= 0:
            plot_experts(f, stem + ".experts.png")
            written.append(stem + ".experts.png")
        layers = traced_layers(f)
        if len(layers) > 1:
            plot_expert_layers(f, stem + ".expert_layers.png", layers)
            written.append(stem + ".expert_layers.png")
        if "heatmap/case_index" in f:
            plot_heatmaps(f, stem + ".heatmap.png")
            written.append(stem + ".heatmap.png")
    for path in written:
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
