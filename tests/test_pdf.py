"""PDF rendering shortcuts: lifted data URIs, PNG passthrough into the PDF, RGB figure PNGs.

Tests taking ``speedups_on`` run with the third-party speed-ups on and off (stock WeasyPrint image
handling); the guard on the WeasyPrint internal is in tests/test_speedups.py.
"""

from __future__ import annotations

import base64
import io
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from auditreport.presentation.png import encode_rgb_png, figure_png
from auditreport.rendering.pdf import html_to_pdf, lift_data_uris, png_idat


def _png(mode: str, size: tuple[int, int] = (40, 24), **save: object) -> bytes:
    """A small PNG with a gradient (so a wrong stride or predictor would show)."""
    w, h = size
    x = np.arange(w, dtype=np.uint8)[None, :].repeat(h, 0)
    y = np.arange(h, dtype=np.uint8)[:, None].repeat(w, 1)
    rgb = np.stack([x * 5, y * 9, (x + y) * 3], axis=-1).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    if mode == "RGBA":
        image = image.convert("RGBA")
        image.putalpha(Image.fromarray(np.where(x > w // 2, 255, 80).astype(np.uint8), "L"))
    elif mode == "RGBA-opaque":
        image = image.convert("RGBA")
    elif mode == "L":
        image = image.convert("L")
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save)
    return buffer.getvalue()


def _html(png: bytes, copies: int = 1) -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    imgs = "".join(f'<p>figure {i}</p><img src="{uri}" alt="chart">' for i in range(copies))
    return f"<html lang='en-GB'><head><title>Report</title></head><body><h1>Report</h1>{imgs}</body></html>"


def _images(path: Path) -> list[dict]:
    """Every image XObject in the PDF: size, filter, soft mask, and its decoded pixels."""
    from pypdf import PdfReader

    found = []
    for page in PdfReader(path).pages:
        for name, obj in page["/Resources"].get("/XObject", {}).items():
            obj = obj.get_object()
            if obj["/Subtype"] != "/Image":
                continue
            parms = obj.get("/DecodeParms", {})
            found.append({"name": name, "size": (obj["/Width"], obj["/Height"]), "filter": obj.get("/Filter"),
                          "smask": "/SMask" in obj, "colors": parms.get("/Colors"),
                          "raw": obj._data, "pixels": np.asarray(obj.decode_as_image().convert("RGB"))})
    return found


def test_lift_data_uris_round_trip():
    png = _png("RGB")
    html = _html(png, copies=2) + "<img src='data:image/png;base64," + base64.b64encode(_png("P")).decode() + "'>"
    lifted, images = lift_data_uris(html)
    assert "base64" not in lifted and lifted.count("auditreport-image:0") == 2 and "auditreport-image:1" in lifted
    assert images["auditreport-image:0"] == (png, "image/png")
    assert len(images) == 2


def test_pdf_with_lifted_image_contains_it(tmp_path, speedups_on):
    png = _png("RGB")
    out = html_to_pdf(_html(png, copies=2), tmp_path / "r.pdf")
    images = _images(out)
    assert len(images) == 1 and images[0]["size"] == (40, 24)  # two <img>, one embedded image
    assert np.array_equal(images[0]["pixels"], np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))


def test_rgb_png_is_embedded_without_reencoding_only_with_the_speedups(tmp_path, speedups_on):
    """Our PNG writer's stream (unfiltered rows) is not what Pillow would write, so a stream equal to the
    file's own IDAT shows the passthrough; with the speed-ups off WeasyPrint re-encodes it, same pixels."""
    pixels = np.asarray(Image.open(io.BytesIO(_png("RGB"))))
    png = encode_rgb_png(pixels, dpi=100)
    (image,) = _images(html_to_pdf(_html(png), tmp_path / "r.pdf"))
    assert image["filter"] == "/FlateDecode" and image["colors"] == 3 and not image["smask"]
    assert (image["raw"] == png_idat(png)[2]) is speedups_on  # the PNG's own zlib stream, byte for byte
    assert np.array_equal(image["pixels"], pixels)


@pytest.mark.parametrize("mode", ["P", "L", "RGBA", "RGBA-opaque"])
def test_other_pngs_fall_back_and_keep_their_pixels(tmp_path, mode, speedups_on):
    png = _png(mode)
    assert png_idat(png) is None
    (image,) = _images(html_to_pdf(_html(png), tmp_path / "r.pdf"))
    assert image["size"] == (40, 24)
    # Transparency kept; an alpha channel that is opaque everywhere dropped by the passthrough only.
    assert image["smask"] == (mode == "RGBA" or (mode == "RGBA-opaque" and not speedups_on))
    expected = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert np.array_equal(image["pixels"], expected)


def test_png_idat_rejects_broken_input():
    png = _png("RGB")
    assert png_idat(b"GIF89a") is None
    assert png_idat(png[:40]) is None
    # IHDR is width, height, depth, colour type, compression, filter, interlace (Pillow cannot
    # write interlaced or 16-bit RGB, so patch the header; png_idat never decodes the pixels).
    assert png_idat(png[:28] + b"\x01" + png[29:]) is None  # interlaced
    assert png_idat(png[:24] + b"\x10" + png[25:]) is None  # 16 bits per sample
    width, height, idat = png_idat(png)
    assert (width, height) == (40, 24) and len(zlib.decompress(idat)) == height * (1 + 3 * width)


def test_figure_png_is_rgb_and_matches_savefig():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.0, 0.14 * 7 + 0.9))  # a height that is not a whole pixel count
    ax.plot([0, 1, 2], [2, 0, 1])
    ax.set_title("t")
    png = figure_png(fig, dpi=100)
    reference = io.BytesIO()
    fig.savefig(reference, format="png", dpi=100)
    plt.close(fig)
    ours, theirs = Image.open(io.BytesIO(png)), Image.open(reference)
    assert ours.mode == "RGB" and ours.size == theirs.size
    assert np.array_equal(np.asarray(ours), np.asarray(theirs.convert("RGB")))
    assert png_idat(png) is not None  # eligible for the passthrough


