//! The model repository: every configured model version with its state (loading, ready,
//! failed with a reason, unloaded), loaded and unloaded at run time (OIP repository
//! extension). A model that fails to load is reported, never fatal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use serde::Serialize;

use crate::config::ModelConfig;
use crate::error::InferError;
use crate::metrics::Metrics;
use crate::model::ServedModel;
use crate::storage::Storage;

/// The server's metadata, as both transports report it.
pub fn server_metadata() -> oip::ServerMetadata {
    oip::ServerMetadata {
        name: "tinyinfer".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: vec!["binary_tensor_data".into(), "model_repository".into()],
    }
}

/// Lifecycle of one model version.
#[derive(Clone)]
pub enum ModelState {
    Loading,
    Ready(Arc<ServedModel>),
    Failed(String),
    Unloaded,
}

impl ModelState {
    fn label(&self) -> &'static str {
        match self {
            Self::Loading => "LOADING",
            Self::Ready(_) => "READY",
            Self::Failed(_) => "UNAVAILABLE",
            Self::Unloaded => "UNLOADED",
        }
    }
}

/// One row of the repository index.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IndexEntry {
    pub name: String,
    pub version: String,
    pub state: String,
    pub reason: String,
}

struct Entry {
    config: ModelConfig,
    state: ModelState,
}

/// All model versions of this server.
pub struct Repository {
    entries: RwLock<BTreeMap<(String, String), Entry>>,
    storage: Storage,
    metrics: Metrics,
    shutting_down: AtomicBool,
}

fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

impl Repository {
    pub fn new(storage: Storage, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            entries: RwLock::new(BTreeMap::new()),
            storage,
            metrics,
            shutting_down: AtomicBool::new(false),
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Loads (or reloads) `config`; resolves once the model is ready or has failed.
    pub async fn load(&self, config: ModelConfig) -> Result<(), InferError> {
        config
            .validate()
            .map_err(|e| InferError::BadRequest(e.to_string()))?;
        let key = (config.name.clone(), config.version.clone());
        {
            let mut entries = self.entries.write();
            if let Some(e) = entries.get(&key)
                && matches!(e.state, ModelState::Loading)
            {
                return Err(InferError::NotReady(format!(
                    "model {} version {} is already loading",
                    key.0, key.1
                )));
            }
            let previous = entries.insert(
                key.clone(),
                Entry {
                    config: config.clone(),
                    state: ModelState::Loading,
                },
            );
            if let Some(previous) = previous {
                self.forget_precision(&key.0, &key.1, &previous.state);
            }
        }
        tracing::info!(model = %key.0, version = %key.1, uri = %config.uri, "loading model");
        let result = ServedModel::load(config.clone(), &self.storage, self.metrics.clone()).await;
        let state = match result {
            Ok(model) => ModelState::Ready(Arc::new(model)),
            Err(reason) => {
                tracing::error!(model = %key.0, version = %key.1, %reason, "model failed to load");
                ModelState::Failed(reason)
            }
        };
        let outcome = match &state {
            ModelState::Failed(reason) => Err(InferError::NotReady(format!(
                "model {} version {} failed to load: {reason}",
                key.0, key.1
            ))),
            _ => Ok(()),
        };
        self.entries.write().insert(key, Entry { config, state });
        outcome
    }

    /// Reloads a model that was configured before (e.g. after an unload).
    pub async fn reload(&self, name: &str) -> Result<(), InferError> {
        let configs: Vec<ModelConfig> = self
            .entries
            .read()
            .values()
            .filter(|e| e.config.name == name)
            .map(|e| e.config.clone())
            .collect();
        if configs.is_empty() {
            return Err(InferError::NotFound(format!("unknown model {name}")));
        }
        for config in configs {
            self.load(config).await?;
        }
        Ok(())
    }

    /// Drops the precision series of a version that served (`tinyinfer_model_precision`
    /// lists only what is loaded).
    fn forget_precision(&self, name: &str, version: &str, state: &ModelState) {
        if let ModelState::Ready(model) = state {
            let _ = self.metrics.precision.remove_label_values(&[
                name,
                version,
                model.precision.as_str(),
            ]);
        }
    }

    /// Unloads every version of `name`; queued requests still complete.
    pub fn unload(&self, name: &str) -> Result<(), InferError> {
        let mut entries = self.entries.write();
        let mut found = false;
        for ((n, v), entry) in entries.iter_mut() {
            if n == name {
                let previous = std::mem::replace(&mut entry.state, ModelState::Unloaded);
                self.forget_precision(n, v, &previous);
                found = true;
            }
        }
        if found {
            tracing::info!(model = %name, "model unloaded");
            Ok(())
        } else {
            Err(InferError::NotFound(format!("unknown model {name}")))
        }
    }

    /// The model to serve: the given version, or the highest ready version.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<ServedModel>, InferError> {
        let entries = self.entries.read();
        let not_found = || match version {
            Some(v) => InferError::NotFound(format!("unknown model {name} version {v}")),
            None => InferError::NotFound(format!("unknown model {name}")),
        };
        let not_ready = |v: &str, state: &ModelState| {
            let why = match state {
                ModelState::Failed(reason) => format!(": {reason}"),
                ModelState::Loading => ": still loading".into(),
                ModelState::Unloaded => ": unloaded".into(),
                ModelState::Ready(_) => String::new(),
            };
            InferError::NotReady(format!("model {name} version {v} is not ready{why}"))
        };
        match version.filter(|v| !v.is_empty()) {
            Some(v) => {
                let entry = entries
                    .get(&(name.to_owned(), v.to_owned()))
                    .ok_or_else(not_found)?;
                match &entry.state {
                    ModelState::Ready(m) => Ok(m.clone()),
                    other => Err(not_ready(v, other)),
                }
            }
            None => {
                let versions: Vec<(&String, &Entry)> = entries
                    .iter()
                    .filter(|((n, _), _)| n == name)
                    .map(|((_, v), e)| (v, e))
                    .collect();
                if versions.is_empty() {
                    return Err(not_found());
                }
                versions
                    .iter()
                    .filter_map(|(v, e)| match &e.state {
                        ModelState::Ready(m) => Some((*v, m)),
                        _ => None,
                    })
                    .max_by(|a, b| version_order(a.0, b.0))
                    .map(|(_, m)| m.clone())
                    .ok_or_else(|| {
                        let (v, e) = versions[versions.len() - 1];
                        not_ready(v, &e.state)
                    })
            }
        }
    }

