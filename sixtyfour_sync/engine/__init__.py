"""The sync engine, one subpackage per stage of the pipeline a sync's run follows.

::

    project.py, selectors.py   which syncs: the models, their profiles, --select/--exclude
    plan/                      what a run would do, before it does it
        checks.py                  the sync against the warehouse and the dbt manifest (located errors)
        planner.py                 a sync's plan: its steps, rows by reason, files, price, estimate
        approval.py                an approved plan (plan -o / run --plan) and the caps it holds a run to
    runner.py, context.py      one sync's life: resume, the step's selection, files, the event loop
    events.py                  what comes back to the main thread, as typed values
    rows/                      warehouse -> files
        select.py                  the selection SQL (new, changed, stale, failed...) and its buckets
        extract.py                 streaming the selection, keys checked, rows hashed
        files.py                   the JSONL files a job sends (size-bounded, named by content)
        casts.py, preview.py       answer types; plan --preview
        deletions.py               target.on_source_delete
    jobs/                      files -> the API and back
        driver.py                  the one writer of job states (submit, poll, download, cancel)
        cancel.py                  `sixtyfour-sync cancel`, through the driver's record_move
        states.py                  the job state machine (pure)
        keys.py, budget.py         Idempotency-Keys; fitting files to a budget (pure)
        scheduler.py               API calls on worker threads, their answers as typed events
    results/                   result files -> the target
        parse.py, jsonrecords.py   reading a result (CSV, JSON, JSON Lines) exactly and in bounded memory
        result_files.py            a job's downloaded files on disk
        upsert.py, overwrite.py    the merge's SQL and the overwrite rule
        merger.py                  merging a job's answers in one transaction with its ledger write
        targets.py, quarantine.py  the target checked before paying; rows the target refuses
    steps/                     the steps after a sync's own pass
        field_changes.py           what a struct change asks of the target's rows (pure)
        new_fields.py              asking only the new fields, tier by tier
        escalation.py              weak answers asked again at a higher tier
    ledger/                    the record that survives a crash
        store.py                   the ledger tables (runs, jobs, steps, keys, prices...)
        lease.py, rowkeys.py       one run per sync and target; a job's row keys
        accounting.py              a run's numbers, derived from the ledger's facts (pure)
        localdb.py                 an in-memory DuckDB per thread for local vectorised work
    summary.py                 what a plan or a run reports

The commands built on it (run, plan, status, cancel, validate, dbt-sources) are in
:mod:`sixtyfour_sync.commands`; docs/architecture.md draws the pipeline.
"""
