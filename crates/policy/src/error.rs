//! Errors: one enum per edge (store loading, request parsing, ledger), and one span-carrying
//! diagnostic shared by every file the store reads.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource};
use thiserror::Error;

/// A source file held for diagnostics.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    pub(crate) name: String,
    pub(crate) text: Arc<str>,
}

impl SourceFile {
    pub(crate) fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }

    /// An optional USD amount (`what`: "a price", "a budget") in micro-dollars, or an error
    /// pointing at the value.
    pub(crate) fn usd(
        &self,
        field: &Option<toml::Spanned<toml::Value>>,
        what: &str,
        label: &str,
    ) -> Result<Option<u64>, SourceError> {
        field
            .as_ref()
            .map(|v| {
                crate::money::usd_from_toml(v.get_ref()).ok_or_else(|| {
                    self.error(
                        format!("{what} must be a non-negative USD amount with at most 6 decimals"),
                        Some(v.span()),
                        label,
                    )
                })
            })
            .transpose()
    }

    /// An error pointing at `span` of this file.
    pub(crate) fn error(
        &self,
        message: impl Into<String>,
        span: Option<Range<usize>>,
        label: &str,
    ) -> SourceError {
        let labels = span
            .map(|s| LabeledSpan::new_with_span(Some(label.to_owned()), s))
            .into_iter()
            .collect();
        SourceError {
            message: message.into(),
            src: Arc::new(NamedSource::new(self.name.clone(), Arc::clone(&self.text))),
            labels,
            help: None,
        }
    }

    /// Re-homes a diagnostic from another library (Cedar, TOML) onto this file.
    pub(crate) fn rehome(&self, diagnostic: &dyn Diagnostic) -> SourceError {
        let labels = diagnostic
            .labels()
            .map(|labels| labels.collect())
            .unwrap_or_default();
        let mut message = diagnostic.to_string();
        if let Some(related) = diagnostic.related() {
            for inner in related {
                message.push_str("; ");
                message.push_str(&inner.to_string());
            }
        }
        SourceError {
            message,
            src: Arc::new(NamedSource::new(self.name.clone(), Arc::clone(&self.text))),
            labels,
            help: diagnostic.help().map(|h| h.to_string()),
        }
    }
}

/// An error in one file of the policy store, with the span it is about.
#[derive(Debug, Error, Diagnostic)]
#[error("{message}")]
pub struct SourceError {
    message: String,
    #[source_code]
    src: Arc<NamedSource<Arc<str>>>,
    #[label(collection)]
    labels: Vec<LabeledSpan>,
    #[help]
    help: Option<String>,
}

