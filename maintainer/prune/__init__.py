"""Docker prune by plan: read the engine state, plan (pure), apply with re-checks."""
