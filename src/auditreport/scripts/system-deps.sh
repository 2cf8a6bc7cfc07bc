#!/usr/bin/env bash
# System libraries the project needs beyond Python, installed from Debian's packages when missing:
#   Pango (WeasyPrint lays out the PDF reports with it) and the DejaVu fonts the reports use; and
#   Debian's chromium for the browser tests of the publication site (tests/test_reports.py drives it
#   with Playwright; outside CI they skip without it, and CI runs this script). Playwright never
#   downloads a browser: the tests launch /usr/bin/chromium. Installed with the package: run it as
#   `auditreport system-deps`. And poppler-utils, whose `pdfinfo` tests/test_pdf.py uses to check that every
#   PDF is tagged (PDF/UA-1); small, so installed with the rest.
set -euo pipefail
need=()
ldconfig -p 2>/dev/null | grep -q 'libpango-1.0.so.0' || need+=(libpango-1.0-0)
ldconfig -p 2>/dev/null | grep -q 'libpangoft2-1.0.so.0' || need+=(libpangoft2-1.0-0)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
command -v pdfinfo >/dev/null || need+=(poppler-utils)
# Optional (browser tests only): set AUDITREPORT_NO_BROWSER=1 to skip it on a machine that only builds reports.
if [ -z "${AUDITREPORT_NO_BROWSER:-}" ]; then
  command -v chromium >/dev/null || need+=(chromium)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
  echo "auditreport needs these Debian packages: ${need[*]}; install them as root (apt-get install ${need[*]})" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "installing system packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
