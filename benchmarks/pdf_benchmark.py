"""How much CPU does html_to_pdf take per report, against WeasyPrint used the plain way?

    PYTHONPATH=src python benchmarks/pdf_benchmark.py [REPORT.html | BEFORE.html,AFTER.html ...]
        [--repeat 3] [--generate PROVIDERS] [--workdir DIR]

Each argument is a report HTML file, or two separated by a comma: the HTML built before this
change (RGBA figures, flex case-mix tables) for the old path and the HTML built now for the
new path, so the figures include what changed in the HTML too. With --generate (or no
files) a small synthetic audit is built with the current code and its first provider's
local and public reports and the national report are used for both paths.

Old path: ``HTML(string=html).write_pdf(...)`` with WeasyPrint as shipped (the PNG
passthrough is taken out for it). New path: :func:`auditreport.rendering.pdf.html_to_pdf`.
Rounds alternate old/new after one warm-up each, so machine noise hits both sides alike.
CPU is this process's user+sys time (WeasyPrint runs in-process). Page counts and the
text of every page (PDFium, leaving out the provenance lines with the build time and commit,
which differ between two builds) are compared too. Nothing is asserted: compare ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


@contextlib.contextmanager
def weasyprint_as_shipped() -> Iterator[None]:
    """Temporarily undo the PNG passthrough that html_to_pdf installs on WeasyPrint."""
    from weasyprint.images import RasterImage

    hook = RasterImage.get_x_object
    RasterImage.get_x_object = getattr(hook, "__wrapped__", hook)
    try:
        yield
    finally:
        RasterImage.get_x_object = hook


def old_path(html: str, out: Path) -> None:
    """The straightforward call the project used before."""
    from weasyprint import HTML

    with weasyprint_as_shipped():
        HTML(string=html, base_url=str(out.parent)).write_pdf(out)


def new_path(html: str, out: Path) -> None:
    from auditreport.rendering.pdf import html_to_pdf

    html_to_pdf(html, out)


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

    from auditreport.data.synthetic import SyntheticSpec, write
    from auditreport.pipeline import build

    providers = max(providers, 4)  # the generator needs a few providers to pick outliers from
    paths = write(SyntheticSpec(records=max(2000, providers * 500), providers=providers,
                                consultants=providers * 4), folder / "data")
    definition = yaml.safe_load((REPO / "params" / "synthetic.yaml").read_text())
    definition["data"]["source"] = str(paths["records"])
    definition["data"]["providers"] = str(paths["providers"])
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
    old_html, new_html = before.read_text(encoding="utf-8"), after.read_text(encoding="utf-8")
    old_pdf, new_pdf = work / "old.pdf", work / "new.pdf"
    old_path(old_html, old_pdf)  # warm-up: fonts, imports, first-use caches
    new_path(new_html, new_pdf)
    times: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(repeat):
        for name, run, html, out in (("old", old_path, old_html, old_pdf), ("new", new_path, new_html, new_pdf)):
            start = time.process_time()
            run(html, out)
            times[name].append(time.process_time() - start)
    old_text, new_text = pdf_pages(old_pdf), pdf_pages(new_pdf)
    return {"label": label, "old": statistics.median(times["old"]), "new": statistics.median(times["new"]),
            "pages": (len(old_text), len(new_text)), "same_text": old_text == new_text,
            "bytes": (old_pdf.stat().st_size, new_pdf.stat().st_size)}


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

    print(f"CPU seconds per PDF (median of {args.repeat}, old/new alternating), work in {work}")
    print(f"{'report':<44} {'old s':>7} {'new s':>7} {'new/old':>8} {'pages':>7} {'text':>6} {'MB old->new':>13}")
    for label, before, after in pairs:
        r = measure(label, before, after, args.repeat, work)
        pages = f"{r['pages'][0]}/{r['pages'][1]}"
        size = f"{r['bytes'][0] / 1e6:.2f}->{r['bytes'][1] / 1e6:.2f}"
        print(f"{label:<44} {r['old']:7.3f} {r['new']:7.3f} {r['new'] / r['old']:8.2f} {pages:>7} "
              f"{'same' if r['same_text'] else 'DIFF':>6} {size:>13}", flush=True)


if __name__ == "__main__":
    main()
