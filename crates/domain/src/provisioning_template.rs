//! CDF provisioning templates: an AWS IoT provisioning template plus a `CDF` section.
//!
//! ggprov interprets them itself with granular, idempotent IoT calls. Supported: `Parameters`
//! (with `Default`), `Ref`, `Fn::Join`, `Fn::Sub`; resources `AWS::IoT::Thing` (name, type,
//! attributes, groups), `AWS::IoT::Certificate` (status), `AWS::IoT::Policy` (by name, or
//! with an inline document); `OverrideSettings` (ignored: ggprov converges instead); `CDF`
//! `createDeviceCertificate`, `registerDeviceCertificateWithoutCA`, `attachAdditionalPolicies`.
//! Anything else is refused with a message naming it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::provisioning::{CertInfo, CertificateStatus};

/// A parsed template, ready to render with parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisioningTemplate {
    parameters: BTreeMap<String, Option<String>>,
    thing: Option<ThingResource>,
    certificate_status: Option<CertificateStatus>,
    policies: Vec<PolicyResource>,
    additional_policies: Vec<PolicyResource>,
    cert_info: Option<CertInfo>,
    policy_group: Option<PolicyGroupSetting>,
}

/// `CDF.attachPoliciesToThingGroup`: `true` (a group named after the policies) or a group name.
#[derive(Debug, Clone, PartialEq)]
enum PolicyGroupSetting {
    Derived,
    Named(String),
}

/// Where a thing's shared policies come from when its template attaches them to a thing group:
/// the thing joins `group`, which carries `policies` (AWS IoT policy inheritance).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyGroup {
    pub group: String,
    /// `(name, document to create it with if absent)`, as [`RenderedTemplate::policies`].
    pub policies: Vec<(String, Option<String>)>,
}

/// The prefix of thing groups named after the policies they carry.
pub const POLICY_GROUP_PREFIX: &str = "ggprov-policies-";

#[derive(Debug, Clone, PartialEq)]
struct ThingResource {
    name: Value,
    thing_type: Option<Value>,
    attributes: BTreeMap<String, Value>,
    groups: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq)]
struct PolicyResource {
    name: Value,
    document: Option<Value>,
}

/// What a template asks for once its parameters are filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedTemplate {
    pub thing_name: Option<String>,
    pub thing_type: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub thing_groups: Vec<String>,
    pub certificate_status: CertificateStatus,
    /// Policies to attach to the certificate: `(name, document to create it with if absent)`.
    pub policies: Vec<(String, Option<String>)>,
    /// `CDF.attachAdditionalPolicies`: with a document, a policy is created for this thing.
    pub additional_policies: Vec<(String, Option<String>)>,
    /// `CDF.certInfo`: the subject, validity (`daysExpiry`) and key algorithm of certificates
    /// minted for the template's things, where the request's `certInfo` does not say.
    pub cert_info: Option<CertInfo>,
    /// `CDF.attachPoliciesToThingGroup`: the shared policies live on a thing group the thing
    /// joins, not on each certificate (then absent from `policies`/`additional_policies`).
    pub policy_group: Option<PolicyGroup>,
}

/// Names of the templates ggprov ships.
pub const BUNDLED: &[(&str, &str)] = &[
    ("greengrass2_core", include_str!("provisioning_templates/greengrass2_core.json")),
    ("greengrass2_client_device", include_str!("provisioning_templates/greengrass2_client_device.json")),
];

