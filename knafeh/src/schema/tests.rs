#![allow(dead_code)] // the traced types are only ever deserialized by the tracer

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;

use super::*;

type Types = BTreeMap<String, Container>;

fn traced<T: serde::de::DeserializeOwned>() -> (Format, Types) {
    let mut tracer = Tracer::new();
    let format = tracer.trace::<T>().unwrap_or_else(|e| panic!("{e}"));
    (format, tracer.into_types())
}

fn error<T: serde::de::DeserializeOwned>() -> SchemaError {
    match Tracer::new().trace::<T>() {
        Ok(f) => panic!("{} was described as {f:?}", std::any::type_name::<T>()),
        Err(e) => e,
    }
}

fn r(name: &str) -> Format {
    Format::Ref(name.into())
}

fn b(f: Format) -> Box<Format> {
    Box::new(f)
}

fn field(name: &str, format: Format) -> Field {
    Field {
        name: name.into(),
        format,
    }
}

fn variant(name: &str, shape: VariantShape) -> Variant {
    Variant {
        name: name.into(),
        shape,
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}

#[test]
fn primitives() {
    fn prim<T: serde::de::DeserializeOwned>(expected: Format, text: &str) {
        let (format, types) = traced::<T>();
        assert_eq!(format, expected, "{}", std::any::type_name::<T>());
        assert!(types.is_empty());
        assert_eq!(json(&format), text);
    }
    prim::<()>(Format::Unit, r#""unit""#);
    prim::<bool>(Format::Bool, r#""bool""#);
    prim::<i8>(Format::I8, r#""i8""#);
    prim::<i16>(Format::I16, r#""i16""#);
    prim::<i32>(Format::I32, r#""i32""#);
    prim::<i64>(Format::I64, r#""i64""#);
    prim::<i128>(Format::I128, r#""i128""#);
    prim::<u8>(Format::U8, r#""u8""#);
    prim::<u16>(Format::U16, r#""u16""#);
    prim::<u32>(Format::U32, r#""u32""#);
    prim::<u64>(Format::U64, r#""u64""#);
    prim::<u128>(Format::U128, r#""u128""#);
    prim::<f32>(Format::F32, r#""f32""#);
    prim::<f64>(Format::F64, r#""f64""#);
    prim::<char>(Format::Char, r#""char""#);
    prim::<String>(Format::Str, r#""str""#);
    prim::<Box<str>>(Format::Str, r#""str""#);
    // serde sees these as their integer: the tracer offers 1, not 0.
    prim::<std::num::NonZeroU32>(Format::U32, r#""u32""#);
}

#[derive(Deserialize)]
struct HelloRequest {
    name: String,
    age: Option<u16>,
    #[serde(rename = "tags")]
    labels: Vec<String>,
}

#[test]
fn structs_and_their_fields() {
    let (format, types) = traced::<HelloRequest>();
    assert_eq!(format, r("HelloRequest"));
    assert_eq!(
        types["HelloRequest"],
        Container::Struct(vec![
            field("name", Format::Str),
            field("age", Format::Option(b(Format::U16))),
            field("tags", Format::Seq(b(Format::Str))),
        ])
    );
    assert_eq!(
        json(&types),
        r#"{"HelloRequest":{"struct":[{"name":"name","type":"str"},{"name":"age","type":{"option":"u16"}},{"name":"tags","type":{"seq":"str"}}]}}"#
    );
}

#[derive(Deserialize)]
struct Unit;
#[derive(Deserialize)]
struct Meters(f64);
#[derive(Deserialize)]
struct Point(i32, i32, String);

#[test]
fn unit_newtype_and_tuple_structs() {
    let (_, types) = traced::<(Unit, Meters, Point)>();
    assert_eq!(types["Unit"], Container::UnitStruct);
    assert_eq!(types["Meters"], Container::Newtype(Format::F64));
    assert_eq!(
        types["Point"],
        Container::TupleStruct(vec![Format::I32, Format::I32, Format::Str])
    );
    assert_eq!(
        json(&types),
        r#"{"Meters":{"newtype":"f64"},"Point":{"tuple_struct":["i32","i32","str"]},"Unit":"unit_struct"}"#
    );
}

#[derive(Deserialize)]
enum Shape {
    Empty,
    Circle(f32),
    Rect(u32, u32),
    Named { name: String, sides: u8 },
}

#[test]
fn enums_with_every_variant_shape_in_index_order() {
    let (format, types) = traced::<Shape>();
    assert_eq!(format, r("Shape"));
    assert_eq!(
        types["Shape"],
        Container::Enum(vec![
            variant("Empty", VariantShape::Unit),
            variant("Circle", VariantShape::Newtype(Format::F32)),
            variant("Rect", VariantShape::Tuple(vec![Format::U32, Format::U32])),
            variant(
                "Named",
                VariantShape::Struct(vec![field("name", Format::Str), field("sides", Format::U8)])
            ),
        ])
    );
    assert_eq!(
        json(&types["Shape"]),
        r#"{"enum":[{"name":"Empty","shape":"unit"},{"name":"Circle","shape":{"newtype":"f32"}},{"name":"Rect","shape":{"tuple":["u32","u32"]}},{"name":"Named","shape":{"struct":[{"name":"name","type":"str"},{"name":"sides","type":"u8"}]}}]}"#
    );
}

#[derive(Deserialize)]
enum Color {
    Red,
    Green,
    Blue,
}

#[derive(Deserialize)]
struct Palette {
    first: Option<Color>,
    all: Vec<Color>,
    by_name: HashMap<String, Shape>,
}

#[test]
fn enums_behind_options_sequences_and_maps_get_every_variant() {
    let (_, types) = traced::<Palette>();
    let names = |c: &Container| match c {
        Container::Enum(vs) => vs.iter().map(|v| v.name.clone()).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(names(&types["Color"]), ["Red", "Green", "Blue"]);
    assert_eq!(names(&types["Shape"]), ["Empty", "Circle", "Rect", "Named"]);
    assert_eq!(
        types["Palette"],
        Container::Struct(vec![
            field("first", Format::Option(b(r("Color")))),
            field("all", Format::Seq(b(r("Color")))),
            field(
                "by_name",
                Format::Map {
                    key: b(Format::Str),
                    value: b(r("Shape"))
                }
            ),
        ])
    );
}

#[test]
fn options_sequences_maps_tuples_and_arrays() {
    let (format, types) = traced::<(
        Option<u8>,
        Vec<i64>,
        BTreeMap<u32, Vec<Option<bool>>>,
        HashSet<char>,
        (u8, String),
        [u16; 4],
    )>();
    assert!(types.is_empty());
    assert_eq!(
        format,
        Format::Tuple(vec![
            Format::Option(b(Format::U8)),
            Format::Seq(b(Format::I64)),
            Format::Map {
                key: b(Format::U32),
                value: b(Format::Seq(b(Format::Option(b(Format::Bool))))),
            },
            Format::Seq(b(Format::Char)),
            Format::Tuple(vec![Format::U8, Format::Str]),
            Format::Array {
                item: b(Format::U16),
                len: 4
            },
        ])
    );
    assert_eq!(
        json(&format),
        r#"{"tuple":[{"option":"u8"},{"seq":"i64"},{"map":{"key":"u32","value":{"seq":{"option":"bool"}}}},{"seq":"char"},{"tuple":["u8","str"]},{"array":{"item":"u16","len":4}}]}"#
    );
}

#[derive(Deserialize)]
struct Blob {
    plain: Vec<u8>,
    #[serde(with = "crate::as_bytes")]
    block: Vec<u8>,
}

#[test]
fn bytes_only_through_as_bytes() {
    let (_, types) = traced::<Blob>();
    assert_eq!(
        json(&types["Blob"]),
        r#"{"struct":[{"name":"plain","type":{"seq":"u8"}},{"name":"block","type":"bytes"}]}"#
    );
}

#[derive(Deserialize)]
struct Order {
    id: u64,
    lines: Vec<Line>,
    note: Option<Note>,
}
#[derive(Deserialize)]
struct Line {
    item: String,
    qty: u32,
}
#[derive(Deserialize)]
struct Note(String);

#[test]
fn nested_types_are_all_named() {
    let (format, types) = traced::<Order>();
    assert_eq!(format, r("Order"));
    assert_eq!(types.keys().collect::<Vec<_>>(), ["Line", "Note", "Order"]);
    assert_eq!(
        types["Order"],
        Container::Struct(vec![
            field("id", Format::U64),
            field("lines", Format::Seq(b(r("Line")))),
            field("note", Format::Option(b(r("Note")))),
        ])
    );
    assert_eq!(types["Note"], Container::Newtype(Format::Str));
}

#[derive(Deserialize)]
enum Tree {
    Leaf(u32),
    Node(Box<Tree>, Box<Tree>),
}

#[derive(Deserialize)]
struct List {
    value: i8,
    next: Option<Box<List>>,
}

/// The recursive variant first: serde-reflection alone would recurse
/// without end here.
#[derive(Deserialize)]
enum Expr {
    Add(Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    Lit(i64),
    Call { name: String, args: Vec<Expr> },
}

/// Mutually recursive, through an option and an enum.
#[derive(Deserialize)]
struct Dir {
    entries: Vec<Entry>,
    parent: Option<Box<Dir>>,
}
#[derive(Deserialize)]
enum Entry {
    Sub(Dir),
    File { name: String, size: u64 },
}

#[test]
fn recursive_types() {
    let (_, types) = traced::<Tree>();
    assert_eq!(
        types["Tree"],
        Container::Enum(vec![
            variant("Leaf", VariantShape::Newtype(Format::U32)),
            variant("Node", VariantShape::Tuple(vec![r("Tree"), r("Tree")])),
        ])
    );
    let (_, types) = traced::<List>();
    assert_eq!(
        types["List"],
        Container::Struct(vec![
            field("value", Format::I8),
            field("next", Format::Option(b(r("List")))),
        ])
    );
    let (_, types) = traced::<Expr>();
    assert_eq!(
        types["Expr"],
        Container::Enum(vec![
            variant("Add", VariantShape::Tuple(vec![r("Expr"), r("Expr")])),
            variant("Neg", VariantShape::Newtype(r("Expr"))),
            variant("Lit", VariantShape::Newtype(Format::I64)),
            variant(
                "Call",
                VariantShape::Struct(vec![
                    field("name", Format::Str),
                    field("args", Format::Seq(b(r("Expr")))),
                ])
            ),
        ])
    );
    let (_, types) = traced::<Dir>();
    assert_eq!(
        json(&types),
        r#"{"Dir":{"struct":[{"name":"entries","type":{"seq":{"ref":"Entry"}}},{"name":"parent","type":{"option":{"ref":"Dir"}}}]},"Entry":{"enum":[{"name":"Sub","shape":{"newtype":{"ref":"Dir"}}},{"name":"File","shape":{"struct":[{"name":"name","type":"str"},{"name":"size","type":"u64"}]}}]}}"#
    );
}

/// An enum reached only through a variant of another enum, itself behind
/// an option.
#[derive(Deserialize)]
struct Deep {
    outer: Option<Outer>,
}
#[derive(Deserialize)]
enum Outer {
    Plain,
    Wrapped(Inner),
}
#[derive(Deserialize)]
enum Inner {
    A,
    B(u8),
    C(Vec<Inner>),
}

#[test]
fn enums_reached_through_other_enums_are_complete() {
    let (_, types) = traced::<Deep>();
    assert_eq!(
        json(&types["Inner"]),
        r#"{"enum":[{"name":"A","shape":"unit"},{"name":"B","shape":{"newtype":"u8"}},{"name":"C","shape":{"newtype":{"seq":{"ref":"Inner"}}}}]}"#
    );
    assert_eq!(
        json(&types["Outer"]),
        r#"{"enum":[{"name":"Plain","shape":"unit"},{"name":"Wrapped","shape":{"newtype":{"ref":"Inner"}}}]}"#
    );
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Untagged {
    A(u8),
    B(String),
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Tagged {
    A { x: u8 },
}

#[derive(Deserialize)]
struct Flattened {
    id: u32,
    #[serde(flatten)]
    rest: HashMap<String, u32>,
}

#[derive(Deserialize)]
struct HoldsUntagged {
    inner: Vec<Untagged>,
}

/// A hand-written impl that asks the format what comes next.
struct Anything;

impl<'de> Deserialize<'de> for Anything {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Anything)
    }
}

#[test]
fn self_describing_types_are_errors_naming_the_type() {
    let e = error::<Untagged>();
    assert_eq!(e.type_name(), std::any::type_name::<Untagged>());
    assert!(
        e.to_string().starts_with(&format!(
            "cannot describe `{}`: its Deserialize asks the format what comes next",
            std::any::type_name::<Untagged>()
        )),
        "{e}"
    );
    assert!(
        e.reason()
            .contains("untagged enums, internally or adjacently tagged enums and #[serde(flatten)] cannot be described"),
        "{e}"
    );
    for e in [
        error::<Tagged>(),
        error::<Flattened>(),
        error::<HoldsUntagged>(),
        error::<Anything>(),
        error::<serde_json::Value>(),
    ] {
        assert!(
            e.reason().contains("asks the format what comes next"),
            "{e}"
        );
    }
    assert_eq!(
        error::<HoldsUntagged>().type_name(),
        std::any::type_name::<HoldsUntagged>()
    );
}

mod a {
    #[derive(serde::Deserialize)]
    pub(super) struct Item {
        pub(super) id: u32,
    }
}
mod b {
    #[derive(serde::Deserialize)]
    pub(super) struct Item {
        pub(super) name: String,
    }
}

#[derive(Deserialize)]
struct BothItems {
    one: a::Item,
    other: b::Item,
}

#[derive(Deserialize)]
struct Wrapper<T> {
    value: T,
}

#[test]
fn one_name_for_two_types_is_an_error() {
    let e = error::<BothItems>();
    assert!(e.reason().contains("share one serde name"), "{e}");
    assert!(e.reason().contains("#[serde(rename"), "{e}");
    let e = error::<(Wrapper<u8>, Wrapper<String>)>();
    assert!(e.reason().contains("share one serde name"), "{e}");
    // Across two traces of one tracer (two methods of a service).
    let mut tracer = Tracer::new();
    tracer.trace::<a::Item>().unwrap();
    let e = tracer.trace::<Vec<b::Item>>().unwrap_err();
    assert_eq!(e.type_name(), std::any::type_name::<Vec<b::Item>>());
    assert_eq!(
        e.reason(),
        format!(
            "it reaches a type named `Item` that is not the `Item` reached from `{}`; \
             give one of them another name with #[serde(rename = \"...\")]",
            std::any::type_name::<a::Item>()
        )
    );
    // The same type twice is fine, and is one entry.
    tracer.trace::<Option<a::Item>>().unwrap();
    assert_eq!(tracer.types().len(), 1);
}

#[derive(Deserialize)]
struct Endless(Box<Endless>);

#[derive(Deserialize)]
enum Loop {
    A(Box<Loop>),
    B(Box<Loop>, u8),
}

#[derive(Deserialize)]
enum Never {}

#[test]
fn types_without_a_finite_value_are_errors_not_stack_overflows() {
    // On the stack of a tokio worker, where the describe service runs.
    let (endless, looping, never) = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| (error::<Endless>(), error::<Loop>(), error::<Never>()))
        .unwrap()
        .join()
        .unwrap();
    assert!(endless.reason().contains("without end"), "{endless}");
    assert_eq!(
        looping.reason(),
        "every variant of enum `Loop` contains `Loop` itself, so it has no finite value"
    );
    assert!(never.reason().contains("enum with no variants"), "{never}");
}

/// A hand-written impl that rejects the value the tracer offers.
struct Even(u32);

impl<'de> Deserialize<'de> for Even {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v % 2 == 0 {
            Ok(Even(v))
        } else {
            Err(serde::de::Error::custom("odd"))
        }
    }
}

#[test]
fn a_deserialize_that_rejects_the_sample_is_an_error() {
    let e = error::<Even>();
    assert!(e.reason().contains("rejected the sample value"), "{e}");
    assert!(e.reason().contains("odd"), "{e}");
}

fn greeter_schema() -> ServiceSchema {
    let mut tracer = Tracer::new();
    let request = tracer.trace::<HelloRequest>().unwrap();
    let response = tracer.trace::<Tree>().unwrap();
    ServiceSchema {
        name: "helloworld.Greeter".into(),
        doc: "Greets people.".into(),
        methods: vec![MethodSchema {
            name: "say_hello".into(),
            path: "/helloworld.Greeter/say_hello".into(),
            kind: CallKind::ServerStreaming,
            idempotent: true,
            doc: "Answers.".into(),
            request,
            response,
        }],
        types: tracer.into_types(),
    }
}

#[test]
fn service_schema_json() {
    assert_eq!(
        json(&greeter_schema()),
        concat!(
            r#"{"name":"helloworld.Greeter","doc":"Greets people.","methods":[{"name":"say_hello","#,
            r#""path":"/helloworld.Greeter/say_hello","kind":"server_streaming","idempotent":true,"#,
            r#""doc":"Answers.","request":{"ref":"HelloRequest"},"response":{"ref":"Tree"}}],"#,
            r#""types":{"HelloRequest":{"struct":[{"name":"name","type":"str"},"#,
            r#"{"name":"age","type":{"option":"u16"}},{"name":"tags","type":{"seq":"str"}}]},"#,
            r#""Tree":{"enum":[{"name":"Leaf","shape":{"newtype":"u32"}},"#,
            r#"{"name":"Node","shape":{"tuple":[{"ref":"Tree"},{"ref":"Tree"}]}}]}}}"#
        )
    );
    for kind in [
        CallKind::Unary,
        CallKind::ServerStreaming,
        CallKind::ClientStreaming,
        CallKind::BidiStreaming,
    ] {
        let text = json(&kind);
        assert_eq!(serde_json::from_str::<CallKind>(&text).unwrap(), kind);
    }
    assert_eq!(json(&CallKind::BidiStreaming), r#""bidi_streaming""#);
    let schema = greeter_schema();
    assert_eq!(schema.to_json(), json(&schema));
    assert_eq!(ServiceSchema::from_json(&schema.to_json()), Ok(schema));
    let err = ServiceSchema::from_json(r#"{"name":"x"}"#).unwrap_err();
    assert!(err.contains("missing field `doc`"), "{err}");
    assert_eq!(json(&CallKind::ClientStreaming), r#""client_streaming""#);
}

#[test]
fn service_schema_round_trips_through_both_codecs() {
    let schema = greeter_schema();
    for codec in [crate::Codec::Bincode, crate::Codec::Json] {
        let mut framed = bytes::BytesMut::new();
        codec.encode_message(&schema, &mut framed).unwrap();
        let payload = &framed[crate::proto::frame::PREFIX_LEN..];
        assert_eq!(codec.decode::<ServiceSchema>(payload), Ok(schema.clone()));
    }
    // Every Format variant survives bincode too.
    let all = Format::Tuple(vec![
        Format::Unit,
        Format::Bytes,
        Format::Char,
        Format::I128,
        Format::U128,
        Format::Map {
            key: b(Format::Str),
            value: b(Format::Array {
                item: b(r("X")),
                len: 3,
            }),
        },
    ]);
    let mut framed = bytes::BytesMut::new();
    crate::Codec::Bincode
        .encode_message(&all, &mut framed)
        .unwrap();
    let payload = &framed[crate::proto::frame::PREFIX_LEN..];
    assert_eq!(crate::Codec::Bincode.decode::<Format>(payload), Ok(all));
}

#[test]
fn schema_error_display() {
    let e = SchemaError::new("greeter::Foo", "a reason");
    assert_eq!(e.to_string(), "cannot describe `greeter::Foo`: a reason");
    assert_eq!(e.type_name(), "greeter::Foo");
    assert_eq!(e.reason(), "a reason");
}
