"""The steps after a sync's own pass: what a struct change asks of the target (field_changes.py), asking only
new fields tier by tier (new_fields.py), asking weak answers again at a higher tier (escalation.py)."""
