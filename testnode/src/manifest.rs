//! A pod spec read from a Kubernetes manifest (a Pod, or a DaemonSet's pod template) and turned
//! into what kubelet would ask CRI for: the manifest is what is tested, never a copy of it.
//!
//! Read: hostPID, hostNetwork, terminationGracePeriodSeconds, labels; per container: image,
//! command, args, env (`value`, and `valueFrom.fieldRef` `spec.nodeName`), securityContext
//! (privileged, readOnlyRootFilesystem), resources (requests.cpu, limits.memory, and the QoS
//! class they make), volumeMounts with their hostPath and emptyDir volumes. Anything else in a
//! container or a volume is refused, so a manifest that grows a field this kit ignores fails
//! here instead of passing untested.

use std::{io, path::Path, process::Command};

use serde_json::Value;

use crate::{ContainerSpec, MountSpec, Node, PodSpec, Qos};

/// The pod spec of the Pod or DaemonSet in `file` (YAML; the first document of that kind).
pub fn read(file: &Path) -> io::Result<Value> {
    // PyYAML (a test dependency already, for the manifests' schema check) turns it into JSON.
    let script = "import json, sys, yaml\n\
        docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]\n\
        print(json.dumps(docs))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(file)
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "reading {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).map_err(io::Error::other)?;
    docs.into_iter()
        .find(|d| matches!(d["kind"].as_str(), Some("Pod" | "DaemonSet")))
        .ok_or_else(|| io::Error::other(format!("{}: no Pod or DaemonSet", file.display())))
}

/// How a manifest's placeholders are filled in.
pub struct Fill<'a> {
    /// The image the manifest's `IMAGE` stands for.
    pub image: &'a str,
    /// Text replacements inside args (e.g. `NAMESPACE/NAME` → the target pod).
    pub args: &'a [(&'a str, &'a str)],
    /// The node's name, for `fieldRef: spec.nodeName`.
    pub node_name: &'a str,
}

