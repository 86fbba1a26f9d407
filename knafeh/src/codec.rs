//! Message serialization formats and the gRPC length-prefixed message
//! encoding.

use bytes::{BufMut, BytesMut};

/// Largest message payload the bincode decoder will allocate for.
const BINCODE_LIMIT: usize = 64 * 1024 * 1024;

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
        let start = out.len();
        out.put_bytes(0, crate::frame::PREFIX_LEN);
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
        let payload_len = out.len() - start - crate::frame::PREFIX_LEN;
        let Ok(len) = u32::try_from(payload_len) else {
            out.truncate(start);
            return Err(format!(
                "message of {payload_len} bytes exceeds the maximum of {} bytes",
                u32::MAX
            ));
        };
        out[start + 1..start + crate::frame::PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
        Ok(())
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
                let (value, used) = bincode::serde::decode_from_slice(payload, config)
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
