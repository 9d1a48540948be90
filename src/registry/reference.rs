//! Image names as users write them, made canonical the way docker does.

use std::fmt;

/// Docker Hub's canonical registry name and the host its API is served on.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// An image repository without tag or digest: `ghcr.io/acme/app`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageName {
    /// The registry as users name it, with port: `docker.io`, `localhost:5000`.
    pub registry: String,
    /// The repository path within the registry: `library/nginx`.
    pub repository: String,
}

/// Why a string is not an image name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(
        "{0:?} carries a tag ({1}); give the image name only and let an ImagePolicy pick the tag"
    )]
    HasTag(String, String),
    #[error("{0:?} carries a digest; give the image name only and let an ImagePolicy pick the tag")]
    HasDigest(String),
    #[error(
        "{0:?} is a URL; give the image name, e.g. ghcr.io/acme/app (use spec.insecure for plain HTTP)"
    )]
    Url(String),
    #[error("{0:?} is not an image name: {1}")]
    Invalid(String, &'static str),
}

impl ImageName {
    /// Parses `nginx`, `library/nginx`, `ghcr.io/org/app`,
    /// `localhost:5000/team/app`, `registry.example.com:8443/a/b/c`.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let invalid = |why| ReferenceError::Invalid(text.to_string(), why);
        if text.contains("://") {
            return Err(ReferenceError::Url(text.to_string()));
        }
        if text.contains('@') {
            return Err(ReferenceError::HasDigest(text.to_string()));
        }
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        let (registry, path) = match text.split_once('/') {
            Some((first, rest)) if is_registry(first) => (first.to_string(), rest),
            _ => (DOCKER_HUB.to_string(), text),
        };
        let last = path.rsplit('/').next().unwrap_or(path);
        if let Some((_, tag)) = last.split_once(':') {
            return Err(ReferenceError::HasTag(text.to_string(), tag.to_string()));
        }
        // Host names are case-insensitive; one spelling keys state and
        // credentials.
        let registry = registry.to_ascii_lowercase();
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
                DOCKER_HUB.to_string()
            }
            _ => registry,
        };
        if !valid_registry(&registry) {
            return Err(invalid(
                "the registry part is not a host name with an optional port",
            ));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        if !repository.split('/').all(valid_component) {
            return Err(invalid(
                "path components are lower-case letters and digits, separated by '.', '_', '__' or '-'",
            ));
        }
        Ok(ImageName {
            registry,
            repository,
        })
    }

    /// `docker.io/library/nginx`: the name hoist keys state by.
    pub fn canonical(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host (and port) that serves the registry API.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }
}

impl ImageName {
    /// Whether the registry is one Flux's registry library
    /// (go-containerregistry) also tries plain HTTP for when HTTPS fails:
    /// `localhost:PORT`, a `*.local` or `*.localhost` name, a loopback
    /// IPv4 address (127.0.0.0/8) or an RFC 1918 address (image names do
    /// not take IPv6 literals). Stricter than
    /// its unanchored match on "127.0.0.1" anywhere in the name, so that
    /// `127.0.0.1.example.com` is not downgraded.
    pub fn is_local(&self) -> bool {
        let host = host_of(&self.registry);
        if host == "localhost" {
            // go-containerregistry asks for "localhost:" with a port; a
            // bare localhost is as local.
            return true;
        }
        if host.ends_with(".local") || host.ends_with(".localhost") {
            return true;
        }
        host.parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_private())
    }
}

/// `registry.example.com` of `registry.example.com:5000`.
fn host_of(registry: &str) -> &str {
    registry.split_once(':').map_or(registry, |(host, _)| host)
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

/// Docker's rule: the first component names a registry when it has a dot
/// or a port, or is `localhost`.
fn is_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

fn valid_registry(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    let port_ok = port.is_none_or(|p| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
    });
    host_ok && port_ok
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(component: &str) -> bool {
    let b = component.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> Result<(String, String), ReferenceError> {
        ImageName::parse(text).map(|n| (n.canonical(), n.api_host().to_string()))
    }

    #[test]
    fn canonical_names() {
        let ok = |b: &str, c: &str| Ok((b.to_string(), c.to_string()));
        assert_eq!(
            canonical("nginx"),
            ok("docker.io/library/nginx", "registry-1.docker.io")
        );
        assert_eq!(
            canonical("bitnami/redis"),
            ok("docker.io/bitnami/redis", "registry-1.docker.io")
        );
        assert_eq!(
            canonical("docker.io/nginx"),
            ok("docker.io/library/nginx", "registry-1.docker.io")
        );
        assert_eq!(
            canonical("index.docker.io/library/nginx"),
            ok("docker.io/library/nginx", "registry-1.docker.io")
        );
        assert_eq!(
            canonical("ghcr.io/org/app"),
            ok("ghcr.io/org/app", "ghcr.io")
        );
        assert_eq!(
            canonical("localhost:5000/app"),
            ok("localhost:5000/app", "localhost:5000")
        );
        assert_eq!(canonical("localhost/app"), ok("localhost/app", "localhost"));
        assert_eq!(
            canonical("registry.example.com:8443/a/b/c"),
            ok(
                "registry.example.com:8443/a/b/c",
                "registry.example.com:8443"
            )
        );
        assert_eq!(
            canonical("quay.io/org/my_app-x.y"),
            ok("quay.io/org/my_app-x.y", "quay.io")
        );
        assert_eq!(
            canonical("123.dkr.ecr.us-east-1.amazonaws.com/team/app"),
            ok(
                "123.dkr.ecr.us-east-1.amazonaws.com/team/app",
                "123.dkr.ecr.us-east-1.amazonaws.com"
            )
        );
    }

    #[test]
    fn rejects_what_is_not_a_name() {
        assert!(
            matches!(ImageName::parse("ghcr.io/org/app:1.0"), Err(ReferenceError::HasTag(_, t)) if t == "1.0")
        );
        assert!(matches!(
            ImageName::parse("nginx:latest"),
            Err(ReferenceError::HasTag(..))
        ));
        assert!(matches!(
            ImageName::parse("localhost:5000/app@sha256:abc"),
            Err(ReferenceError::HasDigest(_))
        ));
        assert!(matches!(
            ImageName::parse("https://ghcr.io/org/app"),
            Err(ReferenceError::Url(_))
        ));
        for bad in [
            "",
            "Nginx",
            "ghcr.io/Org/app",
            "ghcr.io//app",
            "ghcr.io/app/",
            "a..b/c",
            "ghcr.io:99999/a",
            "ghcr.io/a b",
            "-x",
        ] {
            assert!(
                matches!(ImageName::parse(bad), Err(ReferenceError::Invalid(..))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn local_registries_are_those_flux_tries_plain_http_for() {
        let local = |name: &str| {
            ImageName::parse(&format!("{name}/team/app"))
                .unwrap_or_else(|e| panic!("{e}"))
                .is_local()
        };
        for name in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "10.0.0.7:5000",
            "172.16.0.1",
            "172.31.255.255:443",
            "192.168.1.20:5000",
            "registry.local:5000",
            "zot.localhost",
        ] {
            assert!(local(name), "{name}");
        }
        for name in [
            "ghcr.io",
            "registry.example.com:5000",
            "127.0.0.1.example.com",
            "172.32.0.1:5000",
            "11.0.0.1",
            "local.example.com",
        ] {
            assert!(!local(name), "{name}");
        }
    }
}
