"""The sync engine, one subpackage per stage of the pipeline a sync's run follows.

::

    project.py, selectors.py   which syncs: the models, their profiles, --select/--exclude
    plan/                      what a run would do, before it does it
        checks.py                  the sync against the warehouse and the dbt manifest (located errors)
        planner.py                 a sync's plan: its steps, rows by reason, files, price, estimate
        columns.py, prices.py      what a sync reads and writes; the per-row price and its source
        escalation.py              the expected rows and cost of each escalation step
        approval.py                an approved plan (plan -o / run --plan) and the caps it holds a run to
    lifecycle.py               one sync's life in a run: checks, the approved plan, lease, steps, outcome
    runner.py, context.py      one step of a sync: its selection, the pass and the event loop
        runner_base.py             the runner's state; runner_target.py the target before paying;
        runner_resume.py           finishing what earlier runs left; runner_submit.py new files to the API
    invalid_files.py           syncs of files that fail to load, left out (Dagster)
    events.py                  what comes back to the main thread, as typed values
    rows/                      warehouse -> files
        select.py                  the selection SQL (new, changed, stale, failed...) and its buckets
        extract.py                 streaming the selection, keys checked, rows hashed
        files.py                   the JSONL files a job sends (size-bounded, named by content)
        casts.py, preview.py       answer types; plan --preview
        deletions.py               target.on_source_delete
    jobs/                      files -> the API and back
        driver.py                  the one writer of job states (submit, poll, download, cancel)
        tracked.py                 a job in flight, and record_move: the one way job states are written
        cancel.py                  `sixtyfour-sync cancel`, through the driver's record_move
        states.py                  the job state machine (pure)
        keys.py, budget.py         Idempotency-Keys; fitting files to a budget (pure)
        scheduler.py               API calls on worker threads, their answers as typed events
    results/                   result files -> the target
        parse.py, jsonrecords.py   reading a result (CSV, JSON, JSON Lines) exactly and in bounded memory
        fetch.py, result_files.py  a result downloaded and parsed on a worker; its files on disk
        upsert.py, overwrite.py    the merge's SQL and the overwrite rule
        merger.py                  merging a job's answers in one transaction with its ledger write
        targets.py, quarantine.py  the target checked before paying; rows the target refuses
        target_table.py            the target created or given the sync's columns before a merge
    steps/                     the steps after a sync's own pass
        field_changes.py           what a struct change asks of the target's rows (pure)
        new_fields.py              the one sequence of "new fields" steps plan and run follow, tier by tier
        escalation.py              weak answers asked again at a higher tier
    ledger/                    the record that survives a crash
        store.py                   the Ledger, made of: tables.py (the tables), job.py (a job row),
                                   runs.py (runs, steps), jobs.py (jobs, row keys), records.py
                                   (columns, quarantine, prices, specs, webhook events)
        lease.py, rowkeys.py       one run per sync and target; a job's row keys
        accounting.py              a run's numbers, derived from the ledger's facts (pure)
        localdb.py                 an in-memory DuckDB per thread for local vectorised work
    summary.py                 what a plan or a run reports

The commands built on it (run, plan, status, cancel, validate, dbt-sources) are in
:mod:`sixtyfour_sync.commands`, one module per command; docs/architecture.md draws the pipeline.
"""
