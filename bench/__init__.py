"""bench: the levi-bench harness.

Table specs -> jobs -> ledger -> executor -> levi_core -> records -> reports. `bench` never
builds a model: it asks `levi_core.api.train_and_evaluate` to run a job and stores the result.
"""
