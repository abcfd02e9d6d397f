#!/usr/bin/env python3
"""Parses responses written by flotilla-protocol with botocore's own response
parsers, as the AWS CLI would: tests/botocore_parse.rs runs it.

    python parse_responses.py CASES.json   # prints the parsed responses as JSON

Each case: {"model" (a vendored botocore model file), "service",
"protocol", "operation", "status", "headers", "body_b64"}. The parser works
from the model Flotilla's types were generated from, not the one bundled
with this botocore, so a member newer than the CLI is still read. Each
result is what botocore's parser returns, made JSON: timestamps as epoch
seconds, blobs as base64; ResponseMetadata kept.
"""
import base64
import datetime
import json
import sys

try:
    import awscli  # noqa: F401  (makes the CLI's bundled botocore importable)
except ImportError:
    pass
import botocore
import botocore.model
import botocore.parsers


def jsonable(v):
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    if isinstance(v, datetime.datetime):
        return v.timestamp()
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(v).decode()
    return v


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    models = {}
    out = []
    for case in cases:
        model = models.get(case["model"])
        if model is None:
            with open(case["model"]) as f:
                model = models[case["model"]] = botocore.model.ServiceModel(json.load(f), case["service"])
        op = model.operation_model(case["operation"])
        parser = botocore.parsers.create_parser(case["protocol"])
        response = {
            "status_code": case["status"],
            "headers": {k.lower(): v for k, v in case["headers"]},
            "body": base64.b64decode(case["body_b64"]),
        }
        try:
            parsed = parser.parse(response, op.output_shape)
        except Exception as e:  # report, do not stop: the Rust test names the case
            parsed = {"PARSE_ERROR": f"{type(e).__name__}: {e}"}
        out.append(jsonable(parsed))
    json.dump({"botocore_version": botocore.__version__, "parsed": out}, sys.stdout)


if __name__ == "__main__":
    main()
