"""The REST API on the functions' aliases: authorization on every method, API keys and a
usage plan per client, request validation, structured access logs, tracing, throttling,
errors in the service's own shape."""

from __future__ import annotations

from typing import Any

from avsev.serving.routes import ROUTES
from avsev.serving.schema import MAX_BATCH
from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import AppConfig
from infra.constants import EV_ID_PATTERN
from infra.nag import acknowledge


def _error_template(status: int) -> str:
    return (
        '{"error": {"status": ' + str(status) + ', "code": "$context.error.responseType", '
        '"message": $context.error.messageString, "details": [], "request_id": "$context.requestId"}}'
    )


class Api(Construct):
    def __init__(
        self, scope: Construct, id: str, *, config: AppConfig, targets: dict[str, lambda_.IFunction]
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        # Execution and access logs to CloudWatch both need API Gateway's account-level
        # CloudWatch role ("To enable CloudWatch Logs, you must grant API Gateway permission to
        # read and write logs to CloudWatch for your account":
        # https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html);
        # without it, creating the stage fails ("CloudWatch Logs role ARN must be set in account
        # settings to enable logging"). So the stage logs only where that role is known to be set.
        self.logging = config.api_gateway_account or config.api_logs
        self.access_logs = (
            logs.LogGroup(
                self,
                "AccessLogs",
                log_group_name=f"{ACCESS_LOG_GROUP_PREFIX}{stack.stack_name}-access",
                retention=logs.RetentionDays.ONE_MONTH,
                removal_policy=RemovalPolicy.DESTROY,
            )
            if self.logging
            else None
        )
        self.api = apigw.RestApi(
            self,
            "Rest",
            rest_api_name=stack.stack_name,
            description="Aviation accident severity: predictions, explanations, outcomes",
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name="prod",
                tracing_enabled=True,
                logging_level=apigw.MethodLoggingLevel.INFO
                if self.logging
                else apigw.MethodLoggingLevel.OFF,
                data_trace_enabled=False,
                metrics_enabled=True,
                throttling_rate_limit=config.throttle_rate,
                throttling_burst_limit=config.throttle_burst,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs)
                if self.access_logs
                else None,
                access_log_format=ACCESS_LOG_FORMAT if self.access_logs else None,
                method_options={
                    "/predict/batch/POST": apigw.MethodDeploymentOptions(
                        throttling_rate_limit=max(1.0, config.throttle_rate / 10),
                        throttling_burst_limit=max(1, config.throttle_burst // 10),
                    ),
                    "/predict/explain/POST": apigw.MethodDeploymentOptions(
                        throttling_rate_limit=max(1.0, config.throttle_rate / 2),
                        throttling_burst_limit=max(1, config.throttle_burst // 2),
                    ),
                },
            ),
            default_cors_preflight_options=apigw.CorsOptions(
                allow_origins=list(config.cors_origins)
            )
            if config.cors_origins
            else None,
            endpoint_types=[apigw.EndpointType.REGIONAL],
        )
        for response_type, status in (
            (apigw.ResponseType.BAD_REQUEST_BODY, 400),
            (apigw.ResponseType.DEFAULT_4_XX, None),
            (apigw.ResponseType.DEFAULT_5_XX, None),
        ):
            code = status or (400 if "4" in response_type.response_type else 500)
            self.api.add_gateway_response(
                f"Gateway{response_type.response_type}",
                type=response_type,
                templates={"application/json": _error_template(code)},
            )

        self.validator = apigw.RequestValidator(
            self,
            "BodyValidator",
            rest_api=self.api,
            validate_request_body=True,
            validate_request_parameters=True,
        )
        report = apigw.JsonSchema(
            type=apigw.JsonSchemaType.OBJECT,
            required=["ev_id"],
            properties={
                "ev_id": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, pattern=EV_ID_PATTERN)
            },
        )
        models = {
            "/predict": report,
            "/predict/explain": report,
            "/predict/batch": apigw.JsonSchema(
                type=apigw.JsonSchemaType.OBJECT,
                required=["reports"],
                properties={
                    "reports": apigw.JsonSchema(
                        type=apigw.JsonSchemaType.ARRAY,
                        min_items=1,
                        max_items=MAX_BATCH,
                        items=report,
                    )
                },
            ),
            "/outcomes": apigw.JsonSchema(type=apigw.JsonSchemaType.OBJECT),
        }

        authorizer = None
        authorization = apigw.AuthorizationType.IAM
        if config.auth == "cognito":
            self.user_pool = cognito.UserPool(
                self,
                "Users",
                self_sign_up_enabled=False,
                password_policy=cognito.PasswordPolicy(
                    min_length=12,
                    require_digits=True,
                    require_lowercase=True,
                    require_symbols=True,
                    require_uppercase=True,
                ),
                feature_plan=cognito.FeaturePlan.PLUS,
                standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
                mfa=cognito.Mfa.REQUIRED,
                mfa_second_factor=cognito.MfaSecondFactor(sms=False, otp=True),
            )
            authorizer = apigw.CognitoUserPoolsAuthorizer(
                self, "Authorizer", cognito_user_pools=[self.user_pool]
            )
            authorization = apigw.AuthorizationType.COGNITO

        integrations = {
            name: apigw.LambdaIntegration(fn, proxy=True) for name, fn in targets.items()
        }
        self.methods: dict[str, apigw.Method] = {}
        for path, method, function in ROUTES:
            resource = self.api.root.resource_for_path(path)
            model = models.get(path)
            self.methods[f"{method} {path}"] = resource.add_method(
                method,
                integrations[function],
                api_key_required=True,
                authorization_type=authorization,
                authorizer=authorizer,
                request_validator=self.validator if model else None,
                request_models={
                    "application/json": self.api.add_model(
                        f"{path.strip('/').replace('/', '_')}_model".title().replace("_", ""),
                        schema=model,
                    )
                }
                if model
                else None,
            )

        self.plan = self.api.add_usage_plan(
            "DefaultPlan",
            name="default",
            description="Per-client throttling and quota; an API key identifies the client, IAM/Cognito authorizes",
            throttle=apigw.ThrottleSettings(
                rate_limit=config.throttle_rate, burst_limit=config.throttle_burst
            ),
            quota=apigw.QuotaSettings(limit=config.quota_per_day, period=apigw.Period.DAY),
            api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)],
        )
        self.key = self.api.add_api_key(
            "DefaultKey", description="the first client's key (add one per client)"
        )
        self.plan.add_api_key(self.key)
        self.url = self.api.url
        self.metric_dimensions = {
            "ApiName": self.api.rest_api_name,
            "Stage": self.api.deployment_stage.stage_name,
        }
        """CloudWatch dimensions of this API's metrics: `Count`, `4XXError`, `5XXError`."""
        self.metric_names = {"count": "Count", "4xx": "4XXError", "5xx": "5XXError"}
        if not self.logging:
            for rule in (
                "AwsSolutions-APIG1",
                "AwsSolutions-APIG6",
                "Serverless-APIGWStructuredLogging",
                "Serverless-APIGWAccessLogging",
            ):
                acknowledge(self.api, rule, NO_ACCOUNT_ROLE)


