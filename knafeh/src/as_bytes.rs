//! Serde helpers that carry a byte field as one block of bytes.
//!
//! serde sees a `Vec<u8>` as a sequence of `u8`s, so bincode encodes and
//! decodes it one byte at a time. Marking the field
//! `#[serde(with = "knafeh::as_bytes")]` makes it one block: the bytes on
//! the wire are the same (bincode: length, then the bytes; JSON: an array
//! of numbers), so annotated and plain Rust peers understand each other,
//! but the field costs one copy instead of a call per byte (`knafeh-bench
//! codec` measures it: about 3× faster at 64 bytes, about 40× at 1 MiB).
//!
//! Differences from a plain `Vec<u8>` on input: JSON also accepts a
//! string for the field (its UTF-8 bytes); from Python (`#[pyservice]`)
//! the field must be `bytes` (a plain `Vec<u8>` also takes a `bytearray`
//! or a list of ints), and it comes back as `bytes`, also when empty.
//!
//! It works for any type that is `AsRef<[u8]>` and `From<Vec<u8>>`:
//! `Vec<u8>`, `Box<[u8]>`, `bytes::Bytes`. It is the same idea as the
//! `serde_bytes` crate, which knafeh also accepts.
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Blob {
//!     #[serde(with = "knafeh::as_bytes")]
//!     data: Vec<u8>,
//! }
//! ```
//!
//! An optional field (`Option<Vec<u8>>` and the like) takes
//! [`as_bytes::option`](option) instead; see there.

use std::fmt;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Serializer;

/// Serializes `bytes` as one block of bytes (`serialize_bytes`).
pub fn serialize<T, S>(bytes: &T, serializer: S) -> Result<S::Ok, S::Error>
where
    T: AsRef<[u8]> + ?Sized,
    S: Serializer,
{
    serializer.serialize_bytes(bytes.as_ref())
}

/// Deserializes a block of bytes; also accepts a sequence of integers
/// 0–255 (what JSON carries, and what a serializer without a bytes type
/// produces).
pub fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
where
    T: From<Vec<u8>>,
    D: Deserializer<'de>,
{
    deserializer.deserialize_byte_buf(BytesVisitor).map(T::from)
}

/// [`as_bytes`](self) for an optional byte field: `Option<Vec<u8>>`,
/// `Option<Box<[u8]>>`, `Option<bytes::Bytes>`. The wire is that of a
/// plain `Option<Vec<u8>>` (bincode: a tag byte, then the bytes; JSON:
/// `null` or the array), and schemas describe the field as an option of
/// bytes.
///
/// serde fills a missing field with `None` only for a plain `Option`: add
/// `default` so that a message without the field still decodes (a JSON
/// peer may leave it out).
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Thumbnail {
///     #[serde(default, with = "knafeh::as_bytes::option")]
///     png: Option<Vec<u8>>,
/// }
/// ```
pub mod option {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{Deserializer, Visitor};
    use serde::{Serialize, Serializer};

    /// Serializes `None`, or `Some` of one block of bytes.
    pub fn serialize<T, S>(bytes: &Option<T>, serializer: S) -> Result<S::Ok, S::Error>
    where
        T: AsRef<[u8]>,
        S: Serializer,
    {
        match bytes {
            Some(b) => serializer.serialize_some(&Block(b.as_ref())),
            None => serializer.serialize_none(),
        }
    }

    /// Deserializes `None`, or `Some` of a block of bytes (or of a sequence
    /// of integers 0–255, as [`as_bytes::deserialize`](super::deserialize)).
    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        T: From<Vec<u8>>,
        D: Deserializer<'de>,
    {
        deserializer.deserialize_option(OptionVisitor(PhantomData))
    }

    struct Block<'a>(&'a [u8]);

    impl Serialize for Block<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    struct OptionVisitor<T>(PhantomData<fn() -> T>);

    impl<'de, T: From<Vec<u8>>> Visitor<'de> for OptionVisitor<T> {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bytes or nothing")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        // The size hint comes from the peer: cap what it may preallocate.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use crate::Codec;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Plain {
        data: Vec<u8>,
        tag: u32,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Blob {
        #[serde(with = "crate::as_bytes")]
        data: Vec<u8>,
        tag: u32,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Boxed {
        #[serde(with = "crate::as_bytes")]
        data: Box<[u8]>,
        tag: u32,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Shared {
        #[serde(with = "crate::as_bytes")]
        data: bytes::Bytes,
        tag: u32,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct PlainOption {
        data: Option<Vec<u8>>,
        tag: u32,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct BlobOption {
        #[serde(default, with = "crate::as_bytes::option")]
        data: Option<Vec<u8>>,
        tag: u32,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct SharedOption {
        #[serde(default, with = "crate::as_bytes::option")]
        data: Option<bytes::Bytes>,
        tag: u32,
    }

    #[test]
    fn an_optional_field_has_the_wire_of_a_plain_option() {
        for data in [
            None,
            Some(vec![]),
            Some(vec![1, 2, 255]),
            Some(vec![7; 300]),
        ] {
            let plain = PlainOption {
                data: data.clone(),
                tag: 3,
            };
            let blob = BlobOption {
                data: data.clone(),
                tag: 3,
            };
            for codec in [Codec::Bincode, Codec::Json] {
                let a = encode(codec, &plain);
                let b = encode(codec, &blob);
                assert_eq!(a, b, "{codec:?}, {data:?}");
                assert_eq!(codec.decode::<BlobOption>(&a).unwrap(), blob);
                assert_eq!(codec.decode::<PlainOption>(&b).unwrap(), plain);
                let shared: SharedOption = codec.decode(&b).unwrap();
                assert_eq!(shared.data.as_deref(), data.as_deref());
            }
        }
        // bincode byte by byte: `None` is tag 0; `Some` is tag 1, the
        // length, the bytes.
        let some = BlobOption {
            data: Some(vec![0xaa, 0xbb]),
            tag: 5,
        };
        assert_eq!(encode(Codec::Bincode, &some), [1, 2, 0xaa, 0xbb, 5]);
        let none = BlobOption { data: None, tag: 5 };
        assert_eq!(encode(Codec::Bincode, &none), [0, 5]);
        // JSON: `null`, an absent field (with `default`), a string.
        let json = |s: &str| Codec::Json.decode::<BlobOption>(s.as_bytes()).unwrap().data;
        assert_eq!(json(r#"{"data":null,"tag":1}"#), None);
        assert_eq!(json(r#"{"tag":1}"#), None);
        assert_eq!(json(r#"{"data":"hi","tag":1}"#), Some(b"hi".to_vec()));
        assert!(Codec::Json
            .decode::<BlobOption>(br#"{"data":[300],"tag":1}"#)
            .is_err());
    }

    #[test]
    fn schemas_describe_an_optional_field_as_an_option_of_bytes() {
        let mut tracer = crate::schema::Tracer::new();
        tracer.trace::<BlobOption>().unwrap();
        let types = tracer.into_types();
        assert_eq!(
            serde_json::to_string(&types["BlobOption"]).unwrap(),
            r#"{"struct":[{"name":"data","type":{"option":"bytes"}},{"name":"tag","type":"u32"}]}"#
        );
    }

    fn encode<T: Serialize>(codec: Codec, v: &T) -> Vec<u8> {
        let mut out = bytes::BytesMut::new();
        codec.encode_message(v, &mut out).unwrap();
        out[crate::proto::frame::PREFIX_LEN..].to_vec()
    }

    #[test]
    fn the_wire_is_the_same_as_a_plain_vec_in_both_codecs() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let plain = Plain {
                data: data.clone(),
                tag: 9,
            };
            let blob = Blob {
                data: data.clone(),
                tag: 9,
            };
            for codec in [Codec::Bincode, Codec::Json] {
                let a = encode(codec, &plain);
                let b = encode(codec, &blob);
                assert_eq!(a, b, "{codec:?}, {len} bytes");
                // Each side reads what the other wrote.
                assert_eq!(codec.decode::<Blob>(&a).unwrap(), blob);
                assert_eq!(codec.decode::<Plain>(&b).unwrap(), plain);
                let boxed: Boxed = codec.decode(&b).unwrap();
                assert_eq!(&*boxed.data, &data[..]);
                assert_eq!(encode(codec, &boxed), a);
                let shared: Shared = codec.decode(&b).unwrap();
                assert_eq!(&shared.data[..], &data[..]);
                assert_eq!(encode(codec, &shared), a);
            }
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        // A JSON array with a value that is not a byte.
        assert!(Codec::Json
            .decode::<Blob>(br#"{"data":[1,256],"tag":1}"#)
            .is_err());
        assert!(Codec::Json
            .decode::<Blob>(br#"{"data":[-1],"tag":1}"#)
            .is_err());
        // bincode: a length far beyond what follows.
        let mut wire = encode(
            Codec::Bincode,
            &Blob {
                data: vec![1; 10],
                tag: 1,
            },
        );
        wire.truncate(5);
        assert!(Codec::Bincode.decode::<Blob>(&wire).is_err());
        let huge = [0xfc, 0xff, 0xff, 0xff, 0x7f, 1, 2];
        assert!(Codec::Bincode.decode::<Blob>(&huge).is_err());
    }
}