    /// Versions known for `name`, in ascending order.
    pub fn versions(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .entries
            .read()
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect();
        v.sort_by(|a, b| version_order(a, b));
        v
    }

    /// Metadata of a served model version, as both transports report it.
    pub fn metadata(&self, model: &ServedModel) -> oip::ModelMetadata {
        oip::ModelMetadata {
            name: model.config.name.clone(),
            versions: self.versions(&model.config.name),
            platform: "onnxruntime_onnx".into(),
            inputs: model.inputs.clone(),
            outputs: model.outputs.clone(),
        }
    }

    /// The repository index (OIP repository extension).
    pub fn index(&self) -> Vec<IndexEntry> {
        self.entries
            .read()
            .iter()
            .map(|((name, version), e)| IndexEntry {
                name: name.clone(),
                version: version.clone(),
                state: e.state.label().to_owned(),
                reason: match &e.state {
                    ModelState::Failed(r) => r.clone(),
                    _ => String::new(),
                },
            })
            .collect()
    }

    /// Ready to serve: not shutting down and every model that is not unloaded is ready.
    pub fn ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Relaxed)
            && self
                .entries
                .read()
                .values()
                .all(|e| matches!(e.state, ModelState::Ready(_) | ModelState::Unloaded))
    }

    /// Flips readiness off so load balancers stop sending traffic before shutdown.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Drops every served model so batch workers drain and stop.
    pub fn close(&self) {
        for entry in self.entries.write().values_mut() {
            entry.state = ModelState::Unloaded;
        }
    }
}

/// Counts in-flight requests for the autoscaler; decrements on drop (also on cancel).
struct InflightGuard(prometheus::IntGauge);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Repository {
    /// Serves one inference request with metrics; returns the model that answered (for
    /// its name and version) and the outputs.
    pub async fn infer(
        &self,
        name: &str,
        version: Option<&str>,
        request: crate::model::InferRequest,
    ) -> Result<(Arc<ServedModel>, Vec<oip::Tensor>), InferError> {
        let started = std::time::Instant::now();
        let model = match self.get(name, version) {
            Ok(m) => m,
            Err(e) => {
                let v = version.unwrap_or("");
                self.metrics.requests.with_label_values(&[name, v]).inc();
                self.metrics
                    .failures
                    .with_label_values(&[name, v, e.kind()])
                    .inc();
                return Err(e);
            }
        };
        let labels = [model.config.name.as_str(), model.config.version.as_str()];
        self.metrics.requests.with_label_values(&labels).inc();
        let gauge = self.metrics.inflight.with_label_values(&labels);
        gauge.inc();
        let _guard = InflightGuard(gauge);
        let result = model.infer(request).await;
        self.metrics
            .request_seconds
            .with_label_values(&labels)
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(outputs) => Ok((model, outputs)),
            Err(e) => {
                self.metrics
                    .failures
                    .with_label_values(&[labels[0], labels[1], e.kind()])
                    .inc();
                Err(e)
            }
        }
    }
}
