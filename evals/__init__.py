"""Answer quality of the three routes on the same questions: the eval set, the scorer, the runner
and the report (`ragft eval`)."""
