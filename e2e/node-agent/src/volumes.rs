//! Pod volumes as directories: PersistentVolumeClaims become directories under the data root
//! that outlive the pod (the agent provisions a PersistentVolume for each claim), emptyDirs
//! live in the pod's own directory, and configMap / secret / downwardAPI / projected volumes
//! (the service-account token included) are written out as files.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
    ServiceAccount, Volume,
};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::config::AgentConfig;
use crate::env::field_value;
use crate::error::{Error, Result};
use crate::sandbox::Mount;

/// Name of the label marking PersistentVolumes this agent provisioned.
pub const PROVISIONED_BY: &str = "modelhub.io/provisioned-by";

/// Volumes of one pod, prepared on the host: volume name → directory or file.
#[derive(Debug, Default, Clone)]
pub struct PreparedVolumes {
    pub paths: BTreeMap<String, PathBuf>,
}

impl PreparedVolumes {
    /// The bind mounts of `container`, with `subPath`s resolved inside their volume.
    pub fn mounts(&self, container: &Container) -> Result<Vec<Mount>> {
        let mut out = Vec::new();
        for vm in container.volume_mounts.iter().flatten() {
            let base = self.paths.get(&vm.name).ok_or_else(|| Error::Volume {
                volume: vm.name.clone(),
                reason: "mounted but not declared in the pod".into(),
            })?;
            let source = match vm.sub_path.as_deref() {
                Some(sub) if !sub.is_empty() => {
                    let rel = safe_relative(sub)?;
                    let p = base.join(rel);
                    if !p.exists() {
                        std::fs::create_dir_all(&p)
                            .map_err(|e| Error::io(format!("subPath {}", p.display()), e))?;
                    }
                    p
                }
                _ => base.clone(),
            };
            out.push(Mount {
                source,
                target: PathBuf::from(&vm.mount_path),
                read_only: vm.read_only.unwrap_or(false),
            });
        }
        Ok(out)
    }
}

fn safe_relative(p: &str) -> Result<PathBuf> {
    let path = Path::new(p);
    if path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        Ok(path.to_path_buf())
    } else {
        Err(Error::InvalidPath(path.to_path_buf()))
    }
}

fn write_file(dir: &Path, rel: &str, content: &[u8], mode: Option<i32>) -> Result<()> {
    let target = dir.join(safe_relative(rel)?);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("mkdir {}", parent.display()), e))?;
    }
    std::fs::write(&target, content)
        .map_err(|e| Error::io(format!("writing {}", target.display()), e))?;
    let mode = mode.unwrap_or(0o644) as u32;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {}", target.display()), e))
}

/// Writes `data` keys (selected and renamed by `items` when given).
fn write_keys(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    volume: &str,
) -> Result<()> {
    match items {
        Some(items) => {
            for it in items {
                let value = data.get(&it.key).ok_or_else(|| Error::Volume {
                    volume: volume.into(),
                    reason: format!("key {:?} not found", it.key),
                })?;
                write_file(dir, &it.path, value, it.mode.or(default_mode))?;
            }
        }
        None => {
            for (k, v) in data {
                write_file(dir, k, v, default_mode)?;
            }
        }
    }
    Ok(())
}

fn configmap_bytes(cm: ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.unwrap_or_default() {
        out.insert(k, v.0);
    }
    out
}

fn secret_bytes(s: Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in s.string_data.unwrap_or_default() {
        out.insert(k, v.into_bytes());
    }
    out
}

/// Prepares every volume of `pod` on the host.
pub async fn prepare(
    client: &Client,
    config: &AgentConfig,
    pod: &Pod,
    pod_ip: &str,
    host_ip: &str,
) -> Result<PreparedVolumes> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let vol_root = config.pod_dir(&uid).join("volumes");
    let mut prepared = PreparedVolumes::default();
    for vol in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = prepare_one(client, config, pod, &ns, &vol_root, vol, pod_ip, host_ip).await?;
        prepared.paths.insert(vol.name.clone(), path);
    }
    Ok(prepared)
}

