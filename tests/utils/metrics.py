"""Reading a service's Prometheus metrics: one of ragft's samples, and vLLM's running requests."""

import time

import httpx


def metric(service: str | httpx.Client, name: str, default: float | None = None) -> float:
    """One sample of the service's /metrics (by its URL, or a client of an app in this process),
    by its full name and labels; `default` when a labelled sample has not been counted yet."""
    scraped = service.get("/metrics") if isinstance(service, httpx.Client) else httpx.get(f"{service}/metrics")
    for line in scraped.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    if default is not None:
        return default
    raise AssertionError(f"{name} is not in the metrics")


def running_requests(generation_url: str) -> float:
    """How many requests vLLM is generating for right now, from its own metrics."""
    metrics = httpx.get(f"{generation_url}/metrics").text
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("vllm:num_requests_running"))


def wait_until_idle(generation_url: str, seconds: float = 5) -> float:
    deadline = time.monotonic() + seconds
    while running_requests(generation_url) and time.monotonic() < deadline:
        time.sleep(0.1)
    return running_requests(generation_url)
