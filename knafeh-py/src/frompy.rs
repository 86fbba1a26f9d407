//! Python objects → serde, with errors that say where and what: the path
//! of the offending field (`items[3].value`, `inner.name`) and what was
//! expected (`expected str, got int`, `-1 is out of range for u32`).
//!
//! What converts: a struct from a dict (or any mapping) of its fields; a
//! sequence from a list, tuple, set or frozenset (a `Vec<u8>` also from
//! `bytes` or `bytearray`); a byte block (`knafeh::as_bytes`) from
//! `bytes` only; a map from a dict; an enum from its variant name (unit
//! variants) or a dict with one key, the variant; `Option` from `None` or
//! the value; integers from `int` (not `bool`) within the type's range;
//! floats from `float` or `int`; strings from `str`.
//!
//! The path comes from `serde_path_to_error`, which wraps this
//! deserializer; this module only words the failure at the leaf.

use std::fmt;

use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PyMapping,
    PySequence, PySet, PyString, PyTuple,
};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

/// Why a Python value does not convert (without the path).
#[derive(Debug)]
pub(crate) struct FromPyError(String);

impl fmt::Display for FromPyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FromPyError {}

impl de::Error for FromPyError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        FromPyError(msg.to_string())
    }
}

impl From<PyErr> for FromPyError {
    fn from(e: PyErr) -> Self {
        FromPyError(e.to_string())
    }
}

type Result<T> = std::result::Result<T, FromPyError>;

/// Converts `obj` to `T`; the error reads `path: reason` (just `reason`
/// when the value itself is wrong).
pub(crate) fn from_py<T: DeserializeOwned>(
    obj: &Bound<'_, PyAny>,
) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize(De(obj.clone())).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.into_inner();
        if path == "." {
            reason.0
        } else {
            format!("{path}: {reason}")
        }
    })
}

/// The Python name of `obj`'s type, for "got …".
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    if obj.is_none() {
        return "None".to_owned();
    }
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_owned())
}

fn expected(what: &str, obj: &Bound<'_, PyAny>) -> FromPyError {
    FromPyError(format!("expected {what}, got {}", type_name(obj)))
}

/// A Python `int`, or an integer-like object (`__index__`, e.g. numpy's
/// integers); a `bool` is not taken for a number.
fn int<'py>(obj: &Bound<'py, PyAny>) -> Result<Bound<'py, PyInt>> {
    if obj.is_instance_of::<PyBool>() {
        return Err(expected("int", obj));
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        return Ok(i.clone());
    }
    if obj.hasattr("__index__")? {
        if let Ok(i) = obj.call_method0("__index__")?.cast_into::<PyInt>() {
            return Ok(i);
        }
    }
    Err(expected("int", obj))
}

/// A Python `float`, an integer, or a float-like object (`__float__`,
/// e.g. numpy's floats); a `bool` is not taken for a number.
fn float(obj: &Bound<'_, PyAny>) -> Result<f64> {
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(f.value());
    }
    if let Ok(i) = int(obj) {
        return i
            .extract::<f64>()
            .map_err(|_| FromPyError(format!("{i} is out of range for f64")));
    }
    if !obj.is_instance_of::<PyBool>() && obj.hasattr("__float__")? {
        if let Ok(f) = obj.call_method0("__float__")?.cast_into::<PyFloat>() {
            return Ok(f.value());
        }
    }
    Err(expected("float", obj))
}

/// An integer of type `T`, or a message naming the value and the type.
fn int_in_range<T: TryFrom<i128> + TryFrom<u128>>(obj: &Bound<'_, PyAny>, rust: &str) -> Result<T> {
    let i = int(obj)?;
    let v = match i.extract::<i128>() {
        Ok(v) => T::try_from(v).ok(),
        Err(_) => i.extract::<u128>().ok().and_then(|v| T::try_from(v).ok()),
    };
    v.ok_or_else(|| FromPyError(format!("{i} is out of range for {rust}")))
}

/// A deserializer over one Python object.
struct De<'py>(Bound<'py, PyAny>);

