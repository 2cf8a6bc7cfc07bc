"""Figures as RGB PNGs (no alpha channel).

Matplotlib always writes RGBA PNGs. WeasyPrint has to decode those and re-encode colour and
alpha separately for the PDF (~20 ms per figure, ~8 figures per report), whereas an 8-bit RGB
PNG goes into the PDF unchanged (see :mod:`auditreport.rendering.pdf`). Report figures are
drawn on an opaque white background, so the alpha channel carries nothing.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class _PixelSink(io.RawIOBase):
    """A file that keeps what Matplotlib's ``raw`` writer gives it: the renderer's RGBA memoryview.

    Matplotlib writes ``renderer.buffer_rgba()``, a (height, width, 4) memoryview, so its
    shape is available here without guessing the pixel size from the figure size.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pixels: np.ndarray | None = None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: object) -> int:  # type: ignore[override]
        array = np.array(data, dtype=np.uint8, copy=True)
        self.pixels = array if self.pixels is None or array.ndim == 3 else None
        return array.nbytes


def figure_png(fig: Figure, dpi: float) -> bytes:
    """``fig`` as an 8-bit RGB PNG at ``dpi``, drawn exactly as ``fig.savefig(format="png")`` would.

    Saving goes through ``savefig`` (so the savefig rcParams, face colour and dpi apply) with
    the ``raw`` format, then Pillow encodes RGB. Pixels that are not opaque are composited on
    white, as a PDF viewer or browser shows them on the page.
    """
    from PIL import Image

    sink = _PixelSink()
    fig.savefig(sink, format="raw", dpi=dpi)
    rgba = sink.pixels
    if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
        # Not the memoryview we expect (a Matplotlib change): decode a normal PNG instead.
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGBA")
        rgba = np.asarray(image)
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        rgb = np.ascontiguousarray(rgba[..., :3])
    else:
        a = alpha[..., None].astype(np.uint16)
        rgb = ((rgba[..., :3].astype(np.uint16) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, format="PNG", dpi=(dpi, dpi))
    return out.getvalue()
