"""Webhook-driven completion: receive Sixtyfour's signed deliveries and finish the jobs they announce.

- :mod:`~sixtyfour_sync.receiver.delivery`: one delivery checked (signature, timestamp, ids); no I/O.
- :mod:`~sixtyfour_sync.receiver.finisher`: the background queue that finishes tasks, with retries.
- :mod:`~sixtyfour_sync.receiver.server`: the HTTP listener and the routing of a delivery (dedupe, lookup).
- :mod:`~sixtyfour_sync.receiver.app`: the wiring to a project's ledgers and the engine.
"""
