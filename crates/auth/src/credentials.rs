//! The credentials file: who may call the API, with which keys, in which
//! account.
//!
//! ```toml
//! [[principal]]
//! name = "alice"
//! access_key_id = "AKIAIOSFODNN7EXAMPLE"
//! secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
//! account_id = "123456789012"
//! ```
//!
//! A name may appear on several entries (one person, two keys while a key is
//! rotated); an access key id may appear only once, since it is what a
//! request is looked up by.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rand::Rng;
use serde::Deserialize;

/// The account id given to the principal [`Credentials::generate_dev`]
/// creates. All zeros, like LocalStack's default, so it reads as "not a real
/// AWS account" in every ARN and scripts written for LocalStack keep working.
pub const DEV_ACCOUNT_ID: &str = "000000000000";

/// The file name [`Credentials::generate_dev`] creates inside the data dir.
pub const DEV_CREDENTIALS_FILE: &str = "credentials.toml";

/// One caller: a named access key pair bound to an account.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    /// Human name, for logs and `flotilla dev`'s output. Not unique.
    pub name: String,
    /// The key id clients put in the credential scope. Unique in a file.
    pub access_key_id: String,
    /// The 12-digit account that resources created by this caller belong to.
    pub account_id: String,
    secret_access_key: String,
}

impl Principal {
    /// A principal from its parts. Validation happens when it joins a
    /// [`Credentials`] set, so that file and code paths report alike.
    pub fn new(
        name: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        account_id: impl Into<String>,
    ) -> Principal {
        Principal {
            name: name.into(),
            access_key_id: access_key_id.into(),
            account_id: account_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }

    /// The secret. Deliberately a method, and absent from `Debug`, so that
    /// logging a principal (or a [`crate::Verified`]) never leaks it.
    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("name", &self.name)
            .field("access_key_id", &self.access_key_id)
            .field("account_id", &self.account_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Why a credentials file or set was rejected.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create credentials file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}invalid credentials TOML: {source}", location(.path))]
    Parse {
        path: Option<PathBuf>,
        source: Box<toml::de::Error>,
    },
    #[error("{}no principals: add at least one [[principal]] table with name, access_key_id, secret_access_key and account_id", location(.path))]
    Empty { path: Option<PathBuf> },
    #[error("{}principal #{index} ({name:?}): {problem}", location(.path))]
    InvalidPrincipal {
        path: Option<PathBuf>,
        /// 1-based position in the file.
        index: usize,
        name: String,
        problem: String,
    },
    #[error("{}access_key_id {access_key_id:?} is used by principal #{first} ({first_name:?}) and again by principal #{second} ({second_name:?}); access key ids must be unique", location(.path))]
    DuplicateAccessKeyId {
        path: Option<PathBuf>,
        access_key_id: String,
        first: usize,
        first_name: String,
        second: usize,
        second_name: String,
    },
}

fn location(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("{}: ", p.display()),
        None => String::new(),
    }
}

impl CredentialsError {
    fn with_path(mut self, p: &Path) -> Self {
        match &mut self {
            CredentialsError::Parse { path, .. }
            | CredentialsError::Empty { path }
            | CredentialsError::InvalidPrincipal { path, .. }
            | CredentialsError::DuplicateAccessKeyId { path, .. } => *path = Some(p.to_path_buf()),
            CredentialsError::Read { .. } | CredentialsError::Write { .. } => {}
        }
        self
    }
}

/// The set of principals the server accepts, indexed by access key id, plus
/// a small cache of derived SigV4 signing keys.
pub struct Credentials {
    principals: Vec<Arc<Principal>>,
    by_access_key_id: HashMap<String, Arc<Principal>>,
    /// Derived signing keys, keyed by the whole `Credential=` value
    /// (`AKID/date/region/service/aws4_request`): that string is already in
    /// the request, so a lookup needs no allocation, and an access key id maps
    /// to exactly one secret for the life of this value.
    signing_keys: Mutex<HashMap<Box<str>, [u8; 32]>>,
}

/// More entries than this means keys from many days or many scopes: clear and
/// start over rather than grow without bound. Entries are only added after a
/// signature verified, so only key holders can fill it.
const SIGNING_KEY_CACHE_LIMIT: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    principal: Vec<FileEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    name: String,
    access_key_id: String,
    secret_access_key: String,
    account_id: String,
}

