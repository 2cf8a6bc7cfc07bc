"""Check that a published audit period can be reproduced from its recorded inputs.

``auditreport reproduce reports/<audit>/<period>`` reads the period's ``manifest.json``
(configuration path and fingerprint, data files and their SHA-256, code version), checks
that the inputs still have those fingerprints, reruns the national stage into a temporary
folder, and compares:

- ``indicators.csv`` (and the site's copy) with the open data recomputed from the rerun,
  figure by figure;
- the results bundle's tables and risk model, exactly;
- every report's visible text (every number in it) with the same report regenerated from the
  rerun's bundle by the report's own notebook code, run in-process without a kernel. The
  'Produced' time and the commit on the cover are the only parts ignored.

Any difference is listed and the command exits non-zero.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from html.parser import HTMLParser
from io import StringIO
from pathlib import Path

import nbformat
import pandas as pd

from auditreport.analysis.national import run_national
from auditreport.bundle import BUNDLE_DIR, write_bundle
from auditreport.config import AuditConfig, load_config
from auditreport.data.loading import file_sha256
from auditreport.errors import AuditReportError
from auditreport.pipeline import report_notebooks
from auditreport.provenance import code_version
from auditreport.publication.site import neutralise_formulas, open_data

#: Parts of a report that change from run to run without the results changing.
_VOLATILE = [(re.compile(r"Produced \S+"), "Produced <time>"),
             (re.compile(r"commit [0-9a-f]{7,40}(\+dirty)?"), "commit <commit>")]
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?%?")
_MAX_LISTED = 20


class ReproductionError(AuditReportError):
    """The period could not be reproduced: inputs changed or results differ."""

    exit_code = 6


@dataclass
class Reproduction:
    period_dir: Path
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures_checked: int = 0
    reports_checked: int = 0
    tables_checked: int = 0

    @property
    def identical(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        if self.identical:
            return (f"{self.period_dir}: reproduced identically: {self.figures_checked:,} figures in "
                    f"indicators.csv, {self.tables_checked} bundle tables and {self.reports_checked} reports")
        listed = self.differences[:_MAX_LISTED]
        more = len(self.differences) - len(listed)
        return "\n".join([f"{self.period_dir}: NOT reproduced: {len(self.differences)} difference(s)"]
                         + [f"  {d}" for d in listed] + ([f"  ... and {more} more"] if more > 0 else []))


def reproduce(period_dir: str | Path) -> Reproduction:
    """Rerun the national stage of a built period and compare every figure and report with it."""
    period = Path(period_dir).resolve()
    manifest_path = period / "manifest.json"
    if not manifest_path.is_file():
        raise ReproductionError(f"{period}: no manifest.json; is this a built reports/<audit>/<period> folder?")
    manifest = json.loads(manifest_path.read_text())
    result = Reproduction(period)

    config = load_config(manifest["config_path"])
    if config.fingerprint() != manifest["config"]:
        result.differences.append(f"input changed: audit definition {config.path} (recorded "
                                  f"{manifest['config'][:12]}, now {config.fingerprint()[:12]})")
    for role, rec in manifest["data"].items():
        path = Path(rec["path"])
        if not path.is_file():
            result.differences.append(f"input missing: {role} file {path}")
            continue
        now = file_sha256(path)
        if now != rec["sha256"]:
            result.differences.append(f"input changed: {role} file {path} (recorded sha256 {rec['sha256'][:12]}, "
                                      f"now {now[:12]})")
    recorded_code, current_code = manifest.get("code", {}), code_version()
    for key in ("package_version", "git_commit"):
        if recorded_code.get(key) != current_code.get(key):
            result.notes.append(f"code {key} differs: recorded {recorded_code.get(key)}, now {current_code.get(key)}")
    if result.differences:
        return result  # different inputs: a rerun would prove nothing

    with tempfile.TemporaryDirectory(prefix="auditreport-reproduce-") as tmp:
        rerun = Path(tmp)
        write_bundle(rerun, run_national(config, parameters={"inputs_fingerprint": manifest.get("inputs_fingerprint")}))
        _compare_open_data(config, period, rerun, result)
        _compare_bundle(period / BUNDLE_DIR, rerun / BUNDLE_DIR, result)
        notebooks = report_notebooks(config)  # the audit's own notebooks where it names them
        for entry in manifest["files"]:
            if entry.get("kind") in ("national", "provider") and entry["path"].endswith(".html"):
                _compare_report(period / entry["path"], entry, rerun / BUNDLE_DIR, notebooks, result)
    return result


# --- open data -------------------------------------------------------------------------------------

def _compare_open_data(config: AuditConfig, period: Path, rerun: Path, result: Reproduction) -> None:
    text = neutralise_formulas(open_data(config, rerun)).to_csv(index=False)
    for path in (period / "indicators.csv", period / "site" / "indicators.csv"):
        if not path.is_file():
            result.differences.append(f"{path.relative_to(period)}: missing")
            continue
        published = path.read_text(encoding="utf-8")
        if published == text:
            if path.parent == period:
                result.figures_checked = _count_figures(text)
            continue
        result.differences.extend(f"{path.relative_to(period)}: {d}" for d in _csv_differences(published, text))


_KEY = ["measure", "statistic", "level", "unit_id"]


def _read(text: str) -> pd.DataFrame:
    return pd.read_csv(StringIO(text), dtype=str, keep_default_na=False)


def _count_figures(text: str) -> int:
    frame = _read(text)
    numeric = [c for c in frame.columns if c not in _KEY + ["audit", "period", "unit_name", "parent_id", "flag",
                                                             "suppressed", "method"]]
    return int((frame[numeric] != "").to_numpy().sum())


def _csv_differences(published: str, recomputed: str) -> list[str]:
    a, b = _read(published), _read(recomputed)
    if list(a.columns) != list(b.columns) or not set(_KEY) <= set(a.columns):
        return [f"columns differ: published {list(a.columns)}, recomputed {list(b.columns)}"]
    a, b = a.set_index(_KEY), b.set_index(_KEY)
    out = [f"row {'/'.join(k)} published but not recomputed" for k in a.index.difference(b.index)]
    out += [f"row {'/'.join(k)} recomputed but not published" for k in b.index.difference(a.index)]
    common = a.index.intersection(b.index)
    a, b = a.loc[common], b.loc[common]
    for col in a.columns:
        differ = a[col] != b[col]
        for key in a.index[differ.to_numpy()]:
            out.append(f"{'/'.join(key)} {col}: published {a.at[key, col]!r}, recomputed {b.at[key, col]!r}")
    if not out:
        out.append("same figures, different text (row order or formatting)")
    return out


# --- bundle ----------------------------------------------------------------------------------------

def _compare_bundle(published: Path, rerun: Path, result: Reproduction) -> None:
    for path in sorted(rerun.glob("*.parquet")):
        old = published / path.name
        if not old.is_file():
            result.differences.append(f"bundle/{path.name}: missing")
            continue
        try:
            pd.testing.assert_frame_equal(pd.read_parquet(old), pd.read_parquet(path), check_exact=True)
        except AssertionError as exc:
            result.differences.append(f"bundle/{path.name}: {' '.join(str(exc).split())[:300]}")
        result.tables_checked += 1
    old_model = _without_timings(json.loads((published / "model.json").read_text()))
    new_model = _without_timings(json.loads((rerun / "model.json").read_text()))
    if old_model != new_model:
        result.differences.append("bundle/model.json: the risk model differs")


def _without_timings(value):
    """A JSON document without its 'seconds' entries (how long a fit took is not a result)."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