macro_rules! integer {
    ($($method:ident $visit:ident $t:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.$visit(int_in_range::<$t>(&self.0, stringify!($t))?)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for De<'_> {
    type Error = FromPyError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let o = &self.0;
        if o.is_none() {
            visitor.visit_unit()
        } else if let Ok(b) = o.cast::<PyBool>() {
            visitor.visit_bool(b.is_true())
        } else if o.is_instance_of::<PyInt>() {
            match o.extract::<i64>() {
                Ok(v) => visitor.visit_i64(v),
                Err(_) => match o.extract::<u64>() {
                    Ok(v) => visitor.visit_u64(v),
                    Err(_) => visitor.visit_i128(int_in_range::<i128>(o, "i128")?),
                },
            }
        } else if let Ok(f) = o.cast::<PyFloat>() {
            visitor.visit_f64(f.value())
        } else if let Ok(s) = o.cast::<PyString>() {
            visitor.visit_str(&s.to_cow()?)
        } else if let Ok(b) = o.cast::<PyBytes>() {
            visitor.visit_bytes(b.as_bytes())
        } else if o.is_instance_of::<PyDict>() || o.cast::<PyMapping>().is_ok() {
            self.deserialize_map(visitor)
        } else {
            self.deserialize_seq(visitor)
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0.cast::<PyBool>() {
            Ok(b) => visitor.visit_bool(b.is_true()),
            Err(_) => Err(expected("bool", &self.0)),
        }
    }

    integer! {
        deserialize_i8 visit_i8 i8,
        deserialize_i16 visit_i16 i16,
        deserialize_i32 visit_i32 i32,
        deserialize_i64 visit_i64 i64,
        deserialize_i128 visit_i128 i128,
        deserialize_u8 visit_u8 u8,
        deserialize_u16 visit_u16 u16,
        deserialize_u32 visit_u32 u32,
        deserialize_u64 visit_u64 u64,
        deserialize_u128 visit_u128 u128,
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let v = float(&self.0)?;
        if v.is_finite() && v.abs() > f64::from(f32::MAX) {
            return Err(FromPyError(format!("{} is out of range for f32", self.0)));
        }
        visitor.visit_f64(v)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f64(float(&self.0)?)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let s = self
            .0
            .cast::<PyString>()
            .map_err(|_| expected("a one-character str", &self.0))?
            .to_cow()?;
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => visitor.visit_char(c),
            _ => Err(FromPyError(format!(
                "expected a one-character str, got {} characters",
                s.chars().count()
            ))),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0.cast::<PyString>() {
            Ok(s) => visitor.visit_str(&s.to_cow()?),
            Err(_) => Err(expected("str", &self.0)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0.cast::<PyBytes>() {
            Ok(b) => visitor.visit_bytes(b.as_bytes()),
            Err(_) => Err(expected("bytes", &self.0)),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.0.is_none() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.0.is_none() {
            visitor.visit_unit()
        } else {
            Err(expected("None", &self.0))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let items = sequence(&self.0, "list")?;
        visitor.visit_seq(Items::new(items))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        let items = sequence(&self.0, &format!("a list of {len} items"))?;
        if items.len() != len {
            return Err(FromPyError(format!(
                "expected a list of {len} items, got {}",
                items.len()
            )));
        }
        visitor.visit_seq(Items::new(items))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_map(Entries::new(&self.0)?)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let o = &self.0;
        if let Ok(s) = o.cast::<PyString>() {
            let name: de::value::StringDeserializer<FromPyError> =
                s.to_cow()?.into_owned().into_deserializer();
            return visitor.visit_enum(name);
        }
        let bad = || {
            expected(
                "a variant name (str) or a dict with one key, the variant",
                o,
            )
        };
        let dict = o.cast::<PyDict>().map_err(|_| bad())?;
        if dict.len() != 1 {
            return Err(FromPyError(format!(
                "expected a dict with one key, the variant, got {} keys",
                dict.len()
            )));
        }
        let (variant, value) = dict.iter().next().ok_or_else(bad)?;
        visitor.visit_enum(Variant { variant, value })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0.cast::<PyString>() {
            Ok(s) => visitor.visit_str(&s.to_cow()?),
            Err(_) => Err(expected("a str key", &self.0)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }
}

/// The items of a Python sequence (not a `str`): lists, tuples, sets,
/// `bytes`/`bytearray` (as ints), other sequences.
fn sequence<'py>(o: &Bound<'py, PyAny>, what: &str) -> Result<Vec<Bound<'py, PyAny>>> {
    if let Ok(l) = o.cast::<PyList>() {
        return Ok(l.iter().collect());
    }
    if let Ok(t) = o.cast::<PyTuple>() {
        return Ok(t.iter().collect());
    }
    if let Ok(b) = o.cast::<PyBytes>() {
        return ints(o.py(), b.as_bytes());
    }
    if let Ok(b) = o.cast::<PyByteArray>() {
        return ints(o.py(), &b.to_vec());
    }
    if o.is_instance_of::<PySet>() || o.is_instance_of::<PyFrozenSet>() {
        return Ok(o.try_iter()?.collect::<PyResult<_>>()?);
    }
    if o.is_instance_of::<PyString>() || o.is_instance_of::<PyDict>() {
        return Err(expected(what, o));
    }
    match o.cast::<PySequence>() {
        Ok(s) => Ok(s.try_iter()?.collect::<PyResult<_>>()?),
        Err(_) => Err(expected(what, o)),
    }
}

fn ints<'py>(py: Python<'py>, bytes: &[u8]) -> Result<Vec<Bound<'py, PyAny>>> {
    Ok(bytes
        .iter()
        .map(|b| match b.into_pyobject(py) {
            Ok(i) => i.into_any(),
            Err(never) => match never {},
        })
        .collect())
}

struct Items<'py> {
    items: std::vec::IntoIter<Bound<'py, PyAny>>,
}

impl<'py> Items<'py> {
    fn new(items: Vec<Bound<'py, PyAny>>) -> Self {
        Items {
            items: items.into_iter(),
        }
    }
}

impl<'de> de::SeqAccess<'de> for Items<'_> {
    type Error = FromPyError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        match self.items.next() {
            Some(item) => seed.deserialize(De(item)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// The entries of a dict or mapping, keys and values in order.
struct Entries<'py> {
    entries: std::vec::IntoIter<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
    value: Option<Bound<'py, PyAny>>,
}

impl<'py> Entries<'py> {
    fn new(o: &Bound<'py, PyAny>) -> Result<Self> {
        let entries: Vec<_> = if let Ok(d) = o.cast::<PyDict>() {
            d.iter().collect()
        } else if let Ok(m) = o.cast::<PyMapping>() {
            m.items()?
                .iter()
                .map(|kv| kv.extract::<(Bound<'py, PyAny>, Bound<'py, PyAny>)>())
                .collect::<PyResult<_>>()?
        } else {
            return Err(expected("dict", o));
        };
        Ok(Entries {
            entries: entries.into_iter(),
            value: None,
        })
    }
}

impl<'de> de::MapAccess<'de> for Entries<'_> {
    type Error = FromPyError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(De(k)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value> {
        match self.value.take() {
            Some(v) => seed.deserialize(De(v)),
            None => Err(FromPyError(
                "a map value was asked for before its key".into(),
            )),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// `{variant: value}`: an enum variant with its content.
struct Variant<'py> {
    variant: Bound<'py, PyAny>,
    value: Bound<'py, PyAny>,
}

impl<'de, 'py> de::EnumAccess<'de> for Variant<'py> {
    type Error = FromPyError;
    type Variant = De<'py>;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, De<'py>)> {
        let name = seed.deserialize(De(self.variant))?;
        Ok((name, De(self.value)))
    }
}

impl<'de> de::VariantAccess<'de> for De<'_> {
    type Error = FromPyError;

    fn unit_variant(self) -> Result<()> {
        de::Deserialize::deserialize(self)
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}
