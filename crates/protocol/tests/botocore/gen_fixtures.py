#!/usr/bin/env python3
"""Regenerates fixtures.json: requests serialized by botocore (the AWS CLI's
and boto3's SDK core), which tests/botocore_fixtures.rs decodes and compares
with the parameters botocore was given.

- Query requests (ELBv2, STS, and CloudWatch forced to Query) and Smithy RPC
  v2 CBOR requests (CloudWatch), captured from a real botocore client just
  before they would go on the wire, with every handler botocore runs.
- CBOR response bodies for CloudWatch outputs, written by botocore's own
  CBOR serializer (botocore only writes requests, but a structure is encoded
  the same way in either direction).

Run with the AWS CLI's Python (scripts/test installs it):
    target/awscli-venv/bin/python crates/protocol/tests/botocore/gen_fixtures.py
The output is committed, so the Rust tests need no Python.
"""
import base64
import datetime
import json
import os
from unittest import mock

try:
    # The AWS CLI v1 ships botocore inside it; importing awscli makes it
    # importable as `botocore` (the name its own modules use). A plain
    # botocore installation works as well.
    import awscli  # noqa: F401
except ImportError:
    pass
import botocore
import botocore.model as bmodel
import botocore.serialize as bserialize
import botocore.session as bsession

ENDPOINT = "http://127.0.0.1:8080"
UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)


class Captured(Exception):
    pass


def jsonable(v):
    """Parameters as the decoder must yield them: timestamps as epoch
    seconds, blobs as base64."""
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    if isinstance(v, datetime.datetime):
        return v.timestamp()
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(v).decode()
    return v


def capture(service, protocol, operation, params):
    """What a botocore client sends for one call, stopped before the wire."""
    session = bsession.get_session()
    session.set_credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    original = bmodel.ServiceModel.resolved_protocol

    def forced(self):
        # botocore picks JSON for CloudWatch; these fixtures ask for the others.
        return protocol if self.service_name == service else original.__get__(self)

    with mock.patch.object(bmodel.ServiceModel, "resolved_protocol", property(forced)):
        client = session.create_client(service, region_name="us-east-1", endpoint_url=ENDPOINT)
        out = []

        def before_send(request, **_):
            out.append(request)
            raise Captured()

        client.meta.events.register("before-send", before_send)
        method = getattr(client, botocore.xform_name(operation))
        try:
            method(**params)
        except Captured:
            pass
    req = out[0]
    body = req.body or b""
    if isinstance(body, str):
        body = body.encode()
    keep = ("content-type", "smithy-protocol", "x-amz-target", "x-amzn-query-mode", "accept", "content-encoding")
    return {
        "name": f"{service} {protocol} {operation}",
        "service": service,
        "protocol": protocol,
        "operation": operation,
        "method": req.method,
        "path": req.url[len(ENDPOINT):] or "/",
        "headers": {k.lower(): (v if isinstance(v, str) else v.decode()) for k, v in req.headers.items() if k.lower() in keep},
        "body_hex": body.hex(),
        "expected": jsonable(params),
    }


def cbor_body(service, operation, output):
    """An output structure as botocore's CBOR serializer writes it."""
    model = bsession.get_session().get_service_model(service)
    shape = model.operation_model(operation).output_shape
    body = bytearray()
    bserialize.RpcV2CBORSerializer()._serialize_data_item(body, output, shape)
    return {
        "name": f"{service} cbor {operation} output",
        "service": service,
        "protocol": "smithy-rpc-v2-cbor-output",
        "operation": operation,
        "body_hex": bytes(body).hex(),
        "expected": jsonable(output),
    }


TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
LISTENER = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2"
LB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188"
DIMS = [{"Name": "ClusterName", "Value": "default"}, {"Name": "ServiceName", "Value": "web app & co"}]

