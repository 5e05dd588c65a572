//! Operators' local mode for the mock credential service: keys from the
//! environment or a keys file, else clearly fake demo keys.
//!
//! Sources, in order of precedence:
//! 1. `TOLLGATE_KEY_<NAME>` env vars, where `<NAME>` is the credential name
//!    upper-cased with every non-alphanumeric turned into `_` (so
//!    `TOLLGATE_KEY_AZURE_OPENAI` serves `azure-openai`). An env var overrides
//!    a keys-file entry with the same env form; otherwise it serves any
//!    requested name of that env form. Its id is `env-<name lowercased>-1`.
//! 2. `TOLLGATE_KEYS_FILE`: a JSON object `{"name": "value" | {"value": ..,
//!    "id": ..}}`; a missing id becomes `file-<name>-1`.
//! 3. Neither set: demo keys for [`DEMO_KEY_NAMES`], values
//!    `sk-demo-<name>-0001`, ids `demo-<name>-1`.
//!
//! Invariants:
//! - A misconfiguration (unreadable or malformed file, bad name, empty or
//!   non-UTF-8 value) is an error, never a silent fall back to demo keys.
//! - Errors name files, names and JSON positions, never a value: serde_json's
//!   own messages can quote input, so they are not passed through.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use serde_json::Value;

use super::credential_service::{env_form, is_valid_name, MockCredentialService};

/// Prefix of the per-credential env vars.
pub const KEY_VAR_PREFIX: &str = "TOLLGATE_KEY_";
/// Env var holding the path of a JSON keys file.
pub const KEYS_FILE_VAR: &str = "TOLLGATE_KEYS_FILE";
/// Names that get demo keys when nothing is configured.
pub const DEMO_KEY_NAMES: &[&str] = &["openai", "anthropic", "gemini", "azure-openai"];

/// Why the operator's key configuration could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysError {
    /// `TOLLGATE_KEYS_FILE` could not be read.
    FileRead {
        path: PathBuf,
        kind: std::io::ErrorKind,
    },
    /// The keys file is not valid JSON.
    FileSyntax {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    /// The keys file is JSON but not the expected shape.
    FileShape { path: PathBuf, what: String },
    /// A credential name (from the file or an env var) is not valid.
    BadName { source: String, name: String },
    /// A value is empty or not UTF-8.
    BadValue { source: String, name: String },
}

impl fmt::Display for KeysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeysError::FileRead { path, kind } => {
                write!(f, "cannot read keys file {}: {kind}", path.display())
            }
            KeysError::FileSyntax { path, line, column } => write!(
                f,
                "keys file {} is not valid JSON (line {line}, column {column})",
                path.display()
            ),
            KeysError::FileShape { path, what } => {
                write!(f, "keys file {}: {what}", path.display())
            }
            KeysError::BadName { source, name } => write!(
                f,
                "{source}: invalid credential name {name:?} (allowed: [A-Za-z0-9._/-])"
            ),
            KeysError::BadValue { source, name } => {
                write!(f, "{source}: value for {name:?} is empty or not UTF-8")
            }
        }
    }
}

impl std::error::Error for KeysError {}

impl MockCredentialService {
    /// Keys from the process environment (see the module doc), else demo keys.
    ///
    /// # Panics
    /// On a misconfiguration, with a message that names no secret; use
    /// [`try_from_env_or_demo`](Self::try_from_env_or_demo) to handle it.
    pub fn from_env_or_demo() -> Self {
        match Self::try_from_env_or_demo() {
            Ok(mock) => mock,
            Err(e) => panic!("mock credential service: {e}"),
        }
    }

    /// Like [`from_env_or_demo`](Self::from_env_or_demo), returning errors.
    pub fn try_from_env_or_demo() -> Result<Self, KeysError> {
        Self::from_vars_or_demo(std::env::vars_os())
    }