def test_encoded_png_keeps_every_pixel_and_the_resolution():
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)  # no runs for zlib to find
    pixels[10:20] = 255  # and some that are
    png = encode_rgb_png(pixels, dpi=150)
    image = Image.open(io.BytesIO(png))
    image.load()  # checks every chunk's CRC and the zlib stream
    assert image.mode == "RGB" and image.size == (53, 37)
    assert np.array_equal(np.asarray(image), pixels)
    assert image.info["dpi"] == pytest.approx((150, 150), abs=0.05)  # stored as whole pixels a metre
    assert png_idat(png) is not None
    with pytest.raises(ValueError, match="uint8"):
        encode_rgb_png(pixels.astype(np.int16))


def test_figure_png_composites_transparency_on_white():
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    fig.patch.set_alpha(0.0)
    png = figure_png(fig, dpi=20)
    plt.close(fig)
    assert np.all(np.asarray(Image.open(io.BytesIO(png))) == 255)


@pytest.mark.parametrize("introduction", [
    ["Share of patients in each group."],
    # As the funnel section: a reading, the control limits and a note on what is not plotted.
    ["Its risk-adjusted mortality is within the expected range.",
     "Control limits at this provider's expected deaths: 95% 0.8% to 10.6%.",
     "<span class='note'>3 provider(s) with small numbers are not plotted.</span>"],
])
def test_section_heading_and_introduction_move_with_the_chart_that_follows(tmp_path, introduction,
                                                                            speedups_on):
    """In a report a section's heading and introduction are one notebook output and its chart the next;
    where the chart does not fit under them, they go over to the next page with it, all of them."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    from auditreport.rendering.html import stylesheet

    uri = "data:image/png;base64," + base64.b64encode(_png("RGB", (700, 430))).decode()
    html = (f"<html lang='en-GB'><head><title>Report</title><style>{stylesheet()}</style></head><body>"
            "<div class='jp-OutputArea-child'><div class='jp-RenderedHTML'>"
            "<div style='height: 21cm'>Earlier sections</div></div></div>"
            "<div class='jp-OutputArea-child'><div class='jp-RenderedHTML'>"
            "<h2>Case mix</h2>" + "".join(f"<p>{p}</p>" for p in introduction) + "</div></div>"
            f"<div class='jp-OutputArea-child'><div class='figure'><img src='{uri}' alt='chart'></div></div>"
            "</body></html>")
    html_to_pdf(html, tmp_path / "r.pdf")
    document = pdfium.PdfDocument(str(tmp_path / "r.pdf"))
    try:
        assert len(document) == 2
        first, second = (page.get_textpage().get_text_range() for page in document)
        assert "Case mix" not in first and "Case mix" in second
        for paragraph in introduction:
            assert re.sub("<[^>]+>", "", paragraph)[:30] in second.replace("\r\n", " ")
        assert list(document[1].get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]))
    finally:
        document.close()


# Tagged PDFs (PDF/UA-1): structure tree, figure alt text, language and title (issue #15, item 6) ----------

def structure(path: Path) -> tuple[dict, list[tuple[str, str | None]]]:
    """The PDF's catalog and every element of its structure tree in reading order, as (tag, /Alt)."""
    from pypdf import PdfReader
    from pypdf.generic import DictionaryObject

    catalog = PdfReader(path).trailer["/Root"]
    assert "/StructTreeRoot" in catalog, f"{path}: no structure tree (/StructTreeRoot): the PDF is not tagged"
    elements: list[tuple[str, str | None]] = []

    def walk(node: object) -> None:
        node = node.get_object() if hasattr(node, "get_object") else node
        if not isinstance(node, DictionaryObject):
            return  # a marked-content id: the page content itself
        if "/S" in node:
            alt = node.get("/Alt")
            elements.append((str(node["/S"]), None if alt is None else str(alt)))
        kids = node.get("/K")
        for kid in (kids if isinstance(kids, list) else [] if kids is None else [kids]):
            walk(kid)

    walk(catalog["/StructTreeRoot"])
    return catalog, elements


