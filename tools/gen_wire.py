#!/usr/bin/env python3
"""Generate Rust wire types from AWS service models (botocore JSON).

    python3 tools/gen_wire.py            # rewrite crates/model/src/wire/*.rs
    python3 tools/gen_wire.py --check    # exit 1 if a committed file is stale
    python3 tools/gen_wire.py --stats    # print shapes and lines per service

Why generated: the service model is the contract, field by field (DESIGN.md).
Hand-writing hundreds of structures would drift from it; generating keeps
every name, enum value, `required` member and min/max limit exactly as AWS
publishes them.

The services are the table `SERVICES` below: each names its vendored model
(`crates/model/aws/`), the operations Flotilla serves (None: all of them) and
the service's Smithy shape id, which botocore's models do not carry. Only the
shapes reachable from those operations' inputs and outputs are generated (the
rest of a model costs compile time and serves nothing); adding an operation
is one line here and a rerun.

What comes out, one module per service (`crates/model/src/wire/<module>.rs`):
- structure (and union) -> `pub struct` with every member `Option<_>` (AWS
  treats absent and null alike) and the member name in `#[serde(rename)]`,
  so the JSON protocols decode straight into it (a union's check demands
  exactly one member);
- string with `enum` -> `pub enum` with the exact wire values;
- list -> `Vec<_>`, map -> `BTreeMap<String, _>`, timestamp -> `f64` epoch
  seconds, blob -> `String` (base64), document -> `serde_json::Value`;
- `impl Shape` that checks `required` members and the model's min/max
  limits, naming the offending field path (`containerDefinitions[0].cpu`);
- `Operation`: every served operation, with its schema (input, output,
  Query result wrapper, errors);
- `Exception`: every error those operations may return, with the code,
  HTTP status and fault each protocol sends;
- `SERVICE`: the service's metadata and a compact table of every generated
  shape (`wire::schema`), which the codecs of `flotilla-protocol` walk for
  the protocols serde alone cannot speak (Query/XML, RPC v2 CBOR).
"""
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "crates/model/aws"
OUT_DIR = ROOT / "crates/model/src/wire"


class Service:
    def __init__(self, module, model, shape_id, operations=None, refined=None):
        self.module = module          # Rust module name
        self.model = model            # file under crates/model/aws/
        self.shape_id = shape_id      # absolute Smithy service shape id
        self.operations = operations  # served operations; None = all
        self.refined = refined or {}


# Members the ECS model types as plain strings although their values form a
# lifecycle: the generated types use the hand-written enums of
# `crates/model/src/lifecycle.rs` (same wire values), so no code compares
# status strings. Only shapes the server produces are refined; requests keep
# the strings clients send and are parsed where they are handled.
REFINED = {
    ("Task", "lastStatus"): "crate::lifecycle::TaskStatus",
    ("Task", "desiredStatus"): "DesiredStatus",
    ("Container", "lastStatus"): "crate::lifecycle::ContainerStatus",
    ("ContainerInstance", "status"): "crate::lifecycle::InstanceStatus",
    ("Service", "status"): "crate::lifecycle::ServiceStatus",
    ("Deployment", "status"): "crate::lifecycle::DeploymentStatus",
    ("Cluster", "status"): "crate::lifecycle::ClusterStatus",
    ("TaskSet", "status"): "crate::lifecycle::TaskSetStatus",
}

