"""What each command does: the work behind every rule (teacher, run, tables, tuning, tracking) and the
commands for people, as functions of plain arguments (config dict, paths); cli.py parses and calls these."""
