//! How resources travel from the server render to the hydrating browser.
//!
//! The same JSON as Leptos's default resource codec, produced and read by the
//! very functions server-function responses use (`server_fn`'s
//! `JsonEncoding`, which reads from bytes). The default codec reads from a
//! `&str`, and serde_json compiles a separate deserializer per input kind,
//! so every type that is both a resource and a server-function answer
//! (`Profile`, `SignedInUser`, `AppError`, …) was compiled twice into the
//! WASM. See bench/NOTES.md, "WASM size".

use leptos::server::codee::{Decoder, Encoder};
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::{Bytes, Decodes, Encodes};
use serde::{de::DeserializeOwned, Serialize};

pub struct WireJson;

impl<T: Serialize> Encoder<T> for WireJson
where
    JsonEncoding: Encodes<T>,
{
    type Error = <JsonEncoding as Encodes<T>>::Error;
    type Encoded = String;

    fn encode(value: &T) -> Result<String, Self::Error> {
        // serde_json only writes UTF-8, so this never replaces anything.
        JsonEncoding::encode(value).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }
}

impl<T: DeserializeOwned> Decoder<T> for WireJson
where
    JsonEncoding: Decodes<T>,
{
    type Error = <JsonEncoding as Decodes<T>>::Error;
    type Encoded = str;

    fn decode(encoded: &str) -> Result<T, Self::Error> {
        JsonEncoding::decode(Bytes::copy_from_slice(encoded.as_bytes()))
    }
}
