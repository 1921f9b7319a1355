"""The HTTP API option (`-c api=http`): the REST API's routes on an API Gateway HTTP API, each
a Lambda proxy integration (payload format 2.0) to the same targets (alias `live` for the
rolled-out functions), every route behind a Lambda authorizer on the `X-Api-Key` header,
throttled per route, access-logged, errors of API Gateway's own as the HTTP API answers them.

Why a Lambda authorizer: an HTTP API has no API keys or usage plans, and its IAM and JWT
authorizers would change what a client sends. The authorizer keeps the REST API's contract
("no request without a key", in the same header): the key is a Secrets Manager secret the
stack generates; a client reads it (output `ApiKeySecret`) as it reads the REST key by
`ApiKeyId`. API Gateway answers a request without the header 401 without calling the
authorizer, and caches each answer by the header's value for `AUTHORIZER_CACHE_S`
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-lambda-authorizer.html).
docs/api.md "HTTP API option" says what this gives up against the REST API."""

from __future__ import annotations

from avsev.serving.routes import ROUTES
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigw2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import AppConfig
from infra.constants import Env
from infra.nag import acknowledge

IDENTITY_SOURCE = "$request.header.X-Api-Key"
AUTHORIZER_CACHE_S = 300
"""Seconds API Gateway keeps an authorizer's answer for one key (the maximum is 3600)."""

ACCESS_LOG_FORMAT = (
    '{"requestId":"$context.requestId","ip":"$context.identity.sourceIp",'
    '"requestTime":"$context.requestTime","httpMethod":"$context.httpMethod",'
    '"routeKey":"$context.routeKey","status":"$context.status","protocol":"$context.protocol",'
    '"responseLength":"$context.responseLength","integrationStatus":"$context.integrationStatus",'
    '"authorizerError":"$context.authorizer.error","errorMessage":"$context.error.message"}'
)
"""HTTP API access-log variables
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-logging-variables.html)."""


def route_throttle(config: AppConfig) -> dict[str, tuple[float, int]]:
    """Route key → (rate, burst): the REST API's method settings, on the same routes."""
    return {
        "POST /predict/batch": (
            max(1.0, config.throttle_rate / 10),
            max(1, config.throttle_burst // 10),
        ),
        "POST /predict/explain": (
            max(1.0, config.throttle_rate / 2),
            max(1, config.throttle_burst // 2),
        ),
    }


class HttpApiGateway(Construct):
    """`url`, `key_secret` (the client's key), `api` (the HTTP API) and `stage`."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: AppConfig,
        targets: dict[str, lambda_.IFunction],
        authorizer: lambda_.Function,
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.key_secret = secretsmanager.Secret(
            self,
            "ApiKey",
            description=f"{stack.stack_name}: the HTTP API's key (send it as X-Api-Key)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=40, exclude_punctuation=True
            ),
        )
        acknowledge(
            self.key_secret,
            "AwsSolutions-SMG4",
            "The API key is a shared credential handed to clients: rotating it on a schedule would lock "
            "every client out until it fetched the new value. An operator rotates it on purpose "
            "(put-secret-value); the authorizer re-reads it within 5 minutes.",
        )
        self.key_secret.grant_read(authorizer)
        authorizer.add_environment(Env.API_KEY_SECRET_ARN, self.key_secret.secret_arn)

        self.authorizer = authorizers.HttpLambdaAuthorizer(
            "KeyAuthorizer",
            authorizer,
            authorizer_name="api-key",
            identity_source=[IDENTITY_SOURCE],
            response_types=[authorizers.HttpLambdaResponseType.SIMPLE],
            results_cache_ttl=Duration.seconds(AUTHORIZER_CACHE_S),
        )
        self.api = apigw2.HttpApi(
            self,
            "Http",
            api_name=stack.stack_name,
            description="Aviation accident severity: predictions, explanations, outcomes",
            create_default_stage=False,
            default_authorizer=self.authorizer,
            cors_preflight=apigw2.CorsPreflightOptions(
                allow_origins=list(config.cors_origins),
                allow_methods=[apigw2.CorsHttpMethod.GET, apigw2.CorsHttpMethod.POST],
                allow_headers=["Content-Type", "X-Api-Key"],
            )
            if config.cors_origins
            else None,
        )
        proxies = {
            name: integrations.HttpLambdaIntegration(
                f"{name.title()}Integration",
                fn,
                payload_format_version=apigw2.PayloadFormatVersion.VERSION_2_0,
            )
            for name, fn in targets.items()
        }
        self.routes: dict[str, apigw2.HttpRoute] = {}
        for path, method, function in ROUTES:
            (route,) = self.api.add_routes(
                path=path,
                methods=[apigw2.HttpMethod(method)],
                integration=proxies[function],
                authorizer=self.authorizer,
            )
            self.routes[f"{method} {path}"] = route

        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.stage = apigw2.HttpStage(
            self,
            "Stage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            detailed_metrics_enabled=True,
            throttle=apigw2.ThrottleSettings(
                rate_limit=config.throttle_rate, burst_limit=config.throttle_burst
            ),
        )
        # the route settings name routes: the stage waits for them
        self.stage.node.add_dependency(*self.routes.values())
        cfn_stage = self.stage.node.default_child
        assert isinstance(cfn_stage, apigw2.CfnStage)
        cfn_stage.access_log_settings = apigw2.CfnStage.AccessLogSettingsProperty(
            destination_arn=self.access_logs.log_group_arn, format=ACCESS_LOG_FORMAT
        )
        cfn_stage.route_settings = {
            key: {"ThrottlingRateLimit": rate, "ThrottlingBurstLimit": burst}
            for key, (rate, burst) in route_throttle(config).items()
        }
        self.url = self.stage.url
        self.metric_dimensions = {"ApiId": self.api.api_id, "Stage": "$default"}
        """CloudWatch dimensions of this API's metrics: `Count`, `4xx`, `5xx`
        (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-metrics.html)."""
        self.metric_names = {"count": "Count", "4xx": "4xx", "5xx": "5xx"}