impl Credentials {
    /// Reads and validates a credentials file.
    pub fn load(path: impl AsRef<Path>) -> Result<Credentials, CredentialsError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Credentials::from_toml(&text).map_err(|e| e.with_path(path))
    }

    /// Parses and validates credentials from TOML text.
    pub fn from_toml(text: &str) -> Result<Credentials, CredentialsError> {
        let file: FileFormat = toml::from_str(text).map_err(|e| CredentialsError::Parse {
            path: None,
            source: Box::new(e),
        })?;
        Credentials::from_principals(
            file.principal.into_iter().map(|e| {
                Principal::new(e.name, e.access_key_id, e.secret_access_key, e.account_id)
            }),
        )
    }

    /// Builds a validated set from principals (for embedding and tests).
    pub fn from_principals(
        principals: impl IntoIterator<Item = Principal>,
    ) -> Result<Credentials, CredentialsError> {
        let mut list: Vec<Arc<Principal>> = Vec::new();
        let mut by_access_key_id: HashMap<String, Arc<Principal>> = HashMap::new();
        let mut position: HashMap<String, usize> = HashMap::new();
        for (i, p) in principals.into_iter().enumerate() {
            let index = i + 1;
            if let Err(problem) = validate(&p) {
                return Err(CredentialsError::InvalidPrincipal {
                    path: None,
                    index,
                    name: p.name,
                    problem,
                });
            }
            if let Some(&first) = position.get(&p.access_key_id) {
                let first_name = list
                    .get(first - 1)
                    .map(|f| f.name.clone())
                    .unwrap_or_default();
                return Err(CredentialsError::DuplicateAccessKeyId {
                    path: None,
                    access_key_id: p.access_key_id,
                    first,
                    first_name,
                    second: index,
                    second_name: p.name,
                });
            }
            let p = Arc::new(p);
            position.insert(p.access_key_id.clone(), index);
            by_access_key_id.insert(p.access_key_id.clone(), Arc::clone(&p));
            list.push(p);
        }
        if list.is_empty() {
            return Err(CredentialsError::Empty { path: None });
        }
        Ok(Credentials {
            principals: list,
            by_access_key_id,
            signing_keys: Mutex::new(HashMap::new()),
        })
    }

    /// The principal owning `access_key_id`, if any.
    pub fn lookup(&self, access_key_id: &str) -> Option<&Arc<Principal>> {
        self.by_access_key_id.get(access_key_id)
    }

    /// All principals, in file order.
    pub fn principals(&self) -> impl Iterator<Item = &Arc<Principal>> {
        self.principals.iter()
    }

    /// For `flotilla server` without `--credentials` and for `flotilla dev`:
    /// loads `dir/credentials.toml`, creating it first (mode 0600, one random
    /// principal named `dev` in account [`DEV_ACCOUNT_ID`]) if it does not
    /// exist. Returns the set, the principal to show the user (the file's
    /// first), and whether the file was created by this call.
    ///
    /// The file is written under a temporary name and hard-linked into place,
    /// so a crash never leaves a half-written file behind and two servers
    /// starting at once agree on one set of keys.
    pub fn generate_dev(dir: &Path) -> Result<(Credentials, Principal, bool), CredentialsError> {
        let path = dir.join(DEV_CREDENTIALS_FILE);
        let write_err = |source| CredentialsError::Write {
            path: path.clone(),
            source,
        };
        let mut created = false;
        if !path.exists() {
            std::fs::create_dir_all(dir).map_err(write_err)?;
            let principal = Principal::new(
                "dev",
                random_access_key_id(),
                random_secret_access_key(),
                DEV_ACCOUNT_ID,
            );
            let text = format!(
                "# Created by flotilla on first start because no --credentials file was given.\n\
                 # Export these to use the AWS CLI / SDKs against this server:\n\
                 #   AWS_ACCESS_KEY_ID={akid} AWS_SECRET_ACCESS_KEY=<secret_access_key below>\n\
                 # Add more [[principal]] tables to allow more callers.\n\
                 \n\
                 [[principal]]\n\
                 name = \"{name}\"\n\
                 access_key_id = \"{akid}\"\n\
                 secret_access_key = \"{secret}\"\n\
                 account_id = \"{account}\"\n",
                akid = principal.access_key_id,
                name = principal.name,
                secret = principal.secret_access_key,
                account = principal.account_id,
            );
            let tmp = dir.join(format!(
                ".{DEV_CREDENTIALS_FILE}.{}.{}.tmp",
                std::process::id(),
                rand::rng().random::<u64>()
            ));
            let result = write_private(&tmp, text.as_bytes()).and_then(|()| {
                match std::fs::hard_link(&tmp, &path) {
                    Ok(()) => {
                        created = true;
                        Ok(())
                    }
                    // Someone else created it between our check and now: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                    Err(e) => Err(e),
                }
            });
            let _ = std::fs::remove_file(&tmp);
            result.map_err(write_err)?;
        }
        let creds = Credentials::load(&path)?;
        let first = creds
            .principals
            .first()
            .map(|p| Principal::clone(p))
            .ok_or(CredentialsError::Empty {
                path: Some(path.clone()),
            })?;
        Ok((creds, first, created))
    }

    /// The cached signing key for a `Credential=` value, if any.
    pub(crate) fn cached_signing_key(&self, credential: &str) -> Option<[u8; 32]> {
        let cache = self.signing_keys.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(credential).copied()
    }

    /// Remembers a signing key that just verified a signature.
    pub(crate) fn cache_signing_key(&self, credential: &str, key: [u8; 32]) {
        let mut cache = self.signing_keys.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= SIGNING_KEY_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(credential.into(), key);
    }
}

