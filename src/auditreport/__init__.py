"""auditreport: risk-adjusted, reproducible reports for national clinical audits."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("auditreport")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
