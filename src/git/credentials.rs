//! Credentials from a Secret, handed to git without argv or a readable
//! file: key files in a private directory removed on drop, and userinfo
//! and passwords answered through askpass from the environment.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Checkout, Git, GitError};

/// A directory of key files for one use of a Secret, removed on drop, so
/// that a private key outlives neither the run nor the pass that needed it.
#[derive(Debug)]
pub(super) struct KeyFiles {
    dir: PathBuf,
}

impl Drop for KeyFiles {
    fn drop(&mut self) {
        // The gpg-agent an OpenPGP keyring started lives on otherwise.
        let home = self.dir.join("gnupg");
        if home.is_dir() {
            let _ = std::process::Command::new("gpgconf")
                .arg("--homedir")
                .arg(&home)
                .args(["--kill", "gpg-agent"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), "cannot remove git key files: {e}");
        }
    }
}

/// A remote URL as git may see it, and the userinfo it carried,
/// percent-decoded, to be answered through askpass: argv and the cache's
/// `.git/config` would show it to anyone.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Remote {
    pub(super) url: String,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Remote {
    /// Userinfo is split off HTTP(S) URLs only: an ssh URL's user is the
    /// account to log in as, not a secret, and ssh never asks for a
    /// password here.
    pub(super) fn parse(url: &str) -> Remote {
        let plain = Remote {
            url: url.to_string(),
            username: None,
            password: None,
        };
        let Ok(mut parsed) = url::Url::parse(url) else {
            return plain;
        };
        if !matches!(parsed.scheme(), "http" | "https")
            || (parsed.username().is_empty() && parsed.password().is_none())
        {
            return plain;
        }
        let username = percent_decode(parsed.username());
        let password = parsed.password().map(percent_decode);
        if parsed.set_username("").is_err() || parsed.set_password(None).is_err() {
            return plain;
        }
        Remote {
            url: parsed.to_string(),
            username: Some(username),
            password,
        }
    }
}

/// `%40` → `@`; a `%` not followed by two hex digits stays as it is.
pub(super) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A directory only hoist's user may enter, made with that mode so that
/// it is never open to others, even for a moment.
pub(super) fn private_dir(dir: &Path) -> Result<(), GitError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |source| GitError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    // One made before hoist cared, or by a umask, is closed now.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

/// Writes the askpass script into `dir`, unless it is there already.
/// Written aside and renamed, so that a git running it never sees it half
/// written (or fails with "text file busy").
fn write_askpass(dir: &Path) -> Result<PathBuf, GitError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = dir.join("askpass");
    if std::fs::read(&path).is_ok_and(|text| text == ASKPASS.as_bytes()) {
        return Ok(path);
    }
    let aside = dir.join(format!(
        ".askpass.{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GitError::Io { path, source }
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&aside)
        .map_err(io(&aside))?;
    file.write_all(ASKPASS.as_bytes()).map_err(io(&aside))?;
    drop(file);
    std::fs::rename(&aside, &path).map_err(io(&path))?;
    Ok(path)
}

/// Credentials from a Secret, under Flux's keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GitCredentials {
    /// `username` / `password`: HTTPS Basic auth (or a token as password).
    pub username: Option<String>,
    pub password: Option<String>,
    /// `bearerToken`: HTTPS `Authorization: Bearer` (Flux's key).
    pub bearer_token: Option<String>,
    /// `identity`: an SSH private key; `known_hosts`: the host keys to trust.
    pub identity: Option<Vec<u8>>,
    pub known_hosts: Option<Vec<u8>>,
    /// The key that signs every commit (Flux's `signingKey`).
    pub signing: Option<SigningKey>,
}