impl Clone for Credentials {
    fn clone(&self) -> Self {
        Credentials {
            principals: self.principals.clone(),
            by_access_key_id: self.by_access_key_id.clone(),
            signing_keys: Mutex::new(HashMap::new()),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("principals", &self.principals)
            .finish_non_exhaustive()
    }
}

fn validate(p: &Principal) -> Result<(), String> {
    if p.name.trim().is_empty() {
        return Err("name must not be empty".into());
    }
    // AWS key ids are [A-Z0-9]{16,128}; we also accept lowercase and '_' and
    // shorter ids so that local setups can use keys like "test", but nothing
    // that could confuse parsing of the credential scope ('/', spaces, '=').
    let akid = &p.access_key_id;
    if akid.is_empty()
        || akid.len() > 128
        || !akid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(format!(
            "access_key_id {akid:?} must be 1 to 128 characters of A-Z, a-z, 0-9 or '_'"
        ));
    }
    if p.secret_access_key.is_empty() {
        return Err("secret_access_key must not be empty".into());
    }
    if p.account_id.len() != 12 || !p.account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "account_id {:?} must be exactly 12 digits, e.g. \"123456789012\"",
            p.account_id
        ));
    }
    Ok(())
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// `AKIA` + 16 characters of A-Z0-9, the shape of a real long-term key id,
/// so tools that sanity-check key ids accept it.
fn random_access_key_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    random_string("AKIA", ALPHABET, 16)
}

/// 40 characters of the base64 alphabet, the shape of a real secret key.
/// `ThreadRng` is a CSPRNG seeded from the OS, which is what a secret needs.
fn random_secret_access_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    random_string("", ALPHABET, 40)
}