SERVICES = [
    Service("ecs", "ecs-2014-11-13.json",
            "com.amazonaws.ecs#AmazonEC2ContainerServiceV20141113", refined=REFINED),
    # Every ELBv2 operation: the load-balancer issue needs nearly all of them.
    Service("elbv2", "elasticloadbalancingv2-2015-12-01.json",
            "com.amazonaws.elasticloadbalancingv2#ElasticLoadBalancing_v10"),
    # What the logs issue names, plus what Terraform's aws_cloudwatch_log_group
    # calls (the *LogGroup tag operations are the older spelling it still uses).
    Service("logs", "logs-2014-03-28.json", "com.amazonaws.cloudwatchlogs#Logs_20140328", [
        "CreateLogGroup", "DeleteLogGroup", "DescribeLogGroups",
        "PutRetentionPolicy", "DeleteRetentionPolicy",
        "TagResource", "UntagResource", "ListTagsForResource",
        "TagLogGroup", "UntagLogGroup", "ListTagsLogGroup",
        "CreateLogStream", "DescribeLogStreams", "DeleteLogStream",
        "PutLogEvents", "GetLogEvents", "FilterLogEvents",
    ]),
    # Metrics and alarms; dashboards, insight rules, metric streams and
    # anomaly detectors are not served.
    Service("cloudwatch", "monitoring-2010-08-01.json",
            "com.amazonaws.cloudwatch#GraniteServiceVersion20100801", [
        "PutMetricData", "GetMetricStatistics", "GetMetricData", "ListMetrics",
        "PutMetricAlarm", "DescribeAlarms", "DescribeAlarmsForMetric", "DeleteAlarms",
        "SetAlarmState", "EnableAlarmActions", "DisableAlarmActions", "DescribeAlarmHistory",
        "TagResource", "UntagResource", "ListTagsForResource",
    ]),
    Service("autoscaling", "application-autoscaling-2016-02-06.json",
            "com.amazonaws.applicationautoscaling#AnyScaleFrontendService"),
    # GetCallerIdentity is what deployment tools call to check credentials;
    # AssumeRole and GetSessionToken cost a dozen small shapes.
    Service("sts", "sts-2011-06-15.json",
            "com.amazonaws.sts#AWSSecurityTokenServiceV20110615",
            ["GetCallerIdentity", "AssumeRole", "GetSessionToken"]),
]

RUST_KEYWORDS = {
    "type", "match", "ref", "self", "struct", "enum", "fn", "mod", "use", "loop",
    "move", "box", "where", "impl", "trait", "in", "for", "let", "const", "static",
    "async", "await", "dyn", "crate", "super", "true", "false", "priv", "override",
}