impl SourceError {
    /// The message, without the source snippet.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The name of the file the error is in.
    pub fn file(&self) -> &str {
        self.src.name()
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Why a policy store could not be loaded. A store that fails to load decides nothing.
#[derive(Debug, Error, Diagnostic)]
pub enum StoreError {
    /// A file of the store could not be read.
    #[error("cannot read `{path}`")]
    #[diagnostic(code(keyscope::policy::read))]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The store directory has no Cedar policies.
    #[error("no `.cedar` policy files in `{dir}`")]
    #[diagnostic(code(keyscope::policy::no_policies))]
    NoPolicies {
        /// The store directory.
        dir: PathBuf,
    },
    /// A file is malformed or inconsistent; the diagnostic points at the place.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Source(Box<SourceError>),
    /// Policies that do not validate against the schema.
    #[error("{} policy validation error(s) against the schema", errors.len())]
    #[diagnostic(code(keyscope::policy::validation))]
    Validation {
        /// Each validation error, pointing into its policy file.
        #[related]
        errors: Vec<SourceError>,
    },
    /// The scopes, keys and models could not be turned into Cedar entities.
    #[error("cannot build Cedar entities: {message}")]
    #[diagnostic(code(keyscope::policy::entities))]
    Entities {
        /// Cedar's message.
        message: String,
    },
}

impl From<SourceError> for StoreError {
    fn from(error: SourceError) -> Self {
        Self::Source(Box::new(error))
    }
}

/// Why a request could not be read. Never an allow: the caller reports an error.
#[derive(Debug, Error, Diagnostic)]
pub enum RequestError {
    /// The JSON is malformed or does not have the AuthZEN shape.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Json(Box<SourceError>),
    /// A field has a value keyscope cannot use.
    #[error("invalid request: {0}")]
    #[diagnostic(code(keyscope::policy::request))]
    Invalid(String),
}

/// A failure of the budget ledger.
#[derive(Debug, Error, Diagnostic)]
pub enum LedgerError {
    /// SQLite failed.
    #[error("budget ledger: {0}")]
    #[diagnostic(code(keyscope::ledger::sqlite))]
    Sqlite(#[from] rusqlite::Error),
    /// Another thread panicked while holding the ledger.
    #[error("budget ledger: the connection was poisoned by a panic")]
    #[diagnostic(code(keyscope::ledger::poisoned))]
    Poisoned,
    /// No reservation has this request id.
    #[error("no reservation with request id `{0}`")]
    #[diagnostic(code(keyscope::ledger::unknown_request))]
    UnknownRequest(String),
    /// Spend recorded for a scope the store does not have.
    #[error("unknown scope `{0}`")]
    #[diagnostic(code(keyscope::ledger::unknown_scope))]
    UnknownScope(String),
    /// Spend recorded under a request id the ledger already has.
    #[error("request id `{0}` is already in the ledger")]
    #[diagnostic(code(keyscope::ledger::duplicate_request))]
    DuplicateRequest(String),
    /// A commit for a reservation that was released.
    #[error("request `{0}` was released; it cannot be committed")]
    #[diagnostic(code(keyscope::ledger::released))]
    AlreadyReleased(String),
    /// A release for a reservation that was committed.
    #[error("request `{0}` was committed; it cannot be released")]
    #[diagnostic(code(keyscope::ledger::committed))]
    AlreadyCommitted(String),
    /// An amount does not fit the ledger's integers.
    #[error("amount overflow for request `{0}`")]
    #[diagnostic(code(keyscope::ledger::overflow))]
    Overflow(String),
    /// A value stored in the ledger is not what keyscope wrote.
    #[error("budget ledger is corrupt: {0}")]
    #[diagnostic(code(keyscope::ledger::corrupt))]
    Corrupt(String),
    /// The ledger file was written by a newer keyscope, with a schema this one does not know.
    #[error(
        "the budget ledger has schema version {found}; this keyscope understands up to {supported}"
    )]
    #[diagnostic(
        code(keyscope::ledger::newer_schema),
        help("use the keyscope release that wrote it, or a newer one")
    )]
    NewerSchema {
        /// The file's version (`PRAGMA user_version`).
        found: i64,
        /// The newest version this build reads.
        supported: i64,
    },
    /// A key id or hash the registry already has.
    #[error("the key registry already has a key `{0}`")]
    #[diagnostic(code(keyscope::ledger::duplicate_key))]
    DuplicateKey(String),
    /// An update of a key the registry does not have.
    #[error("the key registry has no key `{0}`")]
    #[diagnostic(code(keyscope::ledger::unknown_key))]
    UnknownKey(String),
    /// Redis failed, timed out or could not be reached.
    #[error("budget ledger (redis): {0}")]
    #[diagnostic(
        code(keyscope::ledger::redis),
        help("check that Redis is running and reachable at the `--ledger` URL")
    )]
    Redis(String),
    /// A reservation found the figures changed under it at every attempt.
    #[error("budget ledger: the figures changed under the reservation {0} times in a row")]
    #[diagnostic(code(keyscope::ledger::contention))]
    Contention(usize),
    /// The ledger's background checkpoint thread could not be started.
    #[error("budget ledger: cannot start the checkpoint thread: {0}")]
    #[diagnostic(code(keyscope::ledger::thread))]
    Thread(String),
}

/// A decision fixture file that cannot be used.
#[derive(Debug, Error, Diagnostic)]
pub enum FixtureError {
    /// The file could not be read.
    #[error("cannot read `{path}`")]
    #[diagnostic(code(keyscope::policy::fixture_read))]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid case file.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Json(Box<SourceError>),
}

/// The largest store file read: a policy store is text written by people, and a path that
/// leads to a device (`/dev/zero`) or a runaway file must not fill memory.
pub(crate) const MAX_STORE_FILE_BYTES: u64 = 16 << 20;

/// Reads one file of a store: a regular file of at most [`MAX_STORE_FILE_BYTES`].
pub(crate) fn read_store_file(path: &std::path::Path) -> Result<String, StoreError> {
    use std::io::Read as _;
    let error = |source| StoreError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(error)?;
    if !meta.is_file() {
        return Err(error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(error)?
        .take(MAX_STORE_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(error)?;
    if text.len() as u64 > MAX_STORE_FILE_BYTES {
        return Err(error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_STORE_FILE_BYTES >> 20),
        )));
    }
    Ok(text)
}
