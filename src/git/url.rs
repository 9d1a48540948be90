//! Which transport git takes for a URL, by git's own rules, and what that
//! means for hoist: a controller reaches only network URLs, and a local
//! transport's remote side runs with hoist's safe settings.

use std::path::PathBuf;

use super::credentials::percent_decode;

/// The options of the upload-pack and receive-pack git runs in the
/// remote repository of a local transport (a path or `file://`), which is
/// the repository a URL names and whose configuration and hooks are not
/// hoist's. Its work tree, if it has one, is never updated: that would
/// run its filters.
const REMOTE_SIDE: &str = "git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c receive.denyCurrentBranch=refuse -c receive.denyDeleteCurrent=refuse";

/// Whether git reaches `url` through the local transport, by git's own
/// rules: `file://`, or a path (no scheme, and no `:` before the first `/`,
/// which would make it scp-style ssh).
pub(super) fn is_local(url: &str) -> bool {
    if let Some(end) = url.find("://") {
        let scheme = &url[..end];
        if !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return scheme.eq_ignore_ascii_case("file");
        }
    }
    match (url.find(':'), url.find('/')) {
        (None, _) => true,
        (Some(colon), Some(slash)) => slash < colon,
        (Some(_), None) => false,
    }
}

/// Whether `url` is one a cluster's controller may reach: `https://`,
/// `http://`, `ssh://` or scp-style `user@host:path`. Local transports
/// (paths, `file://`) would let an object reach into the pod's own files,
/// the state directory included; `git://` is unauthenticated; `ext::` and
/// other remote helpers run programs.
pub fn network_url(url: &str) -> bool {
    if let Some((scheme, rest)) = url.split_once("://") {
        let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        return matches!(
            scheme.to_ascii_lowercase().as_str(),
            "https" | "http" | "ssh" | "git+ssh" | "ssh+git"
        ) && !host.is_empty()
            && !host.starts_with(['-', '/']);
    }
    let helper = url.split_once("::").is_some_and(|(transport, _)| {
        !transport.is_empty()
            && transport
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    // scp-style: what is before the first `:` is the host (a `-` there
    // would be read by ssh as an option).
    !helper && !is_local(url) && !url.starts_with('-') && !url.starts_with(':')
}

/// The path a local-transport URL names, as written and, for `file://`,
/// percent-decoded too (git reads both), so that a check can refuse either.
/// Relative paths are relative to where hoist runs, as git reads them.
pub fn local_paths(url: &str) -> Vec<PathBuf> {
    if !is_local(url) {
        return Vec::new();
    }
    let Some(rest) = url
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("file://"))
        .map(|_| &url[7..])
    else {
        return vec![PathBuf::from(url)];
    };
    // `file://host/path`: the host part is not part of the path.
    let path = match rest.find('/') {
        Some(at) => &rest[at..],
        None => rest,
    };
    let mut paths = vec![PathBuf::from(path)];
    let decoded = percent_decode(path);
    if decoded != path {
        paths.push(PathBuf::from(decoded));
    }
    paths
}

/// The `--upload-pack`/`--receive-pack` option for `url`: none for a
/// network transport, whose server runs what it runs.
pub(super) fn remote_side(url: &str, option: &str, program: &str) -> Option<String> {
    is_local(url).then(|| format!("--{option}={REMOTE_SIDE} {program}"))
}
