//! `IotRegistry` on the local cloud, with AWS IoT's semantics where they matter.

use std::collections::BTreeMap;

use async_trait::async_trait;
use ggprov_domain::ports::{CertificateRef, CloudError, EndpointKind, IotRegistry, ThingDescription};
use ggprov_domain::provisioning::CertificateStatus;
use ggprov_domain::thing_query::{ThingFacts, ThingQuery};
use ggprov_domain::{ThingName, Timestamp};
use sqlx::Row;

use crate::{LocalCloud, already_exists, db, not_found, rejected};

/// AWS IoT allows a thing in at most 10 thing groups.
pub(crate) const MAX_GROUPS_PER_THING: i64 = 10;

impl LocalCloud {
    /// Registers a CA certificate; its id is the SHA-256 fingerprint of its DER. Registering
    /// the same CA again returns the same id.
    pub async fn register_ca_certificate(&self, pem: &str) -> Result<String, CloudError> {
        const API: &str = "RegisterCACertificate";
        self.admit(API)?;
        let id = ggprov_pki::fingerprint(pem).map_err(|e| rejected(API, e.to_string()))?;
        sqlx::query("INSERT OR IGNORE INTO ca_certificates (id, pem, created_at) VALUES (?, ?, ?)")
            .bind(&id)
            .bind(pem)
            .bind(Timestamp::now().as_millis())
            .execute(self.writer())
            .await
            .map_err(db(API))?;
        Ok(id)
    }

