#!/usr/bin/env python3
"""Regenerates fixtures.json: requests signed by botocore (the AWS CLI's and
boto3's signer), which tests/botocore_fixtures.rs must verify.

Run from this directory with botocore installed:  python3 gen_fixtures.py
The output is committed so the Rust tests need no Python.
"""
import datetime
import json
from unittest import mock

import botocore
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.session

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLETOKEN//////////wEaDEXAMPLE+/="
NOW = datetime.datetime(2026, 1, 1, 0, 0, 0)
ENDPOINT = "http://127.0.0.1:8080"


class Captured(Exception):
    pass


def record(name, method, url, headers, body):
    if isinstance(body, str):
        body = body.encode()
    path_and_query = url[len(ENDPOINT):] or "/"
    path, _, query = path_and_query.partition("?")
    # User-Agent is never signed; keep the fixture free of this machine's details.
    headers = {k: ("Botocore/" + botocore.__version__ if k.lower() == "user-agent" else v) for k, v in headers.items()}
    return {
        "name": name,
        "method": method,
        "path": path,
        "query": query,
        "headers": [[k, v if isinstance(v, str) else v.decode()] for k, v in headers.items()],
        "body_hex": (body or b"").hex(),
        "now": int(NOW.replace(tzinfo=datetime.timezone.utc).timestamp()),
    }


def via_client(name, token, call):
    """What the AWS CLI sends: a real botocore ECS client, stopped before the wire."""
    session = botocore.session.get_session()
    session.set_credentials(AKID, SECRET, token)
    client = session.create_client("ecs", region_name="us-west-2", endpoint_url=ENDPOINT)
    out = []

    def before_send(request, **_):
        headers = dict(request.headers)
        headers["Host"] = "127.0.0.1:8080"  # urllib3 adds it on the wire
        out.append(record(name, request.method, request.url, headers, request.body))
        raise Captured()

    client.meta.events.register("before-send", before_send)
    try:
        call(client)
    except Captured:
        pass
    return out[0]


def via_signer(name, signer_cls, method, url, headers, body=b"", **kw):
    creds = botocore.credentials.Credentials(AKID, SECRET)
    req = botocore.awsrequest.AWSRequest(method=method, url=url, headers=headers, data=body)
    signer_cls(creds, "ecs", "us-west-2", **kw).add_auth(req)
    prepared = req.prepare()
    headers = dict(prepared.headers)
    headers["Host"] = "127.0.0.1:8080"
    return record(name, prepared.method, prepared.url, headers, prepared.body)


class FixedDatetime(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return NOW

    @classmethod
    def now(cls, tz=None):
        return NOW.replace(tzinfo=tz) if tz else NOW


def main():
    with mock.patch.object(botocore.auth.datetime, "datetime", FixedDatetime):
        fixtures = [
            via_client("cli list-clusters", None, lambda c: c.list_clusters(maxResults=10)),
            via_client("cli with session token", TOKEN, lambda c: c.list_clusters()),
            via_client(
                "cli describe-clusters unicode body",
                None,
                lambda c: c.describe_clusters(clusters=["d\u00e9mo", "a b+c/d"], include=["TAGS"]),
            ),
            # botocore signs the query exactly as written, while aws-sigv4 (and
            # we) decode and re-encode it; they agree whenever the URL is
            # canonically encoded, as every SDK writes it ("~" not "%7E").
            via_signer(
                "signer GET with query",
                botocore.auth.SigV4Auth,
                "GET",
                ENDPOINT + "/v1/a%20b/~x?b=2&a=1&a=0&s=%2F%20~%2B&e=",
                {"X-Custom": "  two   spaces  "},
            ),
            via_signer(
                "presigned websocket GET",
                botocore.auth.SigV4QueryAuth,
                "GET",
                ENDPOINT + "/agent/ws?cluster=default",
                {},
                expires=900,
            ),
        ]
    with open("fixtures.json", "w") as f:
        json.dump({"botocore_version": botocore.__version__, "fixtures": fixtures}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
