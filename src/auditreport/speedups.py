"""The one switch for every speed-up that relies on a third-party package's private internals.

The batch engine is faster than stock papermill, nbclient, jupyter_client and WeasyPrint because it
reaches into some of their internals. Internals change without notice, so every such use is behind
this switch and each has a test in ``tests/test_speedups.py`` that fails when the pinned version
(``requirements/constraints.txt``) no longer has it as used.
After upgrading one of those packages, run those tests; if one fails and cannot be fixed at once,
switch the speed-ups off and the reports are built the stock way, the same reports, only slower.

Switched on (the default), a report uses:

* **jupyter_client**: :class:`~auditreport.execution.kernel_manager.ReportKernelManager` and
  ``ReportKernelClient`` (override ``AsyncKernelManager._async_wait``, ``KernelClient._context_default``,
  call ``KernelClient._handle_kernel_info_reply`` and ``_async_is_alive``), so no fixed idle waits;
  and, on Linux, kernels forked from a pre-loaded zygote
  (:mod:`auditreport.execution.kernel_forkserver`, which injects its provisioner by overriding
  ``KernelManager._async_pre_start_kernel``);
* **nbclient**: ``atexit.unregister(NotebookClient._cleanup_kernel)`` after a kernel that failed to
  start, so a long-lived worker does not pile up exit hooks;
* **WeasyPrint**: ``RasterImage.get_x_object`` wrapped to embed RGB PNGs without re-encoding them
  (:mod:`auditreport.rendering.pdf`).

Switched off, a report gets jupyter_client's stock ``AsyncKernelManager`` and kernel start, nbclient's
own clean-up and WeasyPrint's own image handling. What stays either way uses only documented public
interfaces: IPC sockets, the kernel log file, IPython history off, stopping the kernel client's
channels after each report, WeasyPrint's ``url_fetcher`` serving the figures from memory and one
``FontConfiguration`` per thread.

The switch is the environment variable ``AUDITREPORT_SPEEDUPS`` (``0``, ``false``, ``no`` or ``off``
switch off; anything else, or unset, on), read at each use, or :func:`set_enabled` in code, which
takes precedence in this process and in the worker processes it forks (the local process pool).
Dask workers on other machines read their own environment. There is no finer switch: the fork
server, the kernel manager and the PDF shortcut are on or off together.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

ENV_VAR = "AUDITREPORT_SPEEDUPS"
_OFF = ("0", "false", "no", "off")

_override: bool | None = None


def enabled() -> bool:
    """Whether the speed-ups that patch third-party internals are on (default: on)."""
    if _override is not None:
        return _override
    return os.environ.get(ENV_VAR, "1").strip().lower() not in _OFF


def set_enabled(on: bool | None) -> None:
    """Switch the speed-ups on or off in this process (and processes forked from it); ``None`` goes
    back to the environment variable."""
    global _override
    _override = on


@contextmanager
def switched(on: bool) -> Iterator[None]:
    """Run a block with the speed-ups on or off, then restore the previous setting."""
    global _override
    before = _override
    _override = on
    try:
        yield
    finally:
        _override = before
