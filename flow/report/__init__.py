"""The typed build report and its views: report.json, markdown, self-contained HTML, plots and graph drawings."""
