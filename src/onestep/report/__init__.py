"""Paper tables and figures from stored metrics.json files alone: statistics (stats), the column registry
(columns), one md/tex/csv writer (writer), the ablation, baselines, main and study tables, the figures.

Entry points: `tables.TABLES[kind]` (an ablation's `table:` key; `tables.load_spec` reads the spec),
`main.build_main` (the main table from the ablation CSVs), `study.trials_table` / `study.tuned_table` (the
Optuna studies' tables). See docs/report.md.
"""
