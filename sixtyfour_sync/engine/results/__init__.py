"""Result files to the target: reading a result exactly (parse.py, jsonrecords.py), a job's files on disk
(result_files.py), the merge's SQL and the overwrite rule (upsert.py, overwrite.py), merging in one transaction
with the ledger write (merger.py), the target checked before paying (targets.py), rows it refuses
(quarantine.py)."""
