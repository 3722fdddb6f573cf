//! The broker's state directory (`--state-dir`): what it keeps across
//! restarts. Today that is one file, `resume-key`, the key resume tokens
//! are signed with (see `hub::tokens`): with the same key after a restart
//! the owners of ids reclaim them ahead of anyone else.
//!
//! The key is made (32 random bytes, written as hex, mode 0600, in a
//! folder made with mode 0700) the first time, then read at every start.
//! Brokers started at once on one folder agree on one key: each writes its
//! candidate to a file of its own and links it into place, which fails for
//! all but the first. `--resume-secret` replaces the file (brokers given
//! the same secret share a key). When neither can be had the broker says
//! so once and signs with a key of this process only: ids then do not
//! outlive a restart.

use std::ffi::OsString;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::hub::{HubRng, OsRng, RESUME_KEY_BYTES, ResumeKey};

/// The key file's name in the state directory.
pub const KEY_FILE: &str = "resume-key";

/// Where the key comes from (said in the log at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `--resume-secret`.
    Secret,
    /// The key file, read (`created: false`) or made now.
    File { path: PathBuf, created: bool },
    /// A key of this process only; `why` names what failed and the flag.
    Process { why: String },
}

/// The state directory when `--state-dir` is not given: `$STATE_DIRECTORY`
/// (systemd's `StateDirectory=`; the first when it lists several), else
/// `$XDG_STATE_HOME/peerwire-broker`, else
/// `$HOME/.local/state/peerwire-broker`. Relative paths in these variables
/// are ignored, as the XDG specification asks. `var` reads the environment.
pub fn default_dir(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let absolute = |v: OsString| {
        let p = PathBuf::from(v);
        p.is_absolute().then_some(p)
    };
    if let Some(first) = var("STATE_DIRECTORY")
        .and_then(|v| {
            v.to_str()
                .and_then(|s| s.split(':').next())
                .map(OsString::from)
        })
        .and_then(absolute)
    {
        return Some(first);
    }
    if let Some(xdg) = var("XDG_STATE_HOME").and_then(absolute) {
        return Some(xdg.join("peerwire-broker"));
    }
    var("HOME")
        .and_then(absolute)
        .map(|home| home.join(".local/state/peerwire-broker"))
}

/// The resume key: from `secret` when given, else from the key file in
/// `dir` (made if missing), else a key of this process, with why.
pub fn resume_key(secret: Option<&str>, dir: Option<&Path>) -> (ResumeKey, KeySource) {
    if let Some(secret) = secret {
        return (ResumeKey::from_secret(secret), KeySource::Secret);
    }
    let failed = |why: String| {
        let mut key = [0u8; RESUME_KEY_BYTES];
        // Without OS random bytes no token can be made anyway.
        let _ = OsRng.fill(&mut key);
        (ResumeKey::from_bytes(key), KeySource::Process { why })
    };
    let Some(dir) = dir else {
        return failed(
            "no --state-dir given and none of STATE_DIRECTORY, XDG_STATE_HOME or HOME is set"
                .to_string(),
        );
    };
    match load_or_create(dir) {
        Ok((key, created)) => (
            key,
            KeySource::File {
                path: dir.join(KEY_FILE),
                created,
            },
        ),
        Err(e) => failed(format!(
            "cannot use --state-dir {}: {e}",
            dir.to_string_lossy()
        )),
    }
}

/// Reads `dir/resume-key`, or makes it; `true` when it was made now.
pub fn load_or_create(dir: &Path) -> io::Result<(ResumeKey, bool)> {
    let path = dir.join(KEY_FILE);
    match read_key(&path) {
        Ok(key) => return Ok((key, false)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    make_private_dir(dir)?;
    let mut bytes = [0u8; RESUME_KEY_BYTES];
    OsRng
        .fill(&mut bytes)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut nonce = [0u8; 8];
    OsRng
        .fill(&mut nonce)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let candidate = dir.join(format!(".{KEY_FILE}.{}", hex(&nonce)));
    let written = write_private(&candidate, format!("{}\n", hex(&bytes)).as_bytes())
        .and_then(|()| std::fs::hard_link(&candidate, &path));
    let _ = std::fs::remove_file(&candidate);
    match written {
        Ok(()) => Ok((ResumeKey::from_bytes(bytes), true)),
        // Another broker on this folder made it first: use that one.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((read_key(&path)?, false)),
        Err(e) => Err(e),
    }
}

fn read_key(path: &Path) -> io::Result<ResumeKey> {
    let text = std::fs::read_to_string(path)?;
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not {} hex bytes (remove it to have a new key made, which ends every id kept across the restart)",
                path.to_string_lossy(),
                RESUME_KEY_BYTES
            ),
        )
    };
    let text = text.trim();
    if text.len() != RESUME_KEY_BYTES * 2 || !text.is_ascii() {
        return Err(bad());
    }
    let mut key = [0u8; RESUME_KEY_BYTES];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(ResumeKey::from_bytes(key))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(unix)]
fn make_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn make_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Writes a new file only its owner may read.
fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.into())
    }

    #[test]
    fn the_default_dir_is_systemds_then_xdgs_then_homes() {
        let all = [
            (
                "STATE_DIRECTORY",
                "/var/lib/peerwire-broker-a:/var/lib/other",
            ),
            ("XDG_STATE_HOME", "/home/u/.state"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(
            default_dir(vars(&all)),
            Some("/var/lib/peerwire-broker-a".into())
        );
        assert_eq!(
            default_dir(vars(&all[1..])),
            Some("/home/u/.state/peerwire-broker".into())
        );
        assert_eq!(
            default_dir(vars(&[("XDG_STATE_HOME", "relative"), ("HOME", "/home/u")])),
            Some("/home/u/.local/state/peerwire-broker".into())
        );
        assert_eq!(default_dir(vars(&[])), None);
    }

    #[test]
    fn brokers_starting_together_agree_on_one_key_and_a_damaged_file_is_left_alone() {
        let dir = std::env::temp_dir().join(format!("peerwire-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let made: Vec<(ResumeKey, bool)> = std::thread::scope(|s| {
            let starts: Vec<_> = (0..4).map(|_| s.spawn(|| load_or_create(&dir))).collect();
            starts
                .into_iter()
                .map(|t| t.join().unwrap().unwrap())
                .collect()
        });
        assert_eq!(made.iter().filter(|(_, created)| *created).count(), 1);
        assert!(made.iter().all(|(key, _)| *key == made[0].0));
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "only the key file stays");
        std::fs::write(dir.join(KEY_FILE), "not hex\n").unwrap();
        let (_, source) = resume_key(None, Some(&dir));
        assert!(
            matches!(&source, KeySource::Process { why } if why.contains("is not 32 hex bytes")),
            "{source:?}"
        );
        let kept = std::fs::read_to_string(dir.join(KEY_FILE)).unwrap();
        assert_eq!(kept, "not hex\n", "an operator's file is not overwritten");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_secret_wins_and_no_dir_is_a_process_key_that_says_why() {
        let (key, source) = resume_key(Some("s"), None);
        assert_eq!(
            (key, source),
            (ResumeKey::from_secret("s"), KeySource::Secret)
        );
        let (a, source) = resume_key(None, None);
        assert!(
            matches!(&source, KeySource::Process { why } if why.contains("--state-dir")),
            "{source:?}"
        );
        let (b, _) = resume_key(None, None);
        assert_ne!(a, b, "a process key is random");
    }
}
