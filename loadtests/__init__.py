"""Load tests of the gateway: Locust scenarios (locustfile.py), the runner (run.py) and the report (report.py)."""
