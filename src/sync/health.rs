//! Whether an applied object is healthy, from its live state alone (pure):
//! workloads by their rollout counters, Jobs by their conditions, anything
//! else by a `Ready` condition when it has one.

use serde_json::Value;

/// The health of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Still rolling out, with why.
    Progressing(String),
    /// Will not get better by waiting.
    Failed(String),
}

fn int(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

/// Whether the controller has seen the latest spec.
fn observed(object: &Value) -> bool {
    let generation = int(&object["metadata"]["generation"]);
    generation == 0 || int(&object["status"]["observedGeneration"]) >= generation
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// The health of `object`, a live object of `kind` in `group`.
pub fn health(group: &str, kind: &str, object: &Value) -> Health {
    let status = &object["status"];
    let wanted = |path: &str| object["spec"][path].as_i64().unwrap_or(1);
    match (group, kind) {
        // A paused rollout is what someone asked for.
        ("apps", "Deployment") if object["spec"]["paused"] == true => Health::Healthy,
        ("apps", "Deployment") => {
            if !observed(object) {
                return Health::Progressing("the new spec is not observed yet".into());
            }
            if let Some(c) = condition(object, "Progressing")
                && c["reason"] == "ProgressDeadlineExceeded"
            {
                return Health::Failed(
                    c["message"]
                        .as_str()
                        .unwrap_or("progress deadline exceeded")
                        .into(),
                );
            }
            let replicas = wanted("replicas");
            let (updated, available, total) = (
                int(&status["updatedReplicas"]),
                int(&status["availableReplicas"]),
                int(&status["replicas"]),
            );
            if updated < replicas || available < replicas || total > updated {
                return Health::Progressing(format!(
                    "{updated} of {replicas} updated, {available} available"
                ));
            }
            Health::Healthy
        }
        ("apps", "StatefulSet") => {
            if !observed(object) {
                return Health::Progressing("the new spec is not observed yet".into());
            }
            let replicas = wanted("replicas");
            let ready = int(&status["readyReplicas"]);
            let updated = int(&status["updatedReplicas"]);
            let rolled = status["currentRevision"] == status["updateRevision"];
            if ready < replicas || updated < replicas || !rolled {
                return Health::Progressing(format!(
                    "{ready} of {replicas} ready, {updated} updated"
                ));
            }
            Health::Healthy
        }
        ("apps", "DaemonSet") => {
            if !observed(object) {
                return Health::Progressing("the new spec is not observed yet".into());
            }
            let desired = int(&status["desiredNumberScheduled"]);
            let updated = int(&status["updatedNumberScheduled"]);
            let available = int(&status["numberAvailable"]);
            if updated < desired || available < desired {
                return Health::Progressing(format!(
                    "{updated} of {desired} updated, {available} available"
                ));
            }
            Health::Healthy
        }
        ("batch", "Job") => {
            if condition(object, "Failed").is_some_and(|c| c["status"] == "True") {
                return Health::Failed(
                    condition(object, "Failed")
                        .and_then(|c| c["message"].as_str())
                        .unwrap_or("the job failed")
                        .into(),
                );
            }
            if condition(object, "Complete").is_some_and(|c| c["status"] == "True") {
                Health::Healthy
            } else {
                Health::Progressing("not complete".into())
            }
        }
        _ => match condition(object, "Ready") {
            // A Ready condition from before the latest spec says nothing yet.
            Some(c)
                if c["observedGeneration"]
                    .as_i64()
                    .is_some_and(|g| g < int(&object["metadata"]["generation"])) =>
            {
                Health::Progressing("the new spec is not observed yet".into())
            }
            Some(c) if c["status"] == "True" => Health::Healthy,
            Some(c) => Health::Progressing(c["message"].as_str().unwrap_or("not ready").into()),
            None => Health::Healthy,
        },
    }
}

/// The label selector of a workload's Pods (`spec.selector.matchLabels`
/// as `k=v,...`), when it has one of labels alone.
pub fn pod_selector(group: &str, kind: &str, object: &Value) -> Option<String> {
    if group != "apps" || !matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet") {
        return None;
    }
    let selector = &object["spec"]["selector"];
    if selector
        .get("matchExpressions")
        .is_some_and(|e| e.as_array().is_some_and(|a| !a.is_empty()))
    {
        return None;
    }
    let labels = selector["matchLabels"].as_object()?;
    let pairs: Vec<String> = labels
        .iter()
        .filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?)))
        .collect();
    (!pairs.is_empty()).then(|| pairs.join(","))
}

