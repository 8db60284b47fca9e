"""Adapters: the only code that talks to the world (HTTP here; Kubernetes and the store beside it).

Each implements a port the domain declares, and turns the world's exceptions
into the domain's typed outcomes.
"""
