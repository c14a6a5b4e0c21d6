//! `IotRegistry` on the local cloud, with AWS IoT's semantics where they matter.

use std::collections::BTreeMap;

use crate::{LocalCloud, all, already_exists, execute, exists, not_found, one, params, rejected};
use async_trait::async_trait;
use ggprov_domain::ports::{CertificateRef, CloudError, EndpointKind, IotRegistry, ThingDescription};
use ggprov_domain::provisioning::CertificateStatus;
use ggprov_domain::thing_query::{ThingFacts, ThingQuery};
use ggprov_domain::{ThingName, Timestamp};

/// AWS IoT allows a thing in at most 10 thing groups.
pub(crate) const MAX_GROUPS_PER_THING: i64 = 10;

impl LocalCloud {
    /// Registers a CA certificate; its id is the SHA-256 fingerprint of its DER. Registering
    /// the same CA again returns the same id.
    pub async fn register_ca_certificate(&self, pem: &str) -> Result<String, CloudError> {
        const API: &str = "RegisterCACertificate";
        self.admit(API)?;
        let id = ggprov_pki::fingerprint(pem).map_err(|e| rejected(API, e.to_string()))?;
        self.write(API, |c| {
            let sql = "INSERT OR IGNORE INTO ca_certificates (id, pem, created_at) VALUES (?, ?, ?)";
            Ok(execute(c, sql, params![id, pem, Timestamp::now().as_millis()])?)
        })
        .await?;
        Ok(id)
    }

    /// The PEM of a registered CA certificate.
    pub async fn describe_ca_certificate(&self, id: &str) -> Result<Option<String>, CloudError> {
        const API: &str = "DescribeCACertificate";
        self.admit(API)?;
        self.read(API, |c| Ok(one(c, "SELECT pem FROM ca_certificates WHERE id = ?", [id], |r| r.get("pem"))?))
    }

    fn certificate_exists(&self, id: &str, api: &'static str) -> Result<Option<String>, CloudError> {
        self.read(api, |c| Ok(one(c, "SELECT status FROM certificates WHERE id = ?", [id], |r| r.get("status"))?))
    }

    fn cert_id_from_arn(arn: &str) -> Option<&str> {
        arn.rsplit_once(":cert/").map(|(_, id)| id)
    }
}

#[async_trait]
impl IotRegistry for LocalCloud {
    async fn describe_thing(&self, name: &ThingName) -> Result<Option<ThingDescription>, CloudError> {
        const API: &str = "DescribeThing";
        self.admit(API)?;
        let row = self.read(API, |c| {
            let sql = "SELECT thing_type, attributes FROM things WHERE name = ?";
            Ok(one(c, sql, [name.as_str()], |r| {
                Ok((r.get::<_, Option<String>>("thing_type")?, r.get::<_, String>("attributes")?))
            })?)
        })?;
        Ok(row.map(|(thing_type, attributes)| ThingDescription {
            name: name.as_str().to_owned(),
            arn: self.thing_arn(name.as_str()),
            thing_type,
            attributes: serde_json::from_str(&attributes).unwrap_or_default(),
        }))
    }

    async fn create_thing(
        &self,
        name: &ThingName,
        thing_type: Option<&str>,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        const API: &str = "CreateThing";
        self.admit(API)?;
        if attributes.len() > 50 {
            return Err(rejected(API, "a thing has at most 50 attributes"));
        }
        let attributes = serde_json::to_string(attributes).expect("attributes serialise");
        let inserted = self
            .write(API, |c| {
                let sql = "INSERT OR IGNORE INTO things (name, thing_type, attributes, created_at) VALUES (?, ?, ?, ?)";
                Ok(execute(c, sql, params![name.as_str(), thing_type, attributes, Timestamp::now().as_millis()])?)
            })
            .await?;
        if inserted == 0 {
            return Err(already_exists(API, format!("thing {name} already exists")));
        }
        Ok(())
    }

