//! Checks a JSON request against its method's schema before it is sent,
//! with the rules of knafeh's JSON codec (PROTOCOL.md §4.1, serde_json
//! and serde's derives), made stricter where a mistake is likelier than
//! intent:
//!
//! - structs are objects; a missing field is an error unless its type is
//!   an `Option` (missing means `None`, as serde does); an unknown field
//!   is an error (the server would silently drop it);
//! - enums are externally tagged: `"Variant"` for a unit variant,
//!   `{"Variant": value}` otherwise (`value` per the variant's shape);
//! - `Option` is `null` or the value; `unit` and unit structs are `null`;
//!   newtypes are their content; tuples and `[T; N]` are arrays of exactly
//!   their length; maps are objects, whose keys must parse as the key type;
//! - integers must be whole numbers in range for their width and sign;
//!   `i128`/`u128` values beyond 64 bits cannot be checked exactly here
//!   (JSON numbers are parsed as `f64`), so they are checked only for
//!   being whole and roughly in range, and the server checks the rest;
//! - `bytes` (fields through `knafeh::as_bytes`) is an array of integers
//!   0–255 or a string (its UTF-8 bytes); `char` is a one-character string.

use std::collections::BTreeMap;
use std::fmt;

use knafeh::schema::{Container, Field, Format, Variant, VariantShape};
use serde_json::{Map, Value};

/// Why a message does not match its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mismatch {
    /// Where, e.g. `items[2].name`; empty for the message itself.
    pub(crate) path: String,
    /// What was expected and what was found.
    pub(crate) reason: String,
    /// The schema itself is broken (a type it names is not described):
    /// the server's fault, not the request's.
    pub(crate) schema_fault: bool,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "the message"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.reason)
    }
}

/// Where in the message a check is: a chain from the root, turned into a
/// string only for an error.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
    Key(&'a Path<'a>, &'a str),
}

impl Path<'_> {
    fn render(&self, out: &mut String) {
        match self {
            Path::Root => {}
            Path::Field(parent, name) => {
                parent.render(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Path::Index(parent, i) => {
                parent.render(out);
                out.push_str(&format!("[{i}]"));
            }
            Path::Key(parent, key) => {
                parent.render(out);
                out.push_str(&format!("[{}]", Value::from(*key)));
            }
        }
    }

    fn rendered(self) -> String {
        let mut s = String::new();
        self.render(&mut s);
        s
    }
}

/// Checks messages against formats that may name types of `types`.
pub(crate) struct Checker<'a> {
    types: &'a BTreeMap<String, Container>,
}

type Checked = Result<(), Mismatch>;

impl<'a> Checker<'a> {
    /// A checker for a service's named types.
    pub(crate) fn new(types: &'a BTreeMap<String, Container>) -> Self {
        Checker { types }
    }

    /// Does `value` match `format`?
    pub(crate) fn check(&self, value: &Value, format: &Format) -> Checked {
        self.format(value, format, Path::Root, 0)
    }

    /// `hops`: types followed since the last step down into the value; more
    /// than there are types means a cycle that never reaches a value.
    fn format(&self, v: &Value, f: &Format, at: Path<'_>, hops: usize) -> Checked {
        match f {
            Format::Unit => self.expect(v.is_null(), v, "unit (null)", at),
            Format::Bool => self.expect(v.is_boolean(), v, "bool", at),
            Format::I8 | Format::I16 | Format::I32 | Format::I64 | Format::I128 => {
                integer(v, f, at)
            }
            Format::U8 | Format::U16 | Format::U32 | Format::U64 | Format::U128 => {
                integer(v, f, at)
            }
            Format::F32 | Format::F64 => self.expect(v.is_number(), v, &name(f), at),
            Format::Char => {
                let one = v.as_str().is_some_and(|s| s.chars().count() == 1);
                self.expect(one, v, "char (a one-character string)", at)
            }
            Format::Str => self.expect(v.is_string(), v, "str", at),
            Format::Bytes => bytes(v, at),
            Format::Ref(type_name) => self.named(v, type_name, at, hops + 1),
            Format::Option(_) if v.is_null() => Ok(()),
            Format::Option(inner) => self.format(v, inner, at, hops),
            Format::Seq(item) => {
                let items = self.array(v, f, at, None)?;
                self.items(items, std::iter::repeat(&**item), at)
            }
            Format::Tuple(items) => {
                let values = self.array(v, f, at, Some(items.len()))?;
                self.items(values, items.iter(), at)
            }
            Format::Array { item, len } => {
                let values = self.array(v, f, at, Some(*len))?;
                self.items(values, std::iter::repeat(&**item), at)
            }
            Format::Map { key, value } => self.map(v, key, value, at),
        }
    }

