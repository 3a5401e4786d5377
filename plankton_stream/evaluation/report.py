"""The evaluation report: PNG plots and a short markdown summary in one directory.

- accuracy.png   accuracy vs gallery size per mode, mean +- std over the random galleries
- confusion.png  combined-mode confusion matrix (largest gallery, first draw)
- embedding.png  2-D map (PCA) of the joint-space embeddings, coloured by class
- summary.md     the headline numbers and what they were measured on
Needs matplotlib (`pip install 'plankton-stream[report]'`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from plankton_stream.errors import PlanktonStreamError

HEADLINE = ("combined", "profile", "image", "listmode", "baseline", "profile_nonimaged", "random")


def write_report(ev, out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlanktonStreamError("the report needs matplotlib: pip install 'plankton-stream[report]'") from exc
    out.mkdir(parents=True, exist_ok=True)
    paths = [_accuracy(plt, ev.summary, out / "accuracy.png"),
             _confusion(plt, ev.outcome.confusion, out / "confusion.png"),
             _embedding(plt, ev, out / "embedding.png")]
    (out / "evaluation.json").write_text(json.dumps(ev.summary, indent=2) + "\n")
    (out / "summary.md").write_text(summary_markdown(ev.summary))
    return [p for p in paths if p] + [out / "summary.md", out / "evaluation.json"]


def _accuracy(plt, s: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode in HEADLINE:
        per = s["results"].get(mode)
        if not per:
            continue
        shots = sorted(per, key=int)
        m = [per[k]["mean"] for k in shots]
        e = [per[k]["std"] for k in shots]
        ax.errorbar([int(k) for k in shots], m, yerr=e, marker="o", capsize=3, label=mode)
    ax.set_xscale("log")
    ax.set_xlabel("gallery size (labelled particles per class)")
    ax.set_ylabel(f"accuracy (k = {s['k']})")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _confusion(plt, c: dict, path: Path) -> Path | None:
    if not c:
        return None
    names = c["classes"]
    m = np.zeros((len(names), len(names)))
    for t, p in zip(c["truth"], c["predicted"]):
        if p in names:
            m[names.index(t), names.index(p)] += 1
    m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(names)):
        for j in range(len(names)):
            if m[i, j] >= 0.01:
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if m[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("combined, row-normalised")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _embedding(plt, ev, path: Path) -> Path | None:
    e = ev.embeddings
    rows = np.flatnonzero((ev.labels >= 0) & e.has_image)
    if len(rows) < 3 or e.profile is None or e.image is None:
        return None
    rows = np.random.default_rng(0).permutation(rows)[:3000]
    z = np.concatenate([e.image[rows], e.profile[rows]], axis=1)
    z = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    xy = z @ vt[:2].T
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab20")
    for i, name in enumerate(ev.classes):
        sel = ev.labels[rows] == i
        ax.scatter(xy[sel, 0], xy[sel, 1], s=4, color=cmap(i % 20), label=name)
    ax.legend(fontsize=7, markerscale=3, loc="best")
    ax.set_title("joint space (image + profile embeddings), first two principal components")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _gain(res: dict, shots: str) -> float:
    best = max(res["image"][shots]["mean"], res["profile"][shots]["mean"])
    return res["combined"][shots]["mean"] - best


def summary_markdown(s: dict) -> str:
    shots = sorted({k for per in s["results"].values() for k in per}, key=int)
    lines = ["# Evaluation summary", "",
             f"Model `{s['model']}`; baseline `{s['baseline']}`; k = {s['k']}; "
             f"{s['protocol']['repeats']} random galleries per size; fusion `{s['fusion']['chosen']}`.",
             f"Data: {s['data']['particles']} particles in {s['data']['files']} files, "
             f"{s['data']['imaged']} imaged, {s['data']['labelled']} labelled.", "",
             "| mode | " + " | ".join(f"{k} shots" for k in shots) + " |",
             "|---|" + "---|" * len(shots)]
    for mode, per in s["results"].items():
        cells = [f"{per[k]['mean']:.3f} ± {per[k]['std']:.3f}" if per.get(k, {}).get("mean") is not None
                 else "–" for k in shots]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    lines += ["", "Image, profile, combined, listmode, baseline and random share one query set "
              "(imaged particles); `profile_nonimaged` classifies particles that have no image at "
              "all; `listmode` uses only the listmode parameters (what exports without pulses or "
              "images are classified by).", ""]
    if s.get("combined_minus_best_single"):
        lines.append("Combined minus the best single modality: "
                     + ", ".join(f"{k} shots {v:+.3f}" for k, v in s["combined_minus_best_single"].items()))
    for k, res in (s.get("results_by_k") or {}).items():
        if str(k) != str(s["k"]) and {"combined", "image", "profile"} <= res.keys():
            lines.append(f"At k = {k}, combined minus the best single modality: "
                         + ", ".join(f"{n} shots {_gain(res, n):+.3f}" for n in res["combined"]))
    for k, per in (s["fusion"].get("minus_best_rule") or {}).items():
        if per:
            lines.append(f"At k = {k}, fusion `{s['fusion']['chosen']}` minus the best fixed rule at each size: "
                         + ", ".join(f"{n} shots {v:+.3f}" for n, v in per.items()))
    if s.get("combined_minus_baseline"):
        lines.append("Combined minus the image-only baseline: "
                     + ", ".join(f"{k} shots {v:+.3f}" for k, v in s["combined_minus_baseline"].items()))
    if s.get("same_files"):
        lines += ["", f"Galleries from other files ({s['gallery_data']['particles']} particles in "
                  f"{s['gallery_data']['files']} files; e.g. another instrument), queries from the data "
                  "above. The same protocol with gallery and queries from the gallery's own files:", "",
                  "| mode | " + " | ".join(f"{k} shots" for k in shots) + " |", "|---|" + "---|" * len(shots)]
        for mode in ("combined", "image", "profile"):
            per = s["same_files"].get(mode, {})
            lines.append(f"| {mode} (same files) | " + " | ".join(
                f"{per[k]['mean']:.3f}" if per.get(k, {}).get("mean") is not None else "–" for k in shots) + " |")
        lines.append("")
        lines.append("Combined, other files minus same files: "
                     + ", ".join(f"{k} shots {v:+.3f}" for k, v in s["cross_minus_same"].items()))
    if s.get("before"):
        lines += ["", f"Against `{s['before']['model']}` on the same data (after minus before):"]
        for mode, per in s["before"]["after_minus_before"].items():
            lines.append(f"- {mode}: " + ", ".join(f"{k} shots {v:+.3f}" for k, v in per.items()))
    if s.get("pairs"):
        lines += ["", f"Within class pairs ({s['pairs']['shots']} shots), trained vs random weights:", "",
                  "| pair | profile trained | profile random | combined trained | combined random |",
                  "|---|---|---|---|---|"]
        for pair, row in s["pairs"]["table"].items():
            lines.append(f"| {pair} | {_fmt(row['profile']['trained'])} | {_fmt(row['profile']['random'])} | "
                         f"{_fmt(row['combined']['trained'])} | {_fmt(row['combined']['random'])} |")
    masked = s["data"].get("masked_channels") or {}
    if masked:
        lines += ["", f"Channels masked (not in the export, classified from the others) in {len(masked)} "
                  "file(s): " + "; ".join(sorted({", ".join(v) for v in masked.values()}))]
    ab = s.get("channels_removed")
    if ab:
        lines += ["", f"Each channel removed from every profile ({ab['shots']} shots; combined / profile "
                  f"accuracy; intact {_pair(ab['intact'])}):", "",
                  "| channel removed | combined | profile | classes that lose most (combined) |", "|---|---|---|---|"]
        for ch, acc in ab["removed"].items():
            worst = sorted(ab["per_class"].get(ch, {}).items(), key=lambda kv: kv[1])[:3]
            lines.append(f"| {ch} | {_fmt(acc['combined'])} | {_fmt(acc['profile'])} | "
                         + ", ".join(f"{c} {d:+.2f}" for c, d in worst if d < 0) + " |")
    os_ = s.get("open_set") or {}
    if os_.get("auroc"):
        lines += ["", f"Open set ({os_['gallery_shots']} shots, {len(os_['held_out'][0])} classes held "
                  f"out per draw): AUROC {os_['auroc']['mean']:.3f} ± {os_['auroc']['std']:.3f}; at the "
                  f"calibrated threshold {os_['unknown_detected']['mean']:.2f} of held-out particles are "
                  f"flagged unknown and {os_['known_rejected']['mean']:.2f} of known ones are."]
    return "\n".join(lines) + "\n"


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _pair(acc: dict) -> str:
    return f"{_fmt(acc.get('combined'))} / {_fmt(acc.get('profile'))}"
