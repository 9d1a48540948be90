use super::*;

/// A digest of 64 `c`s.
fn d(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn at(text: &str) -> jiff::Timestamp {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn deployed(tag: &str, digest: &str) -> Deployed {
    Deployed {
        policy: "staging/app".into(),
        image: "registry.example/app".into(),
        tag: tag.into(),
        digest: digest.into(),
    }
}

fn policy_image(tag: &str, digest: Option<&str>) -> PolicyImage {
    PolicyImage {
        policy: "staging/app".into(),
        image: "registry.example/app".into(),
        tag: tag.into(),
        digest: digest.map(str::to_string),
    }
}

#[test]
fn a_healthy_image_opens_a_rollout_and_its_successor_closes_it() {
    let mut evidence = Evidence::new("staging/app");
    let t0 = at("2026-12-07T10:00:00Z");
    assert!(evidence.record_healthy(&[deployed("1.2.0", &d('a'))], "c1", t0));
    // The same image, healthy again: nothing to record.
    assert!(!evidence.record_healthy(
        &[deployed("1.2.0", &d('a'))],
        "c2",
        at("2026-12-07T11:00:00Z")
    ));
    let t2 = at("2026-12-07T12:00:00Z");
    assert!(evidence.record_healthy(&[deployed("1.3.0", &d('b'))], "c3", t2));
    assert_eq!(evidence.healthy.len(), 2);
    assert_eq!(
        evidence.healthy[0].until.as_deref(),
        Some("2026-12-07T12:00:00Z")
    );
    assert_eq!(evidence.healthy[0].revision, "c1");
    assert_eq!(
        evidence.current("staging/app").map(|r| r.tag.as_str()),
        Some("1.3.0")
    );
    // What it writes reads back the same.
    let text = evidence.render().unwrap_or_else(|e| panic!("{e}"));
    assert!(text.starts_with("# Written by hoist"), "{text}");
    assert_eq!(Evidence::parse("e.yaml", &text), Ok(evidence));
}

#[test]
fn soak_is_one_unbroken_healthy_run_of_the_same_digest() {
    let mut evidence = Evidence::new("staging/app");
    evidence.record_healthy(
        &[deployed("1.2.0", &d('a'))],
        "c1",
        at("2026-12-07T10:00:00Z"),
    );
    let soak = 2 * 3600;
    // Running for one hour: soaked at 12:00.
    let until = at("2026-12-07T12:00:00Z").as_second();
    assert_eq!(
        evidence.soaked("1.2.0", &d('a'), soak, at("2026-12-07T11:00:00Z")),
        Soak::Until(until)
    );
    assert_eq!(
        evidence.soaked("1.2.0", &d('a'), soak, at("2026-12-07T12:00:00Z")),
        Soak::Soaked
    );
    // A tag moved to another image proves nothing about it.
    assert_eq!(
        evidence.soaked("1.2.0", &d('e'), soak, at("2026-12-07T13:00:00Z")),
        Soak::OtherDigest
    );
    assert_eq!(
        evidence.soaked("1.9.0", &d('a'), 0, at("2026-12-07T13:00:00Z")),
        Soak::Never
    );
    // Replaced after thirty minutes: it never soaked, whatever the clock says.
    evidence.record_healthy(
        &[deployed("1.3.0", &d('b'))],
        "c2",
        at("2026-12-07T10:30:00Z"),
    );
    assert_eq!(
        evidence.soaked("1.2.0", &d('a'), soak, at("2026-12-08T00:00:00Z")),
        Soak::OtherDigest
    );
    // Soak 0: healthy once is enough.
    assert_eq!(
        evidence.soaked("1.3.0", &d('b'), 0, at("2026-12-07T10:30:00Z")),
        Soak::Soaked
    );
}

#[test]
fn evidence_is_bounded_and_its_times_are_checked() {
    let mut evidence = Evidence::new("staging/app");
    let start = at("2026-12-07T00:00:00Z");
    for i in 0..(KEPT + 20) {
        let when = start
            .checked_add(jiff::SignedDuration::from_secs(
                60 * i64::try_from(i).unwrap_or(0),
            ))
            .unwrap_or(start);
        evidence.record_healthy(
            &[deployed(&format!("1.{i}.0"), &format!("sha256:{i:064}"))],
            "c",
            when,
        );
        evidence.record_rejected(Rejected {
            policy: "staging/app".into(),
            image: "registry.example/app".into(),
            tag: format!("9.{i}.0"),
            digest: None,
            revision: "c".into(),
            at: when.to_string(),
            reason: "failed".into(),
        });
    }
    // The newest closed rollouts, the open one, the newest rejections.
    assert_eq!(evidence.healthy.len(), KEPT + 1);
    assert_eq!(evidence.rejected.len(), KEPT);
    assert!(evidence.current("staging/app").is_some());
    assert_eq!(evidence.rejected[0].tag, "9.20.0");

    let entry = |tag: &str, digest: &str, since: &str| {
        format!(
            "automation: a/b\nhealthy:\n- {{policy: a/b, image: i, tag: '{tag}', digest: '{digest}', revision: r, since: '{since}'}}\n"
        )
    };
    let now = "2026-12-07T10:00:00Z";
    // A rollback writes tags and digests from here into manifests.
    for (text, wrong) in [
        (entry("t", &d('a'), "yesterday"), "\"yesterday\""),
        (entry("1.2.0\n  x: y", &d('a'), now), "is not an image tag"),
        (entry("1.2.0", "sha256:zz", now), "is not an image digest"),
    ] {
        let error = Evidence::parse(".hoist/e.yaml", &text)
            .err()
            .map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.starts_with(".hoist/e.yaml: ") && e.contains(wrong)),
            "{error:?}"
        );
    }
    let unknown = "automation: a/b\nhealty: []\n";
    assert!(Evidence::parse("e.yaml", unknown).is_err());
    let huge = "#".repeat(MAX_EVIDENCE_BYTES + 1);
    assert!(Evidence::parse("e.yaml", &huge).is_err());
}

