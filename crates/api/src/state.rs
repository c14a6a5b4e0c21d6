//! Shared application state handed to every handler.

use std::ops::Deref;
use std::sync::Arc;

use ggprov_domain::TemplateService;
use ggprov_domain::ports::ReadinessCheck;

/// The services and checks the API calls. Built once by the composition root.
pub struct App {
    pub templates: TemplateService,
    /// Dependencies `GET /ready` checks.
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
}

/// Cheap-to-clone handle on [`App`].
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}
