//! Named provisioning templates, stored in the artifact store under
//! `provisioning-templates/<name>.json` (CDF layout), with ggprov's bundled templates as the
//! fallback for their names.

use std::sync::Arc;

use serde_json::Value;

use crate::ports::{ArtifactStore, StoreError};
use crate::provisioning_template::{BUNDLED, ProvisioningTemplate};

const PREFIX: &str = "provisioning-templates/";

/// Why a provisioning template cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum TemplateDocumentError {
    #[error(
        "'{0}' is not a valid provisioning template name: use 1 to 128 ASCII letters, digits, '_', '-' and '.', not starting with '.'"
    )]
    InvalidName(String),
    #[error("the provisioning template is not usable: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Provisioning templates by name.
#[derive(Clone)]
pub struct ProvisioningTemplates {
    artifacts: Arc<dyn ArtifactStore>,
}

fn key(name: &str) -> String {
    format!("{PREFIX}{name}.json")
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl ProvisioningTemplates {
    pub fn new(artifacts: Arc<dyn ArtifactStore>) -> Self {
        Self { artifacts }
    }

    /// The template document, stored or bundled.
    pub async fn get(&self, name: &str) -> Result<Option<Value>, StoreError> {
        if !valid_name(name) {
            return Ok(None);
        }
        if let Some(bytes) = self.artifacts.get(&key(name)).await? {
            return serde_json::from_slice(&bytes).map(Some).map_err(StoreError::unavailable);
        }
        Ok(BUNDLED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| serde_json::from_str(text).expect("bundled templates are JSON")))
    }

    /// The parsed template; `Err` with the reason when it is missing or unusable.
    pub async fn load(&self, name: &str) -> Result<ProvisioningTemplate, String> {
        match self.get(name).await {
            Ok(Some(document)) => {
                ProvisioningTemplate::parse(&document).map_err(|e| format!("provisioning template '{name}': {e}"))
            }
            Ok(None) => Err(format!("provisioning template '{name}' does not exist")),
            Err(err) => Err(format!("provisioning template '{name}' could not be read: {err}")),
        }
    }

    /// Stores (or replaces) a template after checking that ggprov can interpret it.
    pub async fn put(&self, name: &str, document: &Value) -> Result<(), TemplateDocumentError> {
        if !valid_name(name) {
            return Err(TemplateDocumentError::InvalidName(name.to_owned()));
        }
        ProvisioningTemplate::parse(document).map_err(TemplateDocumentError::Invalid)?;
        self.artifacts.put(&key(name), document.to_string().into_bytes()).await?;
        Ok(())
    }

    /// Deletes a stored template; `false` when none was stored (bundled ones cannot be deleted).
    pub async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        if !valid_name(name) || self.artifacts.get(&key(name)).await?.is_none() {
            return Ok(false);
        }
        self.artifacts.delete(&key(name)).await?;
        Ok(true)
    }

    /// Every template name, stored and bundled, sorted.
    pub async fn names(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self
            .artifacts
            .list(PREFIX)
            .await?
            .into_iter()
            .filter_map(|k| k.strip_prefix(PREFIX).and_then(|n| n.strip_suffix(".json")).map(str::to_owned))
            .collect();
        names.extend(BUNDLED.iter().map(|(n, _)| (*n).to_owned()));
        names.sort();
        names.dedup();
        Ok(names)
    }
}
