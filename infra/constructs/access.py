"""Explicit S3 statements (CDK's bucket grants add wildcard actions and unconditioned
listing): reads, writes and listings of named prefixes only."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3

from infra.nag import ref


def s3_access(
    role: iam.IRole,
    bucket: s3.IBucket,
    *,
    read: Sequence[str] = (),
    write: Sequence[str] = (),
    list_prefixes: Sequence[str] = (),
    list_all: bool = False,
) -> list[str]:
    """Grant GetObject on `read` prefixes, PutObject (+ multipart abort) on `write` prefixes and
    ListBucket limited by `s3:prefix` to `list_prefixes` (or, with `list_all`, the whole bucket:
    S3 answers a missing key with 404 rather than 403 only to callers that may list it).
    Returns the cdk-nag resource findings the wildcards make, for the acknowledgment."""
    findings: list[str] = []
    objects = sorted({*read, *write})
    if read:
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{p}*") for p in read]
            )
        )
    if write:
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects(f"{p}*") for p in write],
            )
        )
    if list_all:
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn])
        )
    elif list_prefixes:
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{p}*" for p in list_prefixes]}},
            )
        )
    findings += [f"Resource::{ref(bucket)}/{p}*" for p in objects]
    return findings
