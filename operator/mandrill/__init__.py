"""mandrill: a Kubernetes operator that consumes custom resources as a message queue.

RestartRequest restarts pods or workloads; CrawlJob crawls URLs and records the
link graph. See README.md for use and docs/design.md for the contract.
"""

__version__ = "0.1.0"
