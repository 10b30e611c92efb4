"""The answer store: a question answered and merged once is not paid for again.

Every answer a sync's own pass merges is kept in the ledger (``_sixtyfour_sync_answers``), keyed by its question
(:mod:`.question`) and input hash, in the transaction that merges it. Before a run asks, the rows it would send
whose question has a stored answer within ``reuse.max_age`` take that answer instead (:mod:`.sql` finds them in the
warehouse, :mod:`.answers` shapes them, engine/runner_reuse.py merges them through the same merge as a result
file), each recorded in ``_sixtyfour_sync_reuses`` in the same transaction. docs/paying-once.md says what users see.
"""