    /// Like [`try_from_env_or_demo`](Self::try_from_env_or_demo), reading
    /// the given variables instead of the process environment (for tests).
    pub fn from_vars_or_demo<I, K, V>(vars: I) -> Result<Self, KeysError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let mut keys_file: Option<OsString> = None;
        // (env form, value), in env-var order.
        let mut env_keys: Vec<(String, String)> = Vec::new();
        for (k, v) in vars {
            let (k, v): (OsString, OsString) = (k.into(), v.into());
            let Some(k) = k.to_str() else { continue };
            if k == KEYS_FILE_VAR {
                keys_file = Some(v);
            } else if let Some(suffix) = k.strip_prefix(KEY_VAR_PREFIX) {
                let source = format!("env var {k}");
                if suffix.is_empty()
                    || !suffix
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(KeysError::BadName {
                        source,
                        name: suffix.to_owned(),
                    });
                }
                let value = match v.into_string() {
                    Ok(s) if !s.is_empty() => s,
                    _ => {
                        return Err(KeysError::BadValue {
                            source,
                            name: suffix.to_owned(),
                        })
                    }
                };
                env_keys.push((env_form(suffix), value));
            }
        }

        let file_keys = match keys_file {
            Some(path) => read_keys_file(PathBuf::from(path))?,
            None => Vec::new(),
        };

        let mock = MockCredentialService::new();
        if file_keys.is_empty() && env_keys.is_empty() {
            for name in DEMO_KEY_NAMES {
                mock.set_key(
                    name,
                    &format!("sk-demo-{name}-0001"),
                    &format!("demo-{name}-1"),
                );
            }
            return Ok(mock);
        }
        {
            let mut st = mock.lock();
            for (name, value, id) in file_keys {
                let secret = st.new_secret(&value, &id, 1);
                st.shared.insert(name, secret);
            }
            for (form, value) in env_keys {
                let id = format!("env-{}-1", form.to_ascii_lowercase());
                let overridden: Vec<String> = st
                    .shared
                    .keys()
                    .filter(|n| env_form(n) == form)
                    .cloned()
                    .collect();
                for name in overridden {
                    let secret = st.new_secret(&value, &id, 1);
                    st.shared.insert(name, secret);
                }
                let secret = st.new_secret(&value, &id, 1);
                st.env_aliases.insert(form, secret);
            }
        }
        Ok(mock)
    }
}

/// Reads `(name, value, id)` triples from a keys file.
fn read_keys_file(path: PathBuf) -> Result<Vec<(String, String, String)>, KeysError> {
    let bytes = std::fs::read(&path).map_err(|e| KeysError::FileRead {
        path: path.clone(),
        kind: e.kind(),
    })?;
    let json: Value = serde_json::from_slice(&bytes).map_err(|e| KeysError::FileSyntax {
        path: path.clone(),
        line: e.line(),
        column: e.column(),
    })?;
    let Value::Object(map) = json else {
        return Err(KeysError::FileShape {
            path,
            what: "top level must be an object of name → value".to_owned(),
        });
    };
    let source = format!("keys file {}", path.display());
    let mut keys = Vec::with_capacity(map.len());
    for (name, entry) in map {
        if !is_valid_name(&name) {
            return Err(KeysError::BadName { source, name });
        }
        let (value, id) = match entry {
            Value::String(v) => (v, None),
            Value::Object(mut obj) => {
                if let Some(extra) = obj.keys().find(|k| *k != "value" && *k != "id") {
                    return Err(KeysError::FileShape {
                        path,
                        what: format!("entry {name:?}: unknown field {extra:?}"),
                    });
                }
                let value = match obj.remove("value") {
                    Some(Value::String(v)) => v,
                    _ => {
                        return Err(KeysError::FileShape {
                            path,
                            what: format!("entry {name:?}: \"value\" must be a string"),
                        })
                    }
                };
                let id = match obj.remove("id") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(id)) if !id.is_empty() => Some(id),
                    Some(_) => {
                        return Err(KeysError::FileShape {
                            path,
                            what: format!("entry {name:?}: \"id\" must be a non-empty string"),
                        })
                    }
                };
                (value, id)
            }
            _ => {
                return Err(KeysError::FileShape {
                    path,
                    what: format!("entry {name:?} must be a string or {{\"value\", \"id\"}}"),
                })
            }
        };
        if value.is_empty() {
            return Err(KeysError::BadValue { source, name });
        }
        let id = id.unwrap_or_else(|| format!("file-{name}-1"));
        keys.push((name, value, id));
    }
    Ok(keys)
}