/// What keeps a workload's Pods from running, from their container
/// statuses, as a kubelet reports it: `pod P: container C CrashLoopBackOff
/// (message)` for at most `limit` Pods, the rest counted.
pub fn pod_problems(pods: &[Value], limit: usize) -> Vec<String> {
    let mut problems = Vec::new();
    for pod in pods {
        let name = pod["metadata"]["name"].as_str().unwrap_or("?");
        let statuses = pod["status"]["initContainerStatuses"]
            .as_array()
            .into_iter()
            .chain(pod["status"]["containerStatuses"].as_array())
            .flatten();
        let mut why = Vec::new();
        for c in statuses.filter(|c| c["ready"] != true) {
            let container = c["name"].as_str().unwrap_or("?");
            let state = &c["state"];
            let (reason, message) = if let Some(waiting) = state.get("waiting") {
                (waiting["reason"].as_str(), waiting["message"].as_str())
            } else if let Some(done) = state.get("terminated") {
                (done["reason"].as_str(), done["message"].as_str())
            } else {
                continue;
            };
            let Some(reason) = reason else { continue };
            why.push(match message.filter(|m| !m.is_empty()) {
                Some(m) => format!("container {container} {reason} ({m})"),
                None => format!("container {container} {reason}"),
            });
        }
        if why.is_empty() {
            if pod["status"]["phase"] == "Pending"
                && let Some(c) = condition(pod, "PodScheduled").filter(|c| c["status"] == "False")
            {
                why.push(format!(
                    "not scheduled ({})",
                    c["message"].as_str().unwrap_or("no reason given")
                ));
            } else {
                continue;
            }
        }
        problems.push(format!("pod {name}: {}", why.join(", ")));
    }
    if problems.len() > limit {
        let more = problems.len() - limit;
        problems.truncate(limit);
        problems.push(format!("{more} more pods like these"));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn workloads_jobs_and_ready_conditions() {
        let deployment = |generation: i64, status: Value| json!({"metadata": {"generation": generation}, "spec": {"replicas": 2}, "status": status});
        let cases = [
            (
                "apps",
                "Deployment",
                deployment(
                    2,
                    json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
                ),
                Health::Healthy,
            ),
            (
                "apps",
                "Deployment",
                deployment(
                    3,
                    json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
                ),
                Health::Progressing("the new spec is not observed yet".into()),
            ),
            (
                "apps",
                "Deployment",
                deployment(
                    2,
                    json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2}),
                ),
                Health::Progressing("1 of 2 updated, 2 available".into()),
            ),
            (
                "apps",
                "Deployment",
                deployment(
                    2,
                    json!({"observedGeneration": 2, "conditions": [{"type": "Progressing", "status": "False",
                    "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet app-1 has timed out progressing."}]}),
                ),
                Health::Failed("ReplicaSet app-1 has timed out progressing.".into()),
            ),
            (
                "apps",
                "StatefulSet",
                json!({"spec": {"replicas": 1}, "status": {"readyReplicas": 1, "updatedReplicas": 1, "currentRevision": "a", "updateRevision": "b"}}),
                Health::Progressing("1 of 1 ready, 1 updated".into()),
            ),
            (
                "apps",
                "DaemonSet",
                json!({"status": {"desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}}),
                Health::Healthy,
            ),
            (
                "batch",
                "Job",
                json!({"status": {"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}}),
                Health::Failed("BackoffLimitExceeded".into()),
            ),
            (
                "batch",
                "Job",
                json!({"status": {}}),
                Health::Progressing("not complete".into()),
            ),
            (
                "cert-manager.io",
                "Certificate",
                json!({"status": {"conditions": [{"type": "Ready", "status": "False", "message": "issuing"}]}}),
                Health::Progressing("issuing".into()),
            ),
            ("", "ConfigMap", json!({"data": {}}), Health::Healthy),
            (
                "cert-manager.io",
                "Certificate",
                json!({"metadata": {"generation": 3}, "status": {"conditions": [
                    {"type": "Ready", "status": "True", "observedGeneration": 2}]}}),
                Health::Progressing("the new spec is not observed yet".into()),
            ),
            (
                "apps",
                "Deployment",
                json!({"metadata": {"generation": 3}, "spec": {"paused": true}, "status": {"observedGeneration": 1}}),
                Health::Healthy,
            ),
        ];
        for (group, kind, object, expected) in cases {
            assert_eq!(health(group, kind, &object), expected, "{kind} {object}");
        }
    }

    #[test]
    fn pod_problems_say_what_the_kubelet_says() {
        let crashing = json!({"metadata": {"name": "app-1"}, "status": {"phase": "Running",
            "containerStatuses": [
                {"name": "app", "ready": false, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}}},
                {"name": "sidecar", "ready": true, "state": {"running": {}}}]}});
        let pulling = json!({"metadata": {"name": "app-2"}, "status": {"phase": "Pending",
            "containerStatuses": [{"name": "app", "ready": false, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}});
        let unscheduled = json!({"metadata": {"name": "app-3"}, "status": {"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "message": "0/1 nodes are available"}]}});
        let fine = json!({"metadata": {"name": "app-4"}, "status": {"phase": "Running",
            "containerStatuses": [{"name": "app", "ready": true, "state": {"running": {}}}]}});
        assert_eq!(
            pod_problems(
                &[crashing.clone(), pulling.clone(), unscheduled.clone(), fine],
                5
            ),
            [
                "pod app-1: container app CrashLoopBackOff (back-off restarting failed container)",
                "pod app-2: container app ImagePullBackOff",
                "pod app-3: not scheduled (0/1 nodes are available)",
            ]
        );
        assert_eq!(
            pod_problems(&[crashing, pulling, unscheduled], 1),
            [
                "pod app-1: container app CrashLoopBackOff (back-off restarting failed container)",
                "2 more pods like these",
            ]
        );
        let deployment =
            json!({"spec": {"selector": {"matchLabels": {"app": "web", "tier": "a"}}}});
        assert_eq!(
            pod_selector("apps", "Deployment", &deployment).as_deref(),
            Some("app=web,tier=a")
        );
        assert_eq!(pod_selector("", "ConfigMap", &deployment), None);
        let expressions = json!({"spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}});
        assert_eq!(pod_selector("apps", "Deployment", &expressions), None);
    }
}