    fn expect(&self, ok: bool, v: &Value, expected: &str, at: Path<'_>) -> Checked {
        if ok {
            Ok(())
        } else {
            Err(mismatch(
                at,
                format!("expected {expected}, got {}", kind(v)),
            ))
        }
    }

    /// `v` as an array (of exactly `len` items if given).
    fn array<'v>(
        &self,
        v: &'v Value,
        f: &Format,
        at: Path<'_>,
        len: Option<usize>,
    ) -> Result<&'v [Value], Mismatch> {
        match (v.as_array(), len) {
            (Some(items), None) => Ok(items),
            (Some(items), Some(n)) if items.len() == n => Ok(items),
            (Some(items), Some(_)) => Err(mismatch(
                at,
                format!("expected {}, got {} items", self.describe(f), items.len()),
            )),
            (None, _) => Err(mismatch(
                at,
                format!("expected {}, got {}", self.describe(f), kind(v)),
            )),
        }
    }

    fn items<'f>(
        &self,
        values: &[Value],
        formats: impl Iterator<Item = &'f Format>,
        at: Path<'_>,
    ) -> Checked {
        for (i, (v, f)) in values.iter().zip(formats).enumerate() {
            self.format(v, f, Path::Index(&at, i), 0)?;
        }
        Ok(())
    }

    fn map(&self, v: &Value, key: &Format, value: &Format, at: Path<'_>) -> Checked {
        let Some(entries) = v.as_object() else {
            return Err(mismatch(
                at,
                format!("expected an object (a map), got {}", kind(v)),
            ));
        };
        for (k, v) in entries {
            let here = Path::Key(&at, k);
            self.key(k, key, here, 0)?;
            self.format(v, value, here, 0)?;
        }
        Ok(())
    }

    /// A map key: JSON keys are strings; serde_json parses them as the key
    /// type (numbers, `true`/`false`, unit variants, newtypes of those).
    fn key(&self, k: &str, f: &Format, at: Path<'_>, hops: usize) -> Checked {
        let ok = match f {
            Format::Bool => k == "true" || k == "false",
            Format::Char => k.chars().count() == 1,
            Format::F32 | Format::F64 => k.parse::<f64>().is_ok(),
            Format::U128 => k.parse::<u128>().is_ok(),
            f if int_range(f).is_some() => {
                let (min, max) = int_range(f).unwrap_or((i128::MIN, i128::MAX));
                k.parse::<i128>().is_ok_and(|i| min <= i && i <= max)
            }
            Format::Ref(type_name) => {
                return match self.container(type_name, at, hops + 1)? {
                    Container::Newtype(inner) => self.key(k, inner, at, hops + 1),
                    Container::Enum(variants) => {
                        let found = variants.iter().find(|var| var.name == k);
                        match found {
                            Some(var) if var.shape == VariantShape::Unit => Ok(()),
                            _ => Err(mismatch(
                                at,
                                format!(
                                    "map key: expected a unit variant of {type_name} ({}), \
                                     got {k:?}",
                                    variant_names(variants)
                                ),
                            )),
                        }
                    }
                    _ => Ok(()),
                };
            }
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(mismatch(
                at,
                format!("map key: expected {}, got {k:?}", name(f)),
            ))
        }
    }

    /// The container named `type_name`, or the schema's fault.
    fn container(
        &self,
        type_name: &str,
        at: Path<'_>,
        hops: usize,
    ) -> Result<&'a Container, Mismatch> {
        if hops > self.types.len() {
            return Err(Mismatch {
                schema_fault: true,
                ..mismatch(
                    at,
                    format!(
                        "the schema's type `{type_name}` contains itself with nothing in between"
                    ),
                )
            });
        }
        self.types.get(type_name).ok_or_else(|| Mismatch {
            schema_fault: true,
            ..mismatch(
                at,
                format!("the schema names type `{type_name}` but does not describe it"),
            )
        })
    }

    fn named(&self, v: &Value, type_name: &str, at: Path<'_>, hops: usize) -> Checked {
        match self.container(type_name, at, hops)? {
            Container::UnitStruct => {
                self.expect(v.is_null(), v, &format!("{type_name} (null)"), at)
            }
            Container::Newtype(inner) => self.format(v, inner, at, hops),
            Container::TupleStruct(items) => {
                let what = Format::Ref(type_name.to_owned());
                let values = self.array(v, &what, at, Some(items.len()))?;
                self.items(values, items.iter(), at)
            }
            Container::Struct(fields) => match v.as_object() {
                Some(object) => self.fields(object, fields, type_name, at),
                None => Err(mismatch(
                    at,
                    format!("expected {type_name} (an object), got {}", kind(v)),
                )),
            },
            Container::Enum(variants) => self.variant(v, variants, type_name, at),
        }
    }

    fn fields(
        &self,
        object: &Map<String, Value>,
        fields: &[Field],
        owner: &str,
        at: Path<'_>,
    ) -> Checked {
        for field in fields {
            let here = Path::Field(&at, &field.name);
            match object.get(&field.name) {
                Some(v) => self.format(v, &field.format, here, 0)?,
                None if matches!(field.format, Format::Option(_)) => {}
                None => {
                    return Err(mismatch(
                        here,
                        format!(
                            "missing field of {owner} (expected {})",
                            self.describe(&field.format)
                        ),
                    ))
                }
            }
        }
        if let Some(unknown) = object
            .keys()
            .find(|k| !fields.iter().any(|f| &f.name == *k))
        {
            let known: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
            let known = if known.is_empty() {
                "it has none".to_owned()
            } else {
                format!("it has {}", known.join(", "))
            };
            return Err(mismatch(
                Path::Field(&at, unknown),
                format!("unknown field of {owner} ({known})"),
            ));
        }
        Ok(())
    }

    fn variant(&self, v: &Value, variants: &[Variant], enum_name: &str, at: Path<'_>) -> Checked {
        let single = v
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.iter().next());
        let (tag, content) = match (v, single) {
            (Value::String(tag), _) => (tag.as_str(), None),
            (_, Some((tag, content))) => (tag.as_str(), Some(content)),
            _ => {
                return Err(mismatch(
                    at,
                    format!(
                        "expected {enum_name} (\"Variant\" or {{\"Variant\": value}}; variants: \
                         {}), got {}",
                        variant_names(variants),
                        kind(v)
                    ),
                ))
            }
        };
        let Some(variant) = variants.iter().find(|var| var.name == tag) else {
            return Err(mismatch(
                at,
                format!(
                    "unknown variant `{tag}` of {enum_name} (variants: {})",
                    variant_names(variants)
                ),
            ));
        };
        let here = Path::Field(&at, tag);
        match (&variant.shape, content) {
            (VariantShape::Unit, None) => Ok(()),
            // serde_json also takes `{"Unit": null}`.
            (VariantShape::Unit, Some(c)) => {
                self.expect(c.is_null(), c, "null (a unit variant)", here)
            }
            (_, None) => Err(mismatch(
                at,
                format!("variant `{tag}` of {enum_name} carries data: write {{\"{tag}\": ...}}"),
            )),
            (VariantShape::Newtype(f), Some(c)) => self.format(c, f, here, 0),
            (VariantShape::Tuple(items), Some(c)) => {
                let what = Format::Tuple(items.clone());
                let values = self.array(c, &what, here, Some(items.len()))?;
                self.items(values, items.iter(), here)
            }
            (VariantShape::Struct(fields), Some(c)) => match c.as_object() {
                Some(object) => self.fields(object, fields, &format!("{enum_name}::{tag}"), here),
                None => Err(mismatch(
                    here,
                    format!(
                        "expected an object (the fields of {enum_name}::{tag}), got {}",
                        kind(c)
                    ),
                )),
            },
        }
    }

    /// What a value of `f` looks like, for "expected ..." messages.
    fn describe(&self, f: &Format) -> String {
        match f {
            Format::Ref(type_name) => match self.types.get(type_name) {
                Some(Container::Struct(_)) => format!("{type_name} (an object)"),
                Some(Container::Enum(_)) => format!("{type_name} (an enum variant)"),
                Some(Container::UnitStruct) => format!("{type_name} (null)"),
                Some(Container::TupleStruct(items)) => {
                    format!("{type_name} (an array of {})", items.len())
                }
                Some(Container::Newtype(inner)) => format!("{type_name} ({})", name(inner)),
                None => type_name.clone(),
            },
            Format::Option(inner) => format!("{} or null", self.describe(inner)),
            Format::Seq(item) => format!("an array of {}", name(item)),
            Format::Tuple(items) => format!("an array of {} items", items.len()),
            Format::Array { len, .. } => format!("an array of {len} items"),
            Format::Map { .. } => "an object (a map)".to_owned(),
            other => name(other),
        }
    }
}

