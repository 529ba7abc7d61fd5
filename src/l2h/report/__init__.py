"""Reporting: figures (``l2h.report.figures``) and result tables."""
