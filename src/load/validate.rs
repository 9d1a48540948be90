//! Checks that need more than types: durations, regular expressions,
//! ranges, image names. Each error names the field under the document root.

use regex::Regex;

use super::{Document, LoadError, LoadWarning};
use crate::api::{
    API_VERSION, GitCheckoutRef, GoDuration, ImagePolicySpec, ImageRepositorySpec,
    ImageUpdateAutomationSpec, PushSpec, ReceiverSpec, ReceiverType, ReflectionPolicy,
};
use crate::git::Reference;
use crate::policy::{CompiledPolicy, regex_reason};

fn duration(doc: &Document<'_>, field: &str, value: Option<&GoDuration>) -> Result<(), LoadError> {
    match value.map(GoDuration::parse) {
        Some(Err(e)) => Err(doc.invalid(field, e.to_string())),
        _ => Ok(()),
    }
}

fn required(doc: &Document<'_>, field: &str, value: &str, what: &str) -> Result<(), LoadError> {
    if value.trim().is_empty() {
        Err(doc.invalid(field, format!("must not be empty; {what}")))
    } else {
        Ok(())
    }
}

pub(super) fn repository(
    doc: &Document<'_>,
    spec: &ImageRepositorySpec,
    warnings: &mut Vec<LoadWarning>,
) -> Result<(), LoadError> {
    required(
        doc,
        "spec.image",
        &spec.image,
        "give the image name, e.g. ghcr.io/acme/app",
    )?;
    match &spec.chart {
        None if !spec.image.starts_with("oci://") => image_name(doc, &spec.image)?,
        chart => {
            if let Some(why) = chart
                .as_deref()
                .and_then(crate::registry::chart_name_problem)
            {
                return Err(doc.invalid(
                    "spec.chart",
                    format!("{:?}: {why}", chart.as_deref().unwrap_or_default()),
                ));
            }
            crate::registry::Origin::of(&spec.image, chart.as_deref())
                .map_err(|e| doc.invalid("spec.image", e.to_string()))?;
            if let Some(message) = crate::pipeline::plain_http_chart(spec) {
                return Err(doc.invalid("spec.insecure", message));
            }
        }
    }
    provider(doc, spec)?;
    if let Some(name) = &spec.service_account_name {
        crate::api::check_object_name(name).map_err(|why| {
            doc.invalid(
                "spec.serviceAccountName",
                format!("{name:?} is not a ServiceAccount name: {why}"),
            )
        })?;
    }
    duration(doc, "spec.interval", spec.interval.as_ref())?;
    duration(doc, "spec.timeout", spec.timeout.as_ref())?;
    for (i, pattern) in spec.exclusion_list.iter().flatten().enumerate() {
        if let Err(e) = Regex::new(pattern) {
            return Err(doc.invalid(
                &format!("spec.exclusionList[{i}]"),
                format!(
                    "{pattern:?} is not a valid regular expression: {}",
                    regex_reason(&e)
                ),
            ));
        }
    }
    for field in spec.unsupported_flux_fields() {
        warnings.push(doc.warning(
            &format!("spec.{field}"),
            "accepted for Flux compatibility but not acted on yet",
        ));
    }
    Ok(())
}

/// `spec.provider` names a cloud whose registry the image is on: a
/// provider that cannot log in is an error now, not an anonymous scan
/// later.
fn provider(doc: &Document<'_>, spec: &ImageRepositorySpec) -> Result<(), LoadError> {
    use crate::registry::identity::Provider;
    let Some(provider) =
        Provider::of(spec.provider.as_deref()).map_err(|e| doc.invalid("spec.provider", e))?
    else {
        return Ok(());
    };
    let origin = crate::registry::Origin::of(&spec.image, spec.chart.as_deref())
        .map_err(|e| doc.invalid("spec.image", e.to_string()))?;
    if origin.chart_index().is_some() {
        return Err(doc.invalid(
            "spec.provider",
            format!(
                "{provider} logs in to OCI registries; a classic chart repository takes a secretRef"
            ),
        ));
    }
    match provider.registry_problem(&origin.name().registry) {
        Some(problem) => Err(doc.invalid("spec.provider", problem)),
        None => Ok(()),
    }
}

