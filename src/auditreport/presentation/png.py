"""Figures as RGB PNGs (no alpha channel), encoded here rather than by Matplotlib or Pillow.

Matplotlib always writes RGBA PNGs. WeasyPrint has to decode those and re-encode colour and
alpha separately for the PDF, whereas an 8-bit RGB PNG goes into the PDF unchanged (see :mod:`auditreport.rendering.pdf`). Report figures are
drawn on an opaque white background, so the alpha channel carries nothing.

The PNG is written directly: every row with filter type 0 (None), then one zlib stream at
level 3. Pillow's encoder chooses a filter for every row by trying all five, which is most of
its cost; on charts, which are mostly long runs of one colour, unfiltered rows compress about as
well (benchmarks/figure_benchmark.py compares the two).
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: zlib level for figure pixels: higher levels take much longer for files only a little smaller.
COMPRESS_LEVEL = 3


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


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def encode_rgb_png(rgb: np.ndarray, dpi: float | None = None) -> bytes:
    """An 8-bit RGB, non-interlaced PNG of ``rgb`` (height x width x 3, uint8), with its ``dpi``."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a (height, width, 3) uint8 array, got {rgb.dtype} {rgb.shape}")
    height, width, _ = rgb.shape
    rows = np.zeros((height, 1 + 3 * width), dtype=np.uint8)  # column 0: filter type 0, None
    rows[:, 1:] = rgb.reshape(height, 3 * width)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, truecolour, no interlace
    chunks = [_chunk(b"IHDR", header)]
    if dpi:
        per_metre = round(dpi / 0.0254)
        chunks.append(_chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1)))
    chunks.append(_chunk(b"IDAT", zlib.compress(rows.data, COMPRESS_LEVEL)))
    chunks.append(_chunk(b"IEND", b""))
    return PNG_SIGNATURE + b"".join(chunks)


def figure_png(fig: Figure, dpi: float) -> bytes:
    """``fig`` as an 8-bit RGB PNG at ``dpi``, drawn exactly as ``fig.savefig(format="png")`` would.

    Saving goes through ``savefig`` (so the savefig rcParams, face colour and dpi apply) with
    the ``raw`` format. Pixels that are not opaque are composited on white, as a PDF viewer or
    browser shows them on the page.
    """
    sink = _PixelSink()
    fig.savefig(sink, format="raw", dpi=dpi)
    rgba = sink.pixels
    if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
        # Not the memoryview we expect (a Matplotlib change): decode a normal PNG instead.
        from PIL import Image

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        rgba = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGBA"))
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        rgb = rgba[..., :3]
    else:
        a = alpha[..., None].astype(np.uint16)
        rgb = ((rgba[..., :3].astype(np.uint16) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)
    return encode_rgb_png(rgb, dpi)
