"""tests/ha runs in the in-cluster half (MANDRILL_TEST_OPERATOR_IN_CLUSTER=1) on the real node.

It reuses the fixtures of tests/incluster (the deployed operator) and of
tests/node (the real node's settings: its bridge address).
"""

from tests.incluster.conftest import installed, pod_template
from tests.node.conftest import node

__all__ = ["installed", "node", "pod_template"]
