//! Which repository on which forge a git URL names.

use super::ForgeError;

/// A repository on a forge, derived from a git URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgeRepo {
    /// The host (with port) the URL names: `github.com`, `git.example.com:8443`.
    pub host: String,
    /// `owner/name`, or `group/subgroup/project` on GitLab.
    pub path: String,
}

impl ForgeRepo {
    /// Reads `https://host[:port]/owner/name(.git)`, `ssh://git@host[:port]/owner/name.git`
    /// and `git@host:owner/name.git`.
    pub fn from_git_url(url: &str) -> Result<ForgeRepo, ForgeError> {
        let invalid = || {
            ForgeError::Config(format!(
                "{} does not name a repository on a forge",
                crate::redact::strip_userinfo(url)
            ))
        };
        let parsed = crate::model::GitUrl::parse(url).ok_or_else(invalid)?;
        let host = match parsed.scheme.as_deref() {
            // An ssh port is not the forge's web port; keep the host only.
            Some("ssh") | None => parsed.host,
            Some("https" | "http" | "git") => parsed.authority,
            Some(_) => return Err(invalid()),
        };
        let path = parsed.path;
        if host.is_empty()
            || path.split('/').filter(|p| !p.is_empty()).count() < 2
            || path.split('/').any(|p| p.is_empty() || p == "..")
        {
            return Err(invalid());
        }
        Ok(ForgeRepo { host, path })
    }
}

impl ForgeRepo {
    /// `owner` and `name` of a GitHub or Gitea repository.
    pub fn owner_name(&self) -> Result<(String, String), ForgeError> {
        self.path
            .split_once('/')
            .filter(|(_, n)| !n.contains('/'))
            .map(|(o, n)| (o.to_string(), n.to_string()))
            .ok_or_else(|| ForgeError::Config(format!("{} is not owner/name", self.path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(url: &str) -> Option<(String, String)> {
        ForgeRepo::from_git_url(url).ok().map(|r| (r.host, r.path))
    }

    #[test]
    fn repositories_from_git_urls() {
        let ok = |h: &str, p: &str| Some((h.to_string(), p.to_string()));
        assert_eq!(
            repo("https://github.com/acme/fleet.git"),
            ok("github.com", "acme/fleet")
        );
        assert_eq!(
            repo("https://github.com/acme/fleet"),
            ok("github.com", "acme/fleet")
        );
        assert_eq!(
            repo("git@github.com:acme/fleet.git"),
            ok("github.com", "acme/fleet")
        );
        assert_eq!(
            repo("ssh://git@github.com/acme/fleet.git"),
            ok("github.com", "acme/fleet")
        );
        assert_eq!(
            repo("ssh://git@gitlab.example.com:2222/group/sub/project.git"),
            ok("gitlab.example.com", "group/sub/project")
        );
        assert_eq!(
            repo("https://bot:tok@git.example.com:8443/team/app.git/"),
            ok("git.example.com:8443", "team/app")
        );
        for bad in [
            "file:///srv/fleet.git",
            "https://github.com/acme",
            "fleet",
            "https://github.com//x",
        ] {
            assert!(repo(bad).is_none(), "{bad}");
        }
        let error = match ForgeRepo::from_git_url("https://bot:tok@github.com/x") {
            Ok(r) => panic!("read {r:?} from a URL with no repository"),
            Err(e) => e.to_string(),
        };
        assert!(!error.is_empty() && !error.contains("tok"), "{error}");
    }
}
