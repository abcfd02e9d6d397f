//! The run-time description of a service's wire shapes, as the AWS model
//! gives them: what the protocol codecs (`flotilla-protocol`) walk to turn a
//! Query form, an XML document or a CBOR item into the JSON value a generated
//! type deserializes from, and back.
//!
//! Why a table beside the serde types: JSON is the shape of the generated
//! types already (serde names are the model's member names, timestamps are
//! epoch seconds, blobs base64), so the JSON protocols decode straight into
//! them. The other protocols need what serde does not know: a member's Query
//! and XML name (`locationName`), how a list or map is spelled (`member`,
//! `entry`, flattened), which numbers are timestamps or blobs. Each generated
//! service module has one [`ServiceSchema`] (`SERVICE`) holding that, built
//! as `static` data by `tools/gen_wire.py`, so it costs no start-up work and
//! little compile time.
//!
//! Shapes are referred to by [`ShapeId`], an index into
//! [`ServiceSchema::shapes`], so recursive shapes need no pointers.

/// A wire protocol a service speaks, as its model lists it
/// (`metadata.protocols`, in the model's order of preference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// AWS JSON 1.0: `POST /`, `X-Amz-Target`, `application/x-amz-json-1.0`.
    AwsJson1_0,
    /// AWS JSON 1.1: as 1.0 with `application/x-amz-json-1.1`.
    AwsJson1_1,
    /// AWS Query: form-encoded `Action=…&Version=…`, XML responses.
    AwsQuery,
    /// Smithy RPC v2 CBOR: `POST /service/{Service}/operation/{Operation}`.
    RpcV2Cbor,
}

impl Protocol {
    /// The protocol's name as botocore's models spell it (`metadata.protocols`).
    pub fn model_name(self) -> &'static str {
        match self {
            Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => "json",
            Protocol::AwsQuery => "query",
            Protocol::RpcV2Cbor => "smithy-rpc-v2-cbor",
        }
    }
}

/// A shape's position in [`ServiceSchema::shapes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShapeId(pub u16);

/// One AWS service: its names and protocols, every shape reachable from the
/// operations Flotilla serves, those operations and their errors.
#[derive(Debug)]
pub struct ServiceSchema {
    /// The module the service's types are generated into (`ecs`, `elbv2`, …).
    pub module: &'static str,
    /// The model's `serviceId` (`Elastic Load Balancing v2`).
    pub service_id: &'static str,
    /// The SigV4 signing name: the credential scope's service
    /// (`metadata.signingName`, else `endpointPrefix`).
    pub signing_name: &'static str,
    /// The model's `apiVersion`: what a Query request's `Version` must say.
    pub api_version: &'static str,
    /// The protocols the model lists, in its order of preference.
    pub protocols: &'static [Protocol],
    /// The JSON protocols' `X-Amz-Target` prefix (`GraniteServiceVersion20100801`).
    pub target_prefix: Option<&'static str>,
    /// The Query protocol's XML namespace, written on every response's root.
    pub xml_namespace: Option<&'static str>,
    /// The service's absolute Smithy shape id
    /// (`com.amazonaws.cloudwatch#GraniteServiceVersion20100801`). Its name
    /// is the `{serviceName}` of RPC v2 CBOR paths, and its namespace
    /// qualifies the `__type` of RPC v2 CBOR errors. botocore's models do not
    /// carry it; the generator's service table does.
    pub shape_id: &'static str,
    /// The model has `awsQueryCompatible`: JSON and CBOR errors also carry
    /// the Query error code in `x-amzn-query-error` (clients send
    /// `x-amzn-query-mode: true`).
    pub query_compatible: bool,
    pub shapes: &'static [ShapeSchema],
    /// The operations served, sorted by name.
    pub operations: &'static [OperationSchema],
    /// The errors those operations may return, sorted by shape name.
    pub errors: &'static [ErrorSchema],
}

impl ShapeKind {
    /// The members of a structure or union.
    pub fn members(&self) -> Option<&'static [MemberSchema]> {
        match *self {
            ShapeKind::Structure(m) | ShapeKind::Union(m) => Some(m),
            _ => None,
        }
    }
}

