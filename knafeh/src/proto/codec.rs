//! Message serialization formats and the gRPC length-prefixed message
//! encoding.

use bytes::{BufMut, BytesMut};

/// Largest message payload the bincode decoder will allocate for.
const BINCODE_LIMIT: usize = 64 * 1024 * 1024;

/// Deepest nesting (structs, tuples, sequences, maps, enums, options and
/// newtypes each count one level) the bincode decoder accepts. bincode
/// itself has no limit, so a message of a recursive type could otherwise
/// overflow the stack with one byte per level. serde_json stops at 128.
const BINCODE_MAX_DEPTH: usize = 256;

/// How messages are serialized on the wire, chosen by the `content-type`
/// header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Codec {
    /// bincode 2.x through serde with `bincode::config::standard()`
    /// (little-endian, variable-length integer encoding);
    /// content type `application/grpc+bincode`.
    #[default]
    Bincode,
    /// JSON through serde_json; content type `application/grpc+json`.
    Json,
}

impl Codec {
    /// Returns the `content-type` header value for this codec.
    pub fn content_type(self) -> &'static str {
        match self {
            Codec::Bincode => "application/grpc+bincode",
            Codec::Json => "application/grpc+json",
        }
    }

    /// Parses a `content-type` header value. The media type before any `;`
    /// is matched case-insensitively after trimming surrounding spaces;
    /// parameters are ignored. Only the two codecs' types are recognised.
    pub fn from_content_type(v: &[u8]) -> Option<Codec> {
        let media = v.split(|&b| b == b';').next().unwrap_or(v);
        let media = media.trim_ascii();
        [Codec::Bincode, Codec::Json]
            .into_iter()
            .find(|c| c.content_type().as_bytes().eq_ignore_ascii_case(media))
    }

    /// Appends one length-prefixed message (flag byte 0, 4-byte big-endian
    /// length, payload) to `out`, serializing directly into the buffer. On
    /// error `out` is left as it was and the error's text is returned.
    pub(crate) fn encode_message<T: serde::Serialize + ?Sized>(
        self,
        value: &T,
        out: &mut BytesMut,
    ) -> Result<(), String> {
        let start = crate::proto::frame::begin_message(out);
        let mut writer = out.writer();
        let result = match self {
            Codec::Bincode => bincode::serde::encode_into_std_write(
                value,
                &mut writer,
                bincode::config::standard(),
            )
            .map(drop)
            .map_err(|e| e.to_string()),
            Codec::Json => serde_json::to_writer(&mut writer, value).map_err(|e| e.to_string()),
        };
        let out = writer.into_inner();
        if let Err(e) = result {
            out.truncate(start);
            return Err(e);
        }
        crate::proto::frame::finish_message(out, start)
    }

    /// Deserializes one message payload (without its prefix). Trailing
    /// bytes after the value are an error.
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(
        self,
        payload: &[u8],
    ) -> Result<T, String> {
        match self {
            Codec::Bincode => {
                let config = bincode::config::standard().with_limit::<BINCODE_LIMIT>();
                let seed = depth::Seed {
                    inner: std::marker::PhantomData::<T>,
                    left: BINCODE_MAX_DEPTH,
                };
                let (value, used) = bincode::serde::seed_decode_from_slice(seed, payload, config)
                    .map_err(|e| e.to_string())?;
                let trailing = payload.len().saturating_sub(used);
                if trailing > 0 {
                    return Err(format!("{trailing} trailing bytes"));
                }
                Ok(value)
            }
            Codec::Json => serde_json::from_slice(payload).map_err(|e| e.to_string()),
        }
    }
}

/// A serde `Deserializer` adapter that fails once values nest deeper than a
/// limit, instead of recursing until the stack overflows.
mod depth {
    use std::fmt;

    use serde::de::{
        self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess,
        Visitor,
    };

    /// Deserializes `inner` with at most `left` more levels of nesting.
    pub(super) struct Seed<S> {
        pub(super) inner: S,
        pub(super) left: usize,
    }

    impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
        type Value = S::Value;

        fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
            self.inner.deserialize(Deep {
                inner: de,
                left: self.left,
            })
        }
    }

    /// A deserializer whose visitors are wrapped to count levels.
    struct Deep<D> {
        inner: D,
        left: usize,
    }

    macro_rules! forward_deserialize {
        ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.inner.$method($($arg,)* Wrap { inner: visitor, left: self.left })
            }
        )*};
    }

    impl<'de, D: Deserializer<'de>> Deserializer<'de> for Deep<D> {
        type Error = D::Error;

        forward_deserialize! {
            deserialize_any();
            deserialize_bool();
            deserialize_i8();
            deserialize_i16();
            deserialize_i32();
            deserialize_i64();
            deserialize_i128();
            deserialize_u8();
            deserialize_u16();
            deserialize_u32();
            deserialize_u64();
            deserialize_u128();
            deserialize_f32();
            deserialize_f64();
            deserialize_char();
            deserialize_str();
            deserialize_string();
            deserialize_bytes();
            deserialize_byte_buf();
            deserialize_option();
            deserialize_unit();
            deserialize_unit_struct(name: &'static str);
            deserialize_newtype_struct(name: &'static str);
            deserialize_seq();
            deserialize_tuple(len: usize);
            deserialize_tuple_struct(name: &'static str, len: usize);
            deserialize_map();
            deserialize_struct(name: &'static str, fields: &'static [&'static str]);
            deserialize_enum(name: &'static str, variants: &'static [&'static str]);
            deserialize_identifier();
            deserialize_ignored_any();
        }

        fn is_human_readable(&self) -> bool {
            self.inner.is_human_readable()
        }
    }

    /// A visitor that takes one level for each nested value it is given.
    struct Wrap<V> {
        inner: V,
        left: usize,
    }

    impl<V> Wrap<V> {
        fn deeper<E: de::Error>(&self) -> Result<usize, E> {
            self.left.checked_sub(1).ok_or_else(|| {
                E::custom(format_args!(
                    "values nested deeper than {} levels",
                    super::BINCODE_MAX_DEPTH
                ))
            })
        }
    }

    macro_rules! forward_visit {
        ($($method:ident($ty:ty);)*) => {$(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.inner.$method(v)
            }
        )*};
    }

    impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
        type Value = V::Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.inner.expecting(f)
        }

        forward_visit! {
            visit_bool(bool);
            visit_i8(i8);
            visit_i16(i16);
            visit_i32(i32);
            visit_i64(i64);
            visit_i128(i128);
            visit_u8(u8);
            visit_u16(u16);
            visit_u32(u32);
            visit_u64(u64);
            visit_u128(u128);
            visit_f32(f32);
            visit_f64(f64);
            visit_char(char);
            visit_str(&str);
            visit_borrowed_str(&'de str);
            visit_string(String);
            visit_bytes(&[u8]);
            visit_borrowed_bytes(&'de [u8]);
            visit_byte_buf(Vec<u8>);
        }

        fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
            self.inner.visit_none()
        }

        fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
            self.inner.visit_unit()
        }

        fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
            let left = self.deeper()?;
            self.inner.visit_some(Deep { inner: de, left })
        }

        fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
            let left = self.deeper()?;
            self.inner.visit_newtype_struct(Deep { inner: de, left })
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
            let left = self.deeper()?;
            self.inner.visit_seq(Access { inner: seq, left })
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
            let left = self.deeper()?;
            self.inner.visit_map(Access { inner: map, left })
        }

        fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
            let left = self.deeper()?;
            self.inner.visit_enum(Access { inner: data, left })
        }
    }

    /// Sequence, map, enum and variant access whose elements get `left` levels.
    struct Access<A> {
        inner: A,
        left: usize,
    }

    impl<A> Access<A> {
        fn seed<S>(&self, inner: S) -> Seed<S> {
            Seed {
                inner,
                left: self.left,
            }
        }
    }

    impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Access<A> {
        type Error = A::Error;

        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, A::Error> {
            let seed = self.seed(seed);
            self.inner.next_element_seed(seed)
        }

        fn size_hint(&self) -> Option<usize> {
            self.inner.size_hint()
        }
    }

    impl<'de, A: MapAccess<'de>> MapAccess<'de> for Access<A> {
        type Error = A::Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, A::Error> {
            let seed = self.seed(seed);
            self.inner.next_key_seed(seed)
        }

        fn next_value_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<T::Value, A::Error> {
            let seed = self.seed(seed);
            self.inner.next_value_seed(seed)
        }

        fn size_hint(&self) -> Option<usize> {
            self.inner.size_hint()
        }
    }

    impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Access<A> {
        type Error = A::Error;
        type Variant = Access<A::Variant>;

        fn variant_seed<T: DeserializeSeed<'de>>(
            self,
            seed: T,
        ) -> Result<(T::Value, Access<A::Variant>), A::Error> {
            let left = self.left;
            let (value, variant) = self.inner.variant_seed(Seed { inner: seed, left })?;
            Ok((
                value,
                Access {
                    inner: variant,
                    left,
                },
            ))
        }
    }

    impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Access<A> {
        type Error = A::Error;

        fn unit_variant(self) -> Result<(), A::Error> {
            self.inner.unit_variant()
        }

        fn newtype_variant_seed<T: DeserializeSeed<'de>>(
            self,
            seed: T,
        ) -> Result<T::Value, A::Error> {
            let seed = self.seed(seed);
            self.inner.newtype_variant_seed(seed)
        }

        fn tuple_variant<V: Visitor<'de>>(
            self,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, A::Error> {
            let left = self.left;
            self.inner.tuple_variant(
                len,
                Wrap {
                    inner: visitor,
                    left,
                },
            )
        }

        fn struct_variant<V: Visitor<'de>>(
            self,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, A::Error> {
            let left = self.left;
            self.inner.struct_variant(
                fields,
                Wrap {
                    inner: visitor,
                    left,
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Named {
        name: String,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Valued {
        value: u32,
    }

    fn encode<T: Serialize + ?Sized>(codec: Codec, v: &T) -> Vec<u8> {
        let mut out = BytesMut::new();
        codec.encode_message(v, &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn content_types() {
        assert_eq!(Codec::default(), Codec::Bincode);
        assert_eq!(Codec::Bincode.content_type(), "application/grpc+bincode");
        assert_eq!(Codec::Json.content_type(), "application/grpc+json");
        for c in [Codec::Bincode, Codec::Json] {
            assert_eq!(
                Codec::from_content_type(c.content_type().as_bytes()),
                Some(c)
            );
        }
        assert_eq!(
            Codec::from_content_type(b"Application/GRPC+JSON"),
            Some(Codec::Json)
        );
        assert_eq!(
            Codec::from_content_type(b" application/grpc+bincode ; charset=utf-8"),
            Some(Codec::Bincode)
        );
        assert_eq!(
            Codec::from_content_type(b"application/grpc+json;"),
            Some(Codec::Json)
        );
        assert_eq!(Codec::from_content_type(b"application/grpc"), None);
        assert_eq!(Codec::from_content_type(b"application/grpc+proto"), None);
        assert_eq!(Codec::from_content_type(b"application/json"), None);
        assert_eq!(Codec::from_content_type(b""), None);
        assert_eq!(Codec::from_content_type(b";application/grpc+json"), None);
        assert_eq!(Codec::from_content_type(b"application/grpc+json\xff"), None);
    }

    #[test]
    fn bincode_bytes() {
        let named = Named { name: "Ada".into() };
        assert_eq!(
            encode(Codec::Bincode, &named),
            [0, 0, 0, 0, 4, 3, b'A', b'd', b'a']
        );
        assert_eq!(
            Codec::Bincode
                .decode::<Named>(&[3, b'A', b'd', b'a'])
                .unwrap(),
            named
        );
        // Variable-length integers: < 251 is one byte, then 0xFB + u16 LE,
        // 0xFC + u32 LE.
        assert_eq!(
            encode(Codec::Bincode, &Valued { value: 7 }),
            [0, 0, 0, 0, 1, 7]
        );
        assert_eq!(
            encode(Codec::Bincode, &Valued { value: 300 }),
            [0, 0, 0, 0, 3, 0xFB, 0x2C, 0x01]
        );
        assert_eq!(
            encode(Codec::Bincode, &Valued { value: u32::MAX }),
            [0, 0, 0, 0, 5, 0xFC, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        for value in [0, 7, 250, 251, 300, 65535, 65536, u32::MAX] {
            let bytes = encode(Codec::Bincode, &Valued { value });
            assert_eq!(
                Codec::Bincode.decode::<Valued>(&bytes[5..]).unwrap(),
                Valued { value }
            );
        }
    }

    #[test]
    fn json_bytes() {
        let named = Named { name: "Ada".into() };
        let mut expected = vec![0, 0, 0, 0, 14];
        expected.extend_from_slice(br#"{"name":"Ada"}"#);
        assert_eq!(encode(Codec::Json, &named), expected);
        assert_eq!(
            Codec::Json.decode::<Named>(br#"{"name":"Ada"}"#).unwrap(),
            named
        );
        let mut expected = vec![0, 0, 0, 0, 11];
        expected.extend_from_slice(br#"{"value":7}"#);
        assert_eq!(encode(Codec::Json, &Valued { value: 7 }), expected);
        assert_eq!(
            Codec::Json.decode::<Valued>(br#" {"value": 7} "#).unwrap(),
            Valued { value: 7 }
        );
    }

    #[test]
    fn appends_after_existing_bytes() {
        let mut out = BytesMut::from(&b"xy"[..]);
        Codec::Bincode
            .encode_message(&Valued { value: 1 }, &mut out)
            .unwrap();
        Codec::Json.encode_message("hi", &mut out).unwrap();
        assert_eq!(
            &out[..],
            [b'x', b'y', 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 4, b'"', b'h', b'i', b'"']
        );
    }

    #[test]
    fn serialization_error_truncates() {
        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("nope"))
            }
        }
        for codec in [Codec::Bincode, Codec::Json] {
            let mut out = BytesMut::from(&b"ab"[..]);
            let err = codec.encode_message(&Fails, &mut out).unwrap_err();
            assert!(err.contains("nope"), "{err}");
            assert_eq!(&out[..], b"ab");
        }
    }

    /// A recursive request type: each level is one byte in bincode.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Tree {
        Leaf,
        Node(Box<Tree>),
    }

    fn nested_bincode(levels: usize) -> Vec<u8> {
        let mut payload = vec![1u8; levels];
        payload.push(0);
        payload
    }

    fn nested_tree(levels: usize) -> Tree {
        (0..levels).fold(Tree::Leaf, |t, _| Tree::Node(Box::new(t)))
    }

    /// Runs `f` on a thread with the stack of a tokio worker (2 MiB), where
    /// request handlers decode.
    fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // Found while writing fuzz/fuzz_targets/request.rs: bincode has no
        // depth limit, so a 1 MB request of a recursive type overflowed the
        // stack and aborted the whole server process.
        let err = on_small_stack(|| Codec::Bincode.decode::<Tree>(&nested_bincode(1_000_000)))
            .unwrap_err();
        assert!(err.contains("nested deeper than 256 levels"), "{err}");
        // Up to the limit (one level per enum value here), on the same stack.
        let ok = on_small_stack(|| Codec::Bincode.decode::<Tree>(&nested_bincode(255)));
        assert_eq!(ok, Ok(nested_tree(255)));
        let err = Codec::Bincode
            .decode::<Tree>(&nested_bincode(256))
            .unwrap_err();
        assert!(err.contains("nested deeper than 256 levels"), "{err}");
        // Recursion through options and newtypes alone is caught too.
        #[derive(Serialize, Deserialize, Debug)]
        struct Chain(Option<Box<Chain>>);
        let err = on_small_stack(|| Codec::Bincode.decode::<Chain>(&nested_bincode(1_000_000)))
            .unwrap_err();
        assert!(err.contains("nested deeper than 256 levels"), "{err}");
        // Other nesting still decodes: options, sequences, tuples, maps.
        type Mixed = Option<Vec<(u8, std::collections::BTreeMap<u8, Option<Tree>>)>>;
        let v: Mixed = Some(vec![(1, [(2, Some(nested_tree(3)))].into())]);
        let mut framed = BytesMut::new();
        Codec::Bincode.encode_message(&v, &mut framed).unwrap();
        assert_eq!(Codec::Bincode.decode::<Mixed>(&framed[5..]), Ok(v));
        // serde_json has its own limit (128).
        let json = format!(
            "{}\"Leaf\"{}",
            "{\"Node\":".repeat(100_000),
            "}".repeat(100_000)
        );
        let err = on_small_stack(move || Codec::Json.decode::<Tree>(json.as_bytes())).unwrap_err();
        assert!(err.contains("recursion limit"), "{err}");
    }

    #[test]
    fn decode_errors() {
        let err = Codec::Bincode.decode::<Valued>(&[7, 0, 0]).unwrap_err();
        assert_eq!(err, "2 trailing bytes");
        assert!(Codec::Bincode.decode::<Named>(&[]).is_err());
        // Declared string length beyond the input.
        assert!(Codec::Bincode.decode::<Named>(&[5, b'a']).is_err());
        // Invalid UTF-8.
        assert!(Codec::Bincode.decode::<Named>(&[1, 0xFF]).is_err());
        // A huge declared length must not allocate.
        assert!(Codec::Bincode
            .decode::<Vec<u8>>(&[0xFD, 0, 0, 0, 0, 0, 0, 0, 0x10])
            .is_err());
        assert!(Codec::Json.decode::<Named>(br#"{"name":"Ada"}x"#).is_err());
        assert!(Codec::Json.decode::<Named>(b"").is_err());
        assert!(Codec::Json.decode::<Valued>(br#"{"value":-1}"#).is_err());
    }
}