def html_alts(html: str) -> list[str]:
    """The alt text of every <img> of ``html``, in document order, with entities decoded."""
    from html.parser import HTMLParser

    class Alts(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.alts: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.alts.append(dict(attrs).get("alt") or "")

    parser = Alts()
    parser.feed(html)
    return parser.alts


def pdfinfo(path: Path) -> dict[str, str]:
    """What poppler's ``pdfinfo`` says of ``path`` (poppler-utils: scripts/system-deps.sh installs it)."""
    import shutil
    import subprocess

    tool = shutil.which("pdfinfo")
    assert tool, "pdfinfo is not installed: run scripts/system-deps.sh (auditreport system-deps; poppler-utils)"
    lines = subprocess.run([tool, str(path)], check=True, capture_output=True, text=True).stdout.splitlines()
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}


def test_every_pdf_is_tagged_with_language_title_and_figure_alt_text(tmp_path, speedups_on):
    uri = "data:image/png;base64," + base64.b64encode(_png("RGB")).decode()
    html = ("<html lang='en-GB'><head><title>Audit report: Alpha Trust</title></head><body><main><h1>Report</h1>"
            "<h2>Funnel</h2><p>Text.</p><img src='" + uri + "' alt='Funnel plot of 6 units &amp; limits'>"
            "<table><thead><tr><th scope='col'>Unit</th><th scope='col'>Deaths</th></tr></thead>"
            "<tbody><tr><td>A</td><td>12</td></tr></tbody></table></main></body></html>")
    out = html_to_pdf(html, tmp_path / "r.pdf")
    info = pdfinfo(out)
    assert info["Tagged"] == "yes" and info["Title"] == "Audit report: Alpha Trust"
    catalog, elements = structure(out)
    assert str(catalog["/Lang"]) == "en-GB"
    assert catalog["/MarkInfo"]["/Marked"] and catalog["/ViewerPreferences"]["/DisplayDocTitle"]
    tags = [tag for tag, _ in elements]
    assert tags[0] == "/Document" and tags.index("/H1") < tags.index("/H2") < tags.index("/Figure") < tags.index(
        "/Table")
    assert {"/TH", "/TD", "/P"} <= set(tags)
    assert [alt for tag, alt in elements if tag == "/Figure"] == ["Funnel plot of 6 units & limits"]
    assert b'pdfuaid:part="1"' in catalog["/Metadata"].get_object().get_data()  # XMP: PDF/UA-1


