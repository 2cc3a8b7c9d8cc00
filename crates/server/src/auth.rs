//! Bearer tokens: who may ask a service that listens beyond loopback.
//!
//! The service never holds a token, only its SHA-256: a token file that leaks gives no one a
//! token. A presented token is hashed and compared with every stored hash in constant time, so
//! neither the answer's timing nor an early exit says how much of a guess was right.

use std::sync::Arc;

use axum::extract::{Request as HttpRequest, State as Shared};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use thiserror::Error;

use crate::State;
use crate::authzen::error;

/// The SHA-256 digests of the bearer tokens a service accepts.
///
/// The file format is one token per line: the token's SHA-256 as 64 hex digits, then, after
/// whitespace, an optional name for the operator; blank lines and lines starting with `#` are
/// skipped. `printf %s "$TOKEN" | sha256sum` gives the digest.
///
/// ```
/// let tokens = keyscope_server::Tokens::parse(
///     "# litellm gateway\n\
///      9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 litellm\n",
/// )?;
/// assert!(tokens.accepts("test"));
/// assert!(!tokens.accepts("guess"));
/// # Ok::<(), keyscope_server::TokenError>(())
/// ```
#[derive(Clone)]
pub struct Tokens {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.digests.len())
            .finish_non_exhaustive()
    }
}

/// Why a token file was refused.
#[derive(Debug, Error, miette::Diagnostic, PartialEq, Eq)]
pub enum TokenError {
    /// A line is not 64 hex digits, optionally followed by a name.
    #[error("line {line}: expected a token's SHA-256 as 64 hex digits, then an optional name")]
    #[diagnostic(
        code(keyscope::serve::token),
        help("store `printf %s \"$TOKEN\" | sha256sum`, never the token itself")
    )]
    NotADigest {
        /// The line, from 1.
        line: usize,
    },
    /// The file lists no token: a service guarded by it would let no one in.
    #[error("the token file lists no token")]
    #[diagnostic(code(keyscope::serve::no_tokens))]
    Empty,
}

impl Tokens {
    /// Parses a token file (see the type's docs).
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let mut digests = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let hex = line.split_whitespace().next().unwrap_or_default();
            let digest = parse_digest(hex).ok_or(TokenError::NotADigest { line: index + 1 })?;
            digests.push(digest);
        }
        if digests.is_empty() {
            return Err(TokenError::Empty);
        }
        Ok(Self { digests })
    }

    /// Whether `token` is one of the tokens, compared in constant time against every digest.
    pub fn accepts(&self, token: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut matched = subtle::Choice::from(0);
        for digest in &self.digests {
            matched |= digest.ct_eq(&presented);
        }
        matched.into()
    }
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(digest)
}

/// Paths a probe reaches without a token: liveness and readiness say nothing about decisions.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Lets a request through only with `Authorization: Bearer TOKEN` for one of the service's
/// tokens, when it has any; otherwise 401 with `WWW-Authenticate: Bearer`.
pub(crate) async fn require_token(
    Shared(state): Shared<Arc<State>>,
    request: HttpRequest,
    next: Next,
) -> Response {
    let Some(tokens) = &state.tokens else {
        return next.run(request).await;
    };
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    if presented.is_some_and(|token| tokens.accepts(token)) {
        return next.run(request).await;
    }
    state.metrics.unauthorized();
    let mut refused = error(
        StatusCode::UNAUTHORIZED,
        "a bearer token this service accepts is required",
    );
    refused
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    refused
}

/// The token of an `Authorization: Bearer TOKEN` value (the scheme is case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn a_token_file_holds_digests_and_names() {
        let tokens = Tokens::parse(&format!("\n# comment\n{TEST_DIGEST}  gateway\n")).unwrap();
        assert!(tokens.accepts("test"));
        assert!(!tokens.accepts("tesT"));
        assert!(!tokens.accepts(""));
        assert!(!format!("{tokens:?}").contains(TEST_DIGEST));
    }

    #[test]
    fn a_token_file_with_a_plain_token_or_nothing_is_refused() {
        assert_eq!(
            Tokens::parse("# only\n\nmy-secret-token\n").unwrap_err(),
            TokenError::NotADigest { line: 3 }
        );
        assert_eq!(
            Tokens::parse(&TEST_DIGEST.replace('a', "g")).unwrap_err(),
            TokenError::NotADigest { line: 1 }
        );
        assert_eq!(Tokens::parse("# none\n").unwrap_err(), TokenError::Empty);
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
