//! Request and response messages: the [`Message`] trait, the two wire codecs,
//! and the protobuf well-known types in [`types`].

use prost::Message as _;

use crate::error::{Error, Result};

/// A protobuf message goverse can carry: prost binary encoding, proto3 JSON
/// through serde, and its full protobuf name.
///
/// Implemented for the well-known types in [`types`]. For the messages of
/// your own `.proto` files, `goverse_codegen::build` (in `build.rs`)
/// generates the types and this impl; bring them in with
/// [`include_proto!`](crate::include_proto).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a goverse message",
    note = "request and response types must be protobuf messages: use a well-known type from `goverse::types` such as `Int32Value` or `Empty`, or a message of your own .proto files compiled by `goverse_codegen::build` in build.rs and included with `goverse::include_proto!`"
)]
pub trait Message:
    prost::Message + Default + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
    /// The fully qualified protobuf name, e.g. `google.protobuf.Int32Value`.
    const FULL_NAME: &'static str;
    /// The `.proto` file that defines the message, e.g. `google/protobuf/wrappers.proto`.
    const PROTO_FILE: &'static str;
}

/// The encoding of a request or response body on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// Protobuf binary encoding.
    Protobuf,
    /// The proto3 JSON mapping. For the wrapper types (`Int32Value`...),
    /// decoding also takes the object form `{"value": 5}` beside the
    /// canonical bare `5`.
    Json,
    /// A protobuf-encoded `google.protobuf.Any` holding the message: what
    /// clients that only know `Any` send (the HTTP gate's `{"request":
    /// "<base64 Any>"}`). Decoding checks that the `Any` holds the
    /// expected type.
    Any,
}

impl Codec {
    /// `protobuf`, `json` or `any`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Protobuf => "protobuf",
            Codec::Json => "json",
            Codec::Any => "any",
        }
    }
}

/// The `type_url` prefix of the `Any`s goverse writes.
const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// The `type_url` of an `Any` holding a message named `full_name`.
pub(crate) fn type_url(full_name: &str) -> String {
    format!("{TYPE_URL_PREFIX}{full_name}")
}

/// The full name of the message an `Any`'s `type_url` names.
pub(crate) fn held_type(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or_default()
}

/// Decodes a message from a body in the given codec.
///
/// # Errors
///
/// [`Error::InvalidRequest`] (code `INVALID_PROTOBUF` or `INVALID_JSON`) when
/// the body is not a valid encoding of `T`.
pub fn decode<T: Message>(codec: Codec, body: &[u8]) -> Result<T> {
    let invalid = |reason: String| Error::InvalidRequest {
        message_type: T::FULL_NAME,
        codec: codec.name(),
        reason,
    };
    match codec {
        Codec::Protobuf => T::decode(body).map_err(|e| invalid(e.to_string())),
        Codec::Json => serde_json::from_slice(body).or_else(|error| {
            unwrapped_json::<T>(body)
                .and_then(|inner| serde_json::from_value(inner).ok())
                .ok_or_else(|| invalid(error.to_string()))
        }),
        Codec::Any => {
            let any = types::Any::decode(body).map_err(|e| invalid(e.to_string()))?;
            let held = held_type(&any.type_url);
            if held != T::FULL_NAME {
                return Err(invalid(format!(
                    "the Any holds `{}`, not `{}`",
                    any.type_url.chars().take(200).collect::<String>(),
                    T::FULL_NAME
                )));
            }
            T::decode(any.value.as_ref()).map_err(|e| invalid(e.to_string()))
        }
    }
}

/// The inner value of a wrapper type's object form (`{"value": 5}`), for
/// wrapper types only.
fn unwrapped_json<T: Message>(body: &[u8]) -> Option<serde_json::Value> {
    if T::PROTO_FILE != "google/protobuf/wrappers.proto" {
        return None;
    }
    match serde_json::from_slice(body).ok()? {
        serde_json::Value::Object(mut fields) if fields.len() == 1 => fields.remove("value"),
        _ => None,
    }
}

