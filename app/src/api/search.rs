//! People search: anyone's public profile, by name, username, place or bio.

use leptos::prelude::*;

use crate::dto::SearchPage;
use crate::error::AppError;
#[cfg(feature = "ssr")]
use crate::ssr::{handle, search};

/// A page of people matching `q` (empty: recently updated profiles).
/// `after` / `before` are the cursors of a previous page (`next` / `prev`),
/// at most one of them; a cursor this server did not seal for this query is
/// a 400 (`BadRequest`), answered before any SQL.
#[server(endpoint = "search_people")]
pub async fn search_people(
    q: String,
    after: Option<String>,
    before: Option<String>,
) -> Result<SearchPage, AppError> {
    handle(async move |call| {
        let (query, cursor) = parse_search(&q, after.as_deref(), before.as_deref())?;
        search::people(&call.state, &call.meta, call.freshness(), &query, cursor).await
    })
    .await
}

/// A search as asked: the query, and the side and text of its cursor.
pub type SearchRequest<'a> = (
    crate::domain::SearchQuery,
    Option<(crate::domain::Direction, &'a str)>,
);

/// The query and the cursor's side and text of a search request: a field
/// error for a query that does not parse, a 400 for both cursors at once.
/// The cursor is opened by `ssr::search`, which holds its key.
pub fn parse_search<'a>(
    q: &str,
    after: Option<&'a str>,
    before: Option<&'a str>,
) -> Result<SearchRequest<'a>, AppError> {
    use crate::domain::{Direction, SearchQuery};
    use crate::error::FieldErrors;

    let query =
        SearchQuery::parse(q).map_err(|e| AppError::Validation(FieldErrors::single("q", e)))?;
    let cursor = match (
        after.filter(|s| !s.is_empty()),
        before.filter(|s| !s.is_empty()),
    ) {
        (None, None) => None,
        (Some(after), None) => Some((Direction::After, after)),
        (None, Some(before)) => Some((Direction::Before, before)),
        // No page of Folio's asks for both.
        (Some(_), Some(_)) => return Err(AppError::BadRequest),
    };
    Ok((query, cursor))
}
