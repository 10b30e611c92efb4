"""The record that survives a crash: the ledger tables (store.py), the lease of one run per sync and target
(lease.py), a job's row keys (rowkeys.py), a run's numbers from the ledger's facts (accounting.py), and an
in-memory DuckDB for local work (localdb.py)."""