impl ProvisioningTemplate {
    /// Parses a template document; the error names the unsupported or malformed construct.
    pub fn parse(document: &Value) -> Result<Self, String> {
        let root = document.as_object().ok_or("a provisioning template must be a JSON object")?;
        for key in root.keys() {
            if !matches!(key.as_str(), "Parameters" | "Resources" | "CDF" | "DeviceConfiguration") {
                return Err(format!("unsupported top-level section '{key}'"));
            }
        }
        if !root.contains_key("Resources") {
            return Err("Resources is required: the things, certificates and policies the template provisions (as GET /provisioningTemplates/greengrass2_core shows)".into());
        }
        if root.get("DeviceConfiguration").is_some_and(|c| !c.is_object()) {
            return Err("DeviceConfiguration must be an object".into());
        }
        let mut parameters = BTreeMap::new();
        if let Some(params) = root.get("Parameters") {
            let params = params.as_object().ok_or("Parameters must be an object")?;
            for (name, spec) in params {
                if !spec.is_object() {
                    return Err(format!("Parameters.{name} must be an object such as {{\"Type\": \"String\"}}"));
                }
                let default = match spec.get("Default") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                };
                parameters.insert(name.clone(), default);
            }
        }
        let mut template = Self {
            parameters,
            thing: None,
            certificate_status: None,
            policies: Vec::new(),
            additional_policies: Vec::new(),
            cert_info: None,
            policy_group: None,
        };
        if let Some(resources) = root.get("Resources") {
            let resources = resources.as_object().ok_or("Resources must be an object")?;
            for (logical, resource) in resources {
                template.add_resource(logical, resource)?;
            }
        }
        if let Some(cdf) = root.get("CDF") {
            let cdf = cdf.as_object().ok_or("CDF must be an object")?;
            for (key, value) in cdf {
                match key.as_str() {
                    "createDeviceCertificate" | "registerDeviceCertificateWithoutCA" | "clientIdMustMatchThingName" => {
                        if !value.is_boolean() {
                            return Err(format!("CDF.{key} must be true or false"));
                        }
                    }
                    "attachAdditionalPolicies" => {
                        let list = value.as_array().ok_or("CDF.attachAdditionalPolicies must be a list")?;
                        for (i, entry) in list.iter().enumerate() {
                            let at = format!("CDF.attachAdditionalPolicies[{i}]");
                            if !entry.is_object() {
                                return Err(format!("{at} must be an object {{\"name\": ..., \"document\"?: ...}}"));
                            }
                            let name = entry.get("name").cloned().ok_or(format!("{at} needs a name"))?;
                            check_expression(&name, &format!("{at}.name"))?;
                            let document = entry.get("document").cloned();
                            if let Some(document) = &document {
                                check_document(document, &format!("{at}.document"))?;
                            }
                            template.additional_policies.push(PolicyResource { name, document });
                        }
                    }
                    "certInfo" => {
                        let info: CertInfo = serde_json::from_value(value.clone())
                            .map_err(|e| format!("CDF.certInfo: {e} (fields: commonName, organization, organizationalUnit, locality, stateName, country, emailAddress, daysExpiry, keyAlgorithm)"))?;
                        if let Some(days) = info.days_expiry.filter(|d| !(1..=36_500).contains(d)) {
                            return Err(format!("CDF.certInfo.daysExpiry {days} must be between 1 and 36500"));
                        }
                        template.cert_info = Some(info);
                    }
                    "attachPoliciesToThingGroup" => {
                        template.policy_group = match value {
                            Value::Bool(false) => None,
                            Value::Bool(true) => Some(PolicyGroupSetting::Derived),
                            Value::String(group) => {
                                check_policy_group_name(group)?;
                                Some(PolicyGroupSetting::Named(group.clone()))
                            }
                            _ => {
                                return Err(
                                    "CDF.attachPoliciesToThingGroup must be true, false or a thing group name".into()
                                );
                            }
                        };
                    }
                    other => return Err(format!("unsupported CDF setting '{other}'")),
                }
            }
        }
        Ok(template)
    }

    fn add_resource(&mut self, logical: &str, resource: &Value) -> Result<(), String> {
        let kind = resource.get("Type").and_then(Value::as_str).ok_or(format!("resource '{logical}' has no Type"))?;
        let props = resource.get("Properties").cloned().unwrap_or(Value::Object(Default::default()));
        let props = props.as_object().ok_or(format!("resource '{logical}': Properties must be an object"))?;
        match kind {
            "AWS::IoT::Thing" => {
                for key in props.keys() {
                    if !matches!(
                        key.as_str(),
                        "ThingName" | "ThingTypeName" | "AttributePayload" | "ThingGroups" | "BillingGroup"
                    ) {
                        return Err(format!("resource '{logical}': unsupported thing property '{key}'"));
                    }
                }
                if props.contains_key("BillingGroup") {
                    return Err(format!("resource '{logical}': BillingGroup is not supported"));
                }
                let attributes = match props.get("AttributePayload") {
                    Some(payload) => payload
                        .as_object()
                        .ok_or(format!("resource '{logical}': AttributePayload must be an object"))?
                        .clone()
                        .into_iter()
                        .collect(),
                    None => BTreeMap::new(),
                };
                let groups = match props.get("ThingGroups") {
                    Some(Value::Array(groups)) => groups.clone(),
                    Some(_) => return Err(format!("resource '{logical}': ThingGroups must be a list")),
                    None => Vec::new(),
                };
                let at = format!("resource '{logical}'");
                for (key, value) in &attributes {
                    check_expression(value, &format!("{at}: AttributePayload.{key}"))?;
                }
                for (i, group) in groups.iter().enumerate() {
                    check_expression(group, &format!("{at}: ThingGroups[{i}]"))?;
                }
                for key in ["ThingName", "ThingTypeName"] {
                    if let Some(value) = props.get(key) {
                        check_expression(value, &format!("{at}: {key}"))?;
                    }
                }
                self.thing = Some(ThingResource {
                    name: props
                        .get("ThingName")
                        .cloned()
                        .ok_or(format!("resource '{logical}': ThingName is required"))?,
                    thing_type: props.get("ThingTypeName").cloned(),
                    attributes,
                    groups,
                });
            }
            "AWS::IoT::Certificate" => {
                for key in props.keys() {
                    if !matches!(key.as_str(), "CertificateId" | "CertificatePem" | "CACertificatePem" | "Status") {
                        return Err(format!("resource '{logical}': unsupported certificate property '{key}'"));
                    }
                }
                self.certificate_status = Some(match props.get("Status") {
                    None => CertificateStatus::Active,
                    Some(Value::String(s)) if s == "ACTIVE" => CertificateStatus::Active,
                    Some(Value::String(s)) if s == "INACTIVE" => CertificateStatus::Inactive,
                    Some(other) => {
                        return Err(format!(
                            "resource '{logical}': certificate Status '{other}' must be ACTIVE or INACTIVE"
                        ));
                    }
                });
            }
            "AWS::IoT::Policy" => {
                let name = props.get("PolicyName").cloned();
                let document = props.get("PolicyDocument").cloned();
                if name.is_none() {
                    return Err(format!(
                        "resource '{logical}': ggprov needs a PolicyName so that policies can be found and cleaned up"
                    ));
                }
                check_expression(name.as_ref().expect("checked"), &format!("resource '{logical}': PolicyName"))?;
                if let Some(document) = &document {
                    check_document(document, &format!("resource '{logical}': PolicyDocument"))?;
                }
                self.policies.push(PolicyResource { name: name.expect("checked"), document });
            }
            other => return Err(format!("resource '{logical}': unsupported resource type '{other}'")),
        }
        Ok(())
    }

    /// Names of the template's parameters without a default.
    pub fn required_parameters(&self) -> impl Iterator<Item = &str> {
        self.parameters.iter().filter(|(_, d)| d.is_none()).map(|(n, _)| n.as_str())
    }

    /// Fills in the parameters. `CertificatePem`, `CaCertificatePem` and `CertificateId` are
    /// ggprov's own (it creates the certificate), so they need no value.
    pub fn render(&self, given: &BTreeMap<String, String>) -> Result<RenderedTemplate, String> {
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        for (name, default) in &self.parameters {
            if let Some(value) = given.get(name).or(default.as_ref()) {
                values.insert(name.clone(), value.clone());
            }
        }
        if let Some(unknown) = given.keys().find(|k| !self.parameters.contains_key(*k)) {
            return Err(format!("provisioningParameters names '{unknown}', which the template does not declare"));
        }
        let eval = |v: &Value| evaluate(v, &values);
        let mut rendered = RenderedTemplate {
            thing_name: None,
            thing_type: None,
            attributes: BTreeMap::new(),
            thing_groups: Vec::new(),
            certificate_status: self.certificate_status.unwrap_or_default(),
            policies: Vec::new(),
            additional_policies: Vec::new(),
            cert_info: self.cert_info.clone(),
            policy_group: None,
        };
        if let Some(thing) = &self.thing {
            rendered.thing_name = Some(eval(&thing.name)?);
            rendered.thing_type = thing.thing_type.as_ref().map(eval).transpose()?;
            for (k, v) in &thing.attributes {
                rendered.attributes.insert(k.clone(), eval(v)?);
            }
            for g in &thing.groups {
                rendered.thing_groups.push(eval(g)?);
            }
        }
        // With a policy group, a policy whose name is fixed in the template is shared by every
        // thing of the template and goes on the group; a name made from parameters, or an
        // additional policy with a document (created per thing), stays on the certificate.
        let mut shared = Vec::new();
        for p in &self.policies {
            let policy = (eval(&p.name)?, p.document.as_ref().map(|d| policy_document(d, &values)).transpose()?);
            if self.policy_group.is_some() && p.name.is_string() {
                shared.push(policy);
            } else {
                rendered.policies.push(policy);
            }
        }
        for p in &self.additional_policies {
            let policy = (eval(&p.name)?, p.document.as_ref().map(|d| policy_document(d, &values)).transpose()?);
            if self.policy_group.is_some() && p.name.is_string() && p.document.is_none() {
                shared.push(policy);
            } else {
                rendered.additional_policies.push(policy);
            }
        }
        if let Some(setting) = &self.policy_group
            && !shared.is_empty()
        {
            let group = match setting {
                PolicyGroupSetting::Named(group) => group.clone(),
                PolicyGroupSetting::Derived => {
                    let mut names: Vec<&str> = shared.iter().map(|(n, _)| n.as_str()).collect();
                    names.sort_unstable();
                    names.dedup();
                    format!("{POLICY_GROUP_PREFIX}{:016x}", crate::hash::fnv1a(names.join("\n").as_bytes()))
                }
            };
            rendered.policy_group = Some(PolicyGroup { group, policies: shared });
        }
        Ok(rendered)
    }
}