fn random_string(prefix: &str, alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + len);
    s.push_str(prefix);
    for _ in 0..len {
        let i = rng.random_range(0..alphabet.len());
        s.push(char::from(alphabet.get(i).copied().unwrap_or(b'A')));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = r#"
[[principal]]
name = "alice"
access_key_id = "AKIAIOSFODNN7EXAMPLE"
secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
account_id = "123456789012"

[[principal]]
name = "bob"
access_key_id = "AKIAI44QH8DHBEXAMPLE"
secret_access_key = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
account_id = "210987654321"
"#;

    #[test]
    fn parses_and_looks_up() {
        let c = Credentials::from_toml(ALICE).unwrap();
        let a = c.lookup("AKIAIOSFODNN7EXAMPLE").unwrap();
        assert_eq!(a.name, "alice");
        assert_eq!(a.account_id, "123456789012");
        assert_eq!(
            a.secret_access_key(),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        );
        assert_eq!(c.lookup("AKIAI44QH8DHBEXAMPLE").unwrap().name, "bob");
        assert!(c.lookup("AKIANOPE").is_none());
        assert_eq!(c.principals().count(), 2);
    }

    #[test]
    fn signing_key_cache_is_bounded() {
        let c = Credentials::from_toml(ALICE).unwrap();
        for i in 0..(SIGNING_KEY_CACHE_LIMIT * 2 + 3) {
            c.cache_signing_key(
                &format!("AKID/20260101/region-{i}/ecs/aws4_request"),
                [0; 32],
            );
        }
        let len = c.signing_keys.lock().unwrap().len();
        assert!(len <= SIGNING_KEY_CACHE_LIMIT, "{len}");
        assert_eq!(
            c.cached_signing_key("AKID/20260101/region-2/ecs/aws4_request"),
            None
        );
        assert!(c
            .cached_signing_key(&format!(
                "AKID/20260101/region-{}/ecs/aws4_request",
                SIGNING_KEY_CACHE_LIMIT * 2 + 2
            ))
            .is_some());
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = Credentials::from_toml(ALICE).unwrap();
        let s = format!("{c:?}");
        assert!(s.contains("alice"));
        assert!(!s.contains("EXAMPLEKEY"), "{s}");
    }

    #[test]
    fn same_name_two_keys_is_fine() {
        let text = ALICE.replace("\"bob\"", "\"alice\"");
        assert!(Credentials::from_toml(&text).is_ok());
    }

    #[test]
    fn duplicate_key_id() {
        let text = ALICE.replace("AKIAI44QH8DHBEXAMPLE", "AKIAIOSFODNN7EXAMPLE");
        let e = Credentials::from_toml(&text).unwrap_err();
        assert!(matches!(
            e,
            CredentialsError::DuplicateAccessKeyId {
                first: 1,
                second: 2,
                ..
            }
        ));
        let msg = e.to_string();
        assert!(
            msg.contains("AKIAIOSFODNN7EXAMPLE") && msg.contains("alice") && msg.contains("bob"),
            "{msg}"
        );
    }

    #[test]
    fn bad_account_ids() {
        for bad in [
            "12345678901",
            "1234567890123",
            "12345678901a",
            "",
            "１２３４５６７８９０１２",
        ] {
            let text = ALICE.replace("123456789012", bad);
            let e = Credentials::from_toml(&text).unwrap_err();
            let msg = e.to_string();
            assert!(
                matches!(e, CredentialsError::InvalidPrincipal { index: 1, .. }),
                "{msg}"
            );
            assert!(msg.contains("12 digits"), "{msg}");
        }
    }

    #[test]
    fn bad_key_ids_and_empty_fields() {
        for (from, to, expect) in [
            ("AKIAIOSFODNN7EXAMPLE", "AKIA/SLASH", "access_key_id"),
            ("AKIAIOSFODNN7EXAMPLE", "", "access_key_id"),
            ("AKIAIOSFODNN7EXAMPLE", "AKIA SPACE", "access_key_id"),
            (
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "",
                "secret_access_key",
            ),
            ("\"alice\"", "\" \"", "name"),
        ] {
            let text = ALICE.replacen(from, to, 1);
            let msg = Credentials::from_toml(&text).unwrap_err().to_string();
            assert!(msg.contains(expect), "{msg}");
        }
    }

    #[test]
    fn missing_and_unknown_fields() {
        let text = ALICE.replacen("account_id = \"123456789012\"\n", "", 1);
        let msg = Credentials::from_toml(&text).unwrap_err().to_string();
        assert!(msg.contains("missing field `account_id`"), "{msg}");
        let text = ALICE.replacen("name = \"alice\"", "name = \"alice\"\nrole = \"admin\"", 1);
        let msg = Credentials::from_toml(&text).unwrap_err().to_string();
        assert!(msg.contains("role"), "{msg}");
        let msg = Credentials::from_toml("").unwrap_err().to_string();
        assert!(msg.contains("no principals"), "{msg}");
        let msg = Credentials::from_toml("[[principal]]\nname = 1")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("invalid credentials TOML"), "{msg}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[[principal]]\nname = \"x\"\n").unwrap();
        let msg = Credentials::load(&path).unwrap_err().to_string();
        assert!(
            msg.contains("c.toml") && msg.contains("missing field"),
            "{msg}"
        );
        let msg = Credentials::load(dir.path().join("absent.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("absent.toml"), "{msg}");
    }

    #[test]
    fn generate_dev_creates_once_then_reuses() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (c1, p1, created1) = Credentials::generate_dev(&data).unwrap();
        assert!(created1);
        assert_eq!(p1.name, "dev");
        assert_eq!(p1.account_id, DEV_ACCOUNT_ID);
        assert_eq!(p1.access_key_id.len(), 20);
        assert!(p1.access_key_id.starts_with("AKIA"));
        assert!(p1.access_key_id[4..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        assert_eq!(p1.secret_access_key().len(), 40);
        assert!(c1.lookup(&p1.access_key_id).is_some());
        let path = data.join(DEV_CREDENTIALS_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let (_c2, p2, created2) = Credentials::generate_dev(&data).unwrap();
        assert!(!created2);
        assert_eq!(p1, p2);
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 1);
    }

    #[test]
    fn generate_dev_refuses_a_broken_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DEV_CREDENTIALS_FILE), "garbage = [").unwrap();
        assert!(Credentials::generate_dev(dir.path()).is_err());
        // And did not overwrite it.
        assert_eq!(
            std::fs::read_to_string(dir.path().join(DEV_CREDENTIALS_FILE)).unwrap(),
            "garbage = ["
        );
    }
}
