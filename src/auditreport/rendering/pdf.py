"""Report HTML -> paged A4 PDF with WeasyPrint.

WeasyPrint lays out CSS paged media itself (running headers, "page N of M",
no split figures) with no browser and no TeX, so the project can install its
renderer from PyPI alone; it needs only Pango, which Debian ships.

Rendering is a large share of a report's CPU, so this module avoids work WeasyPrint would
otherwise repeat for every report:

* the ``data:image/png;base64,...`` figure URIs (hundreds of kB a report) are lifted out before
  parsing and served from memory by a URL fetcher, so the HTML parser and WeasyPrint's URL
  handling see short placeholders;
* one :class:`weasyprint.text.fonts.FontConfiguration` per thread is reused across documents;
* with the speed-ups on (:mod:`auditreport.speedups`), PNGs that are 8-bit RGB and not
  interlaced (as :mod:`auditreport.presentation.png` writes the figures) go into the PDF as they
  are: their zlib stream is what PDF's FlateDecode with PNG predictors expects, so Pillow need
  not decode and re-encode them (see :func:`_install_png_passthrough`).

The first two use WeasyPrint's public interface (``url_fetcher``, ``font_config``) and are always
on; the third wraps a WeasyPrint internal and is on only with the speed-ups. Pages and text are
the same either way. Measured figures are in benchmarks/RESULTS.md.

Every PDF is tagged: WeasyPrint's own ``pdf_variant="pdf/ua-1"`` (PDF/UA-1, ISO 14289-1) writes a
structure tree (headings, paragraphs, lists, tables with their header cells, and a /Figure for each
``<img>`` with the image's ``alt`` as its /Alt), the document language (/Lang from ``<html lang>``)
and title (from ``<title>``, shown by viewers in place of the file name). Screen readers read an
untagged PDF as one run of text, or nothing (issue #15, item 6). WeasyPrint only logs a missing
language or alt text and writes the PDF anyway, so :func:`check_tagging_inputs` refuses such HTML
first. Tagging costs 6-8% of a PDF's render time: see :data:`PDF_VARIANT`.
"""

from __future__ import annotations

import base64
import re
import struct
import threading
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditreport import speedups
from auditreport.presentation.png import PNG_SIGNATURE

if TYPE_CHECKING:
    from weasyprint.text.fonts import FontConfiguration
    from weasyprint.urls import URLFetcherResponse

#: WeasyPrint's PDF variant for every PDF the package writes: PDF/UA-1 turns tagging on (``pdf_tags``) and
#: marks the file as PDF/UA-1 in its XMP metadata. Tagging costs little: measured on the small test audit
#: (2026-12-02, 2 shared cores under load; CPU seconds per PDF, same process, alternating, median of 4), a
#: provider's public report 1.65 untagged, 1.74 tagged (+6%, file +4%), the national report 2.38 and 2.57
#: (+8%, file +9%). tests/test_pdf.py prints the figure for the public report on every run.
PDF_VARIANT = "pdf/ua-1"

#: Placeholder scheme for lifted data URIs; only :class:`_InlineImageFetcher` understands it.
PLACEHOLDER_SCHEME = "auditreport-image"

# A base64 image data URI as an attribute value (figures are <img src="data:...">).
_DATA_URI = re.compile(r"""(?<=["'])data:(image/[A-Za-z0-9.+-]+);base64,([A-Za-z0-9+/=\s]+)(?=["'])""")

_local = threading.local()
_install_lock = threading.Lock()


def lift_data_uris(html: str) -> tuple[str, dict[str, tuple[bytes, str]]]:
    """Replace every base64 image data URI in ``html`` by a short placeholder URL.

    Returns the new HTML and ``{placeholder: (decoded bytes, mime type)}``. Identical URIs
    share one placeholder, so WeasyPrint's image cache embeds them once.
    """
    images: dict[str, tuple[bytes, str]] = {}
    by_uri: dict[str, str] = {}

    def replace(match: re.Match[str]) -> str:
        uri = match.group(0)
        placeholder = by_uri.get(uri)
        if placeholder is None:
            placeholder = f"{PLACEHOLDER_SCHEME}:{len(by_uri)}"
            by_uri[uri] = placeholder
            images[placeholder] = (base64.b64decode(match.group(2)), match.group(1))
        return placeholder

    return _DATA_URI.sub(replace, html), images


