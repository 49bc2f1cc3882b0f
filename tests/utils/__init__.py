"""What the tests share besides fixtures: builders, process helpers and readers, one module per
job. The conftest files hold the fixtures and the tier hook."""