    async fn delete_thing(&self, name: &ThingName) -> Result<(), CloudError> {
        const API: &str = "DeleteThing";
        self.admit(API)?;
        self.write(API, |c| {
            let principals: i64 =
                c.query_row("SELECT COUNT(*) FROM thing_principals WHERE thing_name = ?", [name.as_str()], |r| {
                    r.get(0)
                })?;
            if principals > 0 {
                return Err(rejected(
                    API,
                    format!("cannot delete thing {name}: it still has {principals} attached principal(s)"),
                )
                .into());
            }
            if execute(c, "DELETE FROM things WHERE name = ?", [name.as_str()])? == 0 {
                return Err(not_found(API, format!("thing {name} does not exist")).into());
            }
            execute(c, "DELETE FROM thing_group_members WHERE thing_name = ?", [name.as_str()])?;
            Ok(())
        })
        .await
    }

    async fn list_thing_principals(&self, name: &ThingName) -> Result<Vec<String>, CloudError> {
        const API: &str = "ListThingPrincipals";
        self.admit(API)?;
        if self.describe_thing_unchecked(name)? {
            self.read(API, |c| {
                let sql = "SELECT principal FROM thing_principals WHERE thing_name = ? ORDER BY principal";
                Ok(all(c, sql, [name.as_str()], |r| r.get("principal"))?)
            })
        } else {
            Err(not_found(API, format!("thing {name} does not exist")))
        }
    }

    async fn attach_thing_principal(&self, name: &ThingName, principal_arn: &str) -> Result<(), CloudError> {
        const API: &str = "AttachThingPrincipal";
        self.admit(API)?;
        let id = Self::cert_id_from_arn(principal_arn);
        // One statement when both exist and the pair is new (every first attachment).
        let attached = self
            .write(API, |c| {
                let sql = "INSERT OR IGNORE INTO thing_principals (thing_name, principal) SELECT ?, ? \
                     WHERE EXISTS (SELECT 1 FROM things WHERE name = ?) AND EXISTS (SELECT 1 FROM certificates WHERE id = ?)";
                Ok(execute(c, sql, params![name.as_str(), principal_arn, name.as_str(), id.unwrap_or_default()])?)
            })
            .await?
            == 1;
        if attached {
            return Ok(());
        }
        // Nothing inserted: say why, or it was attached before (fine, as on AWS).
        if !self.describe_thing_unchecked(name)? {
            return Err(not_found(API, format!("thing {name} does not exist")));
        }
        let id = id.ok_or_else(|| rejected(API, format!("{principal_arn} is not a certificate ARN")))?;
        if self.certificate_exists(id, API)?.is_none() {
            return Err(not_found(API, format!("certificate {id} does not exist")));
        }
        Ok(())
    }

    async fn detach_thing_principal(&self, name: &ThingName, principal_arn: &str) -> Result<(), CloudError> {
        const API: &str = "DetachThingPrincipal";
        self.admit(API)?;
        self.write(API, |c| {
            let sql = "DELETE FROM thing_principals WHERE thing_name = ? AND principal = ?";
            Ok(execute(c, sql, [name.as_str(), principal_arn]).map(drop)?)
        })
        .await
    }

