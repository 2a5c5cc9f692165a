//! What one readiness check found, as `/health/ready` shows it and as the log records it.
//!
//! The two audiences get different things (issue 13, item 6): anyone who can reach the port
//! sees a [`Reason`] from a short fixed list, never a driver's text (which names roles,
//! databases, host names and TLS detail); the operator's log gets that text too. A neutral
//! home for these types keeps `checks` (single flight) and `dependencies` (the I/O) from
//! importing each other.

use std::time::Duration;

use serde::Serialize;

/// One check's verdict, as `/health/ready` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub status: Verdict,
    /// Wall time of the check, in milliseconds (microsecond resolution).
    pub latency_ms: f64,
    /// Why it failed, in words that reveal nothing about the deployment.
    #[serde(rename = "error", skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Pending migrations (the migrations check only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<usize>,
    /// The driver's own description of the failure: for the log only, never serialised.
    #[serde(skip)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Error,
}

/// The generic reasons a response may give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Reason {
    #[serde(rename = "connection refused")]
    ConnectionRefused,
    #[serde(rename = "timeout")]
    Timeout,
    #[serde(rename = "authentication failed")]
    AuthenticationFailed,
    #[serde(rename = "tls handshake failed")]
    Tls,
    /// Anything else: the server answered with an error, closed the connection, does not exist…
    #[serde(rename = "unavailable")]
    Unavailable,
    #[serde(rename = "migrations pending")]
    MigrationsPending,
    /// The migrations check when the database check failed first (its cause is logged once,
    /// by the database check).
    #[serde(rename = "not checked: the database check failed")]
    NotChecked,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ConnectionRefused => "connection refused",
            Reason::Timeout => "timeout",
            Reason::AuthenticationFailed => "authentication failed",
            Reason::Tls => "tls handshake failed",
            Reason::Unavailable => "unavailable",
            Reason::MigrationsPending => "migrations pending",
            Reason::NotChecked => "not checked: the database check failed",
        }
    }
}

/// A failure: the public reason and the detail for the log.
#[derive(Debug, Clone)]
pub struct Failure {
    pub reason: Reason,
    pub detail: String,
}

impl Failure {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Failure {
        Failure {
            reason,
            detail: detail.into(),
        }
    }
}

impl Check {
    pub fn ok(took: Duration) -> Check {
        Check {
            status: Verdict::Ok,
            latency_ms: millis(took),
            reason: None,
            pending: None,
            detail: None,
        }
    }

    pub fn failed(took: Duration, failure: Failure) -> Check {
        Check {
            status: Verdict::Error,
            latency_ms: millis(took),
            reason: Some(failure.reason),
            pending: None,
            detail: Some(failure.detail),
        }
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// The reason for an error anywhere in `err`'s source chain: an I/O error's kind, a TLS error,
/// or `fallback`.
pub fn classify(err: &(dyn std::error::Error + 'static), fallback: Reason) -> Reason {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return Reason::Tls;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Reason::ConnectionRefused,
                std::io::ErrorKind::TimedOut => return Reason::Timeout,
                _ => {}
            }
            // tokio-rustls reports handshake failures as io::Error wrapping the rustls error.
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return Reason::Tls;
            }
        }
        next = e.source();
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_the_reason_and_never_the_detail() {
        let check = Check::failed(
            Duration::from_millis(3),
            Failure::new(
                Reason::AuthenticationFailed,
                "password authentication failed for user \"gateway\"",
            ),
        );
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"status": "error", "latency_ms": 3.0, "error": "authentication failed"})
        );
        for reason in [
            Reason::ConnectionRefused,
            Reason::Timeout,
            Reason::AuthenticationFailed,
            Reason::Tls,
            Reason::Unavailable,
            Reason::MigrationsPending,
            Reason::NotChecked,
        ] {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
    }

    #[test]
    fn io_and_tls_errors_are_classified_through_the_source_chain() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            classify(&refused, Reason::Unavailable),
            Reason::ConnectionRefused
        );
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(classify(&tls, Reason::Unavailable), Reason::Tls);
        let other = std::io::Error::other("something else");
        assert_eq!(classify(&other, Reason::Unavailable), Reason::Unavailable);
    }
}
