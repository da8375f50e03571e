#!/usr/bin/env python3
"""SVG loss curves from run.py's results.json: training loss (moving average over 10 steps) and
validation loss against the step, mean over the seeds, one colour per method (shaded: min..max
over seeds for validation). Plain SVG, no plotting library.

usage: plot.py RESULTS.json OUT.svg
"""
import json
import sys

import numpy as np

COLORS = {"lora": "#1f77b4", "pissa": "#d62728", "milora": "#9467bd", "dota": "#2ca02c",
          "qpissa": "#ff7f0e", "qlora": "#17becf"}
DASH = {"qpissa": "6,3", "qlora": "6,3"}
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 460, 300, 56, 12, 28, 40


def moving_average(x, k):
    c = np.cumsum(np.insert(np.asarray(x, float), 0, 0.0))
    out = (c[k:] - c[:-k]) / k
    return np.concatenate([np.asarray(x[: k - 1], float).cumsum() / np.arange(1, k), out])


def panel(x0, title, series, bands, xmax, ylo, yhi):
    """series: [(method, xs, ys)], bands: [(method, xs, lo, hi)]."""
    def sx(x):
        return x0 + PAD_L + (W - PAD_L - PAD_R) * x / xmax

    def sy(y):
        return PAD_T + (H - PAD_T - PAD_B) * (yhi - y) / (yhi - ylo)

    out = [f'<text x="{x0 + W / 2}" y="16" text-anchor="middle" font-size="13">{title}</text>',
           f'<rect x="{x0 + PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" height="{H - PAD_T - PAD_B}" '
           'fill="none" stroke="#888"/>']
    for t in np.linspace(ylo, yhi, 6):
        out.append(f'<text x="{x0 + PAD_L - 4}" y="{sy(t) + 4:.1f}" text-anchor="end" font-size="10">{t:.2f}</text>')
        out.append(f'<line x1="{x0 + PAD_L}" x2="{x0 + W - PAD_R}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>')
    for t in np.linspace(0, xmax, 6):
        out.append(f'<text x="{sx(t):.1f}" y="{H - PAD_B + 14}" text-anchor="middle" font-size="10">{t:.0f}</text>')
    out.append(f'<text x="{x0 + W / 2}" y="{H - 6}" text-anchor="middle" font-size="11">step</text>')
    for m, xs, lo, hi in bands:
        pts = [f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, hi)] + \
              [f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs[::-1], lo[::-1])]
        out.append(f'<polygon points="{" ".join(pts)}" fill="{COLORS[m]}" opacity="0.15"/>')
    for m, xs, ys in series:
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys))
        dash = f' stroke-dasharray="{DASH[m]}"' if m in DASH else ""
        out.append(f'<polyline points="{pts}" fill="none" stroke="{COLORS[m]}" stroke-width="1.6"{dash}/>')
    return out


def main():
    results = json.load(open(sys.argv[1]))
    by = {}
    for r in results:
        by.setdefault(r["method"], []).append(r)
    methods = [m for m in COLORS if m in by]
    train, val, bands = [], [], []
    all_train, all_val = [], []
    for m in methods:
        rs = by[m]
        tl = np.mean([moving_average(r["train_loss"], 10) for r in rs], axis=0)
        train.append((m, np.arange(1, len(tl) + 1), tl))
        all_train += list(tl[5:])
        steps = [s for s, _ in rs[0]["val_loss"]]
        v = np.array([[x for _, x in r["val_loss"]] for r in rs])
        val.append((m, steps, v.mean(axis=0)))
        bands.append((m, steps, v.min(axis=0), v.max(axis=0)))
        all_val += list(v.reshape(-1))
    xmax = len(results[0]["train_loss"])
    s = results[0]["settings"]
    body = panel(0, "training loss (moving average, 10 steps)", train, [], xmax,
                 np.floor(min(all_train) * 20) / 20, np.ceil(max(all_train) * 20) / 20)
    body += panel(W, "validation loss (fortunes, held out)", val, bands, xmax,
                  np.floor(min(all_val) * 20) / 20, np.ceil(max(all_val) * 20) / 20)
    legend = []
    for i, m in enumerate(methods):
        x = 70 + i * 130
        dash = f' stroke-dasharray="{DASH[m]}"' if m in DASH else ""
        legend.append(f'<line x1="{x}" x2="{x + 24}" y1="{H + 14}" y2="{H + 14}" stroke="{COLORS[m]}" '
                      f'stroke-width="2"{dash}/>')
        legend.append(f'<text x="{x + 30}" y="{H + 18}" font-size="11">{m} ({by[m][0]["trainable"]:,})</text>')
    caption = (f"bytegpt-base fine-tuned on fortunes text: rank {s['rank']} (DoTA: same budget), lr {s['lr']}, "
               f"batch {s['batch'][0]}x{s['batch'][1]}, {len(by[methods[0]])} seeds; mean over seeds, "
               "validation band min..max; trainable parameters in brackets")
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H + 44}" '
           f'font-family="sans-serif">', '<rect width="100%" height="100%" fill="white"/>', *body, *legend,
           f'<text x="{W}" y="{H + 38}" text-anchor="middle" font-size="10">{caption}</text>', "</svg>"]
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
