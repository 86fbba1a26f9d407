//! serde → Python objects, like pythonize, except that a sequence of `u8`
//! (a `Vec<u8>`, `[u8; N]`...) becomes `bytes` rather than a list of ints.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use pyo3::IntoPyObjectExt;
use serde::ser::{self, Impossible, Serialize};

/// Why a value could not be converted.
#[derive(Debug)]
pub(crate) struct ToPyError(String);

impl std::fmt::Display for ToPyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ToPyError {}

impl ser::Error for ToPyError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        ToPyError(msg.to_string())
    }
}

impl From<PyErr> for ToPyError {
    fn from(e: PyErr) -> Self {
        ToPyError(e.to_string())
    }
}

/// Converts `value` to a Python object.
pub(crate) fn to_py<'py, T: Serialize + ?Sized>(
    py: Python<'py>,
    value: &T,
) -> Result<Bound<'py, PyAny>, ToPyError> {
    value.serialize(Ser { py })
}

#[derive(Clone, Copy)]
struct Ser<'py> {
    py: Python<'py>,
}

type R<'py> = Result<Bound<'py, PyAny>, ToPyError>;

fn obj<'py, T: IntoPyObject<'py>>(py: Python<'py>, v: T) -> R<'py> {
    v.into_bound_py_any(py).map_err(ToPyError::from)
}

impl<'py> ser::Serializer for Ser<'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = ToPyError;
    type SerializeSeq = Seq<'py>;
    type SerializeTuple = Seq<'py>;
    type SerializeTupleStruct = Seq<'py>;
    type SerializeTupleVariant = Variant<Seq<'py>>;
    type SerializeMap = Map<'py>;
    type SerializeStruct = Map<'py>;
    type SerializeStructVariant = Variant<Map<'py>>;

    fn serialize_bool(self, v: bool) -> R<'py> {
        obj(self.py, v)
    }
    fn serialize_i8(self, v: i8) -> R<'py> {
        obj(self.py, v)
    }
    fn serialize_i16(self, v: i16) -> R<'py> {
        obj(self.py, v)
    }
    fn serialize_i32(self, v: i32) -> R<'py> {
        obj(self.py, v)
    }
    fn serialize_i64(self, v: i64) -> R<'py> {
        obj(self.py, v)
    }
    fn serialize_i128(self, v: i128) -> R<'py> {
        obj(self.py, v)
    }
    fn serialize_u8(self, v: u8) -> R<'py> {
        obj(self.py, v)
    }
    fn serialize_u16(self, v: u16) -> R<'py> {
        obj(self.py, v)
    }
    fn serialize_u32(self, v: u32) -> R<'py> {
        obj(self.py, v)
    }
    fn serialize_u64(self, v: u64) -> R<'py> {
        obj(self.py, v)
    }
    fn serialize_u128(self, v: u128) -> R<'py> {
        obj(self.py, v)
    }
    fn serialize_f32(self, v: f32) -> R<'py> {
        obj(self.py, v)
    }
    fn serialize_f64(self, v: f64) -> R<'py> {
        obj(self.py, v)
    }
    fn serialize_char(self, v: char) -> R<'py> {
        obj(self.py, v.to_string())
    }
    fn serialize_str(self, v: &str) -> R<'py> {
        obj(self.py, v)
    }
    fn serialize_bytes(self, v: &[u8]) -> R<'py> {
        Ok(PyBytes::new(self.py, v).into_any())
    }
    fn serialize_none(self) -> R<'py> {
        Ok(self.py.None().into_bound(self.py))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> R<'py> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> R<'py> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _name: &'static str) -> R<'py> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> R<'py> {
        obj(self.py, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> R<'py> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> R<'py> {
        let d = PyDict::new(self.py);
        d.set_item(variant, value.serialize(self)?)?;
        Ok(d.into_any())
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'py>, ToPyError> {
        Ok(Seq {
            py: self.py,
            items: Vec::with_capacity(len.unwrap_or(0)),
            bytes: Some(Vec::with_capacity(len.unwrap_or(0))),
            tuple: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'py>, ToPyError> {
        let mut s = self.serialize_seq(Some(len))?;
        s.tuple = true;
        s.bytes = None;
        Ok(s)
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Seq<'py>, ToPyError> {
        self.serialize_tuple(len)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Variant<Seq<'py>>, ToPyError> {
        Ok(Variant {
            variant,
            inner: self.serialize_tuple(len)?,
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Map<'py>, ToPyError> {
        Ok(Map {
            py: self.py,
            dict: PyDict::new(self.py),
            key: None,
        })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Map<'py>, ToPyError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Variant<Map<'py>>, ToPyError> {
        Ok(Variant {
            variant,
            inner: self.serialize_map(Some(len))?,
        })
    }
}

/// A sequence; stays a byte buffer for as long as every element is a `u8`.
pub(crate) struct Seq<'py> {
    py: Python<'py>,
    items: Vec<Bound<'py, PyAny>>,
    bytes: Option<Vec<u8>>,
    tuple: bool,
}

impl<'py> Seq<'py> {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ToPyError> {
        if let Some(bytes) = &mut self.bytes {
            if let Ok(b) = value.serialize(U8Probe) {
                bytes.push(b);
                return Ok(());
            }
            // Not all u8 after all: the bytes so far become ints.
            for b in std::mem::take(bytes) {
                self.items.push(obj(self.py, b)?);
            }
            self.bytes = None;
        }
        self.items.push(value.serialize(Ser { py: self.py })?);
        Ok(())
    }

    fn finish(self) -> R<'py> {
        match self.bytes {
            Some(b) if !b.is_empty() => Ok(PyBytes::new(self.py, &b).into_any()),
            _ if self.tuple => Ok(PyTuple::new(self.py, self.items)?.into_any()),
            _ => Ok(PyList::new(self.py, self.items)?.into_any()),
        }
    }
}

impl<'py> ser::SerializeSeq for Seq<'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = ToPyError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ToPyError> {
        self.push(value)
    }
    fn end(self) -> R<'py> {
        self.finish()
    }
}

impl<'py> ser::SerializeTuple for Seq<'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = ToPyError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ToPyError> {
        self.push(value)
    }
    fn end(self) -> R<'py> {
        self.finish()
    }
}