# --- reports ---------------------------------------------------------------------------------------

class _VisibleText(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "title"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style", "title") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    """What a reader sees, whitespace collapsed, with the run-to-run volatile parts masked."""
    parser = _VisibleText()
    parser.feed(html)
    text = " ".join(" ".join(parser.parts).split())
    for pattern, mask in _VOLATILE:
        text = pattern.sub(mask, text)
    return text


def regenerate_report_html(notebook: Path, parameters: dict) -> str:
    """The HTML a report notebook displays, from running its code cells in this process (no kernel)."""
    from auditreport.presentation.display import capture

    nb = nbformat.read(str(notebook), as_version=4)
    namespace: dict = dict(parameters)
    with capture() as parts, contextlib.redirect_stdout(None), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layout and missing-glyph warnings of figures we do not keep
        for cell in nb.cells:
            if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []):
                continue
            exec(compile(cell.source, f"{notebook.name}", "exec"), namespace)  # noqa: S102 - our notebook
    return "\n".join(parts)


def _compare_report(path: Path, entry: dict, bundle: Path, notebooks: dict[str, Path],
                    result: Reproduction) -> None:
    rel = entry["path"]
    if not path.is_file():
        result.differences.append(f"{rel}: missing")
        return
    parameters = dict(entry["parameters"], bundle_dir=str(bundle))
    regenerated = visible_text(regenerate_report_html(notebooks[entry["kind"]], parameters))
    published = visible_text(path.read_text(encoding="utf-8"))
    result.reports_checked += 1
    if published == regenerated:
        return
    a, b = _NUMBER.findall(published), _NUMBER.findall(regenerated)
    changes = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op != "equal":
            changes.append(f"published {' '.join(a[i1:i2]) or '(nothing)'} -> recomputed "
                           f"{' '.join(b[j1:j2]) or '(nothing)'}")
    if changes:
        result.differences.append(f"{rel}: numbers differ: " + "; ".join(changes[:5])
                                  + (f" (and {len(changes) - 5} more)" if len(changes) > 5 else ""))
    else:
        sm = difflib.SequenceMatcher(a=published, b=regenerated, autojunk=False)
        op = next(o for o in sm.get_opcodes() if o[0] != "equal")
        result.differences.append(f"{rel}: text differs: published {published[op[1]:op[2]][:80]!r}, "
                                  f"recomputed {regenerated[op[3]:op[4]][:80]!r}")