/// A thing group name IoT accepts, and not one of ggprov's deployment groups.
fn check_policy_group_name(group: &str) -> Result<(), String> {
    let valid = (1..=128).contains(&group.len())
        && group.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'));
    if !valid {
        return Err(format!(
            "CDF.attachPoliciesToThingGroup '{group}' is not a thing group name: 1-128 letters, digits, ':', '_' or '-'"
        ));
    }
    if group.starts_with(crate::template::DEPLOYMENT_GROUP_PREFIX) {
        return Err(format!(
            "CDF.attachPoliciesToThingGroup '{group}' would be one of ggprov's deployment groups; choose another name"
        ));
    }
    Ok(())
}

/// Checks that `value` is an expression `evaluate` can work with once the parameters are known:
/// a string, number or boolean, `{"Ref": name}`, `{"Fn::Join": [separator, [values]]}` or
/// `{"Fn::Sub": text}`.
fn check_expression(value: &Value, at: &str) -> Result<(), String> {
    let unsupported = || {
        format!(
            "{at} must be a string, number or boolean, {{\"Ref\": name}}, {{\"Fn::Join\": [separator, [values]]}} or {{\"Fn::Sub\": text}}"
        )
    };
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(()),
        Value::Object(map) if map.len() == 1 => {
            let (function, arg) = map.iter().next().expect("one entry");
            match (function.as_str(), arg) {
                ("Ref" | "Fn::Sub", Value::String(_)) => Ok(()),
                ("Fn::Join", Value::Array(parts)) => match parts.as_slice() {
                    [Value::String(_), Value::Array(items)] => items
                        .iter()
                        .enumerate()
                        .try_for_each(|(i, item)| check_expression(item, &format!("{at}.Fn::Join[1][{i}]"))),
                    _ => Err(format!("{at}: Fn::Join takes [separator, [values...]]")),
                },
                ("Ref" | "Fn::Sub" | "Fn::Join", _) => {
                    Err(format!("{at}: {function} has the wrong argument: {}", unsupported()))
                }
                (other, _) => Err(format!("{at}: unsupported intrinsic function '{other}'; {}", unsupported())),
            }
        }
        _ => Err(unsupported()),
    }
}