NO_ACCOUNT_ROLE = (
    "API Gateway's execution and access logs to CloudWatch need the account-and-region "
    "CloudWatch role, which this app sets only when asked (context api_gateway_account=true, or "
    "api_logs=true where the account already has one): setting it replaces the role of every API "
    "in the region. Metrics, X-Ray traces and the functions' own logs always apply."
)


ACCESS_LOG_GROUP_PREFIX = "/aws/apigateway/"
ACCESS_LOG_FORMAT = apigw.AccessLogFormat.json_with_standard_fields(
    caller=True,
    http_method=True,
    ip=True,
    protocol=True,
    request_time=True,
    resource_path=True,
    response_length=True,
    status=True,
    user=True,
)
EXECUTION_LOG_GROUP_PREFIX = "API-Gateway-Execution-Logs_"


class ApiGatewayAccountStack(Stack):
    """API Gateway's CloudWatch Logs role, an account-and-region setting
    (`AWS::ApiGateway::Account`): its own stack, shared by the stage stacks, so deleting a
    stage never leaves the setting pointing at a deleted role. The role is retained."""

    def __init__(self, scope: Construct, id: str, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        arn = f"arn:{self.partition}:logs:{self.region}:{self.account}:log-group:"
        role = iam.Role(
            self,
            "LoggingRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="API Gateway writes execution and access logs of this account's APIs",
        )
        role.apply_removal_policy(RemovalPolicy.RETAIN)
        groups = [
            f"{arn}{EXECUTION_LOG_GROUP_PREFIX}*",
            f"{arn}{ACCESS_LOG_GROUP_PREFIX}*",
        ]
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteApiLogs",
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:DescribeLogStreams",
                    "logs:PutLogEvents",
                ],
                resources=groups + [f"{g}:*" for g in groups],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ListLogGroups",
                actions=["logs:DescribeLogGroups"],
                resources=[f"{arn}*"],
            )
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "API Gateway names its execution log groups itself (API-Gateway-Execution-Logs_<api>/<stage>); access "
            "logs go to /aws/apigateway/<stack>-access; DescribeLogGroups lists names only (no log data) and takes "
            "the account's log-group pattern. No log reads.",
            *(f"Resource::{g.replace(arn, _NAG_ARN)}" for g in groups),
            *(f"Resource::{g.replace(arn, _NAG_ARN)}:*" for g in groups),
            f"Resource::{_NAG_ARN}*",
        )
        account = apigw.CfnAccount(self, "Account", cloud_watch_role_arn=role.role_arn)
        # The role's ARN orders the setting after the role only; its permissions are a separate
        # resource (the role's default policy), and API Gateway checks the role can write logs
        # when the setting is made. Depending on the role construct depends on both.
        account.node.add_dependency(role)
        account.apply_removal_policy(RemovalPolicy.RETAIN)
        self.role = role


_NAG_ARN = "arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
