//! What a container runs with: its image mapped to a local binary, its command line and its
//! environment (literal values, the downward API, ConfigMap and Secret keys, `envFrom`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::{Api, Client};

use crate::config::AgentConfig;
use crate::error::{Error, Result};
use crate::sandbox::IMAGE_DIR;

/// Registry prefix of ModelHub's own images.
pub const MODELHUB_REGISTRY: &str = "ghcr.io/modelhub/";

/// Repository part of an image reference (no tag, no digest).
pub fn repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

/// The local binary that stands for `image`.
pub fn resolve_image(config: &AgentConfig, image: &str) -> Result<PathBuf> {
    let repo = repository(image);
    let candidate = if let Some((_, path)) = config.image_map.iter().find(|(p, _)| p == repo) {
        path.clone()
    } else if let Some(name) = repo.strip_prefix(MODELHUB_REGISTRY) {
        if name.is_empty() || name.contains('/') {
            return Err(Error::ImageNotMapped {
                image: image.into(),
                reason: "not a ModelHub image name".into(),
            });
        }
        config.bin_dir.join(name)
    } else {
        return Err(Error::ImageNotMapped {
            image: image.into(),
            reason: format!(
                "only {MODELHUB_REGISTRY}<name> images and --image-map entries are mapped"
            ),
        });
    };
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(Error::ImageNotMapped {
            image: image.into(),
            reason: format!("{} does not exist (build it first)", candidate.display()),
        })
    }
}

/// The argv of a container: `command` replaces the image's entrypoint (the mapped binary);
/// a command naming the image's binary, or a path that does not exist here, runs that binary.
/// The image's binary is named by its path inside the container ([`IMAGE_DIR`], where the
/// sandbox mounts the binary's directory), not by its host path.
pub fn argv(container: &Container, binary: &Path) -> Vec<String> {
    let in_image = Path::new(IMAGE_DIR).join(binary.file_name().unwrap_or_default());
    let bin = in_image.to_string_lossy().into_owned();
    let mut argv = match container.command.as_deref() {
        Some([first, rest @ ..]) => {
            let first_path = Path::new(first);
            let exists = first_path.is_absolute() && first_path.is_file();
            let program = if exists {
                first.clone()
            } else if first_path.file_name() == binary.file_name() || first_path.is_absolute() {
                bin
            } else {
                first.clone()
            };
            let mut v = vec![program];
            v.extend(rest.iter().cloned());
            v
        }
        _ => vec![bin],
    };
    argv.extend(container.args.iter().flatten().cloned());
    argv
}

/// Values of the downward API that the agent knows.
pub fn field_value(pod: &Pod, pod_ip: &str, host_ip: &str, path: &str) -> Result<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" => Some(pod_ip.to_owned()),
        "status.podIPs" => Some(pod_ip.to_owned()),
        "status.hostIP" | "status.hostIPs" => Some(host_ip.to_owned()),
        other => {
            let lookup = |map: &Option<BTreeMap<String, String>>, key: &str| {
                map.as_ref().and_then(|m| m.get(key).cloned())
            };
            if let Some(key) = other
                .strip_prefix("metadata.labels['")
                .and_then(|k| k.strip_suffix("']"))
            {
                lookup(&meta.labels, key)
            } else if let Some(key) = other
                .strip_prefix("metadata.annotations['")
                .and_then(|k| k.strip_suffix("']"))
            {
                lookup(&meta.annotations, key)
            } else {
                return Err(Error::ContainerConfig(format!(
                    "unsupported fieldRef {other}"
                )));
            }
        }
    };
    Ok(value.unwrap_or_default())
}

fn secret_string(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(String::from_utf8_lossy(&v.0).into_owned());
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key).cloned())
}