fn bad(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Turns the manifest `doc` into a pod spec on `node`, named `name`.
pub fn pod_spec(node: &Node, doc: &Value, name: &str, fill: &Fill<'_>) -> io::Result<PodSpec> {
    let (meta, spec) = match doc["kind"].as_str() {
        Some("DaemonSet") => (
            &doc["spec"]["template"]["metadata"],
            &doc["spec"]["template"]["spec"],
        ),
        _ => (&doc["metadata"], &doc["spec"]),
    };
    let namespace = doc["metadata"]["namespace"].as_str().unwrap_or("default");
    let mut containers = Vec::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        containers.push(container(node, spec, c, fill)?);
    }
    let mut pod = PodSpec::new(namespace, name, containers);
    pod.host_pid = spec["hostPID"].as_bool().unwrap_or(false);
    pod.host_network = spec["hostNetwork"].as_bool().unwrap_or(false);
    pod.grace_seconds = spec["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
    pod.labels = meta["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    pod.qos = qos(spec);
    Ok(pod)
}

const KNOWN_CONTAINER_FIELDS: &[&str] = &[
    "name",
    "image",
    "command",
    "args",
    "env",
    "securityContext",
    "resources",
    "volumeMounts",
];

fn container(node: &Node, pod: &Value, c: &Value, fill: &Fill<'_>) -> io::Result<ContainerSpec> {
    if let Some(unknown) = c.as_object().and_then(|o| {
        o.keys()
            .find(|k| !KNOWN_CONTAINER_FIELDS.contains(&k.as_str()))
    }) {
        return Err(bad(format!(
            "container field {unknown} is not carried over by the test kit"
        )));
    }
    let image = c["image"].as_str().unwrap_or_default();
    let image = if image == "IMAGE" { fill.image } else { image };
    let args = strings(&c["args"])
        .into_iter()
        .map(|a| {
            fill.args
                .iter()
                .fold(a, |a, (from, to)| a.replace(from, to))
        })
        .collect();
    let mut env = Vec::new();
    for e in c["env"].as_array().into_iter().flatten() {
        let key = e["name"].as_str().unwrap_or_default().to_owned();
        let value = match (
            &e["value"],
            e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        ) {
            (Value::String(v), _) => v.clone(),
            (_, Some("spec.nodeName")) => fill.node_name.to_owned(),
            _ => return Err(bad(format!("env {key}: only value and spec.nodeName"))),
        };
        env.push((key, value));
    }
    let sc = &c["securityContext"];
    Ok(ContainerSpec {
        name: c["name"].as_str().unwrap_or("main").to_owned(),
        image: image.to_owned(),
        command: strings(&c["command"]),
        args,
        env,
        mounts: mounts(node, pod, c)?,
        privileged: sc["privileged"].as_bool().unwrap_or(false),
        readonly_rootfs: sc["readOnlyRootFilesystem"].as_bool().unwrap_or(false),
        memory_limit: c["resources"]["limits"]["memory"]
            .as_str()
            .map(bytes)
            .transpose()?
            .unwrap_or(0),
        cpu_request_milli: c["resources"]["requests"]["cpu"]
            .as_str()
            .map(millicores)
            .transpose()?
            .unwrap_or(0),
    })
}

/// volumeMounts with the hostPath or emptyDir volume each names (an emptyDir is a fresh folder
/// of the node's, as kubelet makes one under /var/lib/kubelet/pods/<uid>/volumes).
fn mounts(node: &Node, pod: &Value, c: &Value) -> io::Result<Vec<MountSpec>> {
    let mut out = Vec::new();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let name = m["name"].as_str().unwrap_or_default();
        let volume = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"].as_str() == Some(name))
            .ok_or_else(|| bad(format!("volumeMount {name}: no such volume")))?;
        let host_path = if let Some(p) = volume["hostPath"]["path"].as_str() {
            p.into()
        } else if volume.get("emptyDir").is_some() {
            node.scratch(name)?
        } else {
            return Err(bad(format!("volume {name}: only hostPath and emptyDir")));
        };
        out.push(MountSpec {
            container_path: m["mountPath"].as_str().unwrap_or_default().to_owned(),
            host_path,
            readonly: m["readOnly"].as_bool().unwrap_or(false),
        });
    }
    Ok(out)
}

/// The pod's QoS class from its containers' resources, as the API server computes it.
fn qos(spec: &Value) -> Qos {
    let containers: Vec<&Value> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let any = containers.iter().any(|c| {
        ["requests", "limits"]
            .iter()
            .any(|k| c["resources"][k].as_object().is_some_and(|o| !o.is_empty()))
    });
    if !any {
        return Qos::BestEffort;
    }
    let guaranteed = containers.iter().all(|c| {
        let r = &c["resources"];
        ["cpu", "memory"].iter().all(|k| {
            r["limits"][k].is_string()
                && (r["requests"][k].is_null() || r["requests"][k] == r["limits"][k])
        })
    });
    if guaranteed {
        Qos::Guaranteed
    } else {
        Qos::Burstable
    }
}

/// `64Mi`, `1Gi`, `500M`, `1048576` → bytes.
fn bytes(q: &str) -> io::Result<i64> {
    let units = [
        ("Ki", 1i64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, mult) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n
                .parse::<i64>()
                .map(|n| n * mult)
                .map_err(|_| bad(format!("memory {q}")));
        }
    }
    q.parse().map_err(|_| bad(format!("memory {q}")))
}

/// `10m`, `0.5`, `2` → millicores.
fn millicores(q: &str) -> io::Result<i64> {
    if let Some(m) = q.strip_suffix('m') {
        return m.parse().map_err(|_| bad(format!("cpu {q}")));
    }
    q.parse::<f64>()
        .map(|c| (c * 1000.0).round() as i64)
        .map_err(|_| bad(format!("cpu {q}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_read_as_kubernetes_writes_them() {
        assert_eq!(bytes("64Mi").ok(), Some(64 << 20));
        assert_eq!(bytes("1G").ok(), Some(1_000_000_000));
        assert_eq!(millicores("10m").ok(), Some(10));
        assert_eq!(millicores("0.5").ok(), Some(500));
        assert!(bytes("lots").is_err());
    }

    #[test]
    fn qos_follows_requests_and_limits() {
        let none = serde_json::json!({"containers": [{"name": "a"}]});
        assert_eq!(qos(&none), Qos::BestEffort);
        let burst = serde_json::json!({"containers": [{"resources": {
            "requests": {"cpu": "10m"}, "limits": {"memory": "64Mi"}}}]});
        assert_eq!(qos(&burst), Qos::Burstable);
        let guaranteed = serde_json::json!({"containers": [{"resources": {
            "limits": {"cpu": "1", "memory": "64Mi"}}}]});
        assert_eq!(qos(&guaranteed), Qos::Guaranteed);
    }
}
