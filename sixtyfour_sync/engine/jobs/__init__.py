"""Files to the API and back: the one writer of job states (driver.py) over the state machine (states.py),
Idempotency-Keys (keys.py), fitting files to a budget (budget.py), API calls on worker threads (scheduler.py)."""
