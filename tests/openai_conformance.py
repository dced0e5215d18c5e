"""OpenAI conformance checks for OpenLoRA (issue 17, item 4): the official `openai` client (sync and async) and
LangChain's `ChatOpenAI` against a real OpenLoRA server over HTTP, serving the tiny test model and its adapters.

Each check is a function of a `Target` that raises AssertionError (or the client's error) when OpenLoRA does not
behave as OpenAI's API does; importing this module registers them all in `CHECKS` (chat, sampling and completions,
errors and refusals). `tests/test_openai_conformance.py` runs them as tests; `bench/openai_conformance.py` runs the
same checks as a script and records the counts. The refusal checks are generated from
`hub.openlora.bodies.NEUTRAL_VALUES`, so a parameter stops being checked as refused the moment it is implemented.
"""

from __future__ import annotations

from tests import conformance_chat, conformance_errors, conformance_sampling
from tests.conformance_core import CHECKS, Target, conformance_target, run_checks

CHECK_MODULES = (conformance_chat, conformance_sampling, conformance_errors)  # imported for their checks
__all__ = ["CHECKS", "CHECK_MODULES", "Target", "conformance_target", "run_checks"]