#[allow(clippy::too_many_arguments)]
async fn prepare_one(
    client: &Client,
    config: &AgentConfig,
    pod: &Pod,
    ns: &str,
    vol_root: &Path,
    vol: &Volume,
    pod_ip: &str,
    host_ip: &str,
) -> Result<PathBuf> {
    let name = vol.name.as_str();
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|e| Error::io(format!("mkdir {}", p.display()), e))
    };
    if let Some(claim) = &vol.persistent_volume_claim {
        return claim_dir(client, config, ns, &claim.claim_name).await;
    }
    if let Some(host) = &vol.host_path {
        let p = PathBuf::from(&host.path);
        if matches!(host.type_.as_deref(), Some("DirectoryOrCreate")) {
            mkdir(&p)?;
        }
        return Ok(p);
    }
    let dir = vol_root.join(name);
    if vol.empty_dir.is_some() {
        mkdir(&dir)?;
        return Ok(dir);
    }
    // File-backed volumes are rewritten from scratch at each pod start.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("rm {}", dir.display()), e))?;
    }
    mkdir(&dir)?;
    if let Some(src) = &vol.config_map {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        match api.get_opt(&src.name).await? {
            Some(cm) => write_keys(
                &dir,
                &configmap_bytes(cm),
                src.items.as_ref(),
                src.default_mode,
                name,
            )?,
            None if src.optional == Some(true) => {}
            None => {
                return Err(Error::Volume {
                    volume: name.into(),
                    reason: format!("configmap {:?} not found", src.name),
                });
            }
        }
    } else if let Some(src) = &vol.secret {
        let sname = src.secret_name.clone().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        match api.get_opt(&sname).await? {
            Some(s) => write_keys(
                &dir,
                &secret_bytes(s),
                src.items.as_ref(),
                src.default_mode,
                name,
            )?,
            None if src.optional == Some(true) => {}
            None => {
                return Err(Error::Volume {
                    volume: name.into(),
                    reason: format!("secret {sname:?} not found"),
                });
            }
        }
    } else if let Some(src) = &vol.downward_api {
        for it in src.items.iter().flatten() {
            if let Some(f) = &it.field_ref {
                let v = field_value(pod, pod_ip, host_ip, &f.field_path)?;
                write_file(&dir, &it.path, v.as_bytes(), it.mode.or(src.default_mode))?;
            }
        }
    } else if let Some(src) = &vol.projected {
        for source in src.sources.iter().flatten() {
            if let Some(t) = &source.service_account_token {
                let token =
                    request_token(client, pod, ns, t.audience.clone(), t.expiration_seconds)
                        .await?;
                write_file(&dir, &t.path, token.as_bytes(), src.default_mode)?;
            }
            if let Some(c) = &source.config_map {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
                match api.get_opt(&c.name).await? {
                    Some(cm) => write_keys(
                        &dir,
                        &configmap_bytes(cm),
                        c.items.as_ref(),
                        src.default_mode,
                        name,
                    )?,
                    None if c.optional == Some(true) => {}
                    None => {
                        return Err(Error::Volume {
                            volume: name.into(),
                            reason: format!("configmap {:?} not found", c.name),
                        });
                    }
                }
            }
            if let Some(s) = &source.secret {
                let api: Api<Secret> = Api::namespaced(client.clone(), ns);
                match api.get_opt(&s.name).await? {
                    Some(sec) => write_keys(
                        &dir,
                        &secret_bytes(sec),
                        s.items.as_ref(),
                        src.default_mode,
                        name,
                    )?,
                    None if s.optional == Some(true) => {}
                    None => {
                        return Err(Error::Volume {
                            volume: name.into(),
                            reason: format!("secret {:?} not found", s.name),
                        });
                    }
                }
            }
            if let Some(d) = &source.downward_api {
                for it in d.items.iter().flatten() {
                    if let Some(f) = &it.field_ref {
                        let v = field_value(pod, pod_ip, host_ip, &f.field_path)?;
                        write_file(&dir, &it.path, v.as_bytes(), it.mode.or(src.default_mode))?;
                    }
                }
            }
        }
    } else {
        return Err(Error::Volume {
            volume: name.into(),
            reason: "unsupported volume source".into(),
        });
    }
    Ok(dir)
}