/// A commit signing key, as Flux's signing Secrets hold it.
#[derive(Clone, PartialEq, Eq)]
pub enum SigningKey {
    /// An SSH private key (`identity`) and its passphrase (`password`),
    /// as Flux's SSH signing Secrets hold them.
    Ssh {
        key: Vec<u8>,
        passphrase: Option<Vec<u8>>,
    },
    /// An ASCII-armored OpenPGP private key (`git.asc`) and its
    /// passphrase (`passphrase`).
    OpenPgp {
        key: Vec<u8>,
        passphrase: Option<Vec<u8>>,
    },
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .field("known_hosts", &self.known_hosts.is_some())
            .field("signing", &self.signing.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The `gpg.program` git signs with: gpg on hoist's keyring, without a
/// terminal, the passphrase (when the Secret has one) from its file.
const GPG_SIGN: &str = "#!/bin/sh\nexec gpg --homedir \"$HOIST_GNUPGHOME\" --batch --no-tty --pinentry-mode loopback ${HOIST_GPG_PASSPHRASE:+--passphrase-file \"$HOIST_GPG_PASSPHRASE\"} \"$@\"\n";

/// The command of the error a signing key's wrong passphrase gives.
pub const SSH_KEY_DECRYPT: &str = "ssh-keygen -p";

/// The askpass ssh-keygen asks for a signing key's passphrase: it prints
/// the file the environment names, so the passphrase is in no argv.
const SSH_ASKPASS: &str = "#!/bin/sh\ncat \"$HOIST_SSH_PASSPHRASE\"\n";

/// Removes the passphrase of the SSH private key at `key`, in place, with
/// the passphrase from the file `passphrase` (through `askpass`); an error
/// when it does not decrypt the key.
fn decrypt_ssh_key(key: &Path, passphrase: &Path, askpass: &Path) -> Result<(), GitError> {
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-p", "-N", "", "-f"])
        .arg(key)
        .env("SSH_ASKPASS", askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("HOIST_SSH_PASSPHRASE", passphrase)
        .env_remove("DISPLAY")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| GitError::Command {
            command: "ssh-keygen".into(),
            message: format!(
                "cannot run ssh-keygen (install openssh-client to sign with SSH keys): {e}"
            ),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(GitError::Command {
        command: SSH_KEY_DECRYPT.into(),
        message: "the SSH signing key does not open with the Secret's password".into(),
    })
}

/// Imports an armored OpenPGP secret key into the keyring at `home` and
/// returns its fingerprint; an error when it holds no secret key.
fn import_openpgp(home: &Path, armored: &Path) -> Result<String, GitError> {
    let gpg = |args: &[&str]| {
        std::process::Command::new("gpg")
            .arg("--homedir")
            .arg(home)
            .args(["--batch", "--no-tty"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| GitError::Command {
                command: "gpg".into(),
                message: format!("cannot run gpg (install gnupg to sign with OpenPGP keys): {e}"),
            })
    };
    let mut import = vec!["--import"];
    let path = armored.to_string_lossy();
    import.push(&path);
    let imported = gpg(&import)?;
    if !imported.status.success() {
        return Err(GitError::Command {
            command: "gpg --import".into(),
            message: "git.asc is not an OpenPGP key gpg can import".into(),
        });
    }
    let listed = gpg(&["--with-colons", "--list-secret-keys"])?;
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("fpr:")
                .map(|rest| rest.trim_matches(':').to_string())
        })
        .filter(|f| !f.is_empty())
        .ok_or_else(|| GitError::Command {
            command: "gpg --import".into(),
            message: "git.asc holds no OpenPGP secret key".into(),
        })
}

/// Answers git's username and password prompts from the environment, so
/// the secret never appears in argv or a file.
const ASKPASS: &str = "#!/bin/sh\ncase \"$1\" in\n  Username*) printf '%s\\n' \"$HOIST_GIT_USERNAME\" ;;\n  *) printf '%s\\n' \"$HOIST_GIT_PASSWORD\" ;;\nesac\n";

impl Git {
    /// A git that authenticates with `credentials` instead of the user's
    /// helpers. Key files and the askpass script go in a directory of their
    /// own under `dir` (mode 0700), removed when the returned `Git` and its
    /// last copy are dropped. SSH host keys are always verified: with
    /// `known_hosts` against it, otherwise against the user's.
    pub fn with_credentials(
        &self,
        credentials: &GitCredentials,
        dir: &Path,
    ) -> Result<Git, GitError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| GitError::Io { path, source }
        };
        private_dir(dir)?;
        // git runs in other directories; the paths it is given must be absolute.
        let dir = std::fs::canonicalize(dir).map_err(io(dir))?;
        // A directory per use: two passes of one automation never remove
        // each other's files.
        let files = loop {
            let files = dir.join(format!(
                "{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&files) {
                Ok(()) => break KeyFiles { dir: files },
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(&files)(e)),
            }
        };
        let write = |name: &str, contents: &[u8], mode: u32| -> Result<PathBuf, GitError> {
            use std::io::Write;
            let path = files.dir.join(name);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
                .map_err(io(&path))?;
            file.write_all(contents).map_err(io(&path))?;
            Ok(path)
        };
        let mut git = self.clone();
        if credentials.username.is_some() || credentials.password.is_some() {
            let askpass = write("askpass", ASKPASS.as_bytes(), 0o700)?;
            let username = credentials.username.clone().unwrap_or_default();
            let password = credentials.password.clone().unwrap_or_default();
            git.secrets.add_basic(&username, &password);
            git.env
                .push(("GIT_ASKPASS".into(), askpass.into_os_string()));
            git.env.push(("HOIST_GIT_USERNAME".into(), username.into()));
            git.env.push(("HOIST_GIT_PASSWORD".into(), password.into()));
            // The Secret decides, not whatever helper the user configured.
            git.config.push("credential.helper=".into());
        }
        if let Some(token) = &credentials.bearer_token {
            if credentials.username.is_some() || credentials.password.is_some() {
                return Err(GitError::Command {
                    command: "credentials".into(),
                    message: "the Secret holds bearerToken and username/password; keep one".into(),
                });
            }
            git.secrets.add(token);
            // Through git's environment configuration, never `-c`: argv is
            // there for every user to read, a process's environment is not.
            git.env.extend([
                ("GIT_CONFIG_COUNT".into(), "1".into()),
                ("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()),
                (
                    "GIT_CONFIG_VALUE_0".into(),
                    format!("Authorization: Bearer {token}").into(),
                ),
            ]);
        }
        if credentials.identity.is_some() || credentials.known_hosts.is_some() {
            // Paths reach ssh through the environment, so no path can
            // inject shell syntax into GIT_SSH_COMMAND. GIT_SSH_COMMAND
            // outranks any core.sshCommand a configuration sets.
            let mut ssh = String::from("ssh -o BatchMode=yes -o StrictHostKeyChecking=yes");
            if let Some(identity) = &credentials.identity {
                let key = write("identity", identity, 0o600)?;
                git.env
                    .push(("HOIST_GIT_IDENTITY".into(), key.into_os_string()));
                ssh.push_str(" -o IdentitiesOnly=yes -i \"$HOIST_GIT_IDENTITY\"");
            }
            if let Some(known) = &credentials.known_hosts {
                let known = write("known_hosts", known, 0o600)?;
                git.env
                    .push(("HOIST_GIT_KNOWN_HOSTS".into(), known.into_os_string()));
                ssh.push_str(" -o UserKnownHostsFile=\"$HOIST_GIT_KNOWN_HOSTS\"");
            }
            git.env.push(("GIT_SSH_COMMAND".into(), ssh.into()));
        }
        match &credentials.signing {
            None => {}
            Some(SigningKey::Ssh { key, passphrase }) => {
                // ssh-keygen reads the key from a file of this private
                // directory; only its path reaches git's configuration.
                let key = write("signing-key", key, 0o600)?;
                if let Some(passphrase) = passphrase.as_ref().filter(|p| !p.is_empty()) {
                    // ssh-keygen signs with no terminal to ask on: the
                    // copy in this directory is decrypted once, here, so
                    // that a wrong passphrase fails before any commit.
                    let file = write("signing-passphrase", passphrase, 0o600)?;
                    let askpass = write("signing-askpass", SSH_ASKPASS.as_bytes(), 0o700)?;
                    let decrypted = decrypt_ssh_key(&key, &file, &askpass);
                    let _ = std::fs::remove_file(&file);
                    let _ = std::fs::remove_file(&askpass);
                    decrypted?;
                }
                git.config.extend([
                    "gpg.format=ssh".to_string(),
                    "gpg.ssh.program=ssh-keygen".to_string(),
                    format!("user.signingKey={}", key.display()),
                    "commit.gpgSign=true".to_string(),
                ]);
            }
            Some(SigningKey::OpenPgp { key, passphrase }) => {
                // A keyring of its own, in this directory: the user's is
                // never read or written. gpg signs through a wrapper that
                // reads the passphrase from a 0600 file, never argv.
                let home = files.dir.join("gnupg");
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&home)
                    .map_err(io(&home))?;
                let armored = write("signing.asc", key, 0o600)?;
                let fingerprint = import_openpgp(&home, &armored)?;
                let wrapper = write("gpg-sign", GPG_SIGN.as_bytes(), 0o700)?;
                git.env
                    .push(("HOIST_GNUPGHOME".into(), home.into_os_string()));
                if let Some(passphrase) = passphrase {
                    let file = write("passphrase", passphrase, 0o600)?;
                    git.env
                        .push(("HOIST_GPG_PASSPHRASE".into(), file.into_os_string()));
                }
                git.config.extend([
                    "gpg.format=openpgp".to_string(),
                    format!("gpg.program={}", wrapper.display()),
                    format!("user.signingKey={fingerprint}"),
                    "commit.gpgSign=true".to_string(),
                ]);
            }
        }
        git.files.push(Arc::new(files));
        Ok(git)
    }

    /// This git for `remote`: the userinfo its URL carried answers git's
    /// prompts through askpass (written under `cache`), ahead of any
    /// Secret's, as git itself prefers a URL's userinfo.
    pub(super) fn for_remote(&self, remote: &Remote, cache: &Path) -> Result<Git, GitError> {
        let Some(username) = &remote.username else {
            return Ok(self.clone());
        };
        let password = remote.password.clone().unwrap_or_default();
        let mut git = self.clone();
        if password.is_empty() {
            // `https://TOKEN@host/…`: the username is the secret.
            git.secrets.add(username);
        }
        git.secrets.add_basic(username, &password);
        let askpass = write_askpass(cache)?;
        let askpass = std::path::absolute(&askpass).unwrap_or(askpass);
        git.env
            .push(("GIT_ASKPASS".into(), askpass.into_os_string()));
        git.env
            .push(("HOIST_GIT_USERNAME".into(), username.clone().into()));
        git.env.push(("HOIST_GIT_PASSWORD".into(), password.into()));
        git.config.push("credential.helper=".into());
        Ok(git)
    }

    /// This git for the remote of `checkout`, and the URL git is given.
    pub(super) fn for_checkout(&self, checkout: &Checkout) -> Result<(Git, Remote), GitError> {
        let remote = Remote::parse(&checkout.source.url);
        let cache = checkout.dir.parent().unwrap_or(&checkout.dir);
        Ok((self.for_remote(&remote, cache)?, remote))
    }
}
