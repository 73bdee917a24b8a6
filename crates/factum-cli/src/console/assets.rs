//! The stylesheet and the script, compiled into the binary: the console
//! needs no files beside the command and no build step.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;

const STYLESHEET: &str = include_str!("assets/console.css");
const SCRIPT: &str = include_str!("assets/console.js");

/// The assets change only with the binary: browsers may keep them an hour.
const CACHE: &str = "public, max-age=3600";

pub(crate) async fn stylesheet() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/css; charset=utf-8"), (CACHE_CONTROL, CACHE)],
        STYLESHEET,
    )
}

pub(crate) async fn script() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, CACHE),
        ],
        SCRIPT,
    )
}