/// A policy document: a JSON object, or an expression that gives its text.
fn check_document(document: &Value, at: &str) -> Result<(), String> {
    if document.is_object() { Ok(()) } else { check_expression(document, at) }
}

const OWN_PARAMETERS: &[&str] = &["CertificatePem", "CaCertificatePem", "CertificateId"];

/// A policy document: an object (kept as JSON) or a string (rendered).
fn policy_document(document: &Value, values: &BTreeMap<String, String>) -> Result<String, String> {
    match document {
        Value::Object(_) => Ok(document.to_string()),
        other => evaluate(other, values),
    }
}

fn evaluate(value: &Value, values: &BTreeMap<String, String>) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Object(map) if map.len() == 1 => {
            let (function, arg) = map.iter().next().expect("one entry");
            match function.as_str() {
                "Ref" => {
                    let name = arg.as_str().ok_or("Ref takes a parameter name")?;
                    match values.get(name) {
                        Some(v) => Ok(v.clone()),
                        None if OWN_PARAMETERS.contains(&name) => Ok(String::new()),
                        None => Err(format!(
                            "parameter '{name}' has no value: pass it in provisioningParameters or give it a Default"
                        )),
                    }
                }
                "Fn::Join" => {
                    let parts =
                        arg.as_array().filter(|a| a.len() == 2).ok_or("Fn::Join takes [separator, [values...]]")?;
                    let separator = parts[0].as_str().ok_or("Fn::Join separator must be a string")?;
                    let items = parts[1].as_array().ok_or("Fn::Join values must be a list")?;
                    Ok(items.iter().map(|i| evaluate(i, values)).collect::<Result<Vec<_>, _>>()?.join(separator))
                }
                "Fn::Sub" => {
                    let text = arg.as_str().ok_or("Fn::Sub takes a string (the list form is not supported)")?;
                    substitute(text, values)
                }
                other => Err(format!("unsupported intrinsic function '{other}'")),
            }
        }
        other => Err(format!("unsupported value {other}")),
    }
}

