//! The token rule: off loopback the console refuses to start without a
//! token, and with one every request must carry it, as a bearer header or
//! as the cookie that opening a page once with `?token=T` sets.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::{Shared, html as page};
use crate::commands::Store;
use crate::error::CliError;

/// The cookie that keeps the token after a `?token=` visit.
const COOKIE_NAME: &str = "factum_console_token";

/// The token every request must carry.
#[derive(Clone)]
pub(crate) struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// The token the console at `addr` requires: `given` if any; an error
    /// when `addr` is not loopback and none is given, or when `given`
    /// could not travel in a header or a cookie.
    pub(crate) fn required(addr: SocketAddr, given: Option<&str>) -> Result<Option<Self>, CliError> {
        let Some(given) = given else {
            if addr.ip().is_loopback() {
                return Ok(None);
            }
            return Err(CliError::usage(format!(
                "the console would listen on {addr}, which is not a loopback address: pass --token T (or set \
                 FACTUM_CONSOLE_TOKEN) so only those who know it can read the store, or listen on 127.0.0.1"
            )));
        };
        let usable = !given.is_empty()
            && given
                .bytes()
                .all(|byte| byte.is_ascii_graphic() && !matches!(byte, b';' | b',' | b'"' | b'\\'));
        if !usable {
            return Err(CliError::usage(
                "the console token must be printable ASCII without spaces, `;`, `,`, `\"` or `\\` (it travels \
                 in a header and a cookie)",
            ));
        }
        Ok(Some(Self(given.to_owned())))
    }

    /// True when `candidate` is the token; the time taken does not depend
    /// on where they differ.
    fn matches(&self, candidate: &str) -> bool {
        let (expected, candidate) = (self.0.as_bytes(), candidate.as_bytes());
        let differences = expected
            .iter()
            .zip(candidate)
            .fold(0u8, |acc, (left, right)| acc | (left ^ right));
        differences == 0 && expected.len() == candidate.len()
    }

    /// True when the request's bearer header or cookie holds the token.
    fn carried_by(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get_all(AUTHORIZATION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(|value| value.strip_prefix("Bearer "))
            .any(|candidate| self.matches(candidate.trim()));
        bearer || cookies(headers).any(|(name, value)| name == COOKIE_NAME && self.matches(value))
    }
}

/// The `name=value` pairs of the request's cookies.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

/// The middleware: lets a request through when no token is required or it
/// carries the token; trades a right `?token=` for the cookie; refuses the
/// rest with 401.
pub(crate) async fn check<S: Store>(
    State(console): State<Shared<S>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &console.token else {
        return next.run(request).await;
    };
    if token.carried_by(request.headers()) {
        return next.run(request).await;
    }
    let (queried, rest) = split_token(request.uri());
    match queried {
        Some(candidate) if token.matches(&candidate) => with_cookie(token, &rest),
        _ => refused(),
    }
}

/// The `token` query parameter of `uri`, and the path and query without it.
fn split_token(uri: &Uri) -> (Option<String>, String) {
    let mut token = None;
    let mut kept = Vec::new();
    for pair in uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        match pair.split_once('=') {
            Some(("token", value)) => token = Some(percent_decode(value)),
            _ => kept.push(pair),
        }
    }
    // A path like `//host` would send the browser to another site.
    let path = if uri.path().starts_with("//") {
        "/"
    } else {
        uri.path()
    };
    let rest = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    (token, rest)
}

/// `%XX` and `+` decoding of a query value; a malformed escape is kept as
/// it is (and so will not match the token).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|byte| (*byte as char).to_digit(16));
        match bytes[index] {
            b'%' => match (hex(index + 1), hex(index + 2)) {
                (Some(high), Some(low)) => {
                    decoded.push((high * 16 + low) as u8);
                    index += 3;
                    continue;
                }
                _ => decoded.push(b'%'),
            },
            b'+' => decoded.push(b' '),
            byte => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// A redirect to `location` that sets the token's cookie, so the token
/// leaves the address bar and the history.
fn with_cookie(token: &Token, location: &str) -> Response {
    let cookie = format!("{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict", token.0);
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    // Both values were checked: the token's characters when it was given,
    // the location is this request's own path and query.
    if let (Ok(cookie), Ok(location)) = (HeaderValue::from_str(&cookie), HeaderValue::from_str(location)) {
        headers.insert(SET_COOKIE, cookie);
        headers.insert(LOCATION, location);
        return response;
    }
    refused()
}

fn refused() -> Response {
    let body = page::bare(
        "Token required",
        html! {
            h1 { "This console needs its token" }
            p { "Open this address with " code { "?token=…" } " added once (a cookie keeps it), or send "
                code { "Authorization: Bearer …" } "." }
        },
    );
    let mut response = (StatusCode::UNAUTHORIZED, body).into_response();
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_loopback_goes_without_a_token() {
        assert!(Token::required(addr("127.0.0.1:7070"), None).unwrap().is_none());
        assert!(Token::required(addr("[::1]:7070"), None).unwrap().is_none());
        let error = Token::required(addr("0.0.0.0:7070"), None).unwrap_err();
        assert!(error.to_string().contains("--token"), "{error}");
        assert!(
            Token::required(addr("0.0.0.0:7070"), Some("s3cret"))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_token_that_cannot_travel_is_refused() {
        for bad in ["", "a b", "a;b", "é"] {
            assert!(Token::required(addr("127.0.0.1:1"), Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_needs_the_whole_token() {
        let token = Token("abc".to_owned());
        assert!(token.matches("abc"));
        assert!(!token.matches("ab"));
        assert!(!token.matches("abcd"));
        assert!(!token.matches("abd"));
    }

    #[test]
    fn the_token_leaves_the_address() {
        let uri: Uri = "/stream?type=A&token=x%2By&from=3".parse().unwrap();
        assert_eq!(
            split_token(&uri),
            (Some("x+y".to_owned()), "/stream?type=A&from=3".to_owned())
        );
        let uri: Uri = "/?token=t".parse().unwrap();
        assert_eq!(split_token(&uri), (Some("t".to_owned()), "/".to_owned()));
    }

    #[test]
    fn bearer_and_cookie_both_carry_it() {
        let token = Token("t0k".to_owned());
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t0k"));
        assert!(token.carried_by(&headers));
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("a=1; factum_console_token=t0k"));
        assert!(token.carried_by(&headers));
        headers.insert(COOKIE, HeaderValue::from_static("factum_console_token=t0"));
        assert!(!token.carried_by(&headers));
    }
}
