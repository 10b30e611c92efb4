"""Warehouse to files: the selection of rows to ask (select.py), streaming and hashing them (extract.py), the
JSONL files a job sends (files.py), answer types (casts.py), ``plan --preview`` (preview.py) and
``target.on_source_delete`` (deletions.py)."""
