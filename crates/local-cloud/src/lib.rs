#![doc = include_str!("../README.md")]

mod catalogue;

use async_trait::async_trait;
use ggprov_domain::ports::{CloudError, Greengrass};
use ggprov_domain::{ComponentName, ComponentVersion};

pub use catalogue::ComponentCatalogue;

/// The simulated AWS IoT + Greengrass V2 control planes.
#[derive(Debug, Clone)]
pub struct LocalCloud {
    catalogue: ComponentCatalogue,
}

impl LocalCloud {
    /// A local cloud whose component catalogue holds the public AWS components plus `private`
    /// (the account's own components, as `GGPROV_EXTRA_COMPONENTS` lists them).
    pub fn new(private: impl IntoIterator<Item = (ComponentName, ComponentVersion)>) -> Self {
        let mut catalogue = ComponentCatalogue::public();
        catalogue.extend(private);
        Self { catalogue }
    }
}

#[async_trait]
impl Greengrass for LocalCloud {
    async fn component_version_exists(
        &self,
        name: &ComponentName,
        version: &ComponentVersion,
    ) -> Result<bool, CloudError> {
        Ok(self.catalogue.contains(name.as_str(), version.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ComponentName {
        ComponentName::parse(s).unwrap()
    }
    fn version(s: &str) -> ComponentVersion {
        ComponentVersion::parse(s).unwrap()
    }

    #[tokio::test]
    async fn private_components_join_the_public_ones() {
        let cloud = LocalCloud::new([(name("com.example.Hello"), version("1.0.0"))]);
        assert!(cloud.component_version_exists(&name("com.example.Hello"), &version("1.0.0")).await.unwrap());
        assert!(!cloud.component_version_exists(&name("com.example.Hello"), &version("1.0.1")).await.unwrap());
        assert!(cloud.component_version_exists(&name("aws.greengrass.Cli"), &version("2.4.0")).await.unwrap());
    }
}