fn mismatch(at: Path<'_>, reason: String) -> Mismatch {
    Mismatch {
        path: at.rendered(),
        reason,
        schema_fault: false,
    }
}

fn variant_names(variants: &[Variant]) -> String {
    let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
    names.join(", ")
}

/// The JSON kind of `v`, for "got ..." messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A format's name as the schema spells it (`u32`, `str`, `Option<T>`...).
pub(crate) fn name(f: &Format) -> String {
    crate::render::type_name(f)
}

/// The range of an integer format.
fn int_range(f: &Format) -> Option<(i128, i128)> {
    Some(match f {
        Format::I8 => (i8::MIN.into(), i8::MAX.into()),
        Format::I16 => (i16::MIN.into(), i16::MAX.into()),
        Format::I32 => (i32::MIN.into(), i32::MAX.into()),
        Format::I64 => (i64::MIN.into(), i64::MAX.into()),
        Format::I128 => (i128::MIN, i128::MAX),
        Format::U8 => (0, u8::MAX.into()),
        Format::U16 => (0, u16::MAX.into()),
        Format::U32 => (0, u32::MAX.into()),
        Format::U64 => (0, u64::MAX.into()),
        // Exact JSON integers stop at u64::MAX anyway.
        Format::U128 => (0, i128::MAX),
        _ => return None,
    })
}

