"""Reports: results.json files -> comparison tables (Markdown, CSV) and seaborn figures."""

from clproto.reports.collect import find_results, load_results, summary_frame
from clproto.reports.build import write_report

__all__ = ["find_results", "load_results", "summary_frame", "write_report"]
