//! Opening the storage a node file's `storage:` section names.

use crate::storage::SharedStorage;
#[cfg(feature = "sqlite")]
use crate::storage::SqliteStorage;
#[cfg(feature = "postgres")]
use crate::storage::{PostgresOptions, PostgresStorage};

use super::StorageFile;
#[cfg(feature = "postgres")]
use super::parse_duration;
use crate::error::{Error, Result};

impl StorageFile {
    /// Opens the storage a node file's `storage:` section names: PostgreSQL
    /// (feature `postgres`) or an SQLite file (feature `sqlite`).
    ///
    /// `${NAME}` in the PostgreSQL url is replaced by environment variable
    /// `NAME`, so secrets need not be written in the file:
    /// `postgres://goverse:${GOVERSE_DB_PASSWORD}@db.internal/goverse`.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` for a section naming neither or both, a backend this
    /// build lacks, or an unset variable; otherwise as the backend's open.
    pub async fn open(self) -> Result<SharedStorage> {
        if let Some(url) = &self.postgres {
            let url = expand_env(url)?;
            #[cfg(feature = "postgres")]
            {
                let mut options = PostgresOptions::default().migrate(self.migrate);
                if let Some(connections) = self.max_connections {
                    options = options.max_connections(connections);
                }
                if let Some(timeout) = &self.acquire_timeout {
                    options.acquire_timeout = parse_duration(timeout)?;
                }
                return Ok(SharedStorage::new(
                    PostgresStorage::connect(&url, options).await?,
                ));
            }
            #[cfg(not(feature = "postgres"))]
            {
                let _ = url;
                return Err(Error::Config(
                    "the configuration names PostgreSQL, but goverse was built without its `postgres` feature".into(),
                ));
            }
        }
        if let Some(path) = self.sqlite {
            #[cfg(feature = "sqlite")]
            {
                return Ok(SharedStorage::new(SqliteStorage::open(path).await?));
            }
            #[cfg(not(feature = "sqlite"))]
            {
                let _ = path;
                return Err(Error::Config(
                    "the configuration names SQLite, but goverse was built without its `sqlite` feature".into(),
                ));
            }
        }
        Err(Error::Config(
            "storage: give exactly one of `postgres` and `sqlite`".into(),
        ))
    }
}

/// Replaces every `${NAME}` in `text` by environment variable `NAME`.
fn expand_env(text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(Error::Config(format!(
                "storage url: `${{` without a closing `}}` in `{}`",
                redact(text)
            )));
        };
        let name = &after[..end];
        let value = std::env::var(name).map_err(|_| {
            Error::Config(format!(
                "storage url: environment variable `{name}` is not set"
            ))
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A url with its password hidden, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_take_secrets_from_the_environment() {
        // SAFETY: the variable is unique to this test; no other thread reads it.
        unsafe { std::env::set_var("GOVERSE_TEST_EXPAND_SECRET", "s3cret") };
        assert_eq!(
            expand_env("postgres://u:${GOVERSE_TEST_EXPAND_SECRET}@h/db").expect("expands"),
            "postgres://u:s3cret@h/db"
        );
        assert_eq!(
            expand_env("sqlite-free text").expect("as is"),
            "sqlite-free text"
        );
        let error = expand_env("postgres://u:${GOVERSE_TEST_UNSET_VARIABLE}@h/db").unwrap_err();
        assert_eq!(error.code(), "INVALID_CONFIG");
        assert!(
            error.to_string().contains("GOVERSE_TEST_UNSET_VARIABLE"),
            "{error}"
        );
        let error = expand_env("postgres://u:pw@h/${OPEN").unwrap_err();
        assert!(error.to_string().contains("u:***@h"), "{error}");
    }
}
