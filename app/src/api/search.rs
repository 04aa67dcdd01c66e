//! People search: anyone's public profile, by name, username, place or bio.

use leptos::prelude::*;

use crate::dto::SearchPage;
use crate::error::AppError;
#[cfg(feature = "ssr")]
use crate::ssr::{handle, search};

/// A page of people matching `q` (empty: recently updated profiles).
/// `after` / `before` are the cursors of a previous page (`next` / `prev`),
/// at most one of them; a cursor this server did not hand out for this
/// query is a field error, never a failure.
#[server(endpoint = "search_people")]
pub async fn search_people(
    q: String,
    after: Option<String>,
    before: Option<String>,
) -> Result<SearchPage, AppError> {
    handle(async move |call| {
        let (query, cursor) = parse_search(&q, after.as_deref(), before.as_deref())?;
        search::people(&call.state, call.freshness().await, &query, cursor).await
    })
    .await
}

/// The query and cursor of a search request, or field errors (`q`,
/// `cursor`). Shared by the server function and the `/people` page.
pub fn parse_search(
    q: &str,
    after: Option<&str>,
    before: Option<&str>,
) -> Result<(crate::domain::SearchQuery, Option<crate::domain::Cursor>), AppError> {
    use crate::domain::{Cursor, Direction, SearchQuery};
    use crate::error::FieldErrors;

    let query =
        SearchQuery::parse(q).map_err(|e| AppError::Validation(FieldErrors::single("q", e)))?;
    let cursor_error = |e: String| AppError::Validation(FieldErrors::single("cursor", e));
    let cursor = match (
        after.filter(|s| !s.is_empty()),
        before.filter(|s| !s.is_empty()),
    ) {
        (None, None) => None,
        (Some(after), None) => {
            Some(Cursor::parse(after, Direction::After, &query).map_err(cursor_error)?)
        }
        (None, Some(before)) => {
            Some(Cursor::parse(before, Direction::Before, &query).map_err(cursor_error)?)
        }
        (Some(_), Some(_)) => {
            return Err(cursor_error(
                "Ask for the page after or before, not both.".into(),
            ))
        }
    };
    Ok((query, cursor))
}
