"""How much CPU does html_to_pdf take per report, speed-ups on and off, against WeasyPrint used plainly?

    PYTHONPATH=src python benchmarks/pdf_benchmark.py [REPORT.html | BEFORE.html,AFTER.html ...]
        [--repeat 3] [--generate PROVIDERS] [--workdir DIR]

Each argument is a report HTML file, or two separated by a comma: the HTML built before a
change (for example with RGBA figures) for the plain path and the HTML built now for the
other two, so the figures include what changed in the HTML too. With --generate (or no
files) a small synthetic audit is built with the current code and its first provider's
local and public reports and the national report are used for every path.

Three paths, each rendering every file: *plain* is ``HTML(string=html).write_pdf(...)`` with
WeasyPrint as shipped on the BEFORE file (how the project rendered before); *off* is
:func:`auditreport.rendering.pdf.html_to_pdf` with the speed-ups switched off
(:mod:`auditreport.speedups`: only WeasyPrint's public interface, stock image handling) and *on*
is the same with the speed-ups on (the PNG passthrough), both on the AFTER file. Rounds alternate
the paths after one warm-up each, so machine noise hits them alike. CPU is this process's
user+sys time (WeasyPrint runs in-process). Page counts and the text of every page (PDFium,
leaving out the provenance lines with the build time and commit, which differ between two builds)
are compared too. Nothing is asserted: compare ratios. Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def plain_path(html: str, out: Path) -> None:
    """The straightforward call the project used before: WeasyPrint as shipped, nothing shared."""
    from weasyprint import HTML

    from auditreport import speedups

    with speedups.switched(False):  # a passthrough installed earlier hands every image back to WeasyPrint
        HTML(string=html, base_url=str(out.parent)).write_pdf(out)


def off_path(html: str, out: Path) -> None:
    from auditreport import speedups
    from auditreport.rendering.pdf import html_to_pdf

    with speedups.switched(False):
        html_to_pdf(html, out)


def on_path(html: str, out: Path) -> None:
    from auditreport import speedups
    from auditreport.rendering.pdf import html_to_pdf

    with speedups.switched(True):
        html_to_pdf(html, out)


PATHS = {"plain": plain_path, "off": off_path, "on": on_path}


#: Provenance lines that differ between two builds of the same report (build time, git commit).
PROVENANCE = ("Produced ", "Software auditreport")


def pdf_pages(path: Path) -> list[str]:
    """The text of every page, as PDFium extracts it, without the provenance lines."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(path))
    try:
        pages = [document[i].get_textpage().get_text_range() for i in range(len(document))]
    finally:
        document.close()
    return ["\n".join(line for line in page.splitlines() if not line.startswith(PROVENANCE)) for page in pages]


def generate(providers: int, folder: Path) -> list[tuple[str, Path, Path]]:
    """Build a small synthetic audit with the current code; return its report HTML files."""
    import yaml

    from auditreport.data.synthetic import SyntheticSpec, definition_data, write
    from auditreport.pipeline import build

    providers = max(providers, 4)  # the generator needs a few providers to pick outliers from
    paths = write(SyntheticSpec(records=max(2000, providers * 500), providers=providers,
                                consultants=providers * 4), folder / "data")
    definition = yaml.safe_load((REPO / "params" / "synthetic.yaml").read_text())
    definition["data"].update(definition_data(paths))
    audit = folder / "audit.yaml"
    audit.write_text(yaml.safe_dump(definition, sort_keys=False))
    summary = build(audit, folder / "reports", workers=2)
    if summary.failed:
        raise SystemExit(f"building the synthetic audit failed: {[r.name for r in summary.failed]}")
    period = next((folder / "reports").glob("*/*/national")).parent
    provider = sorted((period / "providers").iterdir())[0]
    return [(f"{provider.name} {name}", provider / f"{name}.html", provider / f"{name}.html")
            for name in ("local", "public")] + \
        [("national", period / "national" / "national.html", period / "national" / "national.html")]


def measure(label: str, before: Path, after: Path, repeat: int, work: Path) -> dict:
    htmls = {"plain": before.read_text(encoding="utf-8")}
    htmls["off"] = htmls["on"] = after.read_text(encoding="utf-8")
    pdfs = {name: work / f"{name}.pdf" for name in PATHS}
    for name, run in PATHS.items():  # warm-up: fonts, imports, first-use caches
        run(htmls[name], pdfs[name])
    times: dict[str, list[float]] = {name: [] for name in PATHS}
    for _ in range(repeat):
        for name, run in PATHS.items():
            start = time.process_time()
            run(htmls[name], pdfs[name])
            times[name].append(time.process_time() - start)
    texts = {name: pdf_pages(pdf) for name, pdf in pdfs.items()}
    return {"label": label, **{name: statistics.median(t) for name, t in times.items()},
            "pages": "/".join(str(len(texts[name])) for name in PATHS),
            "same_text": texts["plain"] == texts["off"] == texts["on"],
            "bytes": {name: pdf.stat().st_size for name, pdf in pdfs.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="*", help="REPORT.html or BEFORE.html,AFTER.html")
    parser.add_argument("--repeat", type=int, default=3, help="timed renders per path and file (median)")
    parser.add_argument("--generate", type=int, metavar="PROVIDERS", help="build a synthetic audit of this size")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="auditreport-pdfbench-"))
    work.mkdir(parents=True, exist_ok=True)
    pairs: list[tuple[str, Path, Path]] = []
    for spec in args.reports:
        before, _, after = spec.partition(",")
        pairs.append((Path(before).name if not after else f"{Path(before).name} -> {Path(after).name}",
                      Path(before), Path(after or before)))
    if args.generate or not pairs:
        pairs += generate(args.generate or 4, work / "audit")

    print(f"CPU seconds per PDF (median of {args.repeat}, paths alternating), work in {work}")
    print(f"{'report':<44} {'plain s':>7} {'off s':>7} {'on s':>7} {'on/off':>7} {'on/plain':>8} {'pages':>8} "
          f"{'text':>5} {'MB plain/off/on':>16}")
    for label, before, after in pairs:
        r = measure(label, before, after, args.repeat, work)
        size = "/".join(f"{r['bytes'][name] / 1e6:.2f}" for name in PATHS)
        print(f"{label:<44} {r['plain']:7.3f} {r['off']:7.3f} {r['on']:7.3f} {r['on'] / r['off']:7.2f} "
              f"{r['on'] / r['plain']:8.2f} {r['pages']:>8} {'same' if r['same_text'] else 'DIFF':>5} {size:>16}",
              flush=True)

if __name__ == "__main__":
    main()
