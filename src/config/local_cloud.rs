//! The local cloud of the embedded default.

use ggprov_domain::{ComponentName, ComponentVersion};

use super::sources::{Setting, Values};

pub(super) const LOCAL_CLOUD_AUTO_CONNECT: Setting = Setting {
    key: "local_cloud_auto_connect",
    env: "GGPROV_LOCAL_CLOUD_AUTO_CONNECT",
    default: "true",
    help: "Local cloud: a provisioned core connects to Greengrass (HEALTHY) by itself; `false`: connect it with `ggprov local-cloud connect`.",
};

pub(super) const EXTRA_COMPONENTS: Setting = Setting {
    key: "extra_components",
    env: "GGPROV_EXTRA_COMPONENTS",
    default: "",
    help: "Local cloud: the account's own Greengrass components, as `name@version` separated by commas, accepted by templates beside the public AWS components.",
};

/// This section's settings, in the order `--help` and the README list them.
pub(super) const SETTINGS: &[&Setting] = &[&LOCAL_CLOUD_AUTO_CONNECT, &EXTRA_COMPONENTS];

/// How the local cloud behaves.
#[derive(Debug, Clone)]
pub struct LocalCloudConfig {
    /// Provisioned cores connect by themselves.
    pub auto_connect: bool,
    /// The account's own components, accepted beside the public ones.
    pub extra_components: Vec<(ComponentName, ComponentVersion)>,
}

impl LocalCloudConfig {
    pub(super) fn read(v: &mut Values) -> Option<Self> {
        let auto_connect = v.flag(&LOCAL_CLOUD_AUTO_CONNECT);
        let text = v.text_of(&EXTRA_COMPONENTS);
        let mut extra_components = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let parsed = item.rsplit_once('@').ok_or_else(|| "missing '@version'".to_owned()).and_then(|(n, ver)| {
                Ok((
                    ComponentName::parse(n).map_err(|e| format!("name {e}"))?,
                    ComponentVersion::parse(ver).map_err(|e| format!("version {e}"))?,
                ))
            });
            match parsed {
                Ok(component) => extra_components.push(component),
                Err(why) => v.fail(
                    &EXTRA_COMPONENTS,
                    format!("'{item}' is not name@version ({why}), e.g. com.example.Hello@1.0.0"),
                ),
            }
        }
        Some(Self { auto_connect: auto_connect?, extra_components })
    }
}
