"""The run's records (the ledger) and the power timeline: every total is computed from them."""