/// Resolves the environment of `container` the way the kubelet does, in order, with the
/// service variables in-cluster clients expect (the API server is forwarded to loopback).
pub async fn environment(
    client: &Client,
    pod: &Pod,
    container: &Container,
    pod_ip: &str,
    host_ip: &str,
    apiserver_port: u16,
) -> Result<Vec<(String, String)>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        (
            "HOSTNAME".into(),
            pod.metadata.name.clone().unwrap_or_default(),
        ),
        ("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()),
        ("KUBERNETES_SERVICE_PORT".into(), apiserver_port.to_string()),
        (
            "KUBERNETES_SERVICE_PORT_HTTPS".into(),
            apiserver_port.to_string(),
        ),
    ];
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        env.retain(|(name, _)| *name != k);
        env.push((k, v));
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match cms.get_opt(&r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        set(&mut env, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(Error::ContainerConfig(format!(
                        "configmap {:?} not found",
                        r.name
                    )));
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            match secrets.get_opt(&r.name).await? {
                Some(s) => {
                    for (k, v) in s.data.unwrap_or_default() {
                        set(
                            &mut env,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(Error::ContainerConfig(format!(
                        "secret {:?} not found",
                        r.name
                    )));
                }
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(v) = &var.value {
            expand(v, &env)
        } else if let Some(src) = &var.value_from {
            if let Some(f) = &src.field_ref {
                field_value(pod, pod_ip, host_ip, &f.field_path)?
            } else if let Some(k) = &src.config_map_key_ref {
                let found = cms
                    .get_opt(&k.name)
                    .await?
                    .and_then(|cm| cm.data.and_then(|d| d.get(&k.key).cloned()));
                match found {
                    Some(v) => v,
                    None if k.optional == Some(true) => continue,
                    None => {
                        return Err(Error::ContainerConfig(format!(
                            "configmap {:?} has no key {:?}",
                            k.name, k.key
                        )));
                    }
                }
            } else if let Some(k) = &src.secret_key_ref {
                let found = secrets
                    .get_opt(&k.name)
                    .await?
                    .and_then(|s| secret_string(&s, &k.key));
                match found {
                    Some(v) => v,
                    None if k.optional == Some(true) => continue,
                    None => {
                        return Err(Error::ContainerConfig(format!(
                            "secret {:?} has no key {:?}",
                            k.name, k.key
                        )));
                    }
                }
            } else if let Some(r) = &src.resource_field_ref {
                resource_value(container, &r.resource)
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

/// `resourceFieldRef`: the limit (or request) as the kubelet renders it, in whole units.
fn resource_value(container: &Container, resource: &str) -> String {
    let (kind, name) = resource.split_once('.').unwrap_or(("limits", resource));
    let res = container.resources.as_ref();
    let map = match kind {
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => res.and_then(|r| r.limits.as_ref()),
    };
    map.and_then(|m| m.get(name))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| {
            if name == "cpu" {
                "1".into()
            } else {
                "0".into()
            }
        })
}

/// `$(VAR)` expansion of literal values against the variables defined before them.
pub fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) => {
                let name = &after[..end];
                match env.iter().rev().find(|(k, _)| k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        out.push_str("$(");
                        out.push_str(name);
                        out.push(')');
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_strips_tag_and_digest() {
        assert_eq!(
            repository("ghcr.io/modelhub/vectorforge:0.1.0"),
            "ghcr.io/modelhub/vectorforge"
        );
        assert_eq!(repository("localhost:5000/x"), "localhost:5000/x");
        assert_eq!(repository("a/b@sha256:abc"), "a/b");
    }

    #[test]
    fn expansion_uses_earlier_variables() {
        let env = vec![("A".to_owned(), "1".to_owned())];
        assert_eq!(expand("x$(A)y$(B)", &env), "x1y$(B)");
    }

    fn container(command: Option<&[&str]>, args: &[&str]) -> Container {
        Container {
            name: "c".into(),
            command: command.map(|c| c.iter().map(|s| s.to_string()).collect()),
            args: Some(args.iter().map(|s| s.to_string()).collect()),
            ..Container::default()
        }
    }

    #[test]
    fn the_entrypoint_runs_from_the_image_directory() {
        let bin = Path::new("/tmp/clone/target/debug/tinyinfer");
        assert_eq!(
            argv(&container(None, &["--port=1"]), bin),
            ["/opt/modelhub/bin/tinyinfer", "--port=1"]
        );
        // A command naming the image's binary, or an image path absent here, runs it too.
        for cmd in ["tinyinfer", "/usr/local/bin/app"] {
            assert_eq!(
                argv(&container(Some(&[cmd, "-v"]), &[]), bin),
                ["/opt/modelhub/bin/tinyinfer", "-v"],
                "{cmd}"
            );
        }
        // A program that exists on the machine, or one found on PATH, is run as given.
        assert_eq!(
            argv(&container(Some(&["/bin/sh", "-c", "true"]), &[]), bin),
            ["/bin/sh", "-c", "true"]
        );
        assert_eq!(argv(&container(Some(&["cat"]), &[]), bin), ["cat"]);
    }
}
