"""Pure SQL builders, one module per concern; none of them does I/O.

- :mod:`.identifiers`: validating, folding and quoting names (:class:`~.identifiers.Names`);
- :mod:`.placeholders`: ``?`` placeholders in each driver's style, found by sqlglot's tokenizer;
- :mod:`.ddl`: tables, columns, schemas, staging tables;
- :mod:`.catalog`: does a table exist, its columns, its unique keys;
- :mod:`.dml`: the small insert/update/select/delete statements of a session;
- :mod:`.upsert`: update from a stage, insert what is missing, guards, MERGE, insert-if-absent;
- :mod:`.select`: source queries, key reports, clean sources, row hashes, the clock.

Each takes a :class:`~.identifiers.Names` (a :class:`~sixtyfour_sync.warehouse.dialect.Dialect` plus the
quoting policy and default schema) and returns SQL text, tested by exact SQL per dialect.
"""