    async fn register_certificate(
        &self,
        certificate_pem: &str,
        ca_certificate_pem: Option<&str>,
        status: CertificateStatus,
    ) -> Result<CertificateRef, CloudError> {
        const API: &str = "RegisterCertificate";
        self.admit(API)?;
        let id = ggprov_pki::fingerprint(certificate_pem).map_err(|e| rejected(API, e.to_string()))?;
        let ca_id = match ca_certificate_pem {
            Some(ca_pem) => {
                let ca_id =
                    ggprov_pki::fingerprint(ca_pem).map_err(|e| rejected(API, format!("CA certificate: {e}")))?;
                let registered =
                    self.read(API, |c| Ok(exists(c, "SELECT 1 FROM ca_certificates WHERE id = ?", [&ca_id])?))?;
                if !registered {
                    return Err(rejected(API, format!("the CA certificate {ca_id} is not registered with AWS IoT")));
                }
                if !ggprov_pki::is_signed_by(certificate_pem, ca_pem).unwrap_or(false) {
                    return Err(rejected(API, "the certificate is not signed by the given CA certificate"));
                }
                Some(ca_id)
            }
            None => None,
        };
        self.write(API, |c| {
            let sql = "INSERT OR IGNORE INTO certificates (id, pem, ca_id, status, created_at) VALUES (?, ?, ?, ?, ?)";
            Ok(execute(c, sql, params![id, certificate_pem, ca_id, status.as_str(), Timestamp::now().as_millis()])?)
        })
        .await?;
        Ok(CertificateRef { arn: self.cert_arn(&id), id })
    }

    async fn update_certificate_status(
        &self,
        certificate_id: &str,
        status: CertificateStatus,
    ) -> Result<(), CloudError> {
        const API: &str = "UpdateCertificate";
        self.admit(API)?;
        match self.certificate_exists(certificate_id, API)? {
            None => return Err(not_found(API, format!("certificate {certificate_id} does not exist"))),
            // A revoked certificate stays revoked: it cannot authenticate again, and as far as
            // deactivating goes it is inactive already.
            Some(current) if current == "REVOKED" => {
                return match status {
                    CertificateStatus::Active => Err(rejected(
                        API,
                        format!("certificate {certificate_id} is REVOKED and cannot be activated again"),
                    )),
                    CertificateStatus::Inactive => Ok(()),
                };
            }
            Some(_) => {}
        }
        self.write(API, |c| {
            let sql = "UPDATE certificates SET status = ? WHERE id = ? AND status <> 'REVOKED'";
            Ok(execute(c, sql, [status.as_str(), certificate_id]).map(drop)?)
        })
        .await
    }

    async fn revoke_certificate(&self, certificate_id: &str) -> Result<(), CloudError> {
        const API: &str = "UpdateCertificate";
        self.admit(API)?;
        let updated = self
            .write(API, |c| {
                Ok(execute(c, "UPDATE certificates SET status = 'REVOKED' WHERE id = ?", [certificate_id])?)
            })
            .await?;
        if updated == 0 {
            return Err(not_found(API, format!("certificate {certificate_id} does not exist")));
        }
        Ok(())
    }

    async fn delete_certificate(&self, certificate_id: &str) -> Result<(), CloudError> {
        const API: &str = "DeleteCertificate";
        self.admit(API)?;
        let Some(status) = self.certificate_exists(certificate_id, API)? else {
            return Err(not_found(API, format!("certificate {certificate_id} does not exist")));
        };
        if status == "ACTIVE" {
            return Err(rejected(API, format!("certificate {certificate_id} is ACTIVE; deactivate it first")));
        }
        let arn = self.cert_arn(certificate_id);
        self.write(API, |c| {
            let attached: i64 = c.query_row(
                "SELECT (SELECT COUNT(*) FROM thing_principals WHERE principal = ?1) + (SELECT COUNT(*) FROM policy_targets WHERE target = ?1)",
                [&arn],
                |r| r.get(0),
            )?;
            if attached > 0 {
                return Err(rejected(API, format!("certificate {certificate_id} is still attached to things or policies")).into());
            }
            execute(c, "DELETE FROM certificates WHERE id = ?", [certificate_id])?;
            Ok(())
        })
        .await
    }

    async fn policy_exists(&self, name: &str) -> Result<bool, CloudError> {
        const API: &str = "GetPolicy";
        self.admit(API)?;
        self.read(API, |c| Ok(exists(c, "SELECT 1 FROM policies WHERE name = ?", [name])?))
    }

