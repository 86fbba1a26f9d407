//! Schemas of services and their message types, derived from the serde
//! types themselves: no extra derive, no IDL.
//!
//! [`Tracer`] turns any `T: DeserializeOwned` into a [`Format`] and the
//! named types ([`Container`]s) it reaches, by watching what `T`'s
//! `Deserialize` asks for. Every generated `{Trait}Client` has
//! `schema()`, which describes the whole service as a [`ServiceSchema`];
//! the server's describe service sends the same value.
//!
//! The JSON that serde_json makes of these types is the documented format
//! (`PROTOCOL.md`):
//!
//! ```
//! use knafeh::schema::{Container, Field, Format, Tracer};
//!
//! #[derive(serde::Deserialize)]
//! struct HelloRequest {
//!     name: String,
//!     nickname: Option<String>,
//! }
//!
//! let mut tracer = Tracer::new();
//! let format = tracer.trace::<HelloRequest>()?;
//! assert_eq!(format, Format::Ref("HelloRequest".into()));
//! assert_eq!(
//!     serde_json::to_string(&tracer.types()["HelloRequest"])?,
//!     r#"{"struct":[{"name":"name","type":"str"},{"name":"nickname","type":{"option":"str"}}]}"#
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What can be described
//!
//! The serde data model as a non-self-describing format such as bincode
//! sees it: structs, enums in serde's default (externally tagged) form,
//! options, sequences, maps, tuples, bytes, strings, booleans, integers,
//! floats and chars, nested and recursive. A named type is known by its
//! serde name, without its module path.
//!
//! - A `Vec<u8>` is a sequence of `u8`; a field with
//!   `#[serde(with = "knafeh::as_bytes")]` (or `serde_bytes`) is
//!   [`Format::Bytes`]. Both are the same on the wire.
//! - serde sees `[T; N]` as a tuple of `N` times `T`: a tuple of two or
//!   more elements of one format is described as [`Format::Array`] (so
//!   `(u32, u32)` is too: on the wire the two are the same).
//! - Types whose `Deserialize` asks the format what comes next
//!   (`deserialize_any`) cannot be described: untagged, internally and
//!   adjacently tagged enums, `#[serde(flatten)]`, and hand-written impls
//!   that do so. Neither can two different types with one serde name
//!   (rename one with `#[serde(rename = "...")]`), nor a type with no finite
//!   value. These give a [`SchemaError`] naming the Rust type, never a
//!   wrong schema.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

mod guard;
mod trace;

#[cfg(test)]
mod tests;

pub use trace::Tracer;

/// A type expression: a primitive, a named type (in
/// [`ServiceSchema::types`]) or a composition of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `()`: nothing on the wire.
    Unit,
    /// `bool`.
    Bool,
    /// `i8`.
    I8,
    /// `i16`.
    I16,
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `i128`.
    I128,
    /// `u8`.
    U8,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `u64`.
    U64,
    /// `u128`.
    U128,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// `char`.
    Char,
    /// A string (`String`, `&str`, `Box<str>`).
    Str,
    /// One block of bytes (`#[serde(with = "knafeh::as_bytes")]`,
    /// `serde_bytes`).
    Bytes,
    /// A named type: a key of [`ServiceSchema::types`].
    Ref(String),
    /// `Option<T>`.
    Option(Box<Format>),
    /// A sequence (`Vec<T>`, `VecDeque<T>`, sets, slices).
    Seq(Box<Format>),
    /// A map (`HashMap<K, V>`, `BTreeMap<K, V>`).
    Map {
        /// The key's format.
        key: Box<Format>,
        /// The value's format.
        value: Box<Format>,
    },
    /// A tuple of formats, in order.
    Tuple(Vec<Format>),
    /// `len` times the same format: `[T; N]` (and tuples of one format).
    Array {
        /// The format of each element.
        item: Box<Format>,
        /// How many elements.
        len: usize,
    },
}

/// A named type (a serde container).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Container {
    /// `struct A;`
    UnitStruct,
    /// `struct A(T);`
    Newtype(Format),
    /// `struct A(T, U);`
    TupleStruct(Vec<Format>),
    /// `struct A { t: T }`
    Struct(Vec<Field>),
    /// An enum; a variant's position in the list is its index on the
    /// wire.
    Enum(Vec<Variant>),
}

/// A named field of a struct or struct variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// The field's serde name.
    pub name: String,
    /// The field's format (`"type"` in JSON).
    #[serde(rename = "type")]
    pub format: Format,
}

/// A variant of an enum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// The variant's serde name.
    pub name: String,
    /// What the variant carries.
    pub shape: VariantShape,
}

/// What an enum variant carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariantShape {
    /// Nothing: `A`.
    Unit,
    /// One value: `A(T)`.
    Newtype(Format),
    /// Several values: `A(T, U)`.
    Tuple(Vec<Format>),
    /// Named fields: `A { t: T }`.
    Struct(Vec<Field>),
}

/// How a method takes requests and gives responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStreaming,
    /// A stream of requests, one response.
    ClientStreaming,
    /// A stream of requests and a stream of responses.
    BidiStreaming,
}

/// One method of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodSchema {
    /// The method's name on the wire (`say_hello`).
    pub name: String,
    /// Its path (`/helloworld.Greeter/say_hello`).
    pub path: String,
    /// Its call kind.
    pub kind: CallKind,
    /// Whether the trait method is marked `#[knafeh(idempotent)]`.
    pub idempotent: bool,
    /// The method's doc comment, trimmed; empty if none.
    pub doc: String,
    /// The format of one request message (a request stream's item).
    pub request: Format,
    /// The format of one response message (a response stream's item).
    pub response: Format,
}

/// A whole service: its methods and every named type they reach.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSchema {
    /// The fully qualified service name (`helloworld.Greeter`).
    pub name: String,
    /// The trait's doc comment, trimmed; empty if none.
    pub doc: String,
    /// The methods, in trait order.
    pub methods: Vec<MethodSchema>,
    /// Every named type the methods' formats reach, by serde name.
    pub types: BTreeMap<String, Container>,
}

impl ServiceSchema {
    /// The JSON text of this schema, in the documented format (what
    /// `#[pyservice]` classes' `__knafeh_schema__()` return).
    pub fn to_json(&self) -> String {
        // Only strings, numbers, lists and string-keyed maps: cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses the JSON text [`ServiceSchema::to_json`] makes.
    ///
    /// # Errors
    /// The parser's message (with the line and column) when `text` is not
    /// a service schema.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

/// Why a type cannot be described: names the Rust type and the reason.
///
/// Displayed as ``cannot describe `greeter::Foo`: <reason>``.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaError {
    type_name: String,
    reason: String,
}

impl SchemaError {
    /// An error for the Rust type `type_name` (as `std::any::type_name`
    /// gives it), with a reason a user can act on.
    pub fn new(type_name: impl Into<String>, reason: impl Into<String>) -> Self {
        SchemaError {
            type_name: type_name.into(),
            reason: reason.into(),
        }
    }

    /// The Rust type that cannot be described.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// Why.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot describe `{}`: {}", self.type_name, self.reason)
    }
}

impl std::error::Error for SchemaError {}
