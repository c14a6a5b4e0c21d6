//! Use cases on templates: create, update (new version), read, list, delete.

use std::sync::Arc;

use crate::pagination::{Page, PageRequest};
use crate::ports::{CloudError, Greengrass, StoreError, TemplateStore};
use crate::template::{Template, TemplateName, TemplateSpec};
use crate::time::Timestamp;
use crate::validation::FieldProblem;

/// How often an update re-reads and retries after losing a race with another update.
const UPDATE_ATTEMPTS: usize = 32;

/// Errors of the template operations.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template '{0}' does not exist")]
    NotFound(TemplateName),
    #[error("template '{name}' has no version {version}")]
    VersionNotFound { name: TemplateName, version: String },
    #[error("template '{0}' already exists; use PUT /templates/{0} to add a version")]
    AlreadyExists(TemplateName),
    /// Components that are not in the Greengrass component catalogue, one problem each.
    #[error("{}", describe_invalid_components(.0))]
    InvalidComponents(Vec<FieldProblem>),
    /// Updates kept colliding with other concurrent updates.
    #[error("template '{0}' is being updated by other requests at the same time; retry the request")]
    Contended(TemplateName),
    /// The component catalogue could not be asked.
    #[error("could not check the components with Greengrass: {0}")]
    CatalogueUnavailable(#[source] CloudError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn describe_invalid_components(problems: &[FieldProblem]) -> String {
    let list: Vec<_> = problems.iter().map(|p| p.problem.as_str()).collect();
    list.join("; ")
}

/// Template use cases over a store and the Greengrass component catalogue.
#[derive(Clone)]
pub struct TemplateService {
    store: Arc<dyn TemplateStore>,
    greengrass: Arc<dyn Greengrass>,
}

impl TemplateService {
    pub fn new(store: Arc<dyn TemplateStore>, greengrass: Arc<dyn Greengrass>) -> Self {
        Self { store, greengrass }
    }

    /// Creates version 1 of a new template.
    pub async fn create(&self, name: TemplateName, spec: TemplateSpec) -> Result<Template, TemplateError> {
        if self.store.latest_template(&name).await?.is_some() {
            return Err(TemplateError::AlreadyExists(name));
        }
        self.check_components_exist(&spec).await?;
        let template = Template::first(name, spec, Timestamp::now());
        match self.store.create_template(&template).await {
            Ok(()) => Ok(template),
            Err(StoreError::AlreadyExists) => Err(TemplateError::AlreadyExists(template.name)),
            Err(err) => Err(err.into()),
        }
    }

    /// Adds a version to an existing template: a full replacement of its content. Two
    /// concurrent updates both succeed, as consecutive versions.
    pub async fn update(&self, name: TemplateName, spec: TemplateSpec) -> Result<Template, TemplateError> {
        if self.store.latest_template(&name).await?.is_none() {
            return Err(TemplateError::NotFound(name));
        }
        self.check_components_exist(&spec).await?;
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(latest) = self.store.latest_template(&name).await? else {
                return Err(TemplateError::NotFound(name));
            };
            let next = latest.next(spec.clone(), Timestamp::now());
            match self.store.append_template_version(&next).await {
                Ok(()) => return Ok(next),
                // Another update won the race for this version number: re-read and go again.
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => return Err(TemplateError::NotFound(name)),
                Err(err) => return Err(err.into()),
            }
        }
        Err(TemplateError::Contended(name))
    }

    /// The current (latest) version of a template.
    pub async fn get(&self, name: &TemplateName) -> Result<Template, TemplateError> {
        self.store.latest_template(name).await?.ok_or_else(|| TemplateError::NotFound(name.clone()))
    }

    /// One version of a template: a decimal version number, or `current` for the latest.
    pub async fn get_version(&self, name: &TemplateName, version: &str) -> Result<Template, TemplateError> {
        if version == "current" {
            return self.get(name).await;
        }
        let not_found = || TemplateError::VersionNotFound { name: name.clone(), version: version.to_owned() };
        let number: u32 = parse_version(version).ok_or_else(not_found)?;
        self.store.template_version(name, number).await?.ok_or_else(not_found)
    }

    pub async fn list(&self, page: PageRequest<TemplateName>) -> Result<Page<Template, TemplateName>, TemplateError> {
        Ok(self.store.list_templates(page).await?)
    }

    pub async fn list_versions(
        &self,
        name: &TemplateName,
        page: PageRequest<u32>,
    ) -> Result<Page<Template, u32>, TemplateError> {
        Ok(self.store.list_template_versions(name, page).await?)
    }

    /// Deletes a template and all its versions.
    pub async fn delete(&self, name: &TemplateName) -> Result<(), TemplateError> {
        if self.store.delete_template(name).await? { Ok(()) } else { Err(TemplateError::NotFound(name.clone())) }
    }

    /// Asks the catalogue about every component (concurrently) and reports all unknown ones.
    async fn check_components_exist(&self, spec: &TemplateSpec) -> Result<(), TemplateError> {
        let checks = spec.components().iter().map(|c| self.greengrass.component_version_exists(&c.key, &c.version));
        let answers = futures::future::join_all(checks).await;
        let mut problems = Vec::new();
        for (i, (component, answer)) in spec.components().iter().zip(answers).enumerate() {
            if !answer.map_err(TemplateError::CatalogueUnavailable)? {
                problems.push(FieldProblem {
                    field: format!("components[{i}]"),
                    problem: format!(
                        "component {} version {} does not exist in the Greengrass component catalogue (neither a public AWS component nor one of the account's own)",
                        component.key, component.version
                    ),
                });
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(TemplateError::InvalidComponents(problems)) }
    }
}

/// A version path segment: decimal digits only, no sign, no leading `+`, fits in u32.
pub(crate) fn parse_version(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_exact_decimal_numbers() {
        assert_eq!(parse_version("2"), Some(2));
        assert_eq!(parse_version("10"), Some(10));
        assert_eq!(parse_version("+2"), None);
        assert_eq!(parse_version("-1"), None);
        assert_eq!(parse_version("2.0"), None);
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("99999999999"), None);
    }
}
