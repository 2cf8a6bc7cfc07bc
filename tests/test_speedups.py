"""The speed-up switch, and one guard for every third-party internal the speed-ups rely on.

After upgrading WeasyPrint, jupyter_client or nbclient, run this file first: each guard names the internal
and what to re-read when it fails. Until it is fixed, ``AUDITREPORT_SPEEDUPS=0`` builds the same reports with
stock behaviour (the tests parametrized with the ``speedups_on`` fixture prove that path).
"""

from __future__ import annotations

import asyncio
import inspect

import jupyter_client
import nbclient
import nbformat
import pytest
import weasyprint
import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.client import KernelClient
from jupyter_client.manager import AsyncKernelManager, KernelManager

from auditreport import speedups
from auditreport.execution import kernel_forkserver as kf
from auditreport.execution import kernel_manager as report_km
from auditreport.rendering import pdf


def _params(function) -> list[str]:
    return list(inspect.signature(function).parameters)


# ------------------------------------------------------------------------------------------------------
# The switch
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "on"), [(None, True), ("1", True), ("yes", True), ("0", False),
                                            ("false", False), (" OFF ", False), ("no", False)])
def test_switch_reads_the_environment(monkeypatch, value, on):
    if value is None:
        monkeypatch.delenv(speedups.ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(speedups.ENV_VAR, value)
    assert speedups.enabled() is on


def test_code_overrides_the_environment_and_restores_it(monkeypatch):
    monkeypatch.setenv(speedups.ENV_VAR, "0")
    with speedups.switched(True):
        assert speedups.enabled()
        with speedups.switched(False):
            assert not speedups.enabled()
        assert speedups.enabled()
    assert not speedups.enabled()
    speedups.set_enabled(True)
    try:
        assert speedups.enabled()
    finally:
        speedups.set_enabled(None)
    assert not speedups.enabled()


def test_switched_off_means_stock_kernel_manager_and_no_fork_server(monkeypatch):
    monkeypatch.setenv(speedups.ENV_VAR, "0")
    assert type(kf.kernel_manager(kernel_name="python3")) is AsyncKernelManager
    monkeypatch.setenv(speedups.ENV_VAR, "1")
    expected = kf.ForkServerKernelManager if kf.supported() else report_km.ReportKernelManager
    assert type(kf.kernel_manager(kernel_name="python3")) is expected


#: The smallest page html_to_pdf takes: a language and a title (every PDF is tagged, PDF/UA-1).
_PAGE = "<html lang='en-GB'><head><title>t</title></head><body><p>text</p></body></html>"


def test_switched_off_leaves_weasyprint_image_handling_alone(tmp_path, monkeypatch):
    """With the speed-ups off html_to_pdf installs nothing on WeasyPrint; a hook installed earlier in the
    process hands every image straight to WeasyPrint's own method while the switch is off."""
    from weasyprint.images import RasterImage

    stock = getattr(RasterImage.get_x_object, "__wrapped__", RasterImage.get_x_object)
    monkeypatch.setattr(RasterImage, "get_x_object", stock)  # as shipped; monkeypatch restores the hook after
    with speedups.switched(False):
        pdf.html_to_pdf(_PAGE, tmp_path / "off.pdf")
    assert RasterImage.get_x_object is stock
    with speedups.switched(True):
        pdf.html_to_pdf(_PAGE, tmp_path / "on.pdf")
    assert RasterImage.get_x_object.__wrapped__ is stock

    tried = []
    monkeypatch.setattr(pdf, "_passthrough_x_object", lambda *args: tried.append(args))  # finds nothing to pass
    hook = pdf._passthrough_hook(lambda image, interpolate, dpi_ratio: "WeasyPrint's own stream")
    with speedups.switched(False):
        assert hook("image", False, 1) == "WeasyPrint's own stream"
    assert tried == []
    with speedups.switched(True):
        assert hook("image", False, 1) == "WeasyPrint's own stream"
    assert tried == [("image", False, 1)]


# ------------------------------------------------------------------------------------------------------
# Guards: each internal used with the speed-ups on, as the pinned versions have it
# ------------------------------------------------------------------------------------------------------


def test_weasyprint_raster_image_get_x_object():
    """rendering/pdf.py wraps WeasyPrint 70.0's RasterImage.get_x_object and reads the image's data,
    format, mode and size, and stores the stream through cache_image_data. If this fails after a
    WeasyPrint upgrade, re-read weasyprint/images.py and adapt _install_png_passthrough and
    _passthrough_x_object."""
    from weasyprint.images import LazyImage, RasterImage

    version = weasyprint.__version__
    with speedups.switched(True):
        pdf._install_png_passthrough()
        hook = RasterImage.get_x_object
        assert getattr(hook, "_auditreport_passthrough", False), "passthrough not installed"
        original = hook.__wrapped__
        assert _params(original) == ["self", "interpolate", "dpi_ratio"], f"WeasyPrint {version}: get_x_object"
        assert _params(RasterImage.cache_image_data) == ["self", "data", "filename", "slot"], (
            f"WeasyPrint {version}: cache_image_data")
        source = inspect.getsource(RasterImage.__init__)
        for needed in ("self.image_data =", "self.format =", "self.mode =", "self.width =", "self.height ="):
            assert needed in source, f"WeasyPrint {version} RasterImage sets no {needed}"
        assert isinstance(inspect.getattr_static(LazyImage, "data"), property), f"WeasyPrint {version}: LazyImage"
        pdf._install_png_passthrough()  # idempotent: not wrapped twice
        assert RasterImage.get_x_object is hook


def test_jupyter_client_waits_for_a_killed_kernel_through_async_wait():
    """ReportKernelManager overrides KernelManager._async_wait. If an upgrade stops calling it, the
    override silently does nothing and every report idles 0.1 s again: this says so."""
    assert _params(KernelManager._async_wait) == ["self", "pollinterval"], jupyter_client.__version__
    assert inspect.iscoroutinefunction(KernelManager._async_wait)
    assert "self._async_wait(" in inspect.getsource(KernelManager._async_kill_kernel)
    assert AsyncKernelManager._async_wait is KernelManager._async_wait


def test_jupyter_client_is_alive_and_kernel_info_reply_handler():
    """ReportKernelClient.wait_for_ready calls KernelClient._async_is_alive and _handle_kernel_info_reply,
    as jupyter_client's own wait_for_ready (KernelClient._async_wait_for_ready) does."""
    for cls in (KernelClient, KernelManager):
        assert inspect.iscoroutinefunction(cls._async_is_alive) and _params(cls._async_is_alive) == ["self"]
    assert _params(KernelClient._handle_kernel_info_reply) == ["self", "msg"]
    own = inspect.getsource(KernelClient._async_wait_for_ready)
    assert "self._handle_kernel_info_reply(" in own and "self._async_is_alive()" in own
    assert AsyncKernelClient.wait_for_ready is KernelClient._async_wait_for_ready  # what ours replaces


def test_jupyter_client_context_default_owns_the_context():
    """ReportKernelClient extends AsyncKernelClient._context_default (the traitlets default of ``context``).
    The context must still be marked as the client's own, or stop_channels leaves it (and its threads and
    sockets) open after every report."""
    assert _params(AsyncKernelClient._context_default) == ["self"]
    kc = report_km.ReportKernelClient()
    try:
        assert isinstance(kc.context, zmq.asyncio.Context)
        assert kc.context.getsockopt(zmq.RECONNECT_IVL) == report_km.RECONNECT_MS
        assert kc._created_context
        assert "self._created_context" in inspect.getsource(KernelClient.stop_channels)
    finally:
        kc.context.destroy()


def test_jupyter_client_pre_start_kernel_keeps_an_injected_provisioner():
    """ForkServerKernelManager overrides KernelManager._async_pre_start_kernel to set its provisioner
    first; jupyter_client must call it when starting a kernel and must keep a provisioner already set."""
    signature = inspect.signature(KernelManager._async_pre_start_kernel)
    assert any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()), jupyter_client.__version__
    assert "self._async_pre_start_kernel(" in inspect.getsource(KernelManager._async_start_kernel)
    assert "if self.provisioner is None" in inspect.getsource(KernelManager._async_pre_start_kernel)
    assert AsyncKernelManager.pre_start_kernel is KernelManager._async_pre_start_kernel


def test_nbclient_registers_its_cleanup_kernel_at_exit():
    """report_job.py unregisters NotebookClient._cleanup_kernel from atexit after each report (nbclient
    leaves it registered when the kernel fails to start)."""
    from nbclient import NotebookClient

    source = inspect.getsource(NotebookClient.async_setup_kernel)
    assert "atexit.register(self._cleanup_kernel)" in source, nbclient.__version__
    client = NotebookClient(nbformat.v4.new_notebook())
    # atexit.unregister finds a callback by equality: each access gives a new bound method, equal to the others
    assert client._cleanup_kernel == client._cleanup_kernel and client._cleanup_kernel is not client._cleanup_kernel
    assert callable(client._cleanup_kernel) and asyncio.iscoroutinefunction(NotebookClient._async_cleanup_kernel)
