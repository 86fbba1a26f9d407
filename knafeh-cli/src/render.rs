//! `knafeh describe`'s text: a service as Rust-like declarations.
//!
//! ```text
//! // Greets people and counts.
//! service helloworld.Greeter {
//!     /// Unary: answers `"Hello, {name}!"`.
//!     rpc say_hello(HelloRequest) -> HelloReply;  // unary
//!     /// Server streaming: `1..=n`, one message each.
//!     rpc count_to(CountRequest) -> stream Count;  // server streaming
//! }
//!
//! struct HelloRequest {
//!     name: str,
//! }
//! ```
//!
//! Types are listed in the order the methods reach them. Primitive types
//! keep the schema's names (`str`, `bytes`, `u32`, ...); `()` is unit.

use std::collections::BTreeMap;
use std::fmt::Write;

use knafeh::schema::{
    CallKind, Container, Field, Format, MethodSchema, ServiceSchema, VariantShape,
};

/// A format as a type: `u32`, `Option<str>`, `Vec<Count>`, `(u8, str)`,
/// `Map<str, u64>`, `[u8; 4]`.
pub(crate) fn type_name(f: &Format) -> String {
    match f {
        Format::Unit => "()".to_owned(),
        Format::Bool => "bool".to_owned(),
        Format::I8 => "i8".to_owned(),
        Format::I16 => "i16".to_owned(),
        Format::I32 => "i32".to_owned(),
        Format::I64 => "i64".to_owned(),
        Format::I128 => "i128".to_owned(),
        Format::U8 => "u8".to_owned(),
        Format::U16 => "u16".to_owned(),
        Format::U32 => "u32".to_owned(),
        Format::U64 => "u64".to_owned(),
        Format::U128 => "u128".to_owned(),
        Format::F32 => "f32".to_owned(),
        Format::F64 => "f64".to_owned(),
        Format::Char => "char".to_owned(),
        Format::Str => "str".to_owned(),
        Format::Bytes => "bytes".to_owned(),
        Format::Ref(name) => name.clone(),
        Format::Option(inner) => format!("Option<{}>", type_name(inner)),
        Format::Seq(item) => format!("Vec<{}>", type_name(item)),
        Format::Map { key, value } => format!("Map<{}, {}>", type_name(key), type_name(value)),
        Format::Tuple(items) if items.len() == 1 => format!("({},)", type_name(&items[0])),
        Format::Tuple(items) => format!("({})", list(items)),
        Format::Array { item, len } => format!("[{}; {len}]", type_name(item)),
    }
}

fn list(items: &[Format]) -> String {
    let names: Vec<String> = items.iter().map(type_name).collect();
    names.join(", ")
}

/// The kind of a call, in words.
pub(crate) fn kind_name(kind: &CallKind) -> &'static str {
    match kind {
        CallKind::Unary => "unary",
        CallKind::ServerStreaming => "server streaming",
        CallKind::ClientStreaming => "client streaming",
        CallKind::BidiStreaming => "bidirectional streaming",
    }
}

/// `rpc name(Request) -> Reply;  // kind[, idempotent]`, `stream` marking
/// the streaming sides.
fn rpc_line(m: &MethodSchema) -> String {
    let (stream_in, stream_out) = match m.kind {
        CallKind::Unary => ("", ""),
        CallKind::ServerStreaming => ("", "stream "),
        CallKind::ClientStreaming => ("stream ", ""),
        CallKind::BidiStreaming => ("stream ", "stream "),
    };
    let idempotent = if m.idempotent { ", idempotent" } else { "" };
    format!(
        "rpc {}({stream_in}{}) -> {stream_out}{};  // {}{idempotent}",
        m.name,
        type_name(&m.request),
        type_name(&m.response),
        kind_name(&m.kind)
    )
}

