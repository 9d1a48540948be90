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
}
