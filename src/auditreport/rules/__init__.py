"""Rules every layer shares: the flag vocabulary and flag rule, and the small-number (disclosure) rule.

One place for each, so the national stage, aggregate mode, the reports and the publication site flag a unit
alike and hide the same cells. Rules may use ``auditreport.stats`` and nothing above it.
"""