/// An ImageRepository names an image, not one of its tags: the policy picks
/// the tag.
fn image_name(doc: &Document<'_>, image: &str) -> Result<(), LoadError> {
    let last = image.rsplit('/').next().unwrap_or(image);
    if let Some((_, digest)) = image.split_once('@') {
        return Err(doc.invalid(
            "spec.image",
            format!("{image:?} carries a digest ({digest}); give the image name only and let an ImagePolicy pick the tag"),
        ));
    }
    if let Some((name, tag)) = last.split_once(':') {
        let without = &image[..image.len() - tag.len() - 1];
        return Err(doc.invalid(
            "spec.image",
            format!("{image:?} carries a tag ({tag}); give the image name only, e.g. {without:?}, and let an ImagePolicy pick the tag (repository {name:?})"),
        ));
    }
    if image.contains("://") {
        return Err(doc.invalid(
            "spec.image",
            format!("{image:?} is a URL; give the image name, e.g. ghcr.io/acme/app (use spec.insecure for plain HTTP)"),
        ));
    }
    if image != image.trim() || image.chars().any(char::is_whitespace) {
        return Err(doc.invalid("spec.image", format!("{image:?} contains whitespace")));
    }
    Ok(())
}

pub(super) fn policy(doc: &Document<'_>, spec: &ImagePolicySpec) -> Result<(), LoadError> {
    required(
        doc,
        "spec.imageRepositoryRef.name",
        &spec.image_repository_ref.name,
        "name the ImageRepository this policy chooses tags from",
    )?;
    if let Err(e) = CompiledPolicy::compile(spec) {
        return Err(doc.invalid(&format!("spec.{}", e.field()), e.to_string()));
    }
    duration(doc, "spec.interval", spec.interval.as_ref())?;
    duration(doc, "spec.minimumAge", spec.minimum_age.as_ref())?;
    for (i, platform) in spec.platforms.iter().enumerate() {
        if let Err(why) = crate::gate::Platform::parse(platform) {
            return Err(doc.invalid(&format!("spec.platforms[{i}]"), why));
        }
    }
    if let Some(verify) = &spec.verify
        && verify.provider != "cosign"
    {
        return Err(doc.invalid(
            "spec.verify.provider",
            format!(
                "{:?} is not supported; hoist verifies cosign signatures (provider: cosign)",
                verify.provider
            ),
        ));
    }
    if let Some(promotion) = &spec.promotion {
        let upstream = promotion.from.split_once('/');
        if upstream.is_none_or(|(ns, name)| {
            crate::api::check_object_name(ns).is_err()
                || crate::api::check_object_name(name).is_err()
        }) {
            return Err(doc.invalid(
                "spec.promotion.from",
                format!(
                    "{:?} is not namespace/name of an ImageUpdateAutomation (the upstream whose evidence this policy promotes)",
                    promotion.from
                ),
            ));
        }
        duration(doc, "spec.promotion.soak", promotion.soak.as_ref())?;
        required(
            doc,
            "spec.promotion.evidence.url",
            &promotion.evidence.url,
            "give the clone URL of the repository the upstream automation records its evidence in",
        )?;
        branch(
            doc,
            "spec.promotion.evidence.branch",
            &promotion.evidence.branch,
        )?;
        let path = promotion.evidence_path();
        inside_repository(doc, "spec.promotion.evidence.path", &path)?;
        if let Some(problem) = crate::promotion::evidence_path_problem(&path) {
            return Err(doc.invalid("spec.promotion.evidence.path", problem));
        }
    }
    if spec.digest_reflection_policy == Some(ReflectionPolicy::Always) && spec.interval.is_none() {
        return Err(doc.invalid(
            "spec.interval",
            "required when digestReflectionPolicy is Always: it says how often to look the digest up again",
        ));
    }
    Ok(())
}

