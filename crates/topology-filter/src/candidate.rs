//! What the endpoint sets are made of: one [`Candidate`] per endpoint
//! address of a service port, and each set's verdict on it ([`Part`]).
//! Shared by `select` (which gathers candidates), `categorize`,
//! `keys_filter` and `hints` (which judge them), so that none of them
//! imports another for its types.

use std::net::IpAddr;

use api_watch::Endpoint;

/// One endpoint address of one service port, with the port resolved.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate<'a> {
    /// The endpoint's first address.
    pub ip: IpAddr,
    /// The slice port that matches the service port.
    pub port: u16,
    /// The endpoint it came from.
    pub endpoint: &'a Endpoint,
}

/// One set's verdict on one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    /// The endpoint is in the set.
    pub kept: bool,
    /// Why, without the `kept:`/`dropped:` prefix.
    pub why: String,
}

impl Part {
    pub(crate) fn kept(why: impl Into<String>) -> Self {
        Part {
            kept: true,
            why: why.into(),
        }
    }

    pub(crate) fn dropped(why: impl Into<String>) -> Self {
        Part {
            kept: false,
            why: why.into(),
        }
    }

    /// The part with `note` (e.g. "; …") appended when it is kept or
    /// dropped by topology, not for readiness.
    pub(crate) fn with_note(mut self, note: &str) -> Self {
        self.why.push_str(note);
        self
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.kept { "kept" } else { "dropped" };
        write!(f, "{verdict}: {}", self.why)
    }
}