fn substitute(text: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(format!("Fn::Sub: unclosed ${{ in '{text}'"))?;
        let name = &after[..end];
        out.push_str(values.get(name).ok_or(format!("Fn::Sub: parameter '{name}' has no value"))?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_upstream_integration_test_template_renders() {
        let template = ProvisioningTemplate::parse(&json!({
            "Parameters": {"ThingName": {"Type": "String"}, "CertificatePem": {"Type": "String"}, "CaCertificatePem": {"Type": "String"}},
            "Resources": {
                "thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Ref": "ThingName"}}, "OverrideSettings": {"ThingTypeName": "REPLACE"}},
                "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {"CACertificatePem": {"Ref": "CaCertificatePem"}, "CertificatePem": {"Ref": "CertificatePem"}, "Status": "ACTIVE"}},
                "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "CDFGreengrass2CorePolicy"}}
            },
            "CDF": {"createDeviceCertificate": true, "attachAdditionalPolicies": [{"name": "CDFGreengrass2CorePolicy"}]}
        }))
        .unwrap();
        let rendered = template.render(&params(&[("ThingName", "core-1")])).unwrap();
        assert_eq!(rendered.thing_name.as_deref(), Some("core-1"));
        assert_eq!(rendered.policies, vec![("CDFGreengrass2CorePolicy".to_owned(), None)]);
        assert_eq!(rendered.certificate_status, CertificateStatus::Active);
    }

    #[test]
    fn intrinsics_and_defaults() {
        let template = ProvisioningTemplate::parse(&json!({
            "Parameters": {"ThingName": {"Type": "String"}, "Site": {"Type": "String", "Default": "berlin"}},
            "Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {
                "ThingName": {"Ref": "ThingName"},
                "AttributePayload": {"site": {"Ref": "Site"}, "label": {"Fn::Sub": "${ThingName}@${Site}"}},
                "ThingGroups": [{"Fn::Join": ["-", ["site", {"Ref": "Site"}]]}]
            }}}
        }))
        .unwrap();
        let rendered = template.render(&params(&[("ThingName", "c1")])).unwrap();
        assert_eq!(rendered.attributes["label"], "c1@berlin");
        assert_eq!(rendered.thing_groups, ["site-berlin"]);
        assert!(template.render(&BTreeMap::new()).unwrap_err().contains("'ThingName' has no value"));
        assert!(template.render(&params(&[("ThingName", "c1"), ("Typo", "x")])).unwrap_err().contains("'Typo'"));
    }

    #[test]
    fn unsupported_constructs_are_named() {
        let cases = [
            (json!({"Resources": {"r": {"Type": "AWS::IoT::JobTemplate"}}}), "AWS::IoT::JobTemplate"),
            (
                json!({"Resources": {"t": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Fn::If": ["a", "b", "c"]}}}}}),
                "Fn::If",
            ),
            (json!({"Resources": {}, "CDF": {"acmpca": {"mode": "REGISTER_WITH_CA"}}}), "acmpca"),
            (json!({"Parameters": {"p": {}}}), "Resources is required"),
            (
                json!({"Resources": {"t": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": []}}}}),
                "ThingName must be",
            ),
            (
                json!({"Resources": {"c": {"Type": "AWS::IoT::Certificate", "Properties": {"Status": true}}}}),
                "ACTIVE or INACTIVE",
            ),
            (json!({"Mappings": {}}), "Mappings"),
        ];
        for (document, named) in cases {
            let err = match ProvisioningTemplate::parse(&document) {
                Err(e) => e,
                Ok(t) => t.render(&BTreeMap::new()).unwrap_err(),
            };
            assert!(err.contains(named), "{err} should name {named}");
        }
    }

    #[test]
    fn fixed_policies_go_on_a_thing_group_and_per_thing_ones_stay_on_the_certificate() {
        let document = |setting: Value| {
            json!({
                "Parameters": {"ThingName": {"Type": "String"}, "Site": {"Type": "String", "Default": "berlin"}},
                "Resources": {
                    "thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Ref": "ThingName"}}},
                    "shared": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "Core"}},
                    "site": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": {"Fn::Sub": "site-${Site}"}}}
                },
                "CDF": {"attachPoliciesToThingGroup": setting, "attachAdditionalPolicies": [
                    {"name": "Tes"}, {"name": "own", "document": {"Version": "2012-10-17", "Statement": []}}
                ]}
            })
        };
        let rendered = ProvisioningTemplate::parse(&document(json!(true)))
            .unwrap()
            .render(&params(&[("ThingName", "c1")]))
            .unwrap();
        let group = rendered.policy_group.clone().expect("a policy group");
        assert!(group.group.starts_with(POLICY_GROUP_PREFIX), "{}", group.group);
        assert_eq!(group.policies, vec![("Core".to_owned(), None), ("Tes".to_owned(), None)]);
        assert_eq!(rendered.policies, vec![("site-berlin".to_owned(), None)]);
        assert_eq!(rendered.additional_policies.len(), 1);
        // The same policies give the same group, whatever the thing; others another one.
        let again = ProvisioningTemplate::parse(&document(json!(true)))
            .unwrap()
            .render(&params(&[("ThingName", "c2"), ("Site", "paris")]))
            .unwrap();
        assert_eq!(again.policy_group.unwrap().group, group.group);
        let named = ProvisioningTemplate::parse(&document(json!("fleet-policies")))
            .unwrap()
            .render(&params(&[("ThingName", "c1")]))
            .unwrap();
        assert_eq!(named.policy_group.unwrap().group, "fleet-policies");
        // Off: every policy on the certificate, as in the original.
        let off = ProvisioningTemplate::parse(&document(json!(false)))
            .unwrap()
            .render(&params(&[("ThingName", "c1")]))
            .unwrap();
        assert_eq!((off.policy_group, off.policies.len(), off.additional_policies.len()), (None, 2, 2));
        for (bad, named) in [
            (json!("has space"), "not a thing group name"),
            (json!("cdf_ggv2_deploymentForTemplate_x"), "deployment groups"),
            (json!(3), "true, false or a thing group name"),
        ] {
            let err = ProvisioningTemplate::parse(&document(bad)).unwrap_err();
            assert!(err.contains(named), "{err}");
        }
    }

    #[test]
    fn bundled_templates_parse() {
        for (name, text) in BUNDLED {
            let document: Value = serde_json::from_str(text).unwrap();
            let template = ProvisioningTemplate::parse(&document).unwrap_or_else(|e| panic!("{name}: {e}"));
            template.render(&params(&[("ThingName", "x")])).unwrap();
        }
    }
}
