"""What a deployed stack says about itself: its CloudFormation outputs."""

from __future__ import annotations

from typing import Any


class StackNotFound(ValueError):
    pass


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """Output key → value of a deployed stack (e.g. `avsev-prod`)."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except cloudformation.exceptions.ClientError as e:
        raise StackNotFound(f"stack {stack_name}: {e}") from e
    if not stacks:
        raise StackNotFound(f"stack {stack_name}: not found")
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