impl ServiceSchema {
    pub fn shape(&self, id: ShapeId) -> &'static ShapeSchema {
        &self.shapes[id.0 as usize]
    }

    /// Looks a shape up by its model name (shapes are sorted by name).
    pub fn shape_named(&self, name: &str) -> Option<ShapeId> {
        self.shapes
            .binary_search_by(|s| s.name.cmp(name))
            .ok()
            .map(|i| ShapeId(i as u16))
    }

    /// Looks an operation up by its wire name (`CreateLoadBalancer`).
    pub fn operation(&self, name: &str) -> Option<&'static OperationSchema> {
        self.operations
            .binary_search_by(|o| o.name.cmp(name))
            .ok()
            .map(|i| &self.operations[i])
    }

    /// Looks an error up by its shape name or by the code the protocols send
    /// (`DuplicateLoadBalancerNameException` or `DuplicateLoadBalancerName`).
    pub fn error(&self, name_or_code: &str) -> Option<&'static ErrorSchema> {
        self.errors
            .iter()
            .find(|e| e.shape == name_or_code || e.code == name_or_code)
    }

    /// The service's part of [`ServiceSchema::shape_id`]: the `{serviceName}`
    /// segment of RPC v2 CBOR paths.
    pub fn smithy_service_name(&self) -> &'static str {
        self.shape_id
            .rsplit_once('#')
            .map_or(self.shape_id, |(_, name)| name)
    }

    /// The Smithy namespace (`com.amazonaws.cloudwatch`).
    pub fn smithy_namespace(&self) -> &'static str {
        self.shape_id.split_once('#').map_or("", |(ns, _)| ns)
    }

    pub fn speaks(&self, protocol: Protocol) -> bool {
        self.protocols.contains(&protocol)
    }
}

/// One shape of the model.
#[derive(Debug)]
pub struct ShapeSchema {
    /// The model's shape name (`CreateLoadBalancerInput`).
    pub name: &'static str,
    pub kind: ShapeKind,
}

/// What a shape is on the wire.
#[derive(Debug, Clone, Copy)]
pub enum ShapeKind {
    /// A structure, members in the model's order: the order XML responses
    /// are written in.
    Structure(&'static [MemberSchema]),
    /// A union: a structure of which exactly one member is set. It travels
    /// as a structure in every protocol.
    Union(&'static [MemberSchema]),
    List(ListSchema),
    Map(MapSchema),
    String,
    /// A string the model restricts to these values.
    Enum(&'static [&'static str]),
    /// 32-bit signed (`integer`; also `byte`/`short`).
    Integer,
    /// 64-bit signed.
    Long,
    Float,
    Double,
    Boolean,
    /// Epoch seconds in the generated types; the format is the shape's
    /// `timestampFormat` if it has one, else the protocol's default.
    Timestamp(Option<TimestampFormat>),
    /// Bytes; base64 text in the generated types and in JSON and Query.
    Blob,
    /// An untyped JSON document (`serde_json::Value` in the generated types).
    Document,
}

/// A structure member.
#[derive(Debug, Clone, Copy)]
pub struct MemberSchema {
    /// The member name: the JSON and CBOR key, and the generated type's serde name.
    pub name: &'static str,
    /// The Query parameter and XML element name: the model's `locationName`
    /// for the member, else its name.
    pub xml_name: &'static str,
    pub target: ShapeId,
}

/// A member whose Query and XML name is its member name.
pub const fn member(name: &'static str, target: u16) -> MemberSchema {
    MemberSchema {
        name,
        xml_name: name,
        target: ShapeId(target),
    }
}

/// A member with a `locationName`.
pub const fn member_as(name: &'static str, xml_name: &'static str, target: u16) -> MemberSchema {
    MemberSchema {
        name,
        xml_name,
        target: ShapeId(target),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ListSchema {
    pub member: ShapeId,
    /// The `locationName` of the list's member, if the model gives one.
    pub member_name: Option<&'static str>,
    /// Flattened lists repeat the items directly in the containing structure
    /// (`Name.1`, `<Name>…</Name><Name>…</Name>`), without the `member`
    /// level. A flattened list whose member has a `locationName` is spelled
    /// with that name instead of the structure member's (botocore's rule).
    pub flattened: bool,
}

impl ListSchema {
    /// The element (and Query key segment) of each item in a list that is
    /// not flattened: `member` unless the model names it.
    pub fn item_name(&self) -> &'static str {
        self.member_name.unwrap_or("member")
    }
}

#[derive(Debug, Clone, Copy)]
pub struct MapSchema {
    pub key: ShapeId,
    pub value: ShapeId,
    /// `key` unless the model names it.
    pub key_name: &'static str,
    /// `value` unless the model names it.
    pub value_name: &'static str,
    /// Flattened maps have no `entry` level.
    pub flattened: bool,
}

/// A `timestampFormat` trait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampFormat {
    /// `2026-01-01T00:00:00.000Z` (Query and XML's default).
    Iso8601,
    /// Seconds since the epoch, fractions allowed (JSON's and CBOR's default).
    EpochSeconds,
    /// `Thu, 01 Jan 2026 00:00:00 GMT`.
    Rfc822,
}

/// An operation Flotilla serves.
#[derive(Debug)]
pub struct OperationSchema {
    pub name: &'static str,
    pub input: Option<ShapeId>,
    pub output: Option<ShapeId>,
    /// Query responses wrap the output in this element (`CreateLoadBalancerResult`).
    pub result_wrapper: Option<&'static str>,
    /// Indexes into [`ServiceSchema::errors`]: the errors the model lists.
    pub errors: &'static [u16],
}

/// Who is at fault, as Query errors' `<Type>` and `x-amzn-query-error` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The caller (HTTP 4xx).
    Sender,
    /// The service (HTTP 5xx).
    Receiver,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Sender => "Sender",
            Fault::Receiver => "Receiver",
        }
    }
}

