//! Leader election on a coordination.k8s.io Lease: one replica
//! reconciles, the others wait to take over.

use super::*;

/// Waits for the lease if asked to, then reconciles until stopped or the
/// lease is lost, and releases it.
pub(super) async fn lead(
    client: Client,
    options: Options,
    metrics: Arc<metrics::Metrics>,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ControllerError> {
    let lease = match &options.leader_election {
        None => None,
        Some(election) => {
            let manager =
                kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &election.name)
                    .with_namespace(&election.namespace)
                    .with_identity(&options.identity)
                    .with_duration(election.duration)
                    .with_grace(election.duration.div_ceil(3).max(1))
                    .build()
                    .await
                    .map_err(|e| ControllerError::Lease(e.to_string()))?;
            tracing::info!(lease = %election.name, identity = %options.identity, "waiting to become the leader");
            loop {
                tokio::select! {
                    changed = manager.changed() => match changed {
                        Ok(true) => break,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!("leader election: {e}");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    },
                    () = until_stopped(stopped.clone()) => return Ok(()),
                }
            }
            tracing::info!(identity = %options.identity, "leading");
            Some(Arc::new(manager))
        }
    };
    // The leader keeps renewing; losing the lease stops everything.
    let (lost_tx, mut lost) = tokio::sync::watch::channel(false);
    // Renewals that keep failing (the API server unreachable) lose the
    // lease as surely as a standby taking it: stop before it expires.
    let expiry = options.leader_election.as_ref().map_or(Duration::MAX, |e| {
        Duration::from_secs(
            e.duration
                .saturating_sub(e.duration.div_ceil(3).max(1))
                .max(1),
        )
    });
    let renew = lease.clone().map(|manager| {
        tokio::spawn(async move {
            let mut renewed = std::time::Instant::now();
            loop {
                match manager.changed().await {
                    Ok(true) => renewed = std::time::Instant::now(),
                    Ok(false) => {
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("renewing the lease: {e}");
                        if renewed.elapsed() >= expiry {
                            let _ = lost_tx.send(true);
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
    });

    let result = reconcile_all(client, options, metrics, stopped.clone(), &mut lost).await;

    if let Some(renew) = renew {
        renew.abort();
    }
    if let Some(manager) = lease {
        // Hand over at once rather than after the lease expires.
        match tokio::time::timeout(EXIT_STEP_GRACE, manager.release()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("releasing the lease: {e}"),
            Err(_) => tracing::warn!(
                "releasing the lease: no answer within {}s; a standby takes over when it expires",
                EXIT_STEP_GRACE.as_secs()
            ),
        }
    }
    result
}