pub(super) fn automation(
    doc: &Document<'_>,
    spec: &ImageUpdateAutomationSpec,
) -> Result<(), LoadError> {
    duration(doc, "spec.interval", Some(&spec.interval))?;
    required(
        doc,
        "spec.git.url",
        &spec.git.url,
        "give the repository's clone URL",
    )?;
    if let Some((field, problem)) =
        checkout_problem(&spec.git.checkout.reference, spec.git.push.as_ref())
    {
        return Err(doc.invalid(&field, problem));
    }
    for (i, window) in spec.schedule.iter().enumerate() {
        if let Err(e) = crate::schedule::Window::parse(window) {
            return Err(doc.invalid(&format!("spec.schedule[{i}].{}", e.field), e.message));
        }
    }
    if let Some(selector) = &spec.policy_selector
        && let Some((i, problem)) = selector.problems().first()
    {
        return Err(doc.invalid(
            &format!("spec.policySelector.matchExpressions[{i}]"),
            *problem,
        ));
    }
    if let Some(template) = spec
        .git
        .commit
        .message_template
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        && let Err(e) = crate::message::check_template(
            "spec.git.commit.messageTemplate",
            template,
            crate::message::COMMIT_MESSAGE_LIMIT,
        )
    {
        return Err(doc.invalid(
            &e.field,
            format!(
                "{}; see the README for the values a template sees",
                e.message
            ),
        ));
    }
    inside_repository(doc, "spec.update.path", &spec.update.path)?;
    let checkout = &spec.git.checkout.reference.branch;
    if let Some(sync) = spec.sync.as_ref().filter(|_| checkout.is_empty()) {
        return Err(doc.invalid(
            "spec.sync",
            format!(
                "sync applies the checkout branch, and {} is not one; check out a branch, or sync with {:?} another way",
                spec.git.checkout.reference.reference(),
                sync.path
            ),
        ));
    }
    if let Some(push) = &spec.git.push {
        if let Some(name) = &push.branch {
            branch(doc, "spec.git.push.branch", name)?;
        }
        if let Some(pull) = &push.pull_request {
            if checkout.is_empty() {
                return Err(doc.invalid(
                    "spec.git.push.pullRequest",
                    format!(
                        "a pull request is opened against the checkout branch, and {} is not one; check out a branch",
                        spec.git.checkout.reference.reference()
                    ),
                ));
            }
            if push.branch.as_ref().is_none_or(|b| b == checkout) {
                return Err(doc.invalid(
                    "spec.git.push.branch",
                    format!("a pull request needs a branch of its own: name one other than the checkout branch {checkout:?}"),
                ));
            }
            for (field, template, limit) in [
                (
                    "spec.git.push.pullRequest.title",
                    &pull.title,
                    crate::message::TITLE_LIMIT,
                ),
                (
                    "spec.git.push.pullRequest.body",
                    &pull.body,
                    crate::message::COMMIT_MESSAGE_LIMIT,
                ),
            ] {
                if let Some(template) = template.as_deref().filter(|t| !t.trim().is_empty())
                    && let Err(e) = crate::message::check_template(field, template, limit)
                {
                    return Err(doc.invalid(
                        &e.field,
                        format!(
                            "{}; see the README for the values a template sees",
                            e.message
                        ),
                    ));
                }
            }
            // The forge is asked about the repository the URL names: one
            // it cannot name is known now, not after the branch is pushed.
            let named = match (
                crate::forge::ForgeRepo::from_git_url(&spec.git.url),
                pull.provider,
            ) {
                (Err(e), _) => Err(e),
                (Ok(_), crate::api::ForgeProvider::Gitlab) => Ok(()),
                (Ok(r), _) => r.owner_name().map(|_| ()),
            };
            if let Err(why) = named {
                return Err(doc.invalid(
                    "spec.git.url",
                    format!("{why}; a pull request needs the forge's owner/name (group/project on GitLab) in the URL, e.g. https://github.com/acme/fleet.git"),
                ));
            }
        }
    }
    if let Some(sync) = &spec.sync {
        inside_repository(doc, "spec.sync.path", &sync.path)?;
        duration(doc, "spec.sync.timeout", sync.timeout.as_ref())?;
        if sync.rollback.is_some() && !sync.wait {
            return Err(doc.invalid(
                "spec.sync.rollback",
                "a rollback follows the rollout's verdict, which only a sync that waits has: set spec.sync.wait: true",
            ));
        }
        if let Some(path) = sync.evidence.as_ref().and_then(|e| e.path.as_deref()) {
            let field = "spec.sync.evidence.path";
            inside_repository(doc, field, path)?;
            if let Some(problem) = crate::promotion::evidence_path_problem(path) {
                return Err(doc.invalid(field, problem));
            }
        }
    }
    if let Some(name) = &spec.service_account_name {
        crate::api::check_object_name(name).map_err(|why| {
            doc.invalid(
                "spec.serviceAccountName",
                format!("{name:?} is not a ServiceAccount name: {why}"),
            )
        })?;
    }
    Ok(())
}

