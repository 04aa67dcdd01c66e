//! Domain types: parsed once at the edge, trusted everywhere after.
//!
//! Each type has a private field and a fallible `parse`. The same code runs in
//! the browser (instant feedback while typing) and on the server (the
//! authority: every server function parses its input again). Nothing here may
//! depend on the `ssr` feature.

mod account;
mod profile;
mod text;

pub use account::{Email, LoginIdentifier, Password, Username};
pub use profile::{AvatarUrl, Bio, DisplayName, Location, ProfileForm, ProfileUpdate, Website};
pub use text::char_count;
