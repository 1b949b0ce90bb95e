"""A trivial Pulsar Function used to prove the functions worker runs this project's code.

It imports `magnetar` (installed in the worker's interpreter, not shipped in the upload), so
a successful round trip shows the worker's python3 is the project's environment.
"""

from __future__ import annotations

from typing import Any

from pulsar import Function

import magnetar


class SmokeProbe(Function):  # type: ignore[misc]
    def process(self, input: str, context: Any) -> str:
        return f"{input}|magnetar {magnetar.__version__}|{context.get_function_name()}"