def _fetcher(images: dict[str, tuple[bytes, str]]) -> Any:
    """A WeasyPrint URL fetcher serving ``images`` and deferring anything else to the default."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class _InlineImageFetcher(URLFetcher):
        """Serves lifted figures from memory; every other URL goes to WeasyPrint's own fetcher."""

        def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
            if url.startswith(f"{PLACEHOLDER_SCHEME}:"):
                data, mime_type = images[url]  # KeyError -> WeasyPrint warns and skips the image
                return URLFetcherResponse(url, body=data, headers={"Content-Type": mime_type})
            return super().fetch(url, headers)

    return _InlineImageFetcher()


def _font_config() -> FontConfiguration:
    """This thread's FontConfiguration, made once (the stylesheet has no @font-face rules to add)."""
    config = getattr(_local, "font_config", None)
    if config is None:
        from weasyprint.text.fonts import FontConfiguration

        config = _local.font_config = FontConfiguration()
    return config


def png_idat(data: bytes) -> tuple[int, int, bytes] | None:
    """``(width, height, zlib stream)`` of a PNG that PDF can show as it is, else None.

    That is: 8-bit RGB (colour type 2), not interlaced, no tRNS (transparency) chunk. The
    concatenated IDAT chunks are then exactly a FlateDecode stream with PNG predictors
    (PDF 32000-1 7.4.4.4, /Predictor 15 /Colors 3 /Columns width).
    """
    if not data.startswith(PNG_SIGNATURE):
        return None
    pos, idat, header = 8, [], None
    try:
        while pos + 8 <= len(data):
            length, kind = struct.unpack(">I4s", data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + length]
            if len(body) != length:
                return None  # truncated
            if kind == b"IHDR":
                header = struct.unpack(">IIBBBBB", body)
            elif kind == b"IDAT":
                idat.append(body)
            elif kind == b"tRNS":
                return None
            elif kind == b"IEND":
                break
            pos += 12 + length
    except struct.error:
        return None
    if header is None or not idat:
        return None
    width, height, depth, colour, compression, filtering, interlace = header
    if (depth, colour, compression, filtering, interlace) != (8, 2, 0, 0, 0):
        return None
    return width, height, b"".join(idat)


def _install_png_passthrough() -> None:
    """Make WeasyPrint embed suitable PNGs' IDAT data directly instead of re-encoding them.

    WeasyPrint 70.0's ``RasterImage.get_x_object`` opens every PNG with Pillow and saves it
    again (twice for RGBA: colour and alpha mask). This wraps that method (an internal of
    WeasyPrint, pinned to 70.0 in requirements/constraints.txt; tests/test_speedups.py fails if
    it changes):

    * RGB 8-bit non-interlaced PNG at full resolution: the original IDAT stream, no decoding;
    * RGBA whose alpha is 255 everywhere: re-encoded once as RGB, no soft mask;
    * anything else, any surprise, or the speed-ups switched off since it was installed: the
      original method.

    Installed once per process, and only when the speed-ups are on.
    """
    from weasyprint.images import RasterImage

    with _install_lock:
        if not getattr(RasterImage.get_x_object, "_auditreport_passthrough", False):
            RasterImage.get_x_object = _passthrough_hook(RasterImage.get_x_object)


def _passthrough_hook(original: Any) -> Any:
    """``original`` (RasterImage.get_x_object) wrapped to try :func:`_passthrough_x_object` first."""

    def get_x_object(self: Any, interpolate: bool, dpi_ratio: float) -> Any:
        stream = None
        if speedups.enabled():  # switched off after installing: WeasyPrint's own path
            try:
                stream = _passthrough_x_object(self, interpolate, dpi_ratio)
            except Exception:  # noqa: BLE001 - never worse than WeasyPrint's own path
                stream = None
        return stream if stream is not None else original(self, interpolate, dpi_ratio)

    get_x_object._auditreport_passthrough = True  # type: ignore[attr-defined]
    get_x_object.__wrapped__ = original  # type: ignore[attr-defined]
    return get_x_object


