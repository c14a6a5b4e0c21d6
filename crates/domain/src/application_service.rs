//! Use cases on Docker Compose applications: create, update (next version), read, list, delete.
//!
//! A version is stored first as `Pending` (which reserves its number), then published: its
//! artifacts are written under content-addressed keys, its component version is created in
//! Greengrass, and the version is marked `Published` with its event in one write. Each step is
//! idempotent, so a request that finds the latest version still pending (a crash, a failed
//! call) finishes it first; when that version carries the same input, finishing it *is* the
//! request's answer, so a retried request creates nothing twice.

use std::sync::Arc;

use serde_json::json;

use crate::application::{
    Application, ApplicationInput, ApplicationName, ApplicationState, CheckedInput, InputError, PublishTarget,
};
use crate::cores::Event;
use crate::pagination::{Page, PageRequest};
use crate::ports::{ApplicationStore, ArtifactStore, CloudError, Greengrass, Publication, StoreError, TemplateStore};
use crate::template::TemplateName;
use crate::validation::Problems;

pub const APPLICATION_CREATED_EVENT: &str = "Application Created Event";
pub const APPLICATION_UPDATED_EVENT: &str = "Application Updated Event";
pub const APPLICATION_DELETED_EVENT: &str = "Application Deleted Event";

/// How often an update re-reads after losing the race for a version number.
const UPDATE_ATTEMPTS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ApplicationError {
    #[error("application '{0}' does not exist")]
    NotFound(ApplicationName),
    #[error("application '{name}' has no version {version}")]
    VersionNotFound { name: ApplicationName, version: String },
    #[error("application '{0}' already exists; use PUT /applications/{0} to add a version")]
    AlreadyExists(ApplicationName),
    #[error("the Compose file is {0} bytes; at most {max} are accepted", max = crate::application::MAX_COMPOSE_BYTES)]
    TooLarge(usize),
    #[error("invalid application")]
    Invalid(Problems),
    /// Template versions still name the application's component.
    #[error("application '{name}' is used by template versions {}; deploy templates without it (or delete them) first", .users.join(", "))]
    InUse { name: ApplicationName, users: Vec<String> },
    #[error("application '{0}' is being updated by other requests at the same time; retry the request")]
    Contended(ApplicationName),
    /// Greengrass refused the generated component (the version stays pending).
    #[error("Greengrass refused the component of application '{name}' version {version}: {message}")]
    Refused { name: ApplicationName, version: u32, message: String },
    /// Greengrass or the artifact store could not be reached; the version stays pending and the
    /// next request on the application finishes it.
    #[error("application '{name}' version {version} is stored but not published yet ({source}); retry the request")]
    NotPublished {
        name: ApplicationName,
        version: u32,
        #[source]
        source: crate::ports::BoxError,
    },
    #[error("could not reach Greengrass: {0}")]
    Cloud(#[source] CloudError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Application use cases.
#[derive(Clone)]
pub struct ApplicationService {
    store: Arc<dyn ApplicationStore>,
    templates: Arc<dyn TemplateStore>,
    artifacts: Arc<dyn ArtifactStore>,
    greengrass: Arc<dyn Greengrass>,
    region: String,
    prefix: String,
}

impl ApplicationService {
    pub fn new(
        store: Arc<dyn ApplicationStore>,
        templates: Arc<dyn TemplateStore>,
        artifacts: Arc<dyn ArtifactStore>,
        greengrass: Arc<dyn Greengrass>,
        region: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        Self { store, templates, artifacts, greengrass, region: region.into(), prefix: prefix.into() }
    }

    async fn check(&self, input: ApplicationInput) -> Result<CheckedInput, ApplicationError> {
        let checked = input.check(&self.region).map_err(|e| match e {
            InputError::TooLarge(n) => ApplicationError::TooLarge(n),
            InputError::Invalid(p) => ApplicationError::Invalid(p),
        })?;
        let mut problems = Problems::new();
        for (i, tarball) in checked.input.images.iter().enumerate() {
            if !self.artifacts.exists(&tarball.key).await? {
                problems.add(
                    format!("images[{i}].key"),
                    format!(
                        "'{}' is not in the artifact store (bucket {}); upload the `docker save` tarball first",
                        tarball.key,
                        self.artifacts.recipe_bucket()
                    ),
                );
            }
        }
        if problems.is_empty() { Ok(checked) } else { Err(ApplicationError::Invalid(problems)) }
    }

    fn target(&self) -> PublishTarget<'_> {
        PublishTarget { prefix: &self.prefix, bucket: self.artifacts.recipe_bucket(), region: &self.region }
    }

    /// Creates version 1.
    pub async fn create(
        &self,
        name: ApplicationName,
        input: ApplicationInput,
    ) -> Result<Application, ApplicationError> {
        let checked = self.check(input).await?;
        if let Some(latest) = self.store.latest_application(&name).await? {
            return self.existing(name, latest, &checked).await;
        }
        let app = Application::build(name.clone(), 1, checked.clone(), &self.target());
        match self.store.create_application(&app).await {
            Ok(()) => self.publish(app).await,
            // A concurrent create: the same request (retried) gets its answer.
            Err(StoreError::AlreadyExists) => match self.store.latest_application(&name).await? {
                Some(latest) => self.existing(name, latest, &checked).await,
                None => Err(ApplicationError::NotFound(name)),
            },
            Err(err) => Err(err.into()),
        }
    }

    /// A create that finds the application there: the same create again (a retry whose first
    /// answer was lost, or a pending version 1 it finishes) gets that version; anything else
    /// is `AlreadyExists`.
    async fn existing(
        &self,
        name: ApplicationName,
        latest: Application,
        checked: &CheckedInput,
    ) -> Result<Application, ApplicationError> {
        if latest.version == 1
            && latest.state == ApplicationState::Published
            && latest.fingerprint == checked.fingerprint
        {
            return Ok(latest);
        }
        self.finish_retry(latest, checked).await?.ok_or(ApplicationError::AlreadyExists(name))
    }

    /// Adds the next version.
    pub async fn update(
        &self,
        name: ApplicationName,
        input: ApplicationInput,
    ) -> Result<Application, ApplicationError> {
        let checked = self.check(input).await?;
        for _ in 0..UPDATE_ATTEMPTS {
            let latest =
                self.store.latest_application(&name).await?.ok_or_else(|| ApplicationError::NotFound(name.clone()))?;
            if latest.state == ApplicationState::Pending {
                if let Some(done) = self.finish_retry(latest, &checked).await? {
                    return Ok(done);
                }
                continue;
            }
            let next = Application::build(name.clone(), latest.version + 1, checked.clone(), &self.target());
            match self.store.append_application_version(&next).await {
                Ok(()) => return self.publish(next).await,
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => return Err(ApplicationError::NotFound(name)),
                Err(err) => return Err(err.into()),
            }
        }
        Err(ApplicationError::Contended(name))
    }

    /// Finishes a pending latest version; `Some` when it carries this same input (the request
    /// was a retry and that version is its answer).
    async fn finish_retry(
        &self,
        latest: Application,
        checked: &CheckedInput,
    ) -> Result<Option<Application>, ApplicationError> {
        if latest.state == ApplicationState::Published {
            return Ok(None);
        }
        let same = latest.fingerprint == checked.fingerprint;
        let published = self.publish(latest).await?;
        Ok(same.then_some(published))
    }

    /// Writes the artifacts, creates the component version and marks the version published.
    async fn publish(&self, mut app: Application) -> Result<Application, ApplicationError> {
        let not_published = |app: &Application, source: crate::ports::BoxError| ApplicationError::NotPublished {
            name: app.name.clone(),
            version: app.version,
            source,
        };
        for (key, bytes) in app.own_artifacts() {
            let version_id =
                self.artifacts.put_versioned(&key, bytes).await.map_err(|e| not_published(&app, Box::new(e)))?;
            if let Some(artifact) = app.artifacts.iter_mut().find(|a| a.key == key) {
                artifact.version_id = version_id;
            }
        }
        match self.greengrass.create_component_version(&app.recipe).await {
            Ok(()) | Err(CloudError::AlreadyExists { .. }) => {}
            Err(CloudError::Rejected { message, .. }) => {
                return Err(ApplicationError::Refused { name: app.name.clone(), version: app.version, message });
            }
            Err(err) => return Err(not_published(&app, Box::new(err))),
        }
        app.state = ApplicationState::Published;
        let kind = if app.version == 1 { APPLICATION_CREATED_EVENT } else { APPLICATION_UPDATED_EVENT };
        let event = Event {
            detail_type: kind.to_owned(),
            detail: json!({
                "applicationName": app.name.as_str(),
                "version": app.version,
                "componentName": app.component_name.as_str(),
                "componentVersion": app.component_version.as_str(),
                "warnings": app.warnings.len(),
            }),
        };
        let gone = match self.store.publish_application_version(&app, &event).await? {
            Publication::Published => return Ok(app),
            // Another request published it first: its record is the one to show, unless a
            // delete has removed it since (and with it every component version it saw).
            Publication::AlreadyPublished => match self.store.application_version(&app.name, app.version).await? {
                Some(published) => return Ok(published),
                None => ApplicationError::NotFound(app.name.clone()),
            },
            // A delete has begun: the component version and artifacts just created must not
            // outlive the application. The delete may have listed them already; deleting
            // twice is harmless.
            Publication::Gone => ApplicationError::NotFound(app.name.clone()),
        };
        self.greengrass
            .delete_component_version(&app.component_name, &app.component_version)
            .await
            .map_err(ApplicationError::Cloud)?;
        for (key, _) in app.own_artifacts() {
            self.artifacts.delete(&key).await?;
        }
        Err(gone)
    }

    pub async fn get(&self, name: &ApplicationName) -> Result<Application, ApplicationError> {
        self.store.latest_application(name).await?.ok_or_else(|| ApplicationError::NotFound(name.clone()))
    }

    /// One version: decimal digits, or `current`.
    pub async fn get_version(&self, name: &ApplicationName, version: &str) -> Result<Application, ApplicationError> {
        if version == "current" {
            return self.get(name).await;
        }
        let not_found = || ApplicationError::VersionNotFound { name: name.clone(), version: version.to_owned() };
        let number = crate::template_service::parse_version(version).ok_or_else(not_found)?;
        self.store.application_version(name, number).await?.ok_or_else(not_found)
    }

    pub async fn list(
        &self,
        page: PageRequest<ApplicationName>,
    ) -> Result<Page<Application, ApplicationName>, ApplicationError> {
        Ok(self.store.list_applications(page).await?)
    }

    pub async fn list_versions(
        &self,
        name: &ApplicationName,
        page: PageRequest<u32>,
    ) -> Result<Page<Application, u32>, ApplicationError> {
        let page = self.store.list_application_versions(name, page).await?;
        if page.items.is_empty() && self.store.latest_application(name).await?.is_none() {
            return Err(ApplicationError::NotFound(name.clone()));
        }
        Ok(page)
    }

    /// Template versions (`name:version`) whose components include the application's.
    async fn users(&self, component: &str) -> Result<Vec<String>, StoreError> {
        let mut users = Vec::new();
        let mut after: Option<TemplateName> = None;
        loop {
            let page =
                self.templates.list_templates(PageRequest { limit: 100, exclusive_start: after.clone() }).await?;
            for template in &page.items {
                let mut from: Option<u32> = None;
                loop {
                    let versions = self
                        .templates
                        .list_template_versions(&template.name, PageRequest { limit: 100, exclusive_start: from })
                        .await?;
                    users.extend(
                        versions
                            .items
                            .iter()
                            .filter(|v| v.spec.components().iter().any(|c| c.key.as_str() == component))
                            .map(|v| format!("{}:{}", v.name.as_str(), v.version)),
                    );
                    match versions.last_evaluated {
                        Some(next) => from = Some(next),
                        None => break,
                    }
                }
            }
            match page.last_evaluated {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(users)
    }

    /// Deletes an application, its component versions and its artifacts; 409 while a template
    /// version still names it. The store marks the application as being deleted before any
    /// component version goes, and refuses appends and publishes from then on; a publish it
    /// refuses removes the component version it created. So whichever way a racing update
    /// falls, no component version of a deleted application is left behind.
    pub async fn delete(&self, name: &ApplicationName) -> Result<(), ApplicationError> {
        let latest = self.get(name).await?;
        let users = self.users(latest.component_name.as_str()).await?;
        if !users.is_empty() {
            return Err(ApplicationError::InUse { name: name.clone(), users });
        }
        let last =
            self.store.begin_application_delete(name).await?.ok_or_else(|| ApplicationError::NotFound(name.clone()))?;
        // Component versions first: a template cannot name them any more, and a new
        // application of the same name never meets an old component version.
        for version in 1..=last {
            let component_version = crate::template::ComponentVersion::parse(&format!("{version}.0.0"))
                .expect("N.0.0 is a semantic version");
            self.greengrass
                .delete_component_version(&latest.component_name, &component_version)
                .await
                .map_err(ApplicationError::Cloud)?;
        }
        for key in self.artifacts.list(&format!("applications/{}/", name.as_str())).await? {
            self.artifacts.delete(&key).await?;
        }
        let event = Event {
            detail_type: APPLICATION_DELETED_EVENT.to_owned(),
            detail: json!({"applicationName": name.as_str(), "versions": last, "componentName": latest.component_name.as_str()}),
        };
        match self.store.delete_application(name, &event).await? {
            true => Ok(()),
            false => Err(ApplicationError::NotFound(name.clone())),
        }
    }
}