fn integer(v: &Value, f: &Format, at: Path<'_>) -> Checked {
    let (min, max) = int_range(f).unwrap_or((i128::MIN, i128::MAX));
    let Value::Number(n) = v else {
        return Err(mismatch(
            at,
            format!("expected {}, got {}", name(f), kind(v)),
        ));
    };
    let exact = n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
    let in_range = match (exact, n.as_f64()) {
        (Some(i), _) => min <= i && i <= max,
        (None, Some(x)) if x.fract() != 0.0 || !x.is_finite() => {
            return Err(mismatch(
                at,
                format!("expected {}, got {n} (not a whole number)", name(f)),
            ))
        }
        // A whole number beyond 64 bits: only 128-bit types can hold it.
        (None, Some(x)) => match f {
            Format::I128 => (-(2f64.powi(127))..2f64.powi(127)).contains(&x),
            Format::U128 => (0.0..2f64.powi(128)).contains(&x),
            _ => false,
        },
        (None, None) => false,
    };
    if in_range {
        Ok(())
    } else {
        Err(mismatch(
            at,
            format!("expected {}, got {n} (out of range)", name(f)),
        ))
    }
}

/// `bytes`: an array of integers 0–255, or a string (its UTF-8 bytes).
fn bytes(v: &Value, at: Path<'_>) -> Checked {
    match v {
        Value::String(_) => Ok(()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                integer(item, &Format::U8, Path::Index(&at, i))?;
            }
            Ok(())
        }
        _ => Err(mismatch(
            at,
            format!(
                "expected bytes (an array of integers 0-255, or a string), got {}",
                kind(v)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Types in the contract's JSON form, covering every shape.
    fn types() -> BTreeMap<String, Container> {
        serde_json::from_value(json!({
            "HelloRequest": {"struct": [{"name": "name", "type": "str"}]},
            "Order": {"struct": [
                {"name": "id", "type": "u32"},
                {"name": "note", "type": {"option": "str"}},
                {"name": "items", "type": {"seq": {"ref": "Item"}}},
                {"name": "tags", "type": {"map": {"key": "str", "value": "i8"}}},
                {"name": "by_id", "type": {"map": {"key": "u16", "value": "bool"}}},
                {"name": "pair", "type": {"tuple": ["u8", "char"]}},
                {"name": "rgb", "type": {"array": {"item": "u8", "len": 3}}},
                {"name": "blob", "type": "bytes"},
                {"name": "shape", "type": {"ref": "Shape"}},
                {"name": "id2", "type": {"ref": "Id"}},
                {"name": "marker", "type": {"ref": "Marker"}},
                {"name": "point", "type": {"ref": "Point"}},
                {"name": "big", "type": "i128"},
                {"name": "ratio", "type": "f32"},
                {"name": "nothing", "type": "unit"}
            ]},
            "Item": {"struct": [{"name": "sku", "type": "str"}, {"name": "next", "type": {"option": {"ref": "Item"}}}]},
            "Shape": {"enum": [
                {"name": "Empty", "shape": "unit"},
                {"name": "Circle", "shape": {"newtype": "f64"}},
                {"name": "Line", "shape": {"tuple": ["i32", "i32"]}},
                {"name": "Rect", "shape": {"struct": [{"name": "w", "type": "u8"}, {"name": "h", "type": "u8"}]}}
            ]},
            "Id": {"newtype": "u64"},
            "Marker": "unit_struct",
            "Point": {"tuple_struct": ["i16", "i16"]},
            "Loop": {"newtype": {"ref": "Loop"}},
            "Dangling": {"newtype": {"ref": "Nowhere"}}
        }))
        .unwrap()
    }

    fn good_order() -> Value {
        json!({
            "id": 7, "items": [{"sku": "a"}, {"sku": "b", "next": {"sku": "c", "next": null}}],
            "tags": {"x": -3}, "by_id": {"65535": true}, "pair": [1, "é"], "rgb": [0, 128, 255],
            "blob": [0, 255], "shape": "Empty", "id2": 18446744073709551615u64, "marker": null,
            "point": [-1, 1], "big": -170141183460469231731687303715884105728.0,
            "ratio": 0.5, "nothing": null
        })
    }

    fn check(v: Value, ty: &str) -> Result<(), String> {
        let types = types();
        Checker::new(&types)
            .check(&v, &Format::Ref(ty.into()))
            .map_err(|m| m.to_string())
    }

    /// `good_order()` with `path` (object keys) set to `v`.
    fn order_with(path: &[&str], v: Value) -> Result<(), String> {
        let mut order = good_order();
        let mut at = &mut order;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = v;
        check(order, "Order")
    }

    #[test]
    fn accepts_every_shape() {
        check(good_order(), "Order").unwrap();
        for shape in [
            json!("Empty"),
            json!({"Empty": null}),
            json!({"Circle": 1.5}),
            json!({"Line": [1, -2]}),
            json!({"Rect": {"w": 1, "h": 2}}),
        ] {
            order_with(&["shape"], shape).unwrap();
        }
        order_with(&["blob"], json!("text bytes")).unwrap();
        order_with(&["note"], json!("a note")).unwrap();
        order_with(&["note"], json!(null)).unwrap();
    }

    #[test]
    fn names_the_field_and_the_expected_type() {
        assert_eq!(
            check(json!({"name": 1}), "HelloRequest").unwrap_err(),
            "name: expected str, got number"
        );
        assert_eq!(
            check(json!("Ada"), "HelloRequest").unwrap_err(),
            "the message: expected HelloRequest (an object), got string"
        );
        let cases: &[(&[&str], Value, &str)] = &[
            (
                &["id"],
                json!(-1),
                "id: expected u32, got -1 (out of range)",
            ),
            (
                &["id"],
                json!(4294967296u64),
                "id: expected u32, got 4294967296 (out of range)",
            ),
            (
                &["id"],
                json!(1.5),
                "id: expected u32, got 1.5 (not a whole number)",
            ),
            (&["id"], json!("7"), "id: expected u32, got string"),
            (
                &["items"],
                json!({}),
                "items: expected an array of Item, got object",
            ),
            (
                &["tags"],
                json!({"x": 128}),
                "tags[\"x\"]: expected i8, got 128 (out of range)",
            ),
            (
                &["by_id"],
                json!({"65536": true}),
                "by_id[\"65536\"]: map key: expected u16, got \"65536\"",
            ),
            (
                &["pair"],
                json!([1]),
                "pair: expected an array of 2 items, got 1 items",
            ),
            (
                &["pair"],
                json!([1, "ab"]),
                "pair[1]: expected char (a one-character string), got string",
            ),
            (
                &["rgb"],
                json!([0, 0, 256]),
                "rgb[2]: expected u8, got 256 (out of range)",
            ),
            (
                &["blob"],
                json!([1, -1]),
                "blob[1]: expected u8, got -1 (out of range)",
            ),
            (
                &["blob"],
                json!(5),
                "blob: expected bytes (an array of integers 0-255, or a string), got number",
            ),
            (
                &["id2"],
                json!(-5),
                "id2: expected u64, got -5 (out of range)",
            ),
            (
                &["marker"],
                json!({}),
                "marker: expected Marker (null), got object",
            ),
            (
                &["point"],
                json!([1, 2, 3]),
                "point: expected Point (an array of 2), got 3 items",
            ),
            (
                &["point"],
                json!([1, 40000]),
                "point[1]: expected i16, got 40000 (out of range)",
            ),
            (
                &["big"],
                json!(1e40),
                "big: expected i128, got 1e+40 (out of range)",
            ),
            (&["ratio"], json!("0.5"), "ratio: expected f32, got string"),
            (
                &["nothing"],
                json!(0),
                "nothing: expected unit (null), got number",
            ),
            (&["note"], json!(3), "note: expected str, got number"),
        ];
        for (path, value, want) in cases {
            assert_eq!(
                order_with(path, value.clone()).unwrap_err(),
                *want,
                "{path:?}"
            );
        }
    }

    #[test]
    fn nested_paths() {
        let err = order_with(
            &["items"],
            json!([{"sku": "a"}, {"sku": "b", "next": {"sku": 1}}]),
        );
        assert_eq!(
            err.unwrap_err(),
            "items[1].next.sku: expected str, got number"
        );
        let err = order_with(&["shape"], json!({"Rect": {"w": 1, "h": -2}}));
        assert_eq!(
            err.unwrap_err(),
            "shape.Rect.h: expected u8, got -2 (out of range)"
        );
        let err = order_with(&["shape"], json!({"Line": [1, "x"]}));
        assert_eq!(err.unwrap_err(), "shape.Line[1]: expected i32, got string");
    }

    #[test]
    fn missing_and_unknown_fields() {
        let mut order = good_order();
        order.as_object_mut().unwrap().remove("id");
        assert_eq!(
            check(order, "Order").unwrap_err(),
            "id: missing field of Order (expected u32)"
        );
        assert_eq!(
            check(json!({"name": "Ada", "nmae": "x"}), "HelloRequest").unwrap_err(),
            "nmae: unknown field of HelloRequest (it has name)"
        );
        let err = order_with(&["shape"], json!({"Rect": {"w": 1}}));
        assert_eq!(
            err.unwrap_err(),
            "shape.Rect.h: missing field of Shape::Rect (expected u8)"
        );
    }

    #[test]
    fn enum_forms() {
        let cases = [
            (json!("Circle"), "shape: variant `Circle` of Shape carries data: write {\"Circle\": ...}"),
            (json!("Square"), "shape: unknown variant `Square` of Shape (variants: Empty, Circle, Line, Rect)"),
            (json!({"Empty": 1}), "shape.Empty: expected null (a unit variant), got number"),
            (json!({"Circle": 1, "Line": [1, 2]}), "shape: expected Shape (\"Variant\" or {\"Variant\": value}; variants: Empty, Circle, Line, Rect), got object"),
            (json!(3), "shape: expected Shape (\"Variant\" or {\"Variant\": value}; variants: Empty, Circle, Line, Rect), got number"),
        ];
        for (value, want) in cases {
            assert_eq!(order_with(&["shape"], value).unwrap_err(), want);
        }
    }

    /// Types traced by knafeh's own tracer: the checker agrees with
    /// serde_json's decoding (except that it also refuses unknown fields).
    mod traced {
        use super::*;
        use serde::{Deserialize, Serialize};

        #[derive(Serialize, Deserialize)]
        struct Rich {
            a: u8,
            b: Option<i64>,
            c: Vec<Inner>,
            d: BTreeMap<u16, String>,
            e: (u8, char),
            f: [u8; 3],
            #[serde(with = "knafeh::as_bytes")]
            g: Vec<u8>,
            h: Vec<Shape>,
            i: Id,
            j: Marker,
            k: Pair,
            l: i128,
            m: f32,
            n: (),
            o: Option<Box<Rich>>,
        }
        #[derive(Serialize, Deserialize)]
        struct Inner {
            s: String,
        }
        #[derive(Serialize, Deserialize)]
        enum Shape {
            Empty,
            Circle(f64),
            Line(i32, i32),
            Rect { w: u8, h: u8 },
        }
        #[derive(Serialize, Deserialize)]
        struct Id(u64);
        #[derive(Serialize, Deserialize)]
        struct Marker;
        #[derive(Serialize, Deserialize)]
        struct Pair(i16, String);

        fn sample() -> Value {
            let rich = Rich {
                a: 1,
                b: None,
                c: vec![Inner { s: "x".into() }],
                d: [(7, "seven".into())].into(),
                e: (2, 'z'),
                f: [1, 2, 3],
                g: vec![0, 255],
                h: vec![
                    Shape::Empty,
                    Shape::Circle(0.5),
                    Shape::Line(1, -1),
                    Shape::Rect { w: 1, h: 2 },
                ],
                i: Id(u64::MAX),
                j: Marker,
                k: Pair(-4, "p".into()),
                l: -5,
                m: 1.25,
                n: (),
                o: None,
            };
            serde_json::to_value(rich).unwrap()
        }

        #[test]
        fn agrees_with_serde_json() {
            let mut tracer = knafeh::schema::Tracer::new();
            let format = tracer.trace::<Rich>().unwrap();
            let types = tracer.into_types();
            let checker = Checker::new(&types);
            let mut nested = sample();
            nested["o"] = sample();
            let edits: Vec<(&str, Value)> = vec![
                ("a", json!(255)),
                ("a", json!(256)),
                ("a", json!(-1)),
                ("b", json!(-9007199254740993i64)),
                ("b", json!("1")),
                ("c", json!([])),
                ("c", json!([{"s": 1}])),
                ("c", json!([{}])),
                ("d", json!({"65535": "x"})),
                ("d", json!({"65536": "x"})),
                ("d", json!({"x": "x"})),
                ("e", json!([1, "ab"])),
                ("e", json!([1, "a", 2])),
                ("f", json!([1, 2])),
                ("f", json!([1, 2, 256])),
                ("g", json!("text")),
                ("g", json!([1, 300])),
                (
                    "h",
                    json!(["Empty", {"Circle": 2}, {"Line": [1, 2]}, {"Rect": {"w": 0, "h": 0}}]),
                ),
                ("h", json!(["Circle"])),
                ("h", json!([{"Line": [1]}])),
                ("h", json!([{"Rect": {"w": 0}}])),
                ("h", json!(["Nope"])),
                ("i", json!(0)),
                ("i", json!([0])),
                ("j", json!(null)),
                ("j", json!(0)),
                ("k", json!([1, "q"])),
                ("k", json!([1])),
                ("l", json!(-9223372036854775808i64)),
                ("l", json!(1.5)),
                ("m", json!(3)),
                ("m", json!("3")),
                ("n", json!(0)),
                ("o", nested["o"].clone()),
                ("o", json!({"a": 1})),
            ];
            let mut refused = 0;
            for (field, v) in edits {
                let mut message = sample();
                message[field] = v.clone();
                // As the server decodes: from the text.
                let serde_ok = serde_json::from_str::<Rich>(&message.to_string()).is_ok();
                let checked = checker.check(&message, &format);
                assert_eq!(checked.is_ok(), serde_ok, "{field} = {v}: {checked:?}");
                refused += usize::from(!serde_ok);
            }
            assert!(refused > 20);
            // Unknown fields: serde_json ignores them, the checker refuses.
            let mut message = sample();
            message["zz"] = json!(1);
            assert!(serde_json::from_str::<Rich>(&message.to_string()).is_ok());
            let err = checker.check(&message, &format).unwrap_err();
            assert_eq!(
                err.to_string(),
                "zz: unknown field of Rich (it has a, b, c, d, e, f, g, h, i, j, k, l, m, n, o)"
            );
        }
    }

    #[test]
    fn broken_schemas_are_the_schemas_fault() {
        let types = types();
        let checker = Checker::new(&types);
        for ty in ["Loop", "Dangling", "Nowhere"] {
            let err = checker
                .check(&json!(1), &Format::Ref(ty.into()))
                .unwrap_err();
            assert!(err.schema_fault, "{ty}: {err}");
        }
    }
}