#[test]
fn images_are_read_from_every_pod_template_and_split_into_name_tag_digest() {
    let object = |value: serde_json::Value| Desired {
        id: crate::model::ObjectId {
            group: String::new(),
            kind: "X".into(),
            namespace: None,
            name: "x".into(),
        },
        api_version: "v1".into(),
        object: value,
        file: "x.yaml".into(),
    };
    let objects = [
        object(serde_json::json!({"spec": {"template": {"spec": {
            "containers": [{"image": "reg:5000/team/app:1.2.0@sha256:a"}],
            "initContainers": [{"image": "busybox"}]}}}})),
        object(
            serde_json::json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"image": "reg:5000/team/job:2"}]}}}}}}),
        ),
        object(serde_json::json!({"data": {"image": "not a pod"}})),
    ];
    let images = images_of(&objects);
    assert_eq!(
        images,
        [
            "busybox",
            "reg:5000/team/app:1.2.0@sha256:a",
            "reg:5000/team/job:2"
        ]
    );
    assert_eq!(
        split_image("reg:5000/team/app:1.2.0@sha256:a"),
        ("reg:5000/team/app", Some("1.2.0"), Some("sha256:a"))
    );
    assert_eq!(
        split_image("reg:5000/team/app"),
        ("reg:5000/team/app", None, None)
    );
    assert_eq!(split_image("busybox:1"), ("busybox", Some("1"), None));
}