/// Encodes a message in the given codec.
///
/// # Errors
///
/// [`Error::Encode`] when JSON serialization fails (protobuf encoding cannot fail).
pub fn encode<T: Message>(codec: Codec, message: &T) -> Result<Vec<u8>> {
    match codec {
        Codec::Protobuf => Ok(message.encode_to_vec()),
        Codec::Json => serde_json::to_vec(message).map_err(|e| Error::Encode {
            message_type: T::FULL_NAME,
            reason: e.to_string(),
        }),
        Codec::Any => Ok(types::Any {
            type_url: type_url(T::FULL_NAME),
            value: message.encode_to_vec().into(),
        }
        .encode_to_vec()),
    }
}

/// The protobuf well-known types (`google.protobuf.*`), with proto3 JSON.
///
/// Wrapper types such as [`Int32Value`](types::Int32Value) encode in JSON as
/// the bare value (`5`), as the proto3 JSON mapping says.
///
/// Messages generated from your own `.proto` files by
/// `goverse_codegen::build` refer to the well-known types here.
pub mod types {
    pub use pbjson_types::*;
}

macro_rules! well_known {
    ($file:literal: $($ty:ident),*) => {
        $(
            impl Message for types::$ty {
                const FULL_NAME: &'static str = concat!("google.protobuf.", stringify!($ty));
                const PROTO_FILE: &'static str = $file;
            }
        )*
    };
}

well_known!("google/protobuf/wrappers.proto": BoolValue, BytesValue, DoubleValue, FloatValue,
    Int32Value, Int64Value, StringValue, UInt32Value, UInt64Value);
well_known!("google/protobuf/empty.proto": Empty);
well_known!("google/protobuf/any.proto": Any);
well_known!("google/protobuf/duration.proto": Duration);
well_known!("google/protobuf/timestamp.proto": Timestamp);
well_known!("google/protobuf/struct.proto": Struct, Value, ListValue);

#[cfg(test)]
mod tests {
    use super::types::Int32Value;
    use super::*;

    #[test]
    fn round_trips_both_codecs() {
        let value = Int32Value { value: 42 };
        for codec in [Codec::Protobuf, Codec::Json] {
            let body = encode(codec, &value).expect("encode");
            assert_eq!(decode::<Int32Value>(codec, &body).expect("decode"), value);
        }
        assert_eq!(encode(Codec::Json, &value).expect("encode"), b"42");
    }

    #[test]
    fn wrappers_take_their_object_form_in_json() {
        let value: Int32Value = decode(Codec::Json, br#"{"value": 5}"#).expect("object form");
        assert_eq!(value.value, 5);
        assert_eq!(
            decode::<Int32Value>(Codec::Json, b"5").expect("bare").value,
            5
        );
        let error = decode::<Int32Value>(Codec::Json, br#"{"value": 5, "x": 1}"#).unwrap_err();
        assert_eq!(error.code(), "INVALID_JSON");
    }

    #[test]
    fn any_checks_the_type_it_holds() {
        // The seed README's request: Any{Int32Value{value: 5}}.
        let seed = [
            0x0a, 0x2e, b't', b'y', b'p', b'e', b'.', b'g', b'o', b'o', b'g', b'l', b'e', b'a',
            b'p', b'i', b's', b'.', b'c', b'o', b'm', b'/', b'g', b'o', b'o', b'g', b'l', b'e',
            b'.', b'p', b'r', b'o', b't', b'o', b'b', b'u', b'f', b'.', b'I', b'n', b't', b'3',
            b'2', b'V', b'a', b'l', b'u', b'e', 0x12, 0x02, 0x08, 0x05,
        ];
        assert_eq!(
            decode::<Int32Value>(Codec::Any, &seed)
                .expect("decode")
                .value,
            5
        );
        assert_eq!(
            encode(Codec::Any, &Int32Value { value: 5 }).expect("encode"),
            seed
        );
        let error = decode::<types::StringValue>(Codec::Any, &seed).unwrap_err();
        assert_eq!(error.code(), "INVALID_PROTOBUF");
        assert!(
            error
                .to_string()
                .contains("not `google.protobuf.StringValue`"),
            "{error}"
        );
    }

    #[test]
    fn bad_bodies_get_stable_codes() {
        let error = decode::<Int32Value>(Codec::Json, b"{not json").unwrap_err();
        assert_eq!(error.code(), "INVALID_JSON");
        let error = decode::<Int32Value>(Codec::Protobuf, &[0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(error.code(), "INVALID_PROTOBUF");
    }
}