@pytest.mark.parametrize("page, missing", [
    ("<html><head><title>t</title></head><body><p>x</p></body></html>", "no lang attribute"),
    ("<html lang='en-GB'><head></head><body><p>x</p></body></html>", "no <title>"),
    ("<html lang='en-GB'><head><title>t</title></head><body><img src='x.png' alt='a chart'>"
     "<img src='y.png'><img src='z.png' alt=' '></body></html>", "image(s) 2, 3 of 3 have no alt text"),
])
def test_html_without_what_a_tagged_pdf_needs_is_refused(tmp_path, page, missing):
    """WeasyPrint only logs a missing language or alt text; the package refuses the HTML, naming what is
    missing and the PDF, and writes nothing."""
    with pytest.raises(ValueError, match="PDF/UA-1") as error:
        html_to_pdf(page, tmp_path / "r.pdf")
    assert missing in str(error.value) and str(tmp_path / "r.pdf") in str(error.value)
    assert not (tmp_path / "r.pdf").exists()


@pytest.mark.slow
def test_reports_of_a_built_audit_are_tagged_with_figure_alt_text_from_the_html(built_small_audit):
    """Every PDF a build writes is tagged; in a public, a local and the national report each figure is a
    /Figure whose /Alt is the alt text of the same figure in the HTML twin, and the language is en-GB."""
    out = built_small_audit.period_dir
    pdfs = sorted(out.rglob("*.pdf"))
    provider = sorted(p.parent.name for p in (out / "providers").glob("*/public.pdf"))[0]
    chosen = [out / "providers" / provider / "public.pdf", out / "providers" / provider / "local.pdf",
              out / "national" / "national.pdf"]
    assert set(chosen) <= set(pdfs) and len(pdfs) > len(chosen)
    untagged = [str(p.relative_to(out)) for p in pdfs if pdfinfo(p).get("Tagged") != "yes"]
    assert not untagged, f"PDFs without tags: {untagged}"
    for pdf in chosen:
        info = pdfinfo(pdf)
        assert info["Title"].startswith("Synthetic National Surgical Outcomes Audit"), info
        assert (provider in info["Title"]) == (pdf.parent.name != "national"), info
        catalog, elements = structure(pdf)
        assert str(catalog["/Lang"]) == "en-GB"
        alts = html_alts(pdf.with_suffix(".html").read_text(encoding="utf-8"))
        figures = [alt for tag, alt in elements if tag == "/Figure"]
        assert len(alts) >= 3 and figures == alts, (pdf, figures, alts)
        assert {"/H1", "/H2", "/Table", "/TH", "/TD", "/P"} <= {tag for tag, _ in elements}


@pytest.mark.slow
def test_tagging_costs_little_render_time(built_small_audit, tmp_path):
    """Seconds of CPU per PDF, tagged against untagged, the same report in the same process (best of two
    each, in alternating order, after a warm-up of both): printed, and tagging must not double the time."""
    import time

    out = built_small_audit.period_dir
    provider = sorted(p.parent.name for p in (out / "providers").glob("*/public.pdf"))[0]
    html = (out / "providers" / provider / "public.html").read_text(encoding="utf-8")
    for tagged in (False, True):
        html_to_pdf(html, tmp_path / "warm.pdf", tagged=tagged)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for order in ((False, True), (True, False)):
        for tagged in order:
            started = time.process_time()
            html_to_pdf(html, tmp_path / f"{tagged}.pdf", tagged=tagged)
            seconds[tagged].append(time.process_time() - started)
    plain, tagged = min(seconds[False]), min(seconds[True])
    print(f"\npublic report PDF, CPU seconds: untagged {plain:.2f}, tagged {tagged:.2f} "
          f"({100 * (tagged / plain - 1):+.0f}%); sizes {(tmp_path / 'False.pdf').stat().st_size:,} and "
          f"{(tmp_path / 'True.pdf').stat().st_size:,} bytes")
    assert pdfinfo(tmp_path / "False.pdf")["Tagged"] == "no" and pdfinfo(tmp_path / "True.pdf")["Tagged"] == "yes"
    assert tagged < 2 * plain
