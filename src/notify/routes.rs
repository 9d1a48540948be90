//! The Routes of a set of objects: each Alert compiled, each Provider
//! resolved with its Secret. The files' and the controller's objects go
//! through the same function.

use std::time::Duration;

use super::alert::Rule;
use super::deliver::{Channel, Routes};
use super::payload::Target;
use crate::api::{Alert, Provider};

/// How long one delivery may take when the Provider does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// The window of a Provider that does not say.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5);

/// A Secret's keys, as the drivers read them.
pub type SecretLookup<'a> =
    &'a dyn Fn(&str, &str) -> Option<std::collections::BTreeMap<String, Vec<u8>>>;

/// A Provider's channel. A Secret that is missing, or a URL that does
/// not parse, makes a channel that reports why instead of delivering:
/// the Provider's status says so.
pub fn channel(provider: &Provider, secret: SecretLookup<'_>) -> Channel {
    let namespace = crate::model::namespace_of(&provider.metadata);
    let name = provider.metadata.name.clone().unwrap_or_default();
    let spec = &provider.spec;
    let duration = |d: &Option<crate::api::GoDuration>, default| {
        d.as_ref().and_then(|d| d.parse().ok()).unwrap_or(default)
    };
    let target = (|| {
        let mut address = spec.address.clone();
        let mut token = None;
        if let Some(reference) = &spec.secret_ref {
            let data = secret(namespace, &reference.name).ok_or_else(|| {
                format!(
                    "spec.secretRef: Secret {namespace}/{} not found",
                    reference.name
                )
            })?;
            let text = |key: &str| -> Result<Option<String>, String> {
                data.get(key)
                    .map(|v| {
                        String::from_utf8(v.clone())
                            .map(|t| t.trim().to_string())
                            .map_err(|_| {
                                format!(
                                    "spec.secretRef: Secret {namespace}/{}: {key} is not UTF-8",
                                    reference.name
                                )
                            })
                    })
                    .transpose()
            };
            if let Some(from_secret) = text("address")? {
                address = Some(from_secret);
            }
            token = text("token")?;
        }
        let address = address.ok_or_else(|| {
            "spec.address: no address, and the Secret has no address key".to_string()
        })?;
        // Never the URL itself in a message: a webhook URL is a secret.
        let address = url::Url::parse(&address)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| "the address is not an http or https URL".to_string())?;
        let needs_token = matches!(
            spec.type_,
            crate::api::ProviderType::GenericHmac
                | crate::api::ProviderType::GitHub
                | crate::api::ProviderType::GitLab
        );
        if needs_token && token.as_deref().is_none_or(str::is_empty) {
            return Err(format!(
                "spec.secretRef: {} needs the Secret's token key",
                spec.type_.name()
            ));
        }
        Ok(Target {
            key: format!("{namespace}/{name}"),
            type_: spec.type_,
            address,
            channel: spec.channel.clone(),
            username: spec.username.clone(),
            token,
        })
    })();
    Channel {
        target,
        window: duration(&spec.window, DEFAULT_WINDOW),
        timeout: duration(&spec.timeout, DEFAULT_TIMEOUT),
        suspend: spec.suspend,
    }
}

/// Every Alert and Provider. An Alert whose spec cannot work is left out
/// and named in the second list, with why.
pub fn routes(
    alerts: &[&Alert],
    providers: &[&Provider],
    secret: SecretLookup<'_>,
) -> (Routes, Vec<(String, String)>) {
    let mut routes = Routes::default();
    let mut refused = Vec::new();
    for provider in providers {
        let key = format!(
            "{}/{}",
            crate::model::namespace_of(&provider.metadata),
            provider.metadata.name.as_deref().unwrap_or_default()
        );
        routes.providers.insert(key, channel(provider, secret));
    }
    for alert in alerts {
        match Rule::compile(alert) {
            Ok(rule) => routes.rules.push(rule),
            Err(e) => refused.push((
                format!(
                    "Alert {}/{}",
                    crate::model::namespace_of(&alert.metadata),
                    alert.metadata.name.as_deref().unwrap_or_default()
                ),
                format!("{}: {}", e.field, e.message),
            )),
        }
    }
    (routes, refused)
}