    async fn create_policy(&self, name: &str, document: &str) -> Result<(), CloudError> {
        const API: &str = "CreatePolicy";
        self.admit(API)?;
        let valid_name = !name.is_empty()
            && name.len() <= 128
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '=' | ',' | '.' | '@' | '-' | '_'));
        if !valid_name {
            return Err(rejected(API, format!("'{name}' is not a valid policy name ([\\w+=,.@-]{{1,128}})")));
        }
        if !serde_json::from_str::<serde_json::Value>(document).is_ok_and(|v| v.is_object()) {
            return Err(rejected(API, format!("the document of policy {name} is not a JSON object")));
        }
        let inserted = self
            .write(API, |c| {
                let sql = "INSERT OR IGNORE INTO policies (name, document, created_at) VALUES (?, ?, ?)";
                Ok(execute(c, sql, params![name, document, Timestamp::now().as_millis()])?)
            })
            .await?;
        if inserted == 0 {
            return Err(already_exists(API, format!("policy {name} already exists")));
        }
        Ok(())
    }

    async fn delete_policy(&self, name: &str) -> Result<(), CloudError> {
        const API: &str = "DeletePolicy";
        self.admit(API)?;
        self.write(API, |c| {
            let targets: i64 =
                c.query_row("SELECT COUNT(*) FROM policy_targets WHERE policy_name = ?", [name], |r| r.get(0))?;
            if targets > 0 {
                return Err(rejected(API, format!("policy {name} is still attached to {targets} target(s)")).into());
            }
            if execute(c, "DELETE FROM policies WHERE name = ?", [name])? == 0 {
                return Err(not_found(API, format!("policy {name} does not exist")).into());
            }
            Ok(())
        })
        .await
    }

    async fn attach_policy(&self, name: &str, target_arn: &str) -> Result<(), CloudError> {
        const API: &str = "AttachPolicy";
        self.admit(API)?;
        self.write(API, |c| {
            if !exists(c, "SELECT 1 FROM policies WHERE name = ?", [name])? {
                return Err(not_found(API, format!("policy {name} does not exist")).into());
            }
            execute(c, "INSERT OR IGNORE INTO policy_targets (policy_name, target) VALUES (?, ?)", [name, target_arn])?;
            Ok(())
        })
        .await
    }

    async fn attach_policy_to_thing_group(&self, name: &str, group: &str) -> Result<(), CloudError> {
        let found =
            self.read("AttachPolicy", |c| Ok(exists(c, "SELECT 1 FROM thing_groups WHERE name = ?", [group])?))?;
        if !found {
            return Err(not_found("AttachPolicy", format!("thing group {group} does not exist")));
        }
        self.attach_policy(name, &crate::thing_group_arn(self.region(), group)).await
    }

    async fn detach_policy(&self, name: &str, target_arn: &str) -> Result<(), CloudError> {
        const API: &str = "DetachPolicy";
        self.admit(API)?;
        self.write(API, |c| {
            Ok(execute(c, "DELETE FROM policy_targets WHERE policy_name = ? AND target = ?", [name, target_arn])
                .map(drop)?)
        })
        .await
    }

    async fn list_thing_groups_for_thing(&self, name: &ThingName) -> Result<Vec<String>, CloudError> {
        const API: &str = "ListThingGroupsForThing";
        self.admit(API)?;
        self.read(API, |c| {
            let sql = "SELECT group_name FROM thing_group_members WHERE thing_name = ? ORDER BY group_name";
            Ok(all(c, sql, [name.as_str()], |r| r.get("group_name"))?)
        })
    }

    async fn add_thing_to_thing_group(&self, group: &str, name: &ThingName) -> Result<(), CloudError> {
        const API: &str = "AddThingToThingGroup";
        self.admit(API)?;
        self.move_groups(API, Some(group), name, &[]).await
    }

    /// `UpdateThingGroupsForThing`: one call, one transaction.
    async fn update_thing_groups(
        &self,
        name: &ThingName,
        add: Option<&str>,
        remove: &[String],
    ) -> Result<(), CloudError> {
        const API: &str = "UpdateThingGroupsForThing";
        self.admit(API)?;
        self.move_groups(API, add, name, remove).await
    }

    async fn ensure_thing_group(&self, name: &str) -> Result<(), CloudError> {
        const API: &str = "CreateThingGroup";
        self.admit(API)?;
        let valid = !name.is_empty()
            && name.len() <= 128
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'));
        if !valid {
            return Err(rejected(API, format!("'{name}' is not a valid thing group name")));
        }
        self.write(API, |c| {
            let sql = "INSERT OR IGNORE INTO thing_groups (name, created_at) VALUES (?, ?)";
            Ok(execute(c, sql, params![name, Timestamp::now().as_millis()]).map(drop)?)
        })
        .await
    }

    async fn list_things_in_thing_group(&self, name: &str) -> Result<Vec<ThingName>, CloudError> {
        const API: &str = "ListThingsInThingGroup";
        self.admit(API)?;
        let rows: Vec<String> = self.read(API, |c| {
            if !exists(c, "SELECT 1 FROM thing_groups WHERE name = ?", [name])? {
                return Err(not_found(API, format!("thing group {name} does not exist")).into());
            }
            let sql = "SELECT thing_name FROM thing_group_members WHERE group_name = ? ORDER BY thing_name";
            Ok(all(c, sql, [name], |r| r.get("thing_name"))?)
        })?;
        rows.iter().map(|n| ThingName::parse(n).map_err(|e| rejected(API, e.to_string()))).collect()
    }

    async fn remove_thing_from_thing_group(&self, group: &str, name: &ThingName) -> Result<(), CloudError> {
        const API: &str = "RemoveThingFromThingGroup";
        self.admit(API)?;
        self.write(API, |c| {
            let sql = "DELETE FROM thing_group_members WHERE group_name = ? AND thing_name = ?";
            Ok(execute(c, sql, [group, name.as_str()]).map(drop)?)
        })
        .await
    }

    async fn describe_endpoint(&self, kind: EndpointKind) -> Result<String, CloudError> {
        self.admit("DescribeEndpoint")?;
        let region = self.region();
        Ok(match kind {
            EndpointKind::DataAts => format!("ggprov-local-ats.iot.{region}.amazonaws.com"),
            EndpointKind::CredentialProvider => format!("ggprov-local.credentials.iot.{region}.amazonaws.com"),
        })
    }

    /// `SearchIndex` over the registry, with the subset of the query syntax in
    /// [`ggprov_domain::thing_query`]: thing names, group names, attributes, and connectivity
    /// (a core registered with Greengrass and `HEALTHY`).
    async fn search_things(&self, query: &str) -> Result<Vec<ThingName>, CloudError> {
        const API: &str = "SearchIndex";
        self.admit(API)?;
        let parsed = ThingQuery::parse(query).map_err(|e| rejected(API, format!("invalid query {e}")))?;
        let rows = self.read(API, |c| {
            let sql = "SELECT t.name, t.attributes, (SELECT group_concat(m.group_name, char(10)) FROM thing_group_members m \
                 WHERE m.thing_name = t.name) AS groups, EXISTS (SELECT 1 FROM core_devices c WHERE c.name = t.name \
                 AND c.status = 'HEALTHY') AS connected FROM things t ORDER BY t.name";
            Ok(all(c, sql, [], |r| {
                Ok((
                    r.get::<_, String>("name")?,
                    r.get::<_, String>("attributes")?,
                    r.get::<_, Option<String>>("groups")?,
                    r.get::<_, bool>("connected")?,
                ))
            })?)
        })?;
        let mut found = Vec::new();
        for (name, attributes, groups, connected) in rows {
            let attributes: BTreeMap<String, String> = serde_json::from_str(&attributes).unwrap_or_default();
            let groups: Vec<String> = groups.map(|g| g.split('\n').map(str::to_owned).collect()).unwrap_or_default();
            let facts = ThingFacts { name: &name, groups: &groups, attributes: &attributes, connected };
            if parsed.matches(&facts)
                && let Ok(thing) = ThingName::parse(&name)
            {
                found.push(thing);
            }
        }
        Ok(found)
    }
}

