"""The results bundle: the contract between the national stage and everything that reads its results.

``write_bundle`` writes a ``NationalResults`` (checked against ``schema.TABLES``, stamped with
``FORMAT_VERSION``); ``load_bundle`` reads one back with typed access and refuses any other format version.
"""

from auditreport.bundle.reader import Bundle, BundleFormatError, bundle_path, load_bundle, read_metadata
from auditreport.bundle.schema import FORMAT_VERSION, TABLES
from auditreport.bundle.writer import BUNDLE_DIR, BundleSchemaError, write_bundle

__all__ = ["BUNDLE_DIR", "FORMAT_VERSION", "TABLES", "Bundle", "BundleFormatError", "BundleSchemaError",
           "bundle_path", "load_bundle", "read_metadata", "write_bundle"]