fn doc_lines(out: &mut String, doc: &str, marker: &str, indent: &str) {
    for line in doc.lines() {
        let _ = writeln!(
            out,
            "{indent}{marker}{}{line}",
            if line.is_empty() { "" } else { " " }
        );
    }
}

/// The whole text for `schema` (already narrowed to the methods to show).
pub(crate) fn service(schema: &ServiceSchema) -> String {
    let mut out = String::new();
    doc_lines(&mut out, &schema.doc, "//", "");
    let _ = writeln!(out, "service {} {{", schema.name);
    for m in &schema.methods {
        doc_lines(&mut out, &m.doc, "///", "    ");
        let _ = writeln!(out, "    {}", rpc_line(m));
    }
    out.push_str("}\n");
    for name in reached_types(schema) {
        if let Some(c) = schema.types.get(&name) {
            out.push('\n');
            out.push_str(&container(&name, c));
        }
    }
    out
}

/// A named type as a Rust-like declaration.
fn container(name: &str, c: &Container) -> String {
    match c {
        Container::UnitStruct => format!("struct {name};\n"),
        Container::Newtype(f) => format!("struct {name}({});\n", type_name(f)),
        Container::TupleStruct(items) => format!("struct {name}({});\n", list(items)),
        Container::Struct(fields) if fields.is_empty() => format!("struct {name} {{}}\n"),
        Container::Struct(fields) => {
            format!("struct {name} {{\n{}}}\n", field_lines(fields, "    "))
        }
        Container::Enum(variants) => {
            let mut out = format!("enum {name} {{\n");
            for v in variants {
                let _ = match &v.shape {
                    VariantShape::Unit => writeln!(out, "    {},", v.name),
                    VariantShape::Newtype(f) => writeln!(out, "    {}({}),", v.name, type_name(f)),
                    VariantShape::Tuple(items) => writeln!(out, "    {}({}),", v.name, list(items)),
                    VariantShape::Struct(fields) => {
                        write!(
                            out,
                            "    {} {{\n{}    }},\n",
                            v.name,
                            field_lines(fields, "        ")
                        )
                    }
                };
            }
            out.push_str("}\n");
            out
        }
    }
}

fn field_lines(fields: &[Field], indent: &str) -> String {
    let mut out = String::new();
    for f in fields {
        let _ = writeln!(out, "{indent}{}: {},", f.name, type_name(&f.format));
    }
    out
}

/// The named types the methods reach, in that order (depth first, request
/// before response). The describe service sends no others.
pub(crate) fn reached_types(schema: &ServiceSchema) -> Vec<String> {
    let mut seen = Vec::new();
    for m in &schema.methods {
        visit(&m.request, &schema.types, &mut seen);
        visit(&m.response, &schema.types, &mut seen);
    }
    seen
}

fn visit(f: &Format, types: &BTreeMap<String, Container>, seen: &mut Vec<String>) {
    match f {
        Format::Ref(name) => {
            if seen.contains(name) {
                return;
            }
            seen.push(name.clone());
            let Some(c) = types.get(name) else { return };
            for inner in container_formats(c) {
                visit(inner, types, seen);
            }
        }
        Format::Option(inner) | Format::Seq(inner) => visit(inner, types, seen),
        Format::Array { item, .. } => visit(item, types, seen),
        Format::Map { key, value } => {
            visit(key, types, seen);
            visit(value, types, seen);
        }
        Format::Tuple(items) => items.iter().for_each(|i| visit(i, types, seen)),
        _ => {}
    }
}

/// The formats directly inside a container.
fn container_formats(c: &Container) -> Vec<&Format> {
    match c {
        Container::UnitStruct => vec![],
        Container::Newtype(f) => vec![f],
        Container::TupleStruct(items) => items.iter().collect(),
        Container::Struct(fields) => fields.iter().map(|f| &f.format).collect(),
        Container::Enum(variants) => variants
            .iter()
            .flat_map(|v| match &v.shape {
                VariantShape::Unit => vec![],
                VariantShape::Newtype(f) => vec![f],
                VariantShape::Tuple(items) => items.iter().collect(),
                VariantShape::Struct(fields) => fields.iter().map(|f| &f.format).collect(),
            })
            .collect(),
    }
}

