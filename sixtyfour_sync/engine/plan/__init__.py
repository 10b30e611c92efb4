"""What a run would do, before it does it: located checks (checks.py), a sync's plan and its steps
(planner.py), an approved plan and the caps it holds a run to (approval.py)."""