def snake(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()
    return "r#" + s if s in RUST_KEYWORDS else s


def variant(value: str) -> str:
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", value) if p]
    out = []
    for p in parts:
        if p.isupper() or p.islower():
            p = p.lower()
        out.append(p[0].upper() + p[1:])
    v = "".join(out) or "Empty"
    return "V" + v if v[0].isdigit() else v


def rs(s: str) -> str:
    """A Rust string literal."""
    return json.dumps(s)


def is_document(s) -> bool:
    return s["type"] == "structure" and s.get("document")


def rust_type(shapes, name: str) -> str:
    s = shapes[name]
    t = s["type"]
    if is_document(s):
        return name
    if t == "structure":
        return name
    if t == "string":
        return name if "enum" in s else "String"
    if t == "list":
        return f"Vec<{rust_type(shapes, s['member']['shape'])}>"
    if t == "map":
        return f"BTreeMap<String, {rust_type(shapes, s['value']['shape'])}>"
    return {"integer": "i32", "long": "i64", "double": "f64", "float": "f64", "boolean": "bool",
            "timestamp": "f64", "blob": "String", "byte": "i32", "short": "i32"}[t]


def limit_checks(shapes, target: str, field: str) -> list:
    """Checks of the model's min/max on the member's own shape."""
    s = shapes[target]
    t = s["type"]
    lines = []
    lo, hi = s.get("min"), s.get("max")
    if t in ("integer", "long", "double", "float", "byte", "short"):
        if lo is not None:
            lines.append(f"if *v < {lo} as _ {{ return Err(ShapeViolation::new(at.field(\"{field}\"), \"must be at least {lo}\")); }}")
        if hi is not None:
            lines.append(f"if *v > {hi} as _ {{ return Err(ShapeViolation::new(at.field(\"{field}\"), \"must be at most {hi}\")); }}")
    elif t == "string" and "enum" not in s:
        if lo:
            lines.append(f"if v.chars().count() < {lo} {{ return Err(ShapeViolation::new(at.field(\"{field}\"), \"must be at least {lo} characters long\")); }}")
        if hi is not None:
            lines.append(f"if v.chars().count() > {hi} {{ return Err(ShapeViolation::new(at.field(\"{field}\"), \"must be at most {hi} characters long\")); }}")
    elif t == "list":
        if lo:
            lines.append(f"if v.len() < {lo} {{ return Err(ShapeViolation::new(at.field(\"{field}\"), \"must have at least {lo} items\")); }}")
        if hi is not None:
            lines.append(f"if v.len() > {hi} {{ return Err(ShapeViolation::new(at.field(\"{field}\"), \"must have at most {hi} items\")); }}")
    return lines


def served_operations(svc: Service, model: dict) -> list:
    ops = svc.operations if svc.operations is not None else list(model["operations"])
    missing = [o for o in ops if o not in model["operations"]]
    if missing:
        raise SystemExit(f"{svc.module}: operations not in the model: {missing}")
    return sorted(ops)


def reachable(model: dict, ops: list):
    """The shapes reachable from the operations' inputs and outputs, and the
    error shapes they list."""
    shapes = model["shapes"]
    seen = set()

    def walk(name):
        if name in seen:
            return
        seen.add(name)
        s = shapes[name]
        for k in ("member", "key", "value"):
            if k in s:
                walk(s[k]["shape"])
        for m in s.get("members", {}).values():
            walk(m["shape"])

    errors = set()
    for o in ops:
        op = model["operations"][o]
        for k in ("input", "output"):
            if k in op:
                walk(op[k]["shape"])
        for e in op.get("errors", []):
            errors.add(e["shape"])
    return sorted(seen), sorted(errors)


def error_info(name: str, s: dict):
    err = s.get("error", {})
    code = err.get("code", name)
    status = err.get("httpStatusCode", 500 if s.get("fault") else 400)
    if s.get("fault"):
        fault = "Receiver"
    elif err.get("senderFault"):
        fault = "Sender"
    else:
        fault = "Receiver" if status >= 500 else "Sender"
    return code, status, fault


def gen_types(svc: Service, shapes: dict, names: list) -> list:
    out = []
    for name in names:
        s = shapes[name]
        if is_document(s):
            out.append(f"/// A free-form JSON document (`{name}`).")
            out.append(f"pub type {name} = serde_json::Value;")
            out.append("")
        elif s["type"] == "string" and "enum" in s:
            values = s["enum"]
            variants = [variant(v) for v in values]
            seen = {}
            for i, v in enumerate(variants):
                if v in seen:
                    variants[i] = v + str(i)
                seen[v] = True
            out.append("#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]")
            out.append(f"pub enum {name} {{")
            for v, r in zip(values, variants):
                out.append(f"    #[serde(rename = {rs(v)})]")
                out.append(f"    {r},")
            out.append("}")
            out.append(f"impl {name} {{")
            out.append(f"    pub const ALL: &'static [{name}] = &[{', '.join(name + '::' + r for r in variants)}];")
            out.append("    /// The value as it travels on the wire.")
            out.append("    pub fn as_str(self) -> &'static str {")
            out.append("        match self {")
            for v, r in zip(values, variants):
                out.append(f"            {name}::{r} => {rs(v)},")
            out.append("        }")
            out.append("    }")
            out.append("    /// Parses a wire value; `None` for a value the model does not list.")
            out.append("    pub fn parse(value: &str) -> Option<Self> {")
            out.append("        Self::ALL.iter().copied().find(|v| v.as_str() == value)")
            out.append("    }")
            out.append("}")
            out.append(f"impl std::fmt::Display for {name} {{")
            out.append("    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }")
            out.append("}")
            out.append(f"impl Shape for {name} {{}}")
            out.append("")
        elif s["type"] == "structure" and not s.get("exception"):
            required = set(s.get("required", []))
            out.append("#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]")
            out.append(f"pub struct {name} {{")
            for mname, m in s["members"].items():
                rt = svc.refined.get((name, mname)) or rust_type(shapes, m["shape"])
                out.append(f"    #[serde(rename = \"{mname}\", default, skip_serializing_if = \"Option::is_none\")]")
                out.append(f"    pub {snake(mname)}: Option<{rt}>,")
            out.append("}")
            out.append(f"impl Shape for {name} {{")
            body = []
            if s.get("union"):
                # A union sets exactly one member.
                count = " + ".join(f"self.{snake(m)}.is_some() as usize" for m in s["members"])
                names = ", ".join(s["members"])
                body.append(f"if {count} != 1 {{ return Err(ShapeViolation::new(*at, \"must set exactly one of {names}\")); }}")
            for mname, m in s["members"].items():
                field = snake(mname)
                target = shapes[m["shape"]]
                checks = [] if (name, mname) in svc.refined else limit_checks(shapes, m["shape"], mname)
                recurse = target["type"] in ("structure", "list", "map") and not is_document(target)
                if mname in required and not checks and not recurse:
                    body.append(f"if self.{field}.is_none() {{ return Err(ShapeViolation::new(at.field(\"{mname}\"), \"is required\")); }}")
                    continue
                if mname in required:
                    body.append(f"let Some(v) = &self.{field} else {{ return Err(ShapeViolation::new(at.field(\"{mname}\"), \"is required\")); }};")
                    pre = ""
                else:
                    if not checks and not recurse:
                        continue
                    body.append(f"if let Some(v) = &self.{field} {{")
                    pre = "    "
                for c in checks:
                    body.append(pre + c)
                if recurse:
                    body.append(pre + f"v.check(&at.field(\"{mname}\"))?;")
                if mname not in required:
                    body.append("}")
            if body:
                out.append("    fn check(&self, at: &ShapePath<'_>) -> Result<(), ShapeViolation> {")
                out.extend("        " + b for b in body)
                out.append("        Ok(())")
                out.append("    }")
            out.append("}")
            out.append("")
    return out


def schema_kind(shapes: dict, index: dict, name: str) -> str:
    """The `ShapeKind` of one shape in the run-time table."""
    s = shapes[name]
    t = s["type"]
    if is_document(s):
        return "ShapeKind::Document"
    if t == "structure":
        kind = "Union" if s.get("union") else "Structure"
        members = []
        for mname, m in s["members"].items():
            target = index[m["shape"]]
            xml = m.get("locationName")
            if xml and xml != mname:
                members.append(f"member_as({rs(mname)}, {rs(xml)}, {target})")
            else:
                members.append(f"member({rs(mname)}, {target})")
        return f"ShapeKind::{kind}(&[{', '.join(members)}])"
    if t == "list":
        m = s["member"]
        named = f"Some({rs(m['locationName'])})" if "locationName" in m else "None"
        return f"list({index[m['shape']]}, {named}, {str(bool(s.get('flattened'))).lower()})"
    if t == "map":
        k, v = s["key"], s["value"]
        kn, vn = k.get("locationName", "key"), v.get("locationName", "value")
        names = "None" if (kn, vn) == ("key", "value") else f"Some(({rs(kn)}, {rs(vn)}))"
        return f"map({index[k['shape']]}, {index[v['shape']]}, {names}, {str(bool(s.get('flattened'))).lower()})"
    if t == "string":
        if "enum" in s:
            return f"ShapeKind::Enum(&[{', '.join(rs(v) for v in s['enum'])}])"
        return "ShapeKind::String"
    if t == "timestamp":
        fmt = s.get("timestampFormat")
        fmts = {None: "None", "iso8601": "Some(TimestampFormat::Iso8601)",
                "unixTimestamp": "Some(TimestampFormat::EpochSeconds)", "rfc822": "Some(TimestampFormat::Rfc822)"}
        return f"ShapeKind::Timestamp({fmts[fmt]})"
    return {"integer": "ShapeKind::Integer", "byte": "ShapeKind::Integer", "short": "ShapeKind::Integer",
            "long": "ShapeKind::Long", "float": "ShapeKind::Float", "double": "ShapeKind::Double",
            "boolean": "ShapeKind::Boolean", "blob": "ShapeKind::Blob"}[t]


PROTOCOLS = {"query": "Protocol::AwsQuery", "smithy-rpc-v2-cbor": "Protocol::RpcV2Cbor"}


def protocols(meta: dict) -> list:
    out = []
    for p in meta.get("protocols") or [meta["protocol"]]:
        if p == "json":
            out.append("Protocol::AwsJson1_0" if meta.get("jsonVersion") == "1.0" else "Protocol::AwsJson1_1")
        elif p in PROTOCOLS:
            out.append(PROTOCOLS[p])
        else:
            raise SystemExit(f"unsupported protocol {p}")
    return out


def generate(svc: Service, model: dict) -> str:
    shapes = model["shapes"]
    meta = model["metadata"]
    ops = served_operations(svc, model)
    names, errors = reachable(model, ops)
    index = {n: i for i, n in enumerate(names)}
    if len(names) > 65535:
        raise SystemExit(f"{svc.module}: too many shapes for a u16 id")
    error_index = {e: i for i, e in enumerate(errors)}

    out = [
        f"// @generated by tools/gen_wire.py from crates/model/aws/{svc.model}.",
        "// Do not edit by hand: change the generator and run it again.",
        "#![allow(clippy::all, missing_docs)]",
        "",
    ]
    types = gen_types(svc, shapes, names)
    if any("BTreeMap<" in line for line in types):
        out += ["use std::collections::BTreeMap;", ""]
    out += [
        "use serde::{Deserialize, Serialize};",
        "",
        "use crate::shape::{Shape, ShapePath, ShapeViolation};",
        "use crate::wire::schema::*;",
        "",
    ]
    out += types

    # Operations.
    out.append("/// Every operation Flotilla serves for this service, by its wire name.")
    out.append("#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]")
    out.append("pub enum Operation {")
    for o in ops:
        out.append(f"    {o},")
    out.append("}")
    out.append("impl Operation {")
    out.append(f"    pub const ALL: &'static [Operation] = &[{', '.join('Operation::' + o for o in ops)}];")
    out.append("    pub fn name(self) -> &'static str {")
    out.append("        self.schema().name")
    out.append("    }")
    out.append("    /// Looks an operation up by its wire name (after the `X-Amz-Target`")
    out.append("    /// prefix, the Query `Action`, or the RPC v2 path's operation).")
    out.append("    pub fn from_name(name: &str) -> Option<Self> {")
    out.append("        OPERATIONS.binary_search_by(|o| o.name.cmp(name)).ok().map(|i| Self::ALL[i])")
    out.append("    }")
    out.append("    /// Input and output shapes, Query result wrapper and errors.")
    out.append("    pub fn schema(self) -> &'static OperationSchema {")
    out.append("        &OPERATIONS[self as usize]")
    out.append("    }")
    out.append("}")
    out.append("")

    # Errors.
    out.append("/// Every error the served operations may return, by shape name.")
    out.append("#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]")
    out.append("pub enum Exception {")
    for e in errors:
        out.append(f"    {e},")
    out.append("}")
    out.append("impl Exception {")
    out.append(f"    pub const ALL: &'static [Exception] = &[{', '.join('Exception::' + e for e in errors)}];")
    out.append("    /// The code, HTTP status and fault each protocol sends.")
    out.append("    pub fn schema(self) -> &'static ErrorSchema {")
    out.append("        &ERRORS[self as usize]")
    out.append("    }")
    out.append("}")
    out.append("")

    if "targetPrefix" in meta:
        out.append("/// The `X-Amz-Target` prefix of this service.")
        out.append(f"pub const TARGET_PREFIX: &str = {rs(meta['targetPrefix'])};")
        out.append("")

    opt = lambda v: f"Some({rs(v)})" if v is not None else "None"
    out.append("/// The service's names, protocols, shapes, operations and errors.")
    out.append("pub static SERVICE: ServiceSchema = ServiceSchema {")
    out.append(f"    module: {rs(svc.module)},")
    out.append(f"    service_id: {rs(meta['serviceId'])},")
    out.append(f"    signing_name: {rs(meta.get('signingName') or meta['endpointPrefix'])},")
    out.append(f"    api_version: {rs(meta['apiVersion'])},")
    out.append(f"    protocols: &[{', '.join(protocols(meta))}],")
    out.append(f"    target_prefix: {opt(meta.get('targetPrefix'))},")
    out.append(f"    xml_namespace: {opt(meta.get('xmlNamespace'))},")
    out.append(f"    shape_id: {rs(svc.shape_id)},")
    out.append(f"    query_compatible: {str('awsQueryCompatible' in meta).lower()},")
    out.append("    shapes: &SHAPES,")
    out.append("    operations: &OPERATIONS,")
    out.append("    errors: &ERRORS,")
    out.append("};")
    out.append("")
    out.append(f"static SHAPES: [ShapeSchema; {len(names)}] = [")
    for n in names:
        out.append(f"    shape({rs(n)}, {schema_kind(shapes, index, n)}),")
    out.append("];")
    out.append("")
    out.append(f"static OPERATIONS: [OperationSchema; {len(ops)}] = [")
    for o in ops:
        op = model["operations"][o]
        inp = str(index[op["input"]["shape"]]) if "input" in op else None
        outp = str(index[op["output"]["shape"]]) if "output" in op else None
        wrapper = op.get("output", {}).get("resultWrapper")
        errs = ", ".join(str(error_index[e["shape"]]) for e in op.get("errors", []))
        out.append(f"    operation({rs(o)}, {f'Some({inp})' if inp else 'None'}, {f'Some({outp})' if outp else 'None'}, {opt(wrapper)}, &[{errs}]),")
    out.append("];")
    out.append("")
    out.append(f"static ERRORS: [ErrorSchema; {len(errors)}] = [")
    for e in errors:
        code, status, fault = error_info(e, shapes[e])
        out.append(f"    error({rs(e)}, {rs(code)}, {status}, Fault::{fault}),")
    out.append("];")
    return "\n".join(out) + "\n"


def rustfmt(code: str) -> str:
    return subprocess.run(["rustfmt", "--edition", "2021", "--emit", "stdout"],
                          input=code, capture_output=True, text=True, check=True).stdout


def main() -> int:
    check = "--check" in sys.argv
    stale = []
    for svc in SERVICES:
        model = json.loads((MODELS / svc.model).read_text())
        try:
            code = rustfmt(generate(svc, model))
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"rustfmt failed on {svc.module}: {e}", file=sys.stderr)
            return 2
        out = OUT_DIR / f"{svc.module}.rs"
        if "--stats" in sys.argv:
            ops = served_operations(svc, model)
            names, errors = reachable(model, ops)
            structs = sum(1 for n in names if model["shapes"][n]["type"] == "structure")
            enums = sum(1 for n in names if "enum" in model["shapes"][n])
            print(f"{svc.module:12} {len(ops):3} operations {len(names):4} shapes "
                  f"({structs} structures, {enums} enums) {len(errors):3} errors "
                  f"{code.count(chr(10)):6} lines")
        if check:
            if not out.exists() or out.read_text() != code:
                stale.append(str(out.relative_to(ROOT)))
        elif "--stats" not in sys.argv:
            out.write_text(code)
    if stale:
        print(f"stale: {', '.join(stale)}: run python3 tools/gen_wire.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
