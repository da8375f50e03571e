#!/usr/bin/env python3
"""The HTML reports after issue #22's review (item 11): analyze-spectrum's drift page has a table
of contents, legend entries saying which line style is base and which fine-tuned, a diverging
(signed, clipped) colour scale for the change of alpha, and lists the matrices with intruders
instead of a mostly empty bar chart; velora-init's sweep marks the chosen M and draws dashed
legend swatches for the dashed series."""
import os
import re
import tempfile

import cktest

C = cktest.Checks()


def main():
    sample = os.path.abspath(cktest.SAMPLE)
    ft = cktest.shared_path("bytegpt-ft")
    acts = cktest.shared_path("bytegpt-activations")
    with tempfile.TemporaryDirectory() as tmp:
        if ft:
            out = os.path.join(tmp, "drift")
            p = cktest.run("analyze-spectrum", sample, "--compare", os.path.abspath(ft), "-o", out)
            with open(os.path.join(out, "report.html")) as f:
                html = f.read()
            toc = re.findall(r'<li><a href="#s(\d+)">', html)
            C(p.returncode == 0 and len(toc) >= 5 and all(f'id="s{i}"' in html for i in toc),
              f"table of contents with {len(toc)} working links")
            C(">base</text>" in html and ">fine-tuned</text>" in html and
              'stroke-dasharray="4 2"' in html, "legend entries for base (solid) and fine-tuned "
                                                "(dashed)")
            # The diverging scale: its blue and red ends (the clipped cells), and the caption.
            C("#2166ac" in html and "#b2182b" in html and
              "clipped at ±" in html, "change of alpha on a diverging, clipped scale")
            C("Intruders among the top-" not in html and "matrices have intruder dimensions" in html,
              "intruders listed per matrix (no bar chart)")
        if acts:
            out = os.path.join(tmp, "ve")
            p = cktest.run("velora-init", os.path.abspath(acts), "--groups", "8", "--sweep", "-o",
                           out)
            with open(os.path.join(out, "sweep.html")) as f:
                html = f.read()
            C(p.returncode == 0 and "chosen M = 8" in html and 'stroke-dasharray="4 2"' in html,
              "velora sweep: chosen M marked, dashed legend swatches")
    C.exit()


main()