impl LocalCloud {
    /// Takes a thing out of `leave` and puts it into `join`, in one transaction; a core that
    /// joins applies the group's deployment.
    async fn move_groups(
        &self,
        api: &'static str,
        join: Option<&str>,
        name: &ThingName,
        leave: &[String],
    ) -> Result<(), CloudError> {
        let joining = self
            .write(api, |c| {
                for old in leave.iter().filter(|g| Some(g.as_str()) != join) {
                    let sql = "DELETE FROM thing_group_members WHERE group_name = ? AND thing_name = ?";
                    execute(c, sql, [old.as_str(), name.as_str()])?;
                }
                let Some(group) = join else { return Ok(false) };
                // The thing's existence and its other groups, in one statement.
                let (thing, count): (bool, i64) = c.query_row(
                    "SELECT EXISTS (SELECT 1 FROM things WHERE name = ?1), \
                     (SELECT COUNT(*) FROM thing_group_members WHERE thing_name = ?1 AND group_name <> ?2)",
                    [name.as_str(), group],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                if !thing {
                    return Err(not_found(api, format!("thing {name} does not exist")).into());
                }
                let sql = "INSERT OR IGNORE INTO thing_groups (name, created_at) VALUES (?, ?)";
                execute(c, sql, params![group, Timestamp::now().as_millis()])?;
                if count >= MAX_GROUPS_PER_THING {
                    return Err(rejected(
                        api,
                        format!(
                            "thing {name} is already in {MAX_GROUPS_PER_THING} thing groups, the most AWS IoT allows"
                        ),
                    )
                    .into());
                }
                let sql = "INSERT OR IGNORE INTO thing_group_members (group_name, thing_name) VALUES (?, ?)";
                let joined = execute(c, sql, [group, name.as_str()])? == 1;
                if joined {
                    // A core that joins a group again runs its deployment again (a continuous IoT
                    // job runs for every thing added to its group): a moved-back core is not left
                    // waiting.
                    let sql = "DELETE FROM deployment_executions WHERE core_name = ? AND status <> 'IN_PROGRESS' \
                         AND deployment_id IN (SELECT id FROM deployments WHERE group_name = ?)";
                    execute(c, sql, [name.as_str(), group])?;
                }
                Ok(true)
            })
            .await?;
        if !joining {
            return Ok(());
        }
        // Greengrass deployments are continuous: a core that joins a group gets its deployment.
        self.apply_if_connected(name)
    }

    /// Merges attributes into a thing (`None` removes one): what `UpdateThing` with
    /// `attributePayload.merge` does.
    pub async fn merge_thing_attributes(
        &self,
        name: &ThingName,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<(), CloudError> {
        const API: &str = "UpdateThing";
        self.write(API, |c| {
            let stored: String = one(c, "SELECT attributes FROM things WHERE name = ?", [name.as_str()], |r| r.get(0))?
                .ok_or_else(|| not_found(API, format!("thing {name} does not exist")))?;
            let mut attributes: BTreeMap<String, String> = serde_json::from_str(&stored).unwrap_or_default();
            for (key, value) in changes {
                match value {
                    Some(v) => attributes.insert(key.clone(), v.clone()),
                    None => attributes.remove(key),
                };
            }
            let text = serde_json::to_string(&attributes).expect("attributes serialise");
            execute(c, "UPDATE things SET attributes = ? WHERE name = ?", [text.as_str(), name.as_str()])?;
            Ok(())
        })
        .await
    }

    fn describe_thing_unchecked(&self, name: &ThingName) -> Result<bool, CloudError> {
        self.read("DescribeThing", |c| Ok(exists(c, "SELECT 1 FROM things WHERE name = ?", [name.as_str()])?))
    }
}