QUERY = [
    ("elbv2", "CreateLoadBalancer", {
        "Name": "web", "Subnets": ["subnet-a", "subnet-b"], "SecurityGroups": ["sg-1"],
        "Scheme": "internal", "Type": "application", "IpAddressType": "ipv4",
        "Tags": [{"Key": "team", "Value": "core"}, {"Key": "env", "Value": "a=b&c d/é"}],
    }),
    ("elbv2", "CreateRule", {
        "ListenerArn": LISTENER, "Priority": 10,
        "Conditions": [
            {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/api/*", "/v2/*"]}},
            {"Field": "host-header", "HostHeaderConfig": {"Values": ["api.example.com"]}},
            {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X-Canary", "Values": ["1"]}},
            {"Field": "query-string", "QueryStringConfig": {"Values": [{"Key": "v", "Value": "2"}, {"Value": "beta"}]}},
            {"Field": "source-ip", "SourceIpConfig": {"Values": ["10.0.0.0/8"]}},
            {"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": ["GET", "HEAD"]}},
        ],
        "Actions": [{
            "Type": "forward", "Order": 1,
            "ForwardConfig": {
                "TargetGroups": [{"TargetGroupArn": TG, "Weight": 80}, {"TargetGroupArn": TG + "2", "Weight": 20}],
                "TargetGroupStickinessConfig": {"Enabled": True, "DurationSeconds": 3600},
            },
        }],
        "Tags": [{"Key": "rule", "Value": "canary"}],
    }),
    ("elbv2", "CreateRule", {
        "ListenerArn": LISTENER, "Priority": 20,
        "Conditions": [{"Field": "path-pattern", "Values": ["/old/*"]}],
        "Actions": [
            {"Type": "redirect", "Order": 1, "RedirectConfig": {
                "Protocol": "HTTPS", "Port": "443", "Host": "#{host}", "Path": "/new/#{path}",
                "Query": "#{query}", "StatusCode": "HTTP_301"}},
        ],
    }),
    ("elbv2", "ModifyListener", {
        "ListenerArn": LISTENER, "Port": 8080, "Protocol": "HTTP",
        "DefaultActions": [{"Type": "fixed-response", "FixedResponseConfig": {
            "StatusCode": "503", "ContentType": "text/plain", "MessageBody": "down for <maintenance>\n"}}],
    }),
    ("elbv2", "ModifyLoadBalancerAttributes", {
        "LoadBalancerArn": LB,
        "Attributes": [
            {"Key": "idle_timeout.timeout_seconds", "Value": "60"},
            {"Key": "deletion_protection.enabled", "Value": "true"},
        ],
    }),
    ("elbv2", "RegisterTargets", {
        "TargetGroupArn": TG,
        "Targets": [{"Id": "i-0123456789abcdef0", "Port": 32768}, {"Id": "10.0.0.5", "Port": 80, "AvailabilityZone": "all"}],
    }),
    ("elbv2", "CreateTargetGroup", {
        "Name": "web", "Protocol": "HTTP", "Port": 80, "VpcId": "vpc-1", "TargetType": "instance",
        "HealthCheckEnabled": True, "HealthCheckPath": "/health", "HealthCheckIntervalSeconds": 30,
        "HealthCheckTimeoutSeconds": 5, "HealthyThresholdCount": 5, "UnhealthyThresholdCount": 2,
        "Matcher": {"HttpCode": "200-299"},
    }),
    ("elbv2", "SetSecurityGroups", {"LoadBalancerArn": LB, "SecurityGroups": []}),
    ("elbv2", "DescribeTargetHealth", {"TargetGroupArn": TG, "Targets": [{"Id": "i-0123456789abcdef0", "Port": 32768}]}),
    ("elbv2", "DescribeLoadBalancers", {"Names": ["web"], "PageSize": 10}),
    ("sts", "GetCallerIdentity", {}),
    ("sts", "AssumeRole", {
        "RoleArn": "arn:aws:iam::123456789012:role/deploy", "RoleSessionName": "ci", "DurationSeconds": 900,
        "Tags": [{"Key": "team", "Value": "core"}], "PolicyArns": [{"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}],
    }),
    ("cloudwatch", "PutMetricData", {
        "Namespace": "App/Web",
        "MetricData": [
            {"MetricName": "Latency", "Dimensions": DIMS, "Timestamp": T0, "Value": 12.5,
             "Unit": "Milliseconds", "StorageResolution": 1},
            {"MetricName": "Requests", "Timestamp": T0 + datetime.timedelta(seconds=1, milliseconds=250),
             "Values": [1.0, 2.5, 1e-3], "Counts": [3.0, 1.0, 10.0], "Unit": "Count"},
            {"MetricName": "Size", "StatisticValues": {"SampleCount": 4.0, "Sum": 10.0, "Minimum": 1.0, "Maximum": 4.0}},
        ],
    }),
    ("cloudwatch", "PutMetricAlarm", {
        "AlarmName": "cpu-high", "AlarmDescription": "CPU > 80% <for> 3 minutes",
        "ActionsEnabled": True, "AlarmActions": ["arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:x"],
        "OKActions": [], "MetricName": "CPUUtilization", "Namespace": "AWS/ECS", "Statistic": "Average",
        "Dimensions": DIMS, "Period": 60, "EvaluationPeriods": 3, "DatapointsToAlarm": 2,
        "Threshold": 80.5, "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching",
        "Tags": [{"Key": "team", "Value": "core"}],
    }),
    ("cloudwatch", "GetMetricStatistics", {
        "Namespace": "AWS/ECS", "MetricName": "CPUUtilization", "Dimensions": DIMS,
        "StartTime": T0, "EndTime": T0 + datetime.timedelta(hours=1), "Period": 300,
        "Statistics": ["Average", "Maximum"], "ExtendedStatistics": ["p99"], "Unit": "Percent",
    }),
]

GET_METRIC_DATA = {
    "MetricDataQueries": [
        {"Id": "cpu", "MetricStat": {"Metric": {"Namespace": "AWS/ECS", "MetricName": "CPUUtilization", "Dimensions": DIMS},
                                     "Period": 60, "Stat": "Average", "Unit": "Percent"}, "ReturnData": True},
        {"Id": "double", "Expression": "cpu * 2", "Label": "twice"},
    ],
    "StartTime": T0, "EndTime": T0 + datetime.timedelta(minutes=10), "ScanBy": "TimestampAscending", "MaxDatapoints": 100,
}

def whole_seconds(v):
    """botocore writes CBOR timestamps as whole seconds (its default
    precision drops the fraction), so the CBOR cases use whole seconds."""
    if isinstance(v, dict):
        return {k: whole_seconds(x) for k, x in v.items()}
    if isinstance(v, list):
        return [whole_seconds(x) for x in v]
    if isinstance(v, datetime.datetime):
        return v.replace(microsecond=0)
    return v


CBOR = [
    ("cloudwatch", "PutMetricData", whole_seconds(QUERY[-3][2])),
    ("cloudwatch", "PutMetricAlarm", QUERY[-2][2]),
    ("cloudwatch", "GetMetricStatistics", QUERY[-1][2]),
    ("cloudwatch", "GetMetricData", GET_METRIC_DATA),
    ("cloudwatch", "DescribeAlarms", {"AlarmNames": ["cpu-high"], "StateValue": "ALARM", "AlarmTypes": ["MetricAlarm"], "MaxRecords": 50}),
    ("cloudwatch", "ListMetrics", {"Namespace": "AWS/ECS", "Dimensions": [{"Name": "ClusterName", "Value": "default"}], "RecentlyActive": "PT3H"}),
    ("cloudwatch", "SetAlarmState", {"AlarmName": "cpu-high", "StateValue": "OK", "StateReason": "manual", "StateReasonData": "{}"}),
    ("cloudwatch", "TagResource", {"ResourceARN": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:cpu-high", "Tags": [{"Key": "a", "Value": "b"}]}),
    ("cloudwatch", "DeleteAlarms", {"AlarmNames": ["a", "b"]}),
]

OUTPUTS = [
    ("cloudwatch", "GetMetricData", {
        "MetricDataResults": [{"Id": "cpu", "Label": "CPUUtilization", "StatusCode": "Complete",
                               "Timestamps": [T0, T0 + datetime.timedelta(minutes=1)], "Values": [12.5, -0.25]}],
        "Messages": [{"Code": "Info", "Value": "partial"}], "NextToken": "next",
    }),
    ("cloudwatch", "GetMetricStatistics", {
        "Label": "CPUUtilization",
        "Datapoints": [{"Timestamp": T0, "Average": 40.25, "Maximum": 99.0, "Unit": "Percent",
                        "ExtendedStatistics": {"p99": 98.5}}],
    }),
    ("cloudwatch", "DescribeAlarms", {
        "MetricAlarms": [{
            "AlarmName": "cpu-high", "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:cpu-high",
            "ActionsEnabled": True, "AlarmActions": ["arn:x"], "StateValue": "ALARM",
            "StateReason": "Threshold Crossed", "StateUpdatedTimestamp": T0, "AlarmConfigurationUpdatedTimestamp": T0,
            "MetricName": "CPUUtilization", "Namespace": "AWS/ECS", "Statistic": "Average", "Dimensions": DIMS,
            "Period": 60, "EvaluationPeriods": 3, "Threshold": 80.5, "ComparisonOperator": "GreaterThanThreshold",
        }],
        "CompositeAlarms": [],
    }),
    ("cloudwatch", "ListMetrics", {
        "Metrics": [{"Namespace": "AWS/ECS", "MetricName": "CPUUtilization", "Dimensions": DIMS}],
        "OwningAccounts": ["123456789012"],
    }),
]


def main():
    fixtures = [capture(s, "query", op, p) for s, op, p in QUERY]
    fixtures += [capture(s, "smithy-rpc-v2-cbor", op, p) for s, op, p in CBOR]
    fixtures += [cbor_body(s, op, out) for s, op, out in OUTPUTS]
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "fixtures.json"), "w") as f:
        json.dump({"botocore_version": botocore.__version__, "fixtures": fixtures}, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
