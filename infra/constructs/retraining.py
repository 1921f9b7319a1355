"""The retraining engine: a CodeBuild project that runs `avsev lifecycle run` on the
repository's own code, and the rule that tells the loop's decider each build's end.

Why CodeBuild: a retraining trains XGBoost, compiles the trees with a C compiler and times the
compiled library against the champion. That needs xgboost (233 MB unpacked, over Lambda's
250 MB with the rest), gcc and minutes to hours, none of which a Lambda function has. A
CodeBuild project on an arm64 image builds for the arm64 functions natively, runs the same
`make setup` (from the lock) as a laptop, is paid per build minute, and announces every
build's end on EventBridge (https://docs.aws.amazon.com/codebuild/latest/userguide/sample-build-notifications.html).
Step Functions would only wrap the same build.

The build reads the record tables and writes the registry; with an approved candidate it runs
`make deploy MODEL=<version>`, the same deploy a person runs, which hands the new version to
the rollout controller at 10%. It may therefore assume the CDK bootstrap roles (the deploy
role CloudFormation acts through, the roles that publish assets and look up context).
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as assets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constants import LIFECYCLE_PREFIX, RECORD_PREFIXES, REGISTRY_PREFIX, Env
from infra.constructs.access import s3_access
from infra.constructs.functions import ServingFunction
from infra.nag import acknowledge

ROOT = Path(__file__).resolve().parents[2]
BUILDSPEC = ROOT / "infra" / "buildspec" / "retrain.yml"
SOURCE_EXCLUDES = [
    ".git",
    ".venv",
    ".tools",
    "build",
    "cdk.out",
    "node_modules",
    "demo-output",
    "bench/work",
    "layers/*/build",
    "layers/model",
    "**/__pycache__",
    "**/*.egg-info",
    ".*_cache",
    ".hypothesis",
]
"""What the source archive leaves out: environments, builds and caches a build makes itself."""
BUILD_TIMEOUT = Duration.hours(2)
"""Longer than any retraining measured here by far; shorter than the decider's run timeout."""


class Retraining(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        decider: ServingFunction,
        bucket: s3.IBucket,
        registry: str,
        stage: str,
        approval: str,
        alerts: sns.ITopic,
        dlq: sqs.IQueue,
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        source = assets.Asset(self, "Source", path=str(ROOT), exclude=SOURCE_EXCLUDES)
        self.project = codebuild.Project(
            self,
            "Project",
            description=f"{stack.stack_name}: retrain on the labelled traffic, gate, publish, deploy if approved",
            build_spec=codebuild.BuildSpec.from_object({"version": "0.2"}),  # replaced below
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxArmBuildImage.AMAZON_LINUX_2023_STANDARD_3_0,
                compute_type=codebuild.ComputeType.LARGE,
            ),
            environment_variables={
                Env.DATA_BUCKET: codebuild.BuildEnvironmentVariable(value=bucket.bucket_name),
                "REGISTRY": codebuild.BuildEnvironmentVariable(value=registry),
                "STAGE": codebuild.BuildEnvironmentVariable(value=stage),
                "APPROVAL": codebuild.BuildEnvironmentVariable(value=approval),
                Env.ALERTS_TOPIC_ARN: codebuild.BuildEnvironmentVariable(value=alerts.topic_arn),
            },
            timeout=BUILD_TIMEOUT,
        )
        # The repository as an S3 source with the buildspec in it. Set on the template itself:
        # CDK's S3 source grants read with wildcard actions (s3:GetObject*, s3:List*); CodeBuild
        # needs GetObject and GetObjectVersion on the object and the bucket's ACL and location
        # (https://docs.aws.amazon.com/codebuild/latest/userguide/setting-up-service-role.html).
        self.project.node.default_child.add_property_override(  # type: ignore[union-attr]
            "Source",
            {
                "Type": "S3",
                "Location": f"{source.s3_bucket_name}/{source.s3_object_key}",
                "BuildSpec": BUILDSPEC.relative_to(ROOT).as_posix(),
            },
        )
        assert self.project.role is not None
        self.project.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[source.bucket.arn_for_objects(source.s3_object_key)],
            )
        )
        self.project.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetBucketAcl", "s3:GetBucketLocation"],
                resources=[source.bucket.bucket_arn],
            )
        )
        role = self.project.role
        assert role is not None
        alerts.grant_publish(role)  # a candidate its gates hold is announced
        findings = s3_access(
            role,
            bucket,
            read=[*RECORD_PREFIXES, REGISTRY_PREFIX],
            write=[REGISTRY_PREFIX],
            list_all=True,
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["sts:AssumeRole"],
                resources=[f"arn:{stack.partition}:iam::{stack.account}:role/cdk-*"],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["events:PutEvents"],
                resources=[
                    f"arn:{stack.partition}:events:{stack.region}:{stack.account}:event-bus/default"
                ],
            )
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "Reads the record tables and the registry, writes the registry (no deletes); lists the data bucket "
            "(a missing key answers 404 only to a caller that may list). Assumes the CDK bootstrap roles (cdk-*) "
            "to run `cdk deploy` of an approved candidate, the same deploy a person runs.",
            *findings,
            "Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:role/cdk-*",
            "Action::kms:GenerateDataKey*",
            # CodeBuild's own grants: its log streams and its test-report groups
            "Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/codebuild/<RetrainingProject64912198>:*",
            "Resource::arn:<AWS::Partition>:codebuild:<AWS::Region>:<AWS::AccountId>:report-group/<RetrainingProject64912198>-*",
        )
        acknowledge(
            self.project,
            "AwsSolutions-CB4",
            "Build artifacts are not kept (the build's output is the registry entry, encrypted by the bucket).",
        )
        # The decider starts builds of this project, and hears of each one's end.
        decider.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["codebuild:StartBuild"], resources=[self.project.project_arn]
            )
        )
        decider.function.add_environment(Env.RETRAIN_PROJECT, self.project.project_name)
        ends = s3_access(
            decider.role,
            bucket,
            read=[LIFECYCLE_PREFIX, "reports/drift/"],
            write=[LIFECYCLE_PREFIX],
            list_all=True,
        )
        acknowledge(
            decider.role,
            "AwsSolutions-IAM5",
            "Reads the latest drift report and the loop's state, writes the loop's state and audit (no deletes); "
            "lists the data bucket (a missing state answers 404 only to a caller that may list). Publishes to the "
            "alerts topic (its KMS key).",
            *ends,
            "Action::kms:GenerateDataKey*",
        )
        events.Rule(
            self,
            "BuildEnded",
            description="each end of a retraining build, to the loop's decider",
            event_pattern=events.EventPattern(
                source=["aws.codebuild"],
                detail_type=["CodeBuild Build State Change"],
                detail={
                    "project-name": [self.project.project_name],
                    "build-status": ["SUCCEEDED", "FAILED", "FAULT", "STOPPED", "TIMED_OUT"],
                },
            ),
            targets=[
                targets.LambdaFunction(decider.function, dead_letter_queue=dlq, retry_attempts=2)
            ],
        )
