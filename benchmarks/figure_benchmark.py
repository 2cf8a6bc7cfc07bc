"""Where a provider report's chart time goes: drawing, and encoding the PNG (ours against Pillow's).

    PYTHONPATH=src python benchmarks/figure_benchmark.py [--bundle DIR | --generate PROVIDERS]
        [--provider CODE ...] [--repeat 3]

The provider notebook's code cells run in this process (no kernel; what would be displayed is
dropped), for each provider and both audiences. For every figure the benchmark records the CPU
of drawing it (``savefig`` to raw pixels, as the report does), then encodes the same pixels with
:func:`auditreport.presentation.png.encode_rgb_png` and with Pillow's PNG writer (what the project
used before), alternating, best of ``--repeat``. It prints CPU per report and the PNG bytes.
Nothing is asserted: compare the columns of one run.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))


def notebook_cells() -> list[str]:
    """The provider notebook's code cells after the parameters cell."""
    notebook = json.loads((REPO / "notebooks" / "provider.ipynb").read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    return ["".join(cell["source"]) for cell in code
            if "parameters" not in cell.get("metadata", {}).get("tags", [])]


def best_cpu(run, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.process_time()
        result = run()
        best = min(best, time.process_time() - start)
    return best, result


def measure_report(bundle: Path, provider: str, audience: str, repeat: int) -> dict[str, float]:
    import numpy as np
    from PIL import Image

    import auditreport.presentation.display as shown
    from auditreport.presentation import png

    totals = {"cells": 0.0, "draw": 0.0, "ours": 0.0, "pillow": 0.0, "ours_kB": 0.0, "pillow_kB": 0.0,
              "figures": 0, "trials": 0.0}

    def timed_figure_png(fig, dpi):
        sink = png._PixelSink()
        start = time.process_time()
        fig.savefig(sink, format="raw", dpi=dpi)
        totals["draw"] += time.process_time() - start
        rgb = np.ascontiguousarray(sink.pixels[..., :3])

        def pillow() -> bytes:
            out = io.BytesIO()
            Image.fromarray(rgb, "RGB").save(out, format="PNG", dpi=(dpi, dpi))
            return out.getvalue()

        trials_started = time.process_time()
        seconds, ours = best_cpu(lambda: png.encode_rgb_png(rgb, dpi), repeat)
        totals["ours"] += seconds
        totals["ours_kB"] += len(ours) / 1024
        seconds, theirs = best_cpu(pillow, repeat)
        totals["pillow"] += seconds
        totals["pillow_kB"] += len(theirs) / 1024
        totals["trials"] += time.process_time() - trials_started
        totals["figures"] += 1
        return ours

    original, shown.display = shown.display, lambda *args, **kwargs: None
    png_writer, png.figure_png = png.figure_png, timed_figure_png
    try:
        namespace = {"bundle_dir": str(bundle), "audience": audience, "provider": provider}
        for source in notebook_cells():
            start = time.process_time()
            exec(source, namespace)  # noqa: S102 - the project's own notebook
            totals["cells"] += time.process_time() - start
    finally:
        shown.display, png.figure_png = original, png_writer
    # The cells' time includes the encoding trials; leave them out, and count one encoding of ours instead.
    totals["cells"] -= totals["trials"] - totals["ours"]
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="a built audit's national results bundle")
    parser.add_argument("--generate", type=int, metavar="PROVIDERS", default=6)
    parser.add_argument("--provider", action="append", help="provider code (default: the first three)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    bundle = args.bundle
    if bundle is None:
        from pdf_benchmark import generate

        work = Path(tempfile.mkdtemp(prefix="auditreport-figbench-"))
        generate(args.generate, work)
        bundle = next(work.glob("reports/*/*/bundle"))
    from auditreport.bundle import load_bundle

    indicators = load_bundle(bundle).indicators
    codes = args.provider or sorted(set(indicators.loc[indicators["level"] == "provider", "unit_id"]))[:3]
    measure_report(bundle, codes[0], "local", 1)  # warm-up: imports, fonts
    print(f"CPU seconds per report (figure encodings best of {args.repeat}), bundle {bundle}")
    print(f"{'report':<16} {'figs':>4} {'cells':>6} {'draw':>6} {'png ours':>9} {'png Pillow':>11} "
          f"{'kB ours':>8} {'kB Pillow':>10}")
    for code in codes:
        for audience in ("local", "public"):
            t = measure_report(bundle, code, audience, args.repeat)
            print(f"{code + ' ' + audience:<16} {t['figures']:>4} {t['cells']:6.3f} {t['draw']:6.3f} "
                  f"{t['ours']:9.3f} {t['pillow']:11.3f} {t['ours_kB']:8.0f} {t['pillow_kB']:10.0f}", flush=True)


if __name__ == "__main__":
    main()
