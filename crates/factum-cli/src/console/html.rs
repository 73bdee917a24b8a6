//! What every page shares: the frame around it (header, navigation), the
//! way an event, a time or a link is shown, the error pages and the
//! security headers. Everything is written with `maud`, which escapes
//! each value it is given: no page writes markup from a string.

use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use factum_core::{RecordedEvent, StreamId};
use maud::{DOCTYPE, Markup, html};

use super::json;
use crate::output;

/// The pages in the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Streams,
    Live,
    Projections,
}

impl Nav {
    const ALL: [(Self, &'static str, &'static str); 4] = [
        (Self::Overview, "/", "Overview"),
        (Self::Streams, "/streams", "Streams"),
        (Self::Live, "/live", "Live log"),
        (Self::Projections, "/projections", "Projections"),
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Overview => "overview",
            Self::Streams => "streams",
            Self::Live => "live",
            Self::Projections => "projections",
        }
    }
}

/// A page of the console: `body` inside the header and navigation.
pub(crate) fn page(title: &str, current: Nav, store: &str, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-page=(current.name()) {
                header.top {
                    a.brand href="/" { "factum" span.sub { "console" } }
                    nav {
                        @for (nav, href, label) in Nav::ALL {
                            a href=(href) class=[(nav == current).then_some("current")] { (label) }
                        }
                    }
                    span.store title="The store this console reads" { (store) }
                }
                main { (body) }
                footer { "Read-only. " a href="/metrics" { "Prometheus metrics" } }
            }
        }
    };
    Html(markup.into_string())
}

/// A page without navigation (errors, the token page).
pub(crate) fn bare(title: &str, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { main.narrow { (body) } }
        }
    };
    Html(markup.into_string())
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · factum console" }
            link rel="stylesheet" href="/assets/console.css";
            script src="/assets/console.js" defer {}
        }
    }
}

/// A failure to read the store, shown as a 500 page.
pub(crate) struct PageError(pub(crate) factum_core::Error);

impl From<factum_core::Error> for PageError {
    fn from(error: factum_core::Error) -> Self {
        Self(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let message = crate::error::Chain(&self.0).to_string();
        let body = bare(
            "Store error",
            html! {
                h1 { "The store could not be read" }
                pre.error { (message) }
                p { a href="/" { "Back to the overview" } }
            },
        );
        (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
    }
}

pub(crate) async fn not_found() -> Response {
    let body = bare(
        "Not found",
        html! {
            h1 { "No such page" }
            p { a href="/" { "Back to the overview" } }
        },
    );
    (StatusCode::NOT_FOUND, body).into_response()
}

/// Headers on every response: only the console's own script and
/// stylesheet may run or load (so even markup that slipped through could
/// not execute), no framing, no sniffing, no caching of store data.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/assets/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
             form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !is_asset {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The address of `stream`'s page, from version `from` (`None`: the first).
pub(crate) fn stream_href(stream: &StreamId, from: Option<u64>) -> String {
    let mut href = format!(
        "/stream?type={}&id={}",
        encode(stream.aggregate_type()),
        encode(stream.aggregate_id())
    );
    if let Some(from) = from {
        href.push_str(&format!("&from={from}"));
    }
    href
}

/// `text` as a query value: everything but unreserved characters escaped.
pub(crate) fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A time as the console shows it: UTC, to the millisecond.
pub(crate) fn time(at: time::OffsetDateTime) -> Markup {
    html! { time datetime=(output::rfc3339(at)) { (output::time(at)) } }
}

/// The head of [`log_row`]'s table.
pub(crate) fn log_head() -> Markup {
    html! {
        thead { tr {
            th.num { "position" } th { "time (UTC)" } th { "stream" } th.num { "version" }
            th { "event" } th { "tenant" } th { "payload" }
        } }
    }
}

/// One event of the global log, as the overview and the live log list it:
/// the payload on one line, cut at 240 characters.
pub(crate) fn log_row(event: &RecordedEvent) -> Markup {
    let payload = json::compact(event.payload.as_str());
    html! {
        tr data-position=(event.position) {
            td.num { (output::count(event.position)) }
            td.nowrap { (time(event.occurred_at)) }
            td.stream { a href=(stream_href(&event.stream, Some(event.version))) {
                span.type { (event.aggregate_type()) } "/" (event.aggregate_id())
            } }
            td.num { (event.version) }
            td { span.event { (&*event.event_type) } }
            td { (tenant(event)) }
            td { code.payload title=(json::shorten(&payload, 2000)) { (json::shorten(&payload, 240)) } }
        }
    }
}

/// The event's tenant, as its metadata says (`default` when unset).
pub(crate) fn tenant(event: &RecordedEvent) -> &str {
    event
        .metadata
        .tenant
        .as_ref()
        .map_or("default", |tenant| tenant.as_str())
}

/// Previous / next links of a paged list; a `None` href is shown greyed.
pub(crate) fn pager(links: &[(&str, Option<String>)], summary: &str) -> Markup {
    html! {
        nav.pager {
            @for (label, href) in links {
                @match href {
                    Some(href) => a href=(href) { (label) },
                    None => span.disabled { (label) },
                }
            }
            span.summary { (summary) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use factum_core::Payload;

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(encode("a b/ü&c=1"), "a%20b%2F%C3%BC%26c%3D1");
        let href = stream_href(&StreamId::new("Order", "eu/42?x"), Some(3));
        assert_eq!(href, "/stream?type=Order&id=eu%2F42%3Fx&from=3");
    }

    #[test]
    fn a_payload_with_markup_is_written_as_text() {
        let event = RecordedEvent {
            event_id: uuid::Uuid::nil(),
            stream: StreamId::new("<b>T</b>", "\"><script>x()</script>"),
            version: 1,
            position: 1,
            event_type: "<i>e</i>".into(),
            schema_version: 1,
            payload: Payload::parse(r#"{"html":"<script>alert(1)</script>"}"#).unwrap(),
            metadata: Default::default(),
            occurred_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let row = log_row(&event).into_string();
        assert!(!row.contains("<script>"), "{row}");
        assert!(!row.contains("<b>") && !row.contains("<i>"), "{row}");
        assert!(row.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{row}");
    }
}