/// A path in the repository: relative, and no `..` that could lead out.
fn inside_repository(doc: &Document<'_>, field: &str, value: &str) -> Result<(), LoadError> {
    use std::path::Component;
    let leaves = std::path::Path::new(value)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if leaves {
        return Err(doc.invalid(
            field,
            format!("{value:?} must stay inside the repository: a relative path without `..`, e.g. ./clusters/prod"),
        ));
    }
    Ok(())
}

/// What is wrong with `spec.git.checkout.ref`, as (field, message): it
/// names one reference git can fetch, and when that is not a branch,
/// `push` names a branch to push to.
pub(super) fn checkout_problem(
    reference: &GitCheckoutRef,
    push: Option<&PushSpec>,
) -> Option<(String, String)> {
    let field = |name: &str| format!("spec.git.checkout.ref.{name}");
    let not_a_branch = |name: &str| {
        branch_problem(name).map(|p| format!("{name:?} is not a branch name git accepts: {p}"))
    };
    let given: Vec<&str> = [
        ("tag", &reference.tag),
        ("semver", &reference.semver),
        ("name", &reference.name),
        ("commit", &reference.commit),
    ]
    .into_iter()
    .filter(|(_, value)| value.as_deref().is_some_and(|v| !v.is_empty()))
    .map(|(name, _)| name)
    .collect();
    if given.len() > 1 {
        return Some((
            field(given[1]),
            format!(
                "give one of tag, semver, name and commit, not {}",
                given.join(" and ")
            ),
        ));
    }
    let Some(&name) = given.first() else {
        if reference.branch.trim().is_empty() {
            return Some((
                field("branch"),
                "missing; name the branch to check out (or a tag, semver range, ref name or commit)"
                    .to_string(),
            ));
        }
        return not_a_branch(&reference.branch).map(|p| (field("branch"), p));
    };
    if !reference.branch.is_empty() {
        if name != "commit" {
            return Some((
                field(name),
                "give a branch or a tag, semver range or ref name, not both (a branch goes with a commit only)".to_string(),
            ));
        }
        if let Some(p) = not_a_branch(&reference.branch) {
            return Some((field("branch"), p));
        }
    }
    let problem = match reference.reference() {
        Reference::Tag(tag) => {
            branch_problem(&tag).map(|p| format!("{tag:?} is not a tag name git accepts: {p}"))
        }
        Reference::Semver(range) => crate::policy::Range::parse(&range)
            .err()
            .map(|e| format!("{range:?} is not a semver range: {e}")),
        Reference::Name(ref_name) => match ref_name.strip_prefix("refs/") {
            Some(rest) if branch_problem(rest).is_none() => None,
            _ => Some(format!(
                "{ref_name:?} is not a full ref name, e.g. refs/heads/main or refs/pull/7/head"
            )),
        },
        Reference::Commit(id) => (![40, 64].contains(&id.len())
            || !id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("{id:?} is not a full commit id (40 or 64 hexadecimal digits)")),
        Reference::Branch(_) => None,
    };
    if let Some(problem) = problem {
        return Some((field(name), problem));
    }
    // Not on a branch: hoist's commit needs a branch to go to, as in Flux.
    if push
        .and_then(|p| p.branch.as_deref())
        .is_none_or(|b| b.trim().is_empty())
    {
        return Some((
            "spec.git.push.branch".to_string(),
            format!(
                "missing; a checkout of {} needs a branch to push to",
                reference.reference()
            ),
        ));
    }
    None
}

/// A branch name git accepts (`git check-ref-format --branch`).
fn branch(doc: &Document<'_>, field: &str, name: &str) -> Result<(), LoadError> {
    match branch_problem(name) {
        Some(problem) => Err(doc.invalid(
            field,
            format!("{name:?} is not a branch name git accepts: {problem}"),
        )),
        None => Ok(()),
    }
}