#[test]
fn what_a_sync_deployed_and_what_a_failure_blames() {
    let images = vec![
        "registry.example/app:1.3.0".to_string(),
        format!("registry.example/other:2.0.0@{}", d('f')),
    ];
    let other = PolicyImage {
        policy: "staging/other".into(),
        image: "registry.example/other".into(),
        tag: "2.0.0".into(),
        digest: None,
    };
    let refs = vec![policy_image("1.3.0", Some(&d('b'))), other.clone()];
    let (found, undigested) = super::deployed(&refs, &images);
    assert_eq!(found[0], deployed("1.3.0", &d('b')));
    // The digest beside the tag in the manifest counts.
    assert_eq!(found[1].digest, d('f'));
    assert!(undigested.is_empty());
    // Not in the applied objects: not deployed.
    let (none, _) = super::deployed(&[policy_image("1.4.0", Some(&d('c')))], &images);
    assert!(none.is_empty());
    // No digest anywhere: cannot be evidence.
    let (_, undigested) = super::deployed(&[policy_image("1.3.0", None)], &images);
    assert_eq!(undigested, ["staging/app"]);

    let mut evidence = Evidence::new("staging/app");
    evidence.record_healthy(
        &[deployed("1.2.0", &d('a'))],
        "c1",
        at("2026-12-07T10:00:00Z"),
    );
    evidence.record_healthy(
        &[Deployed {
            policy: "staging/other".into(),
            image: "registry.example/other".into(),
            tag: "2.0.0".into(),
            digest: d('f'),
        }],
        "c1",
        at("2026-12-07T10:00:00Z"),
    );
    // 1.3.0 is new since the last healthy rollout; `other` ran healthy as is.
    let blamed = suspects(&evidence, &refs, &images);
    assert_eq!(blamed.len(), 1);
    assert_eq!(blamed[0].0.tag, "1.3.0");
    assert_eq!(blamed[0].1.tag, "1.2.0");
    // Only the images of the objects that failed are blamed.
    assert!(suspects(&evidence, &refs, &["registry.example/other:2.0.0".into()]).is_empty());
    // A policy that never ran healthy here has nothing to go back to.
    let never = PolicyImage {
        policy: "staging/new".into(),
        image: "registry.example/new".into(),
        tag: "1.0.0".into(),
        digest: None,
    };
    assert!(suspects(&evidence, &[never], &["registry.example/new:1.0.0".into()]).is_empty());
    assert_eq!(plain("a `b`\nc", 6), "a 'b' ");
    // Nothing of hoist's changed: nothing to blame.
    let healthy_refs = vec![policy_image("1.2.0", Some(&d('a')))];
    let images = vec!["registry.example/app:1.2.0".to_string()];
    assert!(suspects(&evidence, &healthy_refs, &images).is_empty());
}

#[test]
fn the_evidence_is_linked_on_the_forge_that_shows_it() {
    let promoted = Promoted {
        from: "staging/fleet".into(),
        url: "https://bot:s3cret@git.example.com/acme/fleet.git".into(),
        branch: "main".into(),
        path: ".hoist/evidence/staging/fleet.yaml".into(),
        since: "2026-12-07T10:00:00Z".into(),
        revision: "c".repeat(40),
    };
    use crate::api::ForgeProvider;
    assert_eq!(
        promoted.link(Some(ForgeProvider::Github)),
        "[.hoist/evidence/staging/fleet.yaml](https://git.example.com/acme/fleet/blob/main/.hoist/evidence/staging/fleet.yaml)"
    );
    assert!(
        promoted
            .link(Some(ForgeProvider::Gitlab))
            .contains("https://git.example.com/acme/fleet/-/blob/main/")
    );
    // Not a web URL: said in words, credentials never.
    let ssh = Promoted {
        url: "ssh://git@git.example.com/acme/fleet.git".into(),
        ..promoted.clone()
    };
    assert_eq!(
        ssh.link(Some(ForgeProvider::Gitea)),
        ".hoist/evidence/staging/fleet.yaml on branch main of ssh://git.example.com/acme/fleet.git"
    );
    assert!(!promoted.link(None).contains("s3cret"));
}
