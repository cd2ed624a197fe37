#!/usr/bin/env python3
"""Plots of a moetrace results file (Debian's python3-h5py and python3-matplotlib).

  python3 tools/plot_results.py results/demo.h5 [--out-dir DIR]

Writes, beside the results file unless --out-dir is given:
  <stem>.layer_sweep.png   mean rescue by layer with 95% bootstrap intervals (discovery and validation)
  <stem>.experts.png       rescue distribution of every clean-active expert at the selected layer
  <stem>.heatmap.png       ROME-style token x layer heat maps (hidden, attn, moe), when they were run
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


def plot_experts(f, out):
    layer = int(f["experts"].attrs["selected_layer"])
    selected = int(f["experts"].attrs["selected_expert"])
    group = f[f"experts/layer_{layer}"]
    rescue, active = group["rescue"][:], group["clean_active"][:]
    counts = active.sum(axis=0)
    experts = [e for e in range(rescue.shape[1]) if counts[e] > 0]
    data = [rescue[active[:, e] > 0, e] for e in experts]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(experts)), 4))
    ax.boxplot(data, labels=[str(e) for e in experts], showfliers=False)
    for i, (e, values) in enumerate(zip(experts, data), start=1):
        jitter = np.random.default_rng(e).uniform(-0.15, 0.15, len(values))
        ax.scatter(i + jitter, values, s=8, alpha=0.5, color="tab:red" if e == selected else "tab:blue")
        ax.text(i, ax.get_ylim()[1], f"n={int(counts[e])}", ha="center", va="bottom", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"expert at layer {layer} (selected: {selected}, red)")
    ax.set_ylabel("single-expert rescue (cases where clean-active)")
    ax.set_title("Expert rescues at the selected layer")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_heatmaps(f, out):
    sites = [s for s in ("hidden", "attn", "moe") if f"heatmap/{s}" in f]
    index = f["heatmap/case_index"][:]
    num_tokens = f["cases/num_tokens"][:]
    token_ids = f["cases/token_ids"][:]
    n = len(index)
    fig, axes = plt.subplots(n, len(sites), figsize=(4 * len(sites), 2.6 * n), squeeze=False)
    for row, case in enumerate(index):
        T = int(num_tokens[case])
        s0, s1 = f["cases/subject_span"][case]
        for col, site in enumerate(sites):
            ds = f[f"heatmap/{site}"]
            layers, tokens = int(ds.attrs["layers"]), int(ds.attrs["tokens"])
            grid = ds[row].reshape(layers, tokens)[:, :T].T  # tokens x layers
            ax = axes[row][col]
            im = ax.imshow(grid, aspect="auto", cmap={"hidden": "Purples", "attn": "Reds", "moe": "Greens"}[site])
            ax.set_yticks(range(T))
            ax.set_yticklabels([("*" if s0 <= t < s1 else "") + str(token_ids[case][t]) for t in range(T)], fontsize=6)
            ax.set_xlabel("layer")
            ax.set_title(f"case {int(f['cases/case_id'][case])}: restore {site}", fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="results file written by `moetrace run`")
    parser.add_argument("--out-dir", help="folder for the PNGs (default: beside the results file)")
    args = parser.parse_args(argv)
    if not os.path.exists(args.results):
        sys.exit(f"plot_results: {args.results} does not exist")
    out_dir = args.out_dir or os.path.dirname(os.path.abspath(args.results))
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, os.path.splitext(os.path.basename(args.results))[0])
    written = []
    with h5py.File(args.results, "r") as f:
        if "layer_sweep/rescue" not in f or "selected_layer" not in f["layer_sweep"].attrs:
            sys.exit(f"plot_results: {args.results} has no finished layer sweep yet")
        plot_layer_sweep(f, stem + ".layer_sweep.png")
        written.append(stem + ".layer_sweep.png")
        if "experts" in f and int(f["experts"].attrs.get("selected_expert", -1)) >= 0:
            plot_experts(f, stem + ".experts.png")
            written.append(stem + ".experts.png")
        if "heatmap/case_index" in f:
            plot_heatmaps(f, stem + ".heatmap.png")
            written.append(stem + ".heatmap.png")
    for path in written:
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
