//! The simulator's error type: a message naming what to fix and a [`SimErrorKind`] to branch on.

/// What went wrong, for callers that branch (tests assert on the kind, never on message text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimErrorKind {
    /// A [`crate::Config`] field is out of range or inconsistent.
    Config,
    /// The listener or another I/O resource failed.
    Io,
    /// The interface id is not served by this simulator instance.
    UnknownInterface,
    /// The addressee number is not in the generated population.
    UnknownAddressee,
    /// A delete was asked for an addressee (or a table) that has no rows left.
    NothingToDelete,
    /// An admin request (change burst, fault update) has a field out of range.
    InvalidRequest,
}

/// An error from the simulator's library API.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SimError {
    kind: SimErrorKind,
    message: String,
}

impl SimError {
    pub(crate) fn new(kind: SimErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// What kind of error this is.
    pub fn kind(&self) -> SimErrorKind {
        self.kind
    }
}
