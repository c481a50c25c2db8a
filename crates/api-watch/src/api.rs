//! The API-server source.