/// An error a service returns, with everything every protocol needs to
/// send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorSchema {
    /// The error's shape name: JSON's `__type`, and CBOR's after the namespace.
    pub shape: &'static str,
    /// The code the Query protocol sends (`<Code>`) and the
    /// `x-amzn-query-error` header carries: the model's `awsQueryError` code
    /// (`DuplicateLoadBalancerName`), else the shape name.
    pub code: &'static str,
    /// The model's `httpStatusCode`; 400 for a client error, 500 for a
    /// server error (`fault`) when the model gives none.
    pub status: u16,
    pub fault: Fault,
}

impl ErrorSchema {
    /// An error the model does not list (AWS's common errors, e.g.
    /// `ValidationError`, `UnknownOperationException`): the code is the
    /// shape name.
    pub const fn common(code: &'static str, status: u16) -> Self {
        let fault = if status >= 500 {
            Fault::Receiver
        } else {
            Fault::Sender
        };
        ErrorSchema {
            shape: code,
            code,
            status,
            fault,
        }
    }
}

// Constructors the generated tables use, so that each entry stays one line.

pub const fn shape(name: &'static str, kind: ShapeKind) -> ShapeSchema {
    ShapeSchema { name, kind }
}

pub const fn list(member: u16, member_name: Option<&'static str>, flattened: bool) -> ShapeKind {
    ShapeKind::List(ListSchema {
        member: ShapeId(member),
        member_name,
        flattened,
    })
}

pub const fn map(
    key: u16,
    value: u16,
    names: Option<(&'static str, &'static str)>,
    flattened: bool,
) -> ShapeKind {
    let (key_name, value_name) = match names {
        Some(names) => names,
        None => ("key", "value"),
    };
    ShapeKind::Map(MapSchema {
        key: ShapeId(key),
        value: ShapeId(value),
        key_name,
        value_name,
        flattened,
    })
}

pub const fn operation(
    name: &'static str,
    input: Option<u16>,
    output: Option<u16>,
    result_wrapper: Option<&'static str>,
    errors: &'static [u16],
) -> OperationSchema {
    let input = match input {
        Some(i) => Some(ShapeId(i)),
        None => None,
    };
    let output = match output {
        Some(i) => Some(ShapeId(i)),
        None => None,
    };
    OperationSchema {
        name,
        input,
        output,
        result_wrapper,
        errors,
    }
}

pub const fn error(
    shape: &'static str,
    code: &'static str,
    status: u16,
    fault: Fault,
) -> ErrorSchema {
    ErrorSchema {
        shape,
        code,
        status,
        fault,
    }
}
