//! A bare image name: read from its registry, unless the registry says the image does not exist
//! there and the local Docker engine has it. The choice is made when the image is resolved, so
//! the explorer is on screen before the registry has answered.

use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::OnceCell;

use super::{DaemonSource, Engine, Source};
use crate::cache::Cache;
use crate::error::Error;
use crate::registry::RegistryError;

/// The registry, or the engine when the registry lacks the image.
pub struct RegistryOrEngine {
    /// The registry source (with the cache in front when there is one).
    registry: Box<Source>,
    /// The engine to ask, once, if the registry lacks the image.
    engine: Mutex<Option<DaemonSource>>,
    /// The cache to put in front of the engine.
    cache: Option<Arc<Cache>>,
    /// The engine source, once chosen.
    chosen_engine: OnceCell<Box<Source>>,
    /// What to tell the user when the engine was chosen.
    notice: OnceLock<String>,
}

impl RegistryOrEngine {
    /// `registry` first; `engine` (when one could be set up) if the registry lacks the image.
    pub fn new(registry: Source, engine: Option<DaemonSource>, cache: Option<Arc<Cache>>) -> Self {
        RegistryOrEngine {
            registry: Box::new(registry),
            engine: Mutex::new(engine),
            cache,
            chosen_engine: OnceCell::new(),
            notice: OnceLock::new(),
        }
    }

    /// The source chosen so far: the engine once it was chosen, else the registry.
    pub(super) fn current(&self) -> &Source {
        match self.chosen_engine.get() {
            Some(engine) => engine,
            None => &self.registry,
        }
    }

    /// "…: not in the registry; reading it from the local Docker engine (…)", once the engine
    /// was chosen; else what the registry source has to say (a mirror that served it).
    pub fn notice(&self) -> Option<&str> {
        self.notice
            .get()
            .map(String::as_str)
            .or_else(|| self.registry.notice())
    }

    /// Resolve through the registry; on "no such repository or tag", through the engine when it
    /// holds the image, else the registry's error stands.
    pub(super) async fn resolve(&self) -> Result<crate::image::ImageInfo, Error> {
        if let Some(engine) = self.chosen_engine.get() {
            return Box::pin(engine.resolve()).await;
        }
        let error = match Box::pin(self.registry.resolve()).await {
            Ok(info) => return Ok(info),
            Err(e) if lacks_image(&e) => e,
            Err(e) => return Err(e),
        };
        // Taken out of the lock before awaiting: the engine is asked once.
        let engine = self.engine.lock().map(|mut e| e.take()).unwrap_or(None);
        let Some(engine) = engine else {
            return Err(error);
        };
        if !engine.has_image().await {
            return Err(error);
        }
        let _ = self.notice.set(format!(
            "not in the registry; reading it from the local {} ({})",
            Engine::Docker.name(),
            engine.describe_socket()
        ));
        let source = match &self.cache {
            Some(cache) => Source::Daemon(engine).with_cache(cache.clone()),
            None => Source::Daemon(engine),
        };
        let chosen = self
            .chosen_engine
            .get_or_init(|| async { Box::new(source) })
            .await;
        Box::pin(chosen.resolve()).await
    }
}

/// Whether a registry error says the repository or tag does not exist (Docker Hub says so with
/// a refusal: it does not tell a missing repository from a private one).
fn lacks_image(e: &Error) -> bool {
    let Error::Registry(e) = e else {
        return false;
    };
    // After the mirrors, Docker Hub's answer decides.
    match e.without_mirrors() {
        RegistryError::ManifestUnknown { .. } | RegistryError::RepositoryUnknown { .. } => true,
        RegistryError::AuthenticationRequired { host, .. }
        | RegistryError::AccessDenied { host, .. } => host.ends_with("docker.io"),
        _ => false,
    }
}