def _passthrough_x_object(image: Any, interpolate: bool, dpi_ratio: float) -> Any:
    """The PDF image stream for ``image`` without Pillow, or None to use WeasyPrint's path."""
    import io

    import pydyf
    from PIL import Image

    if dpi_ratio != 1 or image.format != "PNG" or image.mode not in ("RGB", "RGBA"):
        return None
    data = image.image_data.data
    if image.mode == "RGB":
        found = png_idat(data)
        if found is None or found[:2] != (image.width, image.height):
            return None
        idat = found[2]
    else:
        pillow = Image.open(io.BytesIO(data))
        if pillow.mode != "RGBA" or pillow.size != (image.width, image.height):
            return None
        if pillow.getchannel("A").getextrema() != (255, 255):
            return None  # real transparency: WeasyPrint adds the soft mask
        buffer = io.BytesIO()
        pillow.convert("RGB").save(buffer, format="PNG")
        found = png_idat(buffer.getvalue())
        if found is None:
            return None
        idat = found[2]
    zlib.decompressobj().decompress(idat[:64])  # a corrupt stream raises here -> fallback
    extra = pydyf.Dictionary({
        "Type": "/XObject",
        "Subtype": "/Image",
        "Width": image.width,
        "Height": image.height,
        "ColorSpace": "/DeviceRGB",
        "BitsPerComponent": 8,
        "Interpolate": "true" if interpolate else "false",
        "Filter": "/FlateDecode",
        "DecodeParms": pydyf.Dictionary({"Predictor": 15, "Columns": image.width, "Colors": 3}),
    })
    return pydyf.Stream([image.cache_image_data(idat, slot="stream")], extra)


class _TaggingInputs(HTMLParser):
    """Collects what a tagged PDF takes from the HTML: ``<html lang>``, the ``<title>`` text and every
    ``<img>`` with its alt text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lang: str | None = None
        self.title: list[str] = []
        self.in_title = False
        self.images: list[tuple[str, str]] = []  # (src, alt)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "html" and self.lang is None:
            self.lang = values.get("lang", "").strip()
        elif tag == "title":
            self.in_title = True
        elif tag == "img":
            self.images.append((values.get("src", ""), values.get("alt", "").strip()))

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)


def check_tagging_inputs(html: str, where: str | Path) -> None:
    """Refuse HTML whose tagged PDF would fail PDF/UA-1 in a way WeasyPrint only logs.

    PDF/UA-1 (ISO 14289-1, 7.2 and 7.3; WCAG 2.2 success criteria 1.1.1 and 3.1.1) needs the document's
    natural language, a title, and a text alternative for every figure. WeasyPrint takes them from
    ``<html lang>``, ``<title>`` and ``<img alt>``; without them it logs an error and writes the PDF anyway,
    which a screen reader then reads in the wrong voice or announces as "image". ``where`` names the
    PDF in the error.
    """
    found = _TaggingInputs()
    found.feed(html)
    problems = []
    if not found.lang:
        problems.append("the <html> element has no lang attribute (the PDF's /Lang); write <html lang=\"en-GB\">")
    if not "".join(found.title).strip():
        problems.append("the page has no <title> (the PDF's title, which viewers show); add one")
    missing = [i + 1 for i, (_, alt) in enumerate(found.images) if not alt]
    if missing:
        problems.append(f"image(s) {', '.join(map(str, missing))} of {len(found.images)} have no alt text (the "
                        "PDF /Figure's /Alt); give every figure alt text saying what it shows "
                        "(presentation.figures attaches it to each chart)")
    if problems:
        raise ValueError(f"{where}: cannot write a tagged PDF (PDF/UA-1): " + "; ".join(problems))


def html_to_pdf(html: str, out_path: str | Path, *, tagged: bool = True) -> Path:
    """Write ``html`` as a tagged PDF (PDF/UA-1) to ``out_path`` (the stylesheet's @page rules set the layout).

    Every PDF the package writes goes through here, so every one is tagged; ``tagged=False`` exists to
    measure what tagging costs (tests/test_pdf.py) and is not used by the package. The HTML must give
    a language, a title and alt text for every image (:func:`check_tagging_inputs`, ``ValueError``).

    With the speed-ups on, the first call installs the PNG passthrough on WeasyPrint for the whole
    process; it only changes how eligible PNGs are stored in a PDF, not what any page shows.
    """
    from weasyprint import HTML  # imported late: loading Pango takes a noticeable fraction of a second

    if speedups.enabled():
        _install_png_passthrough()
    out_path = Path(out_path)
    html, images = lift_data_uris(html)
    if tagged:
        check_tagging_inputs(html, out_path)
    # Every resource is inline; the fetcher serves the lifted figures from memory.
    document = HTML(string=html, base_url=str(out_path.parent), url_fetcher=_fetcher(images))
    document.write_pdf(out_path, font_config=_font_config(), pdf_variant=PDF_VARIANT if tagged else None)
    return out_path