    /// The PEM of a registered CA certificate.
    pub async fn describe_ca_certificate(&self, id: &str) -> Result<Option<String>, CloudError> {
        const API: &str = "DescribeCACertificate";
        self.admit(API)?;
        let row = sqlx::query("SELECT pem FROM ca_certificates WHERE id = ?")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db(API))?;
        Ok(row.map(|r| r.get::<String, _>("pem")))
    }

    async fn certificate_exists(&self, id: &str, api: &'static str) -> Result<Option<String>, CloudError> {
        let row = sqlx::query("SELECT status FROM certificates WHERE id = ?")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db(api))?;
        Ok(row.map(|r| r.get("status")))
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
        let row = sqlx::query("SELECT thing_type, attributes FROM things WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(db(API))?;
        Ok(row.map(|r| ThingDescription {
            name: name.as_str().to_owned(),
            arn: self.thing_arn(name.as_str()),
            thing_type: r.get("thing_type"),
            attributes: serde_json::from_str(r.get::<&str, _>("attributes")).unwrap_or_default(),
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
        let inserted =
            sqlx::query("INSERT OR IGNORE INTO things (name, thing_type, attributes, created_at) VALUES (?, ?, ?, ?)")
                .bind(name.as_str())
                .bind(thing_type)
                .bind(serde_json::to_string(attributes).expect("attributes serialise"))
                .bind(Timestamp::now().as_millis())
                .execute(self.writer())
                .await
                .map_err(db(API))?;
        if inserted.rows_affected() == 0 {
            return Err(already_exists(API, format!("thing {name} already exists")));
        }
        Ok(())
    }

    async fn delete_thing(&self, name: &ThingName) -> Result<(), CloudError> {
        const API: &str = "DeleteThing";
        self.admit(API)?;
        let mut tx = self.writer().begin_with("BEGIN IMMEDIATE").await.map_err(db(API))?;
        let principals: i64 = sqlx::query("SELECT COUNT(*) AS n FROM thing_principals WHERE thing_name = ?")
            .bind(name.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(db(API))?
            .get("n");
        if principals > 0 {
            return Err(rejected(
                API,
                format!("cannot delete thing {name}: it still has {principals} attached principal(s)"),
            ));
        }
        let deleted = sqlx::query("DELETE FROM things WHERE name = ?")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db(API))?;
        if deleted.rows_affected() == 0 {
            return Err(not_found(API, format!("thing {name} does not exist")));
        }
        sqlx::query("DELETE FROM thing_group_members WHERE thing_name = ?")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db(API))?;
        tx.commit().await.map_err(db(API))
    }

    async fn list_thing_principals(&self, name: &ThingName) -> Result<Vec<String>, CloudError> {
        const API: &str = "ListThingPrincipals";
        self.admit(API)?;
        if self.describe_thing_unchecked(name).await? {
            let rows = sqlx::query("SELECT principal FROM thing_principals WHERE thing_name = ? ORDER BY principal")
                .bind(name.as_str())
                .fetch_all(self.pool())
                .await
                .map_err(db(API))?;
            Ok(rows.iter().map(|r| r.get("principal")).collect())
        } else {
            Err(not_found(API, format!("thing {name} does not exist")))
        }
    }

    async fn attach_thing_principal(&self, name: &ThingName, principal_arn: &str) -> Result<(), CloudError> {
        const API: &str = "AttachThingPrincipal";
        self.admit(API)?;
        let id = Self::cert_id_from_arn(principal_arn);
        // One statement when both exist and the pair is new (every first attachment).
        let attached = sqlx::query(
            "INSERT OR IGNORE INTO thing_principals (thing_name, principal) SELECT ?, ? \
             WHERE EXISTS (SELECT 1 FROM things WHERE name = ?) AND EXISTS (SELECT 1 FROM certificates WHERE id = ?)",
        )
        .bind(name.as_str())
        .bind(principal_arn)
        .bind(name.as_str())
        .bind(id.unwrap_or_default())
        .execute(self.writer())
        .await
        .map_err(db(API))?
        .rows_affected()
            == 1;
        if attached {
            return Ok(());
        }
        // Nothing inserted: say why, or it was attached before (fine, as on AWS).
        if !self.describe_thing_unchecked(name).await? {
            return Err(not_found(API, format!("thing {name} does not exist")));
        }
        let id = id.ok_or_else(|| rejected(API, format!("{principal_arn} is not a certificate ARN")))?;
        if self.certificate_exists(id, API).await?.is_none() {
            return Err(not_found(API, format!("certificate {id} does not exist")));
        }
        Ok(())
    }

    async fn detach_thing_principal(&self, name: &ThingName, principal_arn: &str) -> Result<(), CloudError> {
        const API: &str = "DetachThingPrincipal";
        self.admit(API)?;
        sqlx::query("DELETE FROM thing_principals WHERE thing_name = ? AND principal = ?")
            .bind(name.as_str())
            .bind(principal_arn)
            .execute(self.writer())
            .await
            .map_err(db(API))?;
        Ok(())
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
                let registered = sqlx::query("SELECT 1 FROM ca_certificates WHERE id = ?")
                    .bind(&ca_id)
                    .fetch_optional(self.pool())
                    .await
                    .map_err(db(API))?;
                if registered.is_none() {
                    return Err(rejected(API, format!("the CA certificate {ca_id} is not registered with AWS IoT")));
                }
                if !ggprov_pki::is_signed_by(certificate_pem, ca_pem).unwrap_or(false) {
                    return Err(rejected(API, "the certificate is not signed by the given CA certificate"));
                }
                Some(ca_id)
            }
            None => None,
        };
        sqlx::query("INSERT OR IGNORE INTO certificates (id, pem, ca_id, status, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&id)
            .bind(certificate_pem)
            .bind(ca_id)
            .bind(status.as_str())
            .bind(Timestamp::now().as_millis())
            .execute(self.writer())
            .await
            .map_err(db(API))?;
        Ok(CertificateRef { arn: self.cert_arn(&id), id })
    }

    async fn update_certificate_status(
        &self,
        certificate_id: &str,
        status: CertificateStatus,
    ) -> Result<(), CloudError> {
        const API: &str = "UpdateCertificate";
        self.admit(API)?;
        match self.certificate_exists(certificate_id, API).await? {
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
        sqlx::query("UPDATE certificates SET status = ? WHERE id = ? AND status <> 'REVOKED'")
            .bind(status.as_str())
            .bind(certificate_id)
            .execute(self.writer())
            .await
            .map_err(db(API))?;
        Ok(())
    }

    async fn revoke_certificate(&self, certificate_id: &str) -> Result<(), CloudError> {
        const API: &str = "UpdateCertificate";
        self.admit(API)?;
        let updated = sqlx::query("UPDATE certificates SET status = 'REVOKED' WHERE id = ?")
            .bind(certificate_id)
            .execute(self.writer())
            .await
            .map_err(db(API))?;
        if updated.rows_affected() == 0 {
            return Err(not_found(API, format!("certificate {certificate_id} does not exist")));
        }
        Ok(())
    }

    async fn delete_certificate(&self, certificate_id: &str) -> Result<(), CloudError> {
        const API: &str = "DeleteCertificate";
        self.admit(API)?;
        let Some(status) = self.certificate_exists(certificate_id, API).await? else {
            return Err(not_found(API, format!("certificate {certificate_id} does not exist")));
        };
        if status == "ACTIVE" {
            return Err(rejected(API, format!("certificate {certificate_id} is ACTIVE; deactivate it first")));
        }
        let arn = self.cert_arn(certificate_id);
        let attached = sqlx::query("SELECT (SELECT COUNT(*) FROM thing_principals WHERE principal = ?) + (SELECT COUNT(*) FROM policy_targets WHERE target = ?) AS n")
            .bind(&arn)
            .bind(&arn)
            .fetch_one(self.pool())
            .await
            .map_err(db(API))?
            .get::<i64, _>("n");
        if attached > 0 {
            return Err(rejected(API, format!("certificate {certificate_id} is still attached to things or policies")));
        }
        sqlx::query("DELETE FROM certificates WHERE id = ?")
            .bind(certificate_id)
            .execute(self.writer())
            .await
            .map_err(db(API))?;
        Ok(())
    }

    async fn policy_exists(&self, name: &str) -> Result<bool, CloudError> {
        const API: &str = "GetPolicy";
        self.admit(API)?;
        let row = sqlx::query("SELECT 1 FROM policies WHERE name = ?")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(db(API))?;
        Ok(row.is_some())
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
        let inserted = sqlx::query("INSERT OR IGNORE INTO policies (name, document, created_at) VALUES (?, ?, ?)")
            .bind(name)
            .bind(document)
            .bind(Timestamp::now().as_millis())
            .execute(self.writer())
            .await
            .map_err(db(API))?;
        if inserted.rows_affected() == 0 {
            return Err(already_exists(API, format!("policy {name} already exists")));
        }
        Ok(())
    }

    async fn delete_policy(&self, name: &str) -> Result<(), CloudError> {
        const API: &str = "DeletePolicy";
        self.admit(API)?;
        let targets: i64 = sqlx::query("SELECT COUNT(*) AS n FROM policy_targets WHERE policy_name = ?")
            .bind(name)
            .fetch_one(self.pool())
            .await
            .map_err(db(API))?
            .get("n");
        if targets > 0 {
            return Err(rejected(API, format!("policy {name} is still attached to {targets} target(s)")));
        }
        let deleted = sqlx::query("DELETE FROM policies WHERE name = ?")
            .bind(name)
            .execute(self.writer())
            .await
            .map_err(db(API))?;
        if deleted.rows_affected() == 0 {
            return Err(not_found(API, format!("policy {name} does not exist")));
        }
        Ok(())
    }

    async fn attach_policy(&self, name: &str, target_arn: &str) -> Result<(), CloudError> {
        const API: &str = "AttachPolicy";
        self.admit(API)?;
        let exists = sqlx::query("SELECT 1 FROM policies WHERE name = ?")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(db(API))?;
        if exists.is_none() {
            return Err(not_found(API, format!("policy {name} does not exist")));
        }
        sqlx::query("INSERT OR IGNORE INTO policy_targets (policy_name, target) VALUES (?, ?)")
            .bind(name)
            .bind(target_arn)
            .execute(self.writer())
            .await
            .map_err(db(API))?;
        Ok(())
    }

    async fn attach_policy_to_thing_group(&self, name: &str, group: &str) -> Result<(), CloudError> {
        let exists = sqlx::query("SELECT 1 FROM thing_groups WHERE name = ?")
            .bind(group)
            .fetch_optional(self.pool())
            .await
            .map_err(db("AttachPolicy"))?;
        if exists.is_none() {
            return Err(not_found("AttachPolicy", format!("thing group {group} does not exist")));
        }
        self.attach_policy(name, &crate::thing_group_arn(self.region(), group)).await
    }

    async fn detach_policy(&self, name: &str, target_arn: &str) -> Result<(), CloudError> {
        const API: &str = "DetachPolicy";
        self.admit(API)?;
        sqlx::query("DELETE FROM policy_targets WHERE policy_name = ? AND target = ?")
            .bind(name)
            .bind(target_arn)
            .execute(self.writer())
            .await
            .map_err(db(API))?;
        Ok(())
    }

    async fn list_thing_groups_for_thing(&self, name: &ThingName) -> Result<Vec<String>, CloudError> {
        const API: &str = "ListThingGroupsForThing";
        self.admit(API)?;
        let rows = sqlx::query("SELECT group_name FROM thing_group_members WHERE thing_name = ? ORDER BY group_name")
            .bind(name.as_str())
            .fetch_all(self.pool())
            .await
            .map_err(db(API))?;
        Ok(rows.iter().map(|r| r.get("group_name")).collect())
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
        sqlx::query("INSERT OR IGNORE INTO thing_groups (name, created_at) VALUES (?, ?)")
            .bind(name)
            .bind(Timestamp::now().as_millis())
            .execute(self.writer())
            .await
            .map_err(db(API))?;
        Ok(())
    }

    async fn list_things_in_thing_group(&self, name: &str) -> Result<Vec<ThingName>, CloudError> {
        const API: &str = "ListThingsInThingGroup";
        self.admit(API)?;
        let exists = sqlx::query("SELECT 1 FROM thing_groups WHERE name = ?")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(db(API))?;
        if exists.is_none() {
            return Err(not_found(API, format!("thing group {name} does not exist")));
        }
        let rows = sqlx::query("SELECT thing_name FROM thing_group_members WHERE group_name = ? ORDER BY thing_name")
            .bind(name)
            .fetch_all(self.pool())
            .await
            .map_err(db(API))?;
        rows.iter()
            .map(|r| ThingName::parse(r.get::<&str, _>("thing_name")).map_err(|e| rejected(API, e.to_string())))
            .collect()
    }

    async fn remove_thing_from_thing_group(&self, group: &str, name: &ThingName) -> Result<(), CloudError> {
        const API: &str = "RemoveThingFromThingGroup";
        self.admit(API)?;
        sqlx::query("DELETE FROM thing_group_members WHERE group_name = ? AND thing_name = ?")
            .bind(group)
            .bind(name.as_str())
            .execute(self.writer())
            .await
            .map_err(db(API))?;
        Ok(())
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
        let rows = sqlx::query(
            "SELECT t.name, t.attributes, (SELECT group_concat(m.group_name, char(10)) FROM thing_group_members m \
             WHERE m.thing_name = t.name) AS groups, EXISTS (SELECT 1 FROM core_devices c WHERE c.name = t.name \
             AND c.status = 'HEALTHY') AS connected FROM things t ORDER BY t.name",
        )
        .fetch_all(self.pool())
        .await
        .map_err(db(API))?;
        let mut found = Vec::new();
        for row in rows {
            let name: String = row.get("name");
            let attributes: BTreeMap<String, String> =
                serde_json::from_str(row.get::<&str, _>("attributes")).unwrap_or_default();
            let groups: Vec<String> = row
                .get::<Option<String>, _>("groups")
                .map(|g| g.split('\n').map(str::to_owned).collect())
                .unwrap_or_default();
            let facts =
                ThingFacts { name: &name, groups: &groups, attributes: &attributes, connected: row.get("connected") };
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
        let mut tx = self.writer().begin_with("BEGIN IMMEDIATE").await.map_err(db(api))?;
        for old in leave.iter().filter(|g| Some(g.as_str()) != join) {
            sqlx::query("DELETE FROM thing_group_members WHERE group_name = ? AND thing_name = ?")
                .bind(old)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db(api))?;
        }
        let Some(group) = join else { return tx.commit().await.map_err(db(api)) };
        // The thing's existence and its other groups, in one statement.
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM things WHERE name = ?) AS thing, \
             (SELECT COUNT(*) FROM thing_group_members WHERE thing_name = ? AND group_name <> ?) AS n",
        )
        .bind(name.as_str())
        .bind(name.as_str())
        .bind(group)
        .fetch_one(&mut *tx)
        .await
        .map_err(db(api))?;
        if !row.get::<bool, _>("thing") {
            return Err(not_found(api, format!("thing {name} does not exist")));
        }
        let count: i64 = row.get("n");
        sqlx::query("INSERT OR IGNORE INTO thing_groups (name, created_at) VALUES (?, ?)")
            .bind(group)
            .bind(Timestamp::now().as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db(api))?;
        if count >= MAX_GROUPS_PER_THING {
            return Err(rejected(
                api,
                format!("thing {name} is already in {MAX_GROUPS_PER_THING} thing groups, the most AWS IoT allows"),
            ));
        }
        let joined = sqlx::query("INSERT OR IGNORE INTO thing_group_members (group_name, thing_name) VALUES (?, ?)")
            .bind(group)
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db(api))?
            .rows_affected()
            == 1;
        if joined {
            // A core that joins a group again runs its deployment again (a continuous IoT job
            // runs for every thing added to its group): a moved-back core is not left waiting.
            sqlx::query(
                "DELETE FROM deployment_executions WHERE core_name = ? AND status <> 'IN_PROGRESS' \
                 AND deployment_id IN (SELECT id FROM deployments WHERE group_name = ?)",
            )
            .bind(name.as_str())
            .bind(group)
            .execute(&mut *tx)
            .await
            .map_err(db(api))?;
        }
        tx.commit().await.map_err(db(api))?;
        // Greengrass deployments are continuous: a core that joins a group gets its deployment.
        self.apply_if_connected(name).await
    }

    /// Merges attributes into a thing (`None` removes one): what `UpdateThing` with
    /// `attributePayload.merge` does.
    pub async fn merge_thing_attributes(
        &self,
        name: &ThingName,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<(), CloudError> {
        const API: &str = "UpdateThing";
        let mut tx = self.writer().begin_with("BEGIN IMMEDIATE").await.map_err(db(API))?;
        let row = sqlx::query("SELECT attributes FROM things WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(API))?
            .ok_or_else(|| not_found(API, format!("thing {name} does not exist")))?;
        let mut attributes: BTreeMap<String, String> =
            serde_json::from_str(row.get::<&str, _>("attributes")).unwrap_or_default();
        for (key, value) in changes {
            match value {
                Some(v) => attributes.insert(key.clone(), v.clone()),
                None => attributes.remove(key),
            };
        }
        sqlx::query("UPDATE things SET attributes = ? WHERE name = ?")
            .bind(serde_json::to_string(&attributes).expect("attributes serialise"))
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db(API))?;
        tx.commit().await.map_err(db(API))
    }

    async fn describe_thing_unchecked(&self, name: &ThingName) -> Result<bool, CloudError> {
        let row = sqlx::query("SELECT 1 FROM things WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(db("DescribeThing"))?;
        Ok(row.is_some())
    }
}
