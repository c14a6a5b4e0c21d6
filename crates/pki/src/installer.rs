//! Greengrass installer configuration (`installerConfig.yml`), as CDF's `MANUAL_INSTALL` and
//! `FLEET_PROVISIONING` generators write it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The installer-config generators ggprov knows.
pub const GENERATORS: &[&str] = &["MANUAL_INSTALL", "FLEET_PROVISIONING"];

/// What a generator needs to know.
#[derive(Debug, Clone)]
pub struct InstallerInput<'a> {
    pub core_name: &'a str,
    /// The Greengrass nucleus version (the task's `coreVersion`).
    pub nucleus_version: &'a str,
    pub region: &'a str,
    pub role_alias: &'a str,
    pub data_endpoint: &'a str,
    pub credential_endpoint: &'a str,
    /// Where Greengrass lives on the device, e.g. `/greengrass/v2`.
    pub root_path: &'a str,
    pub provisioning_template: &'a str,
    pub template_parameters: &'a BTreeMap<String, String>,
}

/// Renders the config for `generator`, or `None` for an unknown generator.
pub fn render(generator: &str, input: &InstallerInput<'_>) -> Option<String> {
    let root = input.root_path.trim_end_matches('/');
    let nucleus = Node::map([
        ("componentType", Node::str("NUCLEUS")),
        ("version", Node::str(input.nucleus_version)),
        (
            "configuration",
            Node::map([
                ("awsRegion", Node::str(input.region)),
                ("iotRoleAlias", Node::str(input.role_alias)),
                ("iotDataEndpoint", Node::str(input.data_endpoint)),
                ("iotCredEndpoint", Node::str(input.credential_endpoint)),
            ]),
        ),
    ]);
    let document = match generator {
        "MANUAL_INSTALL" => Node::map([
            (
                "system",
                Node::map([
                    ("certificateFilePath", Node::str(&format!("{root}/certs/cert.pem"))),
                    ("privateKeyPath", Node::str(&format!("{root}/certs/private.key"))),
                    ("rootCaPath", Node::str(&format!("{root}/AmazonRootCA1.pem"))),
                    ("rootpath", Node::str(root)),
                    ("thingName", Node::str(input.core_name)),
                ]),
            ),
            ("services", Node::map([("aws.greengrass.Nucleus", nucleus)])),
        ]),
        "FLEET_PROVISIONING" => {
            let parameters =
                Node::Map(input.template_parameters.iter().map(|(k, v)| (k.clone(), Node::str(v))).collect());
            Node::map([(
                "services",
                Node::map([
                    ("aws.greengrass.Nucleus", nucleus),
                    (
                        "aws.greengrass.FleetProvisioningByClaim",
                        Node::map([(
                            "configuration",
                            Node::map([
                                ("rootPath", Node::str(root)),
                                ("awsRegion", Node::str(input.region)),
                                ("iotDataEndpoint", Node::str(input.data_endpoint)),
                                ("iotCredentialEndpoint", Node::str(input.credential_endpoint)),
                                ("iotRoleAlias", Node::str(input.role_alias)),
                                ("provisioningTemplate", Node::str(input.provisioning_template)),
                                ("claimCertificatePath", Node::str(&format!("{root}/claim-certs/claim.pem.crt"))),
                                (
                                    "claimCertificatePrivateKeyPath",
                                    Node::str(&format!("{root}/claim-certs/claim.private.pem.key")),
                                ),
                                ("rootCaPath", Node::str(&format!("{root}/AmazonRootCA1.pem"))),
                                ("templateParameters", parameters),
                            ]),
                        )]),
                    ),
                ]),
            )])
        }
        _ => return None,
    };
    let mut out = String::from("---\n");
    document.write(&mut out, 0);
    Some(out)
}

/// A YAML document built from maps and strings. Strings are written as double-quoted JSON
/// strings (valid YAML), so no value can change the document's structure.
enum Node {
    Str(String),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn str(s: &str) -> Self {
        Self::Str(s.to_owned())
    }

    fn map<const N: usize>(entries: [(&str, Node); N]) -> Self {
        Self::Map(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn write(&self, out: &mut String, indent: usize) {
        let Self::Map(entries) = self else { unreachable!("documents are maps") };
        for (key, value) in entries {
            let key =
                if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
                    key.clone()
                } else {
                    quote(key)
                };
            match value {
                Self::Str(s) => {
                    let _ = writeln!(out, "{:indent$}{key}: {}", "", quote(s));
                }
                Self::Map(inner) if inner.is_empty() => {
                    let _ = writeln!(out, "{:indent$}{key}: {{}}", "");
                }
                Self::Map(_) => {
                    let _ = writeln!(out, "{:indent$}{key}:", "");
                    value.write(out, indent + 2);
                }
            }
        }
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(params: &BTreeMap<String, String>) -> InstallerInput<'_> {
        InstallerInput {
            core_name: "core-1",
            nucleus_version: "2.12.0",
            region: "us-east-1",
            role_alias: "GreengrassV2TokenExchangeRoleAlias",
            data_endpoint: "abc-ats.iot.us-east-1.amazonaws.com",
            credential_endpoint: "abc.credentials.iot.us-east-1.amazonaws.com",
            root_path: "/greengrass/v2",
            provisioning_template: "greengrass2_core",
            template_parameters: params,
        }
    }

    #[test]
    fn manual_install_has_the_system_block_and_nucleus_settings() {
        let params = BTreeMap::new();
        let yaml = render("MANUAL_INSTALL", &input(&params)).unwrap();
        assert_eq!(
            yaml,
            r#"---
system:
  certificateFilePath: "/greengrass/v2/certs/cert.pem"
  privateKeyPath: "/greengrass/v2/certs/private.key"
  rootCaPath: "/greengrass/v2/AmazonRootCA1.pem"
  rootpath: "/greengrass/v2"
  thingName: "core-1"
services:
  aws.greengrass.Nucleus:
    componentType: "NUCLEUS"
    version: "2.12.0"
    configuration:
      awsRegion: "us-east-1"
      iotRoleAlias: "GreengrassV2TokenExchangeRoleAlias"
      iotDataEndpoint: "abc-ats.iot.us-east-1.amazonaws.com"
      iotCredEndpoint: "abc.credentials.iot.us-east-1.amazonaws.com"
"#
        );
    }

    #[test]
    fn fleet_provisioning_quotes_user_values() {
        let params = BTreeMap::from([
            ("ThingName".to_owned(), "core-1\": injected".to_owned()),
            ("odd key: x".to_owned(), "v".to_owned()),
        ]);
        let yaml = render("FLEET_PROVISIONING", &input(&params)).unwrap();
        assert!(!yaml.contains("system:"));
        assert!(yaml.contains("aws.greengrass.FleetProvisioningByClaim:"));
        assert!(yaml.contains(r#"ThingName: "core-1\": injected""#), "{yaml}");
        assert!(yaml.contains(r#""odd key: x": "v""#), "{yaml}");
        assert!(render("CUSTOM", &input(&params)).is_none());
    }
}
