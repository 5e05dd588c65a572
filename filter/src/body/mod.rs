//! The request body: strict JSON inspection and byte-exact rewrites.
//!
//! `json` finds the few values the policy reads (model, output caps, stream
//! options) in one bounded pass that also rejects what a provider could read
//! differently (duplicate keys, lone surrogates, trailing data, deep nesting);
//! `splice` rewrites only the values that change and keeps every other byte;
//! `dlp_scan` runs a rule's DLP detectors over every decoded string value.

pub mod check;
pub mod dlp_scan;
pub mod json;
pub mod splice;