/// A bound service-account token for the pod, as the kubelet requests it.
async fn request_token(
    client: &Client,
    pod: &Pod,
    ns: &str,
    audience: Option<String>,
    expiration: Option<i64>,
) -> Result<String> {
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req = TokenRequest {
        metadata: ObjectMeta::default(),
        spec: TokenRequestSpec {
            audiences: audience.into_iter().collect(),
            expiration_seconds: expiration,
            bound_object_ref: Some(k8s_openapi::api::authentication::v1::BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        status: None,
    };
    let resp: TokenRequest = api
        .create_subresource("token", &sa, &PostParams::default(), &req)
        .await?;
    Ok(resp.status.map(|s| s.token).unwrap_or_default())
}

/// The directory of a claim: stable per claim (its uid), kept when the pod goes away. The
/// agent provisions a PersistentVolume pre-bound to the claim so the claim shows `Bound`.
async fn claim_dir(
    client: &Client,
    config: &AgentConfig,
    ns: &str,
    claim: &str,
) -> Result<PathBuf> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvc = pvcs.get_opt(claim).await?.ok_or_else(|| Error::Volume {
        volume: claim.into(),
        reason: format!("persistentvolumeclaim {claim:?} not found"),
    })?;
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    let dir = config
        .data_root
        .join("volumes")
        .join(ns)
        .join(format!("{claim}-{uid}"));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("mkdir {}", dir.display()), e))?;
    let spec = pvc.spec.clone().unwrap_or_default();
    if spec.volume_name.as_deref().is_some_and(|v| !v.is_empty()) {
        return Ok(dir);
    }
    let pv_name = format!("mh-{uid}");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    if pvs.get_opt(&pv_name).await?.is_some() {
        return Ok(dir);
    }
    let capacity = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .and_then(|r| r.get("storage").cloned())
        .map(|q| BTreeMap::from([("storage".to_owned(), q)]));
    let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "labels": {PROVISIONED_BY: config.node_name}},
        "spec": {
            "capacity": capacity,
            "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "hostPath": {"path": dir.to_string_lossy()},
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": spec.storage_class_name.clone().unwrap_or_default(),
            "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
            "claimRef": {"namespace": ns, "name": claim, "uid": uid, "apiVersion": "v1", "kind": "PersistentVolumeClaim"},
        }
    }))?;
    match pvs.create(&PostParams::default(), &pv).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(dir)
}

/// Deletes the PersistentVolumes this agent provisioned whose claim is gone (`Released`),
/// with their directories: a claim's data lives exactly as long as the claim.
pub async fn reap_released(client: &Client, config: &AgentConfig) -> Result<()> {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let lp =
        kube::api::ListParams::default().labels(&format!("{PROVISIONED_BY}={}", config.node_name));
    for pv in pvs.list(&lp).await? {
        let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        if !released {
            continue;
        }
        let name = pv.metadata.name.clone().unwrap_or_default();
        let dir = pv
            .spec
            .as_ref()
            .and_then(|s| s.host_path.as_ref())
            .map(|h| PathBuf::from(&h.path));
        if let Some(dir) = dir.filter(|d| d.starts_with(config.data_root.join("volumes")))
            && let Err(err) = std::fs::remove_dir_all(&dir)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(pv = %name, error = %err, "cannot remove volume directory");
            continue;
        }
        match pvs.delete(&name, &kube::api::DeleteParams::default()).await {
            Ok(_) => tracing::info!(pv = %name, "deleted released volume"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(err) => tracing::warn!(pv = %name, error = %err, "cannot delete released volume"),
        }
    }
    Ok(())
}
