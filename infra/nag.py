"""cdk-nag acknowledgments: each finding accepted on purpose, with its reason, on the
construct it concerns (cdk-nag 3 matches rule ids exactly, findings included)."""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnResource, Stack, Validations
from constructs import IConstruct


def ref(construct: IConstruct, suffix: str = ".Arn") -> str:
    """How cdk-nag names a resource in a finding: `<LogicalId.Arn>`."""
    cfn = construct if isinstance(construct, CfnResource) else construct.node.default_child
    stack = Stack.of(construct)
    return f"<{stack.resolve(stack.get_logical_id(cfn))}{suffix}>"  # type: ignore[arg-type]


def acknowledge(scope: IConstruct, rule: str, reason: str, *findings: str) -> None:
    """Acknowledge `rule` on `scope` (and below), or only the given findings of it."""
    ids = [f"{rule}[{f}]" for f in findings] if findings else [rule]
    Validations.of(scope).acknowledge(*(Acknowledgment(id=i, reason=reason) for i in ids))


CFN_LINT_ACCEPTED = {
    "W3005": "aws-cdk-lib makes each function (and our subscription filters, streams) depend on its role "
    "and the role's default policy; the DependsOn on the role repeats the GetAtt's ordering, harmlessly, "
    "and the one on the policy is what makes the permissions exist before first use.",
}
"""cfn-lint warnings left in the synthesized templates, each with its reason (errors: none)."""
