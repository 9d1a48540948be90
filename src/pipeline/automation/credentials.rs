//! The credentials an automation pushes and calls its forge with: from
//! the Secret it names, else the driver's (git's own helpers, the
//! provider's token variable).

use super::{AutomationReport, Context};
use crate::api::PullRequestSpec as PullRequestFields;
use crate::api::SigningFormat;
use crate::forge::{Forge, ForgeRepo};
use crate::git::{GitCredentials, SigningKey};
use crate::pipeline::error::AutomationError;
use crate::pipeline::ports::Repository;

/// The git to use for an automation: with the credentials of the Secret
/// `spec.git.secretRef` names, when the files hold it (Flux's keys:
/// `username`/`password`, `identity`/`known_hosts`), and signing with the
/// SSH key of a Flux `signingKey` Secret (`identity`, and its passphrase in
/// `password`); else (`None`) the
/// driver's, which uses the user's own credential helpers and ssh
/// configuration — with a warning when a Secret was named. A signing
/// Secret that is missing or unusable is an error: a commit Flux would
/// sign is never made unsigned.
pub(super) fn git_for(
    context: &Context<'_>,
    report: &mut AutomationReport,
) -> Result<Option<Box<dyn Repository>>, AutomationError> {
    let git = &context.automation.spec.git;
    let mut credentials = transport_credentials(context, report);
    // A signing key is never dropped: without its Secret, nothing is
    // committed.
    if let Some(signing) = &git.commit.signing {
        let namespace = context.namespace();
        let name = &signing.secret;
        let field = "spec.git.commit.signingKey.secretRef";
        let problem = |message: String| AutomationError::Secret {
            field: field.into(),
            message: format!("Secret {namespace}/{name} {message}"),
        };
        let secret = context
            .objects
            .secret(namespace, name)
            .ok_or_else(|| problem("is not in the files".into()))?;
        let key = match signing.format {
            SigningFormat::Ssh => SigningKey::Ssh {
                key: secret
                    .data
                    .get("identity")
                    .ok_or_else(|| problem("has no identity key".into()))?
                    .clone(),
                passphrase: secret.data.get("password").cloned(),
            },
            SigningFormat::OpenPgp => SigningKey::OpenPgp {
                key: secret
                    .data
                    .get("git.asc")
                    .ok_or_else(|| problem("has no git.asc key".into()))?
                    .clone(),
                passphrase: secret.data.get("passphrase").cloned(),
            },
        };
        credentials
            .get_or_insert_with(GitCredentials::default)
            .signing = Some(key);
    }
    let Some(credentials) = credentials else {
        return Ok(None);
    };
    use sha2::Digest;
    let dir = context.options.cache.join("credentials").join(
        format!("{:x}", sha2::Sha256::digest(context.key.as_bytes()))
            .get(..16)
            .unwrap_or("automation"),
    );
    let signing = credentials.signing.is_some();
    match context.ports.git.with_credentials(&credentials, &dir) {
        Ok(git) => Ok(Some(git)),
        // The key's own failure, said of the Secret that holds it.
        Err(crate::git::GitError::Command { command, message })
            if signing && command == crate::git::SSH_KEY_DECRYPT =>
        {
            let name = git
                .commit
                .signing
                .as_ref()
                .map_or("", |s| s.secret.as_str());
            Err(AutomationError::Secret {
                field: "spec.git.commit.signingKey.secretRef".into(),
                message: format!("Secret {}/{name}: {message}", context.namespace()),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// The transport credentials of the Secret `spec.git.secretRef` names, or
/// `None` (with a warning when it names one the files lack).
fn transport_credentials(
    context: &Context<'_>,
    report: &mut AutomationReport,
) -> Option<GitCredentials> {
    let git = &context.automation.spec.git;
    let reference = git.secret_ref.as_ref()?;
    // A Flux GitRepository of another namespace keeps its Secret there.
    let namespace = git
        .secret_namespace
        .as_deref()
        .unwrap_or_else(|| context.namespace());
    let Some(secret) = context.objects.secret(namespace, &reference.name) else {
        report.warnings.push(format!(
            "spec.git.secretRef: Secret {namespace}/{} is not in the files; using git's own credential helpers and ssh configuration",
            reference.name
        ));
        return None;
    };
    Some(transport_of(secret))
}

/// The transport credentials a git Secret holds, by Flux's keys.
pub(crate) fn transport_of(secret: &crate::load::SecretData) -> GitCredentials {
    let text = |k: &str| {
        secret.data.get(k).map(|v| {
            String::from_utf8_lossy(v)
                .trim_end_matches('\n')
                .to_string()
        })
    };
    GitCredentials {
        username: text("username"),
        password: text("password"),
        bearer_token: text("bearerToken").filter(|t| !t.is_empty()),
        identity: secret.data.get("identity").cloned(),
        known_hosts: secret.data.get("known_hosts").cloned(),
        signing: None,
    }
}

/// The forge client for `spec.git.push.pullRequest`, with its token from
/// the Secret `secretRef` names, else the provider's environment variable.
pub(super) fn forge_for(
    context: &Context<'_>,
    fields: &PullRequestFields,
) -> Result<Box<dyn Forge>, AutomationError> {
    use crate::api::ForgeProvider;
    let namespace = context.namespace();
    let variable = match fields.provider {
        ForgeProvider::Github => "GITHUB_TOKEN",
        ForgeProvider::Gitlab => "GITLAB_TOKEN",
        ForgeProvider::Gitea => "GITEA_TOKEN",
    };
    let token = match &fields.secret_ref {
        Some(reference) => context
            .objects
            .secret(namespace, &reference.name)
            .and_then(|s| s.data.get("token"))
            .map(|t| String::from_utf8_lossy(t).trim().to_string())
            .ok_or_else(|| AutomationError::Secret {
                field: "spec.git.push.pullRequest.secretRef".into(),
                message: format!(
                    "Secret {namespace}/{} with key token is not in the files",
                    reference.name
                ),
            })?,
        None => context
            .ports
            .forges
            .token_from_env(variable)
            .ok_or_else(|| AutomationError::Secret {
                field: "spec.git.push.pullRequest.secretRef".into(),
                message: format!(
                    "no forge token: set {variable} or spec.git.push.pullRequest.secretRef"
                ),
            })?,
    };
    let repo = ForgeRepo::from_git_url(&context.automation.spec.git.url)?;
    // `apiURL`, else the API root on the repository's own host: GitHub's
    // lives on api.github.com, an Enterprise server's under /api/v3.
    let api = |path: &str| {
        fields.api_url.clone().unwrap_or_else(|| match path {
            "/api/v3" if repo.host == "github.com" => "https://api.github.com".to_string(),
            _ => format!("https://{}{path}", repo.host),
        })
    };
    let api = match fields.provider {
        ForgeProvider::Gitlab => api("/api/v4"),
        ForgeProvider::Gitea => api("/api/v1"),
        ForgeProvider::Github => api("/api/v3"),
    };
    Ok(context
        .ports
        .forges
        .connect(fields.provider, &api, &repo, token)?)
}
