"""crds/restartschedule.yaml's `spec.template` is crds/restartrequest.yaml's `spec`, generated.

One schema for both, so a template is checked exactly as a request is and the
two never drift: `python -m tests.schedule.crd` rewrites the region between
the BEGIN and END markers; tests/schedule/test_crd.py fails when it is stale.
Two differences, on purpose: a template may change (a request's spec is
immutable, `self == oldSelf`), and it has a description of its own.
"""

from __future__ import annotations

import copy
import pathlib
import re
from typing import Any

import yaml

CRDS = pathlib.Path(__file__).resolve().parents[2] / "crds"
REQUEST, SCHEDULE = CRDS / "restartrequest.yaml", CRDS / "restartschedule.yaml"
REGION = re.compile(
    r"(?P<begin>^(?P<indent> *)# BEGIN template:[^\n]*\n(?:(?P=indent)#[^\n]*\n)*)"
    r"(?P<body>.*?)"
    r"(?P<end>^(?P=indent)# END template\n)",
    re.MULTILINE | re.DOTALL,
)
DESCRIPTION = (
    "The RestartRequest spec each run is created with, checked by the same schema (and by "
    "the operator with the same parser) as a RestartRequest's spec. Give a workload "
    "selector, maxConcurrent and waitForReady for a gradual, rolling restart."
)


def request_spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(REQUEST.read_text())
    [version] = crd["spec"]["versions"]
    spec: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec


def template_schema() -> dict[str, Any]:
    """The request's spec schema, minus its immutability, with the template's description."""
    schema = copy.deepcopy(request_spec_schema())
    schema["description"] = DESCRIPTION
    schema["x-kubernetes-validations"] = [
        rule for rule in schema.get("x-kubernetes-validations", []) if "oldSelf" not in rule["rule"]
    ]
    return schema


def render(text: str) -> str:
    """`text` (restartschedule.yaml) with the template region made afresh."""
    match = REGION.search(text)
    if match is None:
        raise ValueError(f"{SCHEDULE.name}: no '# BEGIN template:' ... '# END template' region")
    dumped = yaml.safe_dump(template_schema(), sort_keys=False, width=80, allow_unicode=True)
    indent = match["indent"]
    body = "".join(f"{indent}{line}\n" if line else "\n" for line in dumped.splitlines())
    return text[: match.start("body")] + body + text[match.end("body") :]


def main() -> None:
    SCHEDULE.write_text(render(SCHEDULE.read_text()))
    print(f"wrote {SCHEDULE.relative_to(CRDS.parent)}")


if __name__ == "__main__":
    main()