/// `schema` narrowed to one method and the types it reaches.
pub(crate) fn only_method(schema: &ServiceSchema, method: &MethodSchema) -> ServiceSchema {
    let mut narrowed = schema.clone();
    narrowed.methods = vec![method.clone()];
    let reached = reached_types(&narrowed);
    narrowed.types.retain(|name, _| reached.contains(name));
    narrowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GREETER: &str = "\
// Greets people and counts.
service helloworld.Greeter {
    /// Unary: answers `\"Hello, {name}!\"`.
    rpc say_hello(HelloRequest) -> HelloReply;  // unary
    /// Server streaming: `1..=n`, one message each.
    rpc count_to(CountRequest) -> stream Count;  // server streaming
    /// Client streaming: sums the `value`s and counts the messages.
    rpc add_up(stream Count) -> Total;  // client streaming
    /// Bidirectional: one `\"Hello, {name}!\"` per request, sent as soon as
    /// that request arrives. An empty `name` ends the call with
    /// `INVALID_ARGUMENT` after the replies before it.
    rpc chat(stream HelloRequest) -> stream HelloReply;  // bidirectional streaming
}

struct HelloRequest {
    name: str,
}

struct HelloReply {
    message: str,
}

struct CountRequest {
    n: u32,
}

struct Count {
    value: u32,
}

struct Total {
    sum: u64,
    count: u32,
}
";

    #[test]
    fn the_greeter() {
        let schema = greeter::GreeterClient::schema().unwrap();
        assert_eq!(service(&schema), GREETER);
        let add_up = &schema.methods[2];
        let narrowed = service(&only_method(&schema, add_up));
        assert!(narrowed.contains(
            "    rpc add_up(stream Count) -> Total;  // client streaming\n}\n\nstruct Count {"
        ));
        assert!(!narrowed.contains("HelloRequest") && !narrowed.contains("CountRequest"));
    }

    #[test]
    fn every_shape() {
        let schema: ServiceSchema = serde_json::from_value(json!({
            "name": "shapes.Store", "doc": "",
            "methods": [{"name": "put", "path": "/shapes.Store/put", "kind": "unary",
                "idempotent": true, "doc": "", "request": {"seq": {"ref": "Shape"}},
                "response": {"map": {"key": "str", "value": {"option": {"tuple": ["u8", "bytes"]}}}}}],
            "types": {
                "Shape": {"enum": [
                    {"name": "Empty", "shape": "unit"},
                    {"name": "Circle", "shape": {"newtype": "f64"}},
                    {"name": "Line", "shape": {"tuple": [{"ref": "Point"}, {"ref": "Point"}]}},
                    {"name": "Rect", "shape": {"struct": [{"name": "w", "type": "u8"}]}}
                ]},
                "Point": {"tuple_struct": ["i16", "i16"]},
                "Unused": {"newtype": {"array": {"item": "char", "len": 4}}},
                "Marker": "unit_struct"
            }
        }))
        .unwrap();
        let text = service(&schema);
        let want = "\
service shapes.Store {
    rpc put(Vec<Shape>) -> Map<str, Option<(u8, bytes)>>;  // unary, idempotent
}

enum Shape {
    Empty,
    Circle(f64),
    Line(Point, Point),
    Rect {
        w: u8,
    },
}

struct Point(i16, i16);
";
        assert_eq!(text, want);
        assert_eq!(type_name(&Format::Tuple(vec![Format::Unit])), "((),)");
        assert_eq!(
            container("Marker", &Container::UnitStruct),
            "struct Marker;\n"
        );
        assert_eq!(
            container("Unused", &schema.types["Unused"]),
            "struct Unused([char; 4]);\n"
        );
    }
}