impl<'py> ser::SerializeTupleStruct for Seq<'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = ToPyError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ToPyError> {
        self.push(value)
    }
    fn end(self) -> R<'py> {
        self.finish()
    }
}

/// A map or struct.
pub(crate) struct Map<'py> {
    py: Python<'py>,
    dict: Bound<'py, PyDict>,
    key: Option<Bound<'py, PyAny>>,
}

impl<'py> ser::SerializeMap for Map<'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = ToPyError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ToPyError> {
        self.key = Some(key.serialize(Ser { py: self.py })?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ToPyError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| ToPyError("map value without a key".to_owned()))?;
        self.dict
            .set_item(key, value.serialize(Ser { py: self.py })?)?;
        Ok(())
    }
    fn end(self) -> R<'py> {
        Ok(self.dict.into_any())
    }
}

impl<'py> ser::SerializeStruct for Map<'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = ToPyError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ToPyError> {
        self.dict
            .set_item(key, value.serialize(Ser { py: self.py })?)?;
        Ok(())
    }
    fn end(self) -> R<'py> {
        Ok(self.dict.into_any())
    }
}

/// An enum variant with data: `{variant: data}`.
pub(crate) struct Variant<I> {
    variant: &'static str,
    inner: I,
}

impl<'py> ser::SerializeTupleVariant for Variant<Seq<'py>> {
    type Ok = Bound<'py, PyAny>;
    type Error = ToPyError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ToPyError> {
        self.inner.push(value)
    }
    fn end(self) -> R<'py> {
        let py = self.inner.py;
        let d = PyDict::new(py);
        d.set_item(self.variant, self.inner.finish()?)?;
        Ok(d.into_any())
    }
}

impl<'py> ser::SerializeStructVariant for Variant<Map<'py>> {
    type Ok = Bound<'py, PyAny>;
    type Error = ToPyError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ToPyError> {
        ser::SerializeStruct::serialize_field(&mut self.inner, key, value)
    }
    fn end(self) -> R<'py> {
        let py = self.inner.py;
        let d = PyDict::new(py);
        d.set_item(self.variant, self.inner.dict)?;
        Ok(d.into_any())
    }
}

/// Succeeds only for a `u8`.
struct U8Probe;

macro_rules! not_u8 {
    ($($name:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $name(self, $(_: $arg),*) -> Result<u8, ToPyError> { Err(ToPyError(String::new())) })*
    };
}

impl ser::Serializer for U8Probe {
    type Ok = u8;
    type Error = ToPyError;
    type SerializeSeq = Impossible<u8, ToPyError>;
    type SerializeTuple = Impossible<u8, ToPyError>;
    type SerializeTupleStruct = Impossible<u8, ToPyError>;
    type SerializeTupleVariant = Impossible<u8, ToPyError>;
    type SerializeMap = Impossible<u8, ToPyError>;
    type SerializeStruct = Impossible<u8, ToPyError>;
    type SerializeStructVariant = Impossible<u8, ToPyError>;

    fn serialize_u8(self, v: u8) -> Result<u8, ToPyError> {
        Ok(v)
    }
    not_u8!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<u8, ToPyError> {
        Err(ToPyError(String::new()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<u8, ToPyError> {
        Err(ToPyError(String::new()))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<u8, ToPyError> {
        Err(ToPyError(String::new()))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, ToPyError> {
        Err(ToPyError(String::new()))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, ToPyError> {
        Err(ToPyError(String::new()))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, ToPyError> {
        Err(ToPyError(String::new()))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, ToPyError> {
        Err(ToPyError(String::new()))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, ToPyError> {
        Err(ToPyError(String::new()))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, ToPyError> {
        Err(ToPyError(String::new()))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, ToPyError> {
        Err(ToPyError(String::new()))
    }
}
