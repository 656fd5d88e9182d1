//! What generated code uses. Not a public API: names here change without notice.

pub use std::boxed::Box;
pub use std::clone::Clone;
pub use std::convert::Into;
pub use std::default::Default;
pub use std::fmt;
pub use std::option::Option::{self, None, Some};
pub use std::result::Result::{Err, Ok};
pub use std::string::String;
pub use std::time::Duration;
pub use std::vec::Vec;

pub use pbjson;
pub use prost;
pub use serde;

pub use crate::call::{IntoCaller, ObjectRef};
pub use crate::context::Context;
pub use crate::descriptor::{MethodDescriptor, ObjectDescriptor};
pub use crate::error::{Error, Result};
pub use crate::future::BoxFuture;
pub use crate::message::{Codec, Message, decode, encode};
pub use crate::object::{InvokeMut, InvokeRef, Object, Receiver};

/// Fails to compile, spanned on the user's type, when it is not a message.
pub fn assert_message<T: Message>() {}

/// Fails to compile, spanned on the user's type, when it cannot be an object.
pub fn assert_object_state<T: ObjectState>() {}

/// Fails to compile, spanned on the user's type, when a persistent object's
/// state cannot be stored.
pub fn assert_persistent_state<T: PersistentState>() {}

/// What an object's state must be.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a goverse object",
    note = "an object type must implement `Default` (the state of a new object) and be `Send + Sync + 'static`; add `#[derive(Default)]`"
)]
pub trait ObjectState: Default + Send + Sync + 'static {}
impl<T: Default + Send + Sync + 'static> ObjectState for T {}

/// What a persistent object's state must be.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is persistent but cannot be serialized",
    note = "a `persistent` object is stored in its serde form: add `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait PersistentState: serde::Serialize + serde::de::DeserializeOwned {}
impl<T: serde::Serialize + serde::de::DeserializeOwned> PersistentState for T {}

/// The serialized state of a persistent object, refused (`INVALID_STATE`,
/// target filled in by the node) when it could not be stored on every
/// backend or would not load back: one object's state must never fail
/// another object's write in a shared batch, nor make itself unloadable.
pub fn save_state<T: PersistentState>(object: &T) -> Result<Vec<u8>> {
    let invalid = |reason: String| Error::InvalidState {
        target: String::new(),
        reason,
    };
    let mut data = Vec::with_capacity(128);
    let nul = std::cell::Cell::new(false);
    let mut serializer = serde_json::Serializer::with_formatter(&mut data, NulWatch(&nul));
    object
        .serialize(&mut serializer)
        .map_err(|e| invalid(format!("it cannot be serialized: {e}")))?;
    if nul.get() {
        return Err(invalid(
            "a string holds U+0000 (NUL), which PostgreSQL cannot store".into(),
        ));
    }
    // serde_json writes a NaN or infinite float as `null`, which does not
    // load back into the float: check states that hold a `null` at all.
    if data.windows(4).any(|w| w == b"null")
        && let Err(e) = serde_json::from_slice::<T>(&data)
    {
        return Err(invalid(format!(
            "it does not load back ({e}); a float that is NaN or infinite is written as null"
        )));
    }
    Ok(data)
}

/// serde_json's compact output, noting whether a string held U+0000.
struct NulWatch<'a>(&'a std::cell::Cell<bool>);

impl serde_json::ser::Formatter for NulWatch<'_> {
    fn write_char_escape<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        escape: serde_json::ser::CharEscape,
    ) -> std::io::Result<()> {
        if matches!(escape, serde_json::ser::CharEscape::AsciiControl(0)) {
            self.0.set(true);
        }
        serde_json::ser::CompactFormatter.write_char_escape(writer, escape)
    }
}

/// A persistent object rebuilt from its serialized state.
pub fn load_state<T: PersistentState>(data: &[u8]) -> Result<T> {
    serde_json::from_slice(data)
        .map_err(|e| Error::Storage(format!("cannot deserialize stored state: {e}")))
}

/// The dispatch result for a method number the type does not have.
pub fn unknown_method<'a, O: Object>(method: usize) -> BoxFuture<'a, Result<Vec<u8>>> {
    Box::pin(std::future::ready(Err(unknown_method_error::<O>(method))))
}

/// The error for a method number the type does not have.
pub fn unknown_method_error<O: Object>(method: usize) -> Error {
    Error::UnknownMethod {
        type_name: O::DESCRIPTOR.type_name.to_string(),
        method: format!("#{method}"),
    }
}

/// The dispatch result when a `&mut self` method is offered a shared turn.
pub fn receiver_mismatch<'a, O: Object>(method: usize) -> BoxFuture<'a, Result<Vec<u8>>> {
    Box::pin(std::future::ready(Err(Error::Internal(format!(
        "method #{method} of `{}` needs an exclusive turn",
        O::DESCRIPTOR.type_name
    )))))
}
