//! The four routes, the 404 and 405 answers, and the headers every response carries.
//!
//! Shapes follow the seed (DH-012) and DESIGN.md: `/health` and `/health/live` do no I/O;
//! `/health/ready` and `/metrics` ask [`Readiness`], which shares one round of checks among
//! concurrent probes and scrapes. Every answer but `/metrics`' Prometheus text is JSON, with
//! `Cache-Control: no-store`, `X-Content-Type-Options: nosniff` and an
//! `X-Request-Id`: the caller's when it is a sane token, else a fresh UUID-shaped one. The
//! handler cannot fail: every input maps to a response.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use http_body_util::Full;
use hyper::header::{
    HeaderName, HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE,
    X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode};

use super::checks::{Answer, Readiness};
use super::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;

/// The crate version `/health` reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Longest caller-supplied request id echoed back; longer ones are replaced. 128 leaves room
/// for any UUID, ULID or trace id without letting a caller stuff large values into our logs.
pub const MAX_REQUEST_ID: usize = 128;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the routes share: the readiness state.
pub struct App {
    pub readiness: Arc<Readiness>,
}

/// The service function: any request in, a response out.
pub async fn handle<B>(
    req: Request<B>,
    app: Arc<App>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let request_id = request_id(&req);
    let path = req.uri().path();
    let route = match path.strip_suffix('/').filter(|p| !p.is_empty()) {
        // Express routes are not strict about one trailing slash, and neither are we.
        Some(trimmed) => trimmed,
        None => path,
    };
    let known = matches!(
        route,
        "/health" | "/health/ready" | "/health/live" | "/metrics"
    );
    let response = if !known {
        not_found(req.method(), path, &request_id)
    } else if req.method() != Method::GET && req.method() != Method::HEAD {
        method_not_allowed(req.method(), route, &request_id)
    } else {
        match route {
            "/health/live" => json(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#)),
            "/health/ready" => {
                let outcome = app.readiness.probe().await;
                let status = if outcome.ok {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json(status, outcome.body.clone())
            }
            "/metrics" => metrics(&*app.readiness.probe().await, &request_id),
            _ => json(StatusCode::OK, health_body(app.readiness.degraded())),
        }
    };
    Ok(with_common_headers(response, request_id))
}

/// `/metrics`: 200 with the round's Prometheus text whatever the dependencies' state (their
/// `up` gauges say it), so a scrape records an outage instead of failing.
fn metrics(outcome: &Answer, request_id: &HeaderValue) -> Response<Full<Bytes>> {
    if outcome.metrics.is_empty() {
        // Only when the round's task died (see `Answer::lost`).
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "no readiness round finished; retry",
            request_id,
        );
    }
    let mut response = json(StatusCode::OK, outcome.metrics.clone());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
    response
}

fn health_body(degraded: bool) -> Bytes {
    let body = serde_json::json!({
        "status": if degraded { "degraded" } else { "ok" },
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "version": VERSION,
    });
    Bytes::from(body.to_string())
}

fn not_found(method: &Method, path: &str, request_id: &HeaderValue) -> Response<Full<Bytes>> {
    let message = format!("no route for {method} {}", clip(path, 200));
    error(StatusCode::NOT_FOUND, "NOT_FOUND", &message, request_id)
}

fn method_not_allowed(
    method: &Method,
    route: &str,
    request_id: &HeaderValue,
) -> Response<Full<Bytes>> {
    let message = format!(
        "{} is not allowed on {route}; use GET or HEAD",
        clip(method.as_str(), 32)
    );
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        &message,
        request_id,
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

/// The gateway's error envelope: `{"error":{"code","message","request_id"}}`.
fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &HeaderValue,
) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "error": {
            "code": code,
            "message": message,
            // Sane ids are visible ASCII, so this never loses anything.
            "request_id": String::from_utf8_lossy(request_id.as_bytes()),
        }
    });
    json(status, Bytes::from(body.to_string()))
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let length = HeaderValue::from(body.len());
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    // Room for ours and hyper's `date` up front, instead of growing the map twice per probe.
    response.headers_mut().reserve(8);
    // Set explicitly so that HEAD (whose body hyper drops) reports GET's length.
    response.headers_mut().insert(CONTENT_LENGTH, length);
    response
}

fn with_common_headers(
    mut response: Response<Full<Bytes>>,
    request_id: HeaderValue,
) -> Response<Full<Bytes>> {
    let headers = response.headers_mut();
    // JSON unless the route said otherwise (/metrics).
    headers
        .entry(CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_REQUEST_ID.clone(), request_id);
    response
}

/// The caller's `X-Request-Id` when it is 1..=128 visible ASCII characters, else a new one.
fn request_id<B>(req: &Request<B>) -> HeaderValue {
    match req.headers().get(&X_REQUEST_ID) {
        Some(value) if is_sane_request_id(value.as_bytes()) => value.clone(),
        _ => new_request_id(),
    }
}

pub fn is_sane_request_id(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len() <= MAX_REQUEST_ID && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// A random UUID v4 (36 characters: it fits the gateway's `request_logs.request_id
/// VARCHAR(36)`), from rand's thread-local generator. Formatted into a stack buffer: this runs
/// for most probes, and a probe should cost one allocation (the header's own), not a String too.
fn new_request_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// At most `max` characters of `text`, on a character boundary.
fn clip(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_request_ids_are_short_visible_ascii() {
        assert!(is_sane_request_id(b"abc-123_DEF.~"));
        assert!(is_sane_request_id(&[b'a'; 128]));
        assert!(!is_sane_request_id(&[b'a'; 129]));
        assert!(!is_sane_request_id(b""));
        assert!(!is_sane_request_id(b"has space"));
        assert!(!is_sane_request_id(b"tab\there"));
        assert!(!is_sane_request_id("caf\u{e9}".as_bytes()));
    }

    #[test]
    fn generated_ids_are_uuid_shaped_and_distinct() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        let text = a.to_str().unwrap();
        assert_eq!(text.len(), 36);
        let groups: Vec<&str> = text.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'));
        assert!(matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
    }

    #[test]
    fn clip_respects_character_boundaries() {
        assert_eq!(clip("h\u{e9}llo", 2), "h\u{e9}");
        assert_eq!(clip("abc", 10), "abc");
    }
}