/// What git's ref-name rules find wrong with a branch name, if anything.
fn branch_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name == "@" || name == "HEAD" {
        return Some("it is reserved");
    }
    if name.starts_with('-') {
        return Some("it starts with `-`");
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_ascii_control() || " ~^:?*[\\".contains(*c))
    {
        return Some(if c.is_ascii_control() {
            "it contains a control character"
        } else if c == ' ' {
            "it contains a space"
        } else {
            "it contains one of ~ ^ : ? * [ \\"
        });
    }
    if name.contains("..") {
        return Some("it contains `..`");
    }
    if name.contains("@{") {
        return Some("it contains `@{`");
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Some("it has an empty `/`-separated part");
    }
    if name.ends_with('.') {
        return Some("it ends with `.`");
    }
    if name
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return Some("a `/`-separated part starts with `.` or ends with `.lock`");
    }
    None
}

pub(super) fn receiver(
    doc: &Document<'_>,
    spec: &ReceiverSpec,
    namespace: &str,
) -> Result<(), LoadError> {
    required(
        doc,
        "spec.secretRef.name",
        &spec.secret_ref.name,
        "name a Secret with key `token`",
    )?;
    for (i, resource) in spec.resources.iter().enumerate() {
        let field = |f: &str| format!("spec.resources[{i}].{f}");
        if !matches!(
            resource.kind.as_str(),
            "ImageRepository" | "ImageUpdateAutomation"
        ) {
            return Err(doc.invalid(
                &field("kind"),
                format!(
                    "{:?}: a Receiver triggers ImageRepository or ImageUpdateAutomation objects",
                    resource.kind
                ),
            ));
        }
        required(doc, &field("name"), &resource.name, "name the object")?;
        // Whoever may write a Receiver in one namespace must not be able to
        // set other teams' objects running.
        if let Some(other) = resource.namespace.as_deref()
            && other != namespace
        {
            return Err(doc.invalid(
                &field("namespace"),
                format!(
                    "{other:?}: a Receiver triggers objects in its own namespace ({namespace}) only"
                ),
            ));
        }
        if let Some(version) = resource.api_version.as_deref()
            && version != API_VERSION
        {
            return Err(doc.invalid(
                &field("apiVersion"),
                format!("{version:?}: use {API_VERSION}, or leave it out"),
            ));
        }
    }
    if matches!(
        spec.type_,
        ReceiverType::GenericHmac | ReceiverType::Generic
    ) && spec.resources.is_empty()
    {
        return Err(doc.invalid(
            "spec.resources",
            "a generic payload names no image or repository; list the objects it triggers",
        ));
    }
    Ok(())
}

/// A Provider that can deliver: an address (or a Secret that holds one)
/// that is an http(s) URL, durations that parse, and the Secret the
/// token-signing and commit-status types need.
pub(super) fn notification_provider(
    doc: &Document<'_>,
    spec: &crate::api::ProviderSpec,
) -> Result<(), LoadError> {
    use crate::api::ProviderType;
    duration(doc, "spec.timeout", spec.timeout.as_ref())?;
    duration(doc, "spec.window", spec.window.as_ref())?;
    match &spec.address {
        Some(address) => {
            let url = url::Url::parse(address)
                .map_err(|e| doc.invalid("spec.address", format!("not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(doc.invalid("spec.address", "must be an http or https URL"));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(doc.invalid(
                    "spec.address",
                    "holds credentials; put the URL in the Secret's address key instead",
                ));
            }
        }
        None if spec.secret_ref.is_none() => {
            return Err(doc.invalid(
                "spec.address",
                "missing: give the URL here, or in the address key of the Secret spec.secretRef names",
            ));
        }
        None => {}
    }
    let needs_token = matches!(
        spec.type_,
        ProviderType::GenericHmac | ProviderType::GitHub | ProviderType::GitLab
    );
    if needs_token && spec.secret_ref.is_none() {
        return Err(doc.invalid(
            "spec.secretRef",
            format!("{} needs a Secret with a token key", spec.type_.name()),
        ));
    }
    if let Some(reference) = &spec.secret_ref {
        crate::api::check_object_name(&reference.name).map_err(|why| {
            doc.invalid(
                "spec.secretRef.name",
                format!("{:?}: {why}", reference.name),
            )
        })?;
    }
    Ok(())
}

/// An Alert whose sources, severity, reasons and regular expressions can
/// work.
pub(super) fn alert(doc: &Document<'_>, alert: &crate::api::Alert) -> Result<(), LoadError> {
    crate::notify::Rule::compile(alert)
        .map(|_| ())
        .map_err(|e| doc.invalid(&e.field, e.message))
}
