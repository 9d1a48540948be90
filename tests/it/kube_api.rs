//! The fake API server against the real kube client: what the controller
//! and the sync loop rely on, checked once here.

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use crate::support::kube::FakeKube;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn client(fake: &FakeKube) -> kube::Client {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(&fake.kubeconfig).unwrap_or_else(|e| panic!("{e}"));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    kube::Client::try_from(config).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn server_side_apply_owns_fields_and_conflicts_across_managers() {
    let fake = FakeKube::start();
    runtime().block_on(async {
        let client = client(&fake).await;
        let leases: Api<Lease> = Api::namespaced(client.clone(), "hoist-system");
        let lease = |holder: &str| {
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "hoist"}, "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15}})
        };
        let a = PatchParams::apply("pod-a");
        let created = leases
            .patch("hoist", &a, &Patch::Apply(lease("pod-a")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(created.metadata.generation, Some(1));
        // Another manager may not take a field it does not own...
        let b = PatchParams::apply("pod-b");
        let err = leases
            .patch("hoist", &b, &Patch::Apply(lease("pod-b")))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("Conflict") && err.contains("holderIdentity"), "{err}");
        // ...unless it forces.
        let forced = leases
            .patch("hoist", &b.clone().force(), &Patch::Apply(lease("pod-b")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            forced.spec.and_then(|s| s.holder_identity).as_deref(),
            Some("pod-b")
        );
        // A strategic merge patch with nulls clears fields.
        let cleared = leases
            .patch(
                "hoist",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"holderIdentity": null}})),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cleared.spec.and_then(|s| s.holder_identity), None);
        // A field the manager applied before and leaves out now is removed.
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let map = |data: serde_json::Value| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": data})
        };
        maps.patch("app", &a, &Patch::Apply(map(json!({"a": "1", "b": "2"}))))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let after = maps
            .patch("app", &a, &Patch::Apply(map(json!({"a": "1"}))))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            after.data.clone().map(|d| d.into_keys().collect::<Vec<_>>()),
            Some(vec!["a".to_string()])
        );
        // Create conflicts, replace needs the current resourceVersion.
        let mut fresh = ConfigMap::default();
        fresh.metadata.name = Some("app".into());
        let err = maps.create(&PostParams::default(), &fresh).await.err();
        assert!(err.is_some_and(|e| e.to_string().contains("AlreadyExists")));
        let mut stale = after.clone();
        stale.metadata.resource_version = Some("1".into());
        let err = maps.replace("app", &PostParams::default(), &stale).await.err();
        assert!(err.is_some_and(|e| e.to_string().contains("Conflict")));
        maps.delete("app", &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(maps.get_opt("app").await.ok().flatten().is_none());
    });
    // What tests read and do directly, without a client.
    let lease = fake.get("coordination.k8s.io/v1", "Lease", "hoist-system", "hoist");
    assert_eq!(
        lease.map(|l| l["spec"]["leaseDurationSeconds"].clone()),
        Some(json!(15))
    );
    fake.delete("coordination.k8s.io/v1", "Lease", "hoist-system", "hoist");
    assert!(fake.list("coordination.k8s.io/v1", "Lease").is_empty());
    assert!(
        fake.calls().iter().any(|c| c.starts_with(
            "PATCH /apis/coordination.k8s.io/v1/namespaces/hoist-system/leases/hoist?"
        )),
        "{:?}",
        fake.calls()
    );
}

#[test]
fn watches_see_changes_as_they_happen() {
    let fake = FakeKube::start();
    fake.apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "one", "namespace": "default", "labels": {"shard": "a"}}}));
    runtime().block_on(async {
        let client = client(&fake).await;
        let maps: Api<ConfigMap> = Api::all(client);
        let config = watcher::Config::default().labels("shard=a");
        let mut events = watcher::watcher(maps, config).boxed();
        let mut seen = Vec::new();
        let mut wrote = false;
        while let Some(event) = tokio::time::timeout(std::time::Duration::from_secs(10), events.next())
            .await
            .unwrap_or_else(|_| panic!("no event within 10s; seen {seen:?}"))
        {
            match event.unwrap_or_else(|e| panic!("{e}")) {
                watcher::Event::InitApply(m) | watcher::Event::Apply(m) => {
                    seen.push(m.metadata.name.unwrap_or_default());
                }
                watcher::Event::InitDone if !wrote => {
                    wrote = true;
                    // Another shard's object is not seen; ours is.
                    fake.apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "other", "namespace": "default", "labels": {"shard": "b"}}}));
                    fake.apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "two", "namespace": "x", "labels": {"shard": "a"}}}));
                }
                _ => {}
            }
            if seen.len() == 2 {
                break;
            }
        }
        assert_eq!(seen, ["one", "two"]);
    });
}
