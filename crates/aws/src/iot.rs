//! `IotRegistry` on AWS IoT: every operation the provisioning and deployment workflows use,
//! with pagination everywhere.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_iot::Client;
use aws_sdk_iot::types::{AttributePayload, CertificateStatus as IotStatus};
use ggprov_domain::ThingName;
use ggprov_domain::ports::{CertificateRef, CloudError, EndpointKind, IotRegistry, ThingDescription};
use ggprov_domain::provisioning::CertificateStatus;

use crate::cloud_error;

/// The IoT registry of the account and region of the SDK configuration.
#[derive(Clone)]
pub struct AwsIot {
    client: Client,
}

impl AwsIot {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The ARN of a thing group (Greengrass deployments target it).
    pub async fn thing_group_arn(&self, name: &str) -> Result<String, CloudError> {
        let out = self
            .client
            .describe_thing_group()
            .thing_group_name(name)
            .send()
            .await
            .map_err(|e| cloud_error("DescribeThingGroup", &e))?;
        out.thing_group_arn.ok_or_else(|| CloudError::Unavailable {
            api: "DescribeThingGroup",
            source: format!("thing group {name} has no ARN").into(),
        })
    }

    /// The CA certificate registered under `ca_id`.
    /// Deactivates and deletes a CA certificate (`UpdateCACertificate`, `DeleteCACertificate`).
    pub async fn delete_ca_certificate(&self, ca_id: &str) -> Result<(), CloudError> {
        self.client
            .update_ca_certificate()
            .certificate_id(ca_id)
            .new_status(aws_sdk_iot::types::CaCertificateStatus::Inactive)
            .send()
            .await
            .map_err(|e| cloud_error("UpdateCACertificate", &e))?;
        self.client
            .delete_ca_certificate()
            .certificate_id(ca_id)
            .send()
            .await
            .map_err(|e| cloud_error("DeleteCACertificate", &e))?;
        Ok(())
    }

    pub async fn ca_certificate_pem(&self, ca_id: &str) -> Result<Option<String>, CloudError> {
        match self.client.describe_ca_certificate().certificate_id(ca_id).send().await {
            Ok(out) => Ok(out.certificate_description.and_then(|d| d.certificate_pem)),
            Err(err) => match cloud_error("DescribeCACertificate", &err) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }
}

fn status(status: CertificateStatus) -> IotStatus {
    match status {
        CertificateStatus::Active => IotStatus::Active,
        CertificateStatus::Inactive => IotStatus::Inactive,
    }
}

fn ok_if_not_found(result: Result<(), CloudError>) -> Result<(), CloudError> {
    match result {
        Err(err) if err.is_not_found() => Ok(()),
        other => other,
    }
}

#[async_trait]
impl IotRegistry for AwsIot {
    async fn describe_thing(&self, name: &ThingName) -> Result<Option<ThingDescription>, CloudError> {
        match self.client.describe_thing().thing_name(name.as_str()).send().await {
            Ok(out) => Ok(Some(ThingDescription {
                name: out.thing_name.unwrap_or_else(|| name.as_str().to_owned()),
                arn: out.thing_arn.unwrap_or_default(),
                thing_type: out.thing_type_name,
                attributes: out.attributes.unwrap_or_default().into_iter().collect(),
            })),
            Err(err) => match cloud_error("DescribeThing", &err) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    async fn create_thing(
        &self,
        name: &ThingName,
        thing_type: Option<&str>,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        let payload = AttributePayload::builder()
            .set_attributes((!attributes.is_empty()).then(|| attributes.clone().into_iter().collect()))
            .build();
        self.client
            .create_thing()
            .thing_name(name.as_str())
            .set_thing_type_name(thing_type.map(str::to_owned))
            .attribute_payload(payload)
            .send()
            .await
            .map_err(|e| cloud_error("CreateThing", &e))?;
        Ok(())
    }

    async fn delete_thing(&self, name: &ThingName) -> Result<(), CloudError> {
        self.client
            .delete_thing()
            .thing_name(name.as_str())
            .send()
            .await
            .map_err(|e| cloud_error("DeleteThing", &e))?;
        Ok(())
    }

    async fn list_thing_principals(&self, name: &ThingName) -> Result<Vec<String>, CloudError> {
        let mut principals = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_thing_principals()
                .thing_name(name.as_str())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| cloud_error("ListThingPrincipals", &e))?;
            principals.extend(out.principals.unwrap_or_default());
            match out.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(principals),
            }
        }
    }

    async fn attach_thing_principal(&self, name: &ThingName, principal_arn: &str) -> Result<(), CloudError> {
        self.client
            .attach_thing_principal()
            .thing_name(name.as_str())
            .principal(principal_arn)
            .send()
            .await
            .map_err(|e| cloud_error("AttachThingPrincipal", &e))?;
        Ok(())
    }

    async fn detach_thing_principal(&self, name: &ThingName, principal_arn: &str) -> Result<(), CloudError> {
        ok_if_not_found(
            self.client
                .detach_thing_principal()
                .thing_name(name.as_str())
                .principal(principal_arn)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| cloud_error("DetachThingPrincipal", &e)),
        )
    }

    async fn register_certificate(
        &self,
        certificate_pem: &str,
        ca_certificate_pem: Option<&str>,
        certificate_status: CertificateStatus,
    ) -> Result<CertificateRef, CloudError> {
        let result = self
            .client
            .register_certificate()
            .certificate_pem(certificate_pem)
            .set_ca_certificate_pem(ca_certificate_pem.map(str::to_owned))
            .status(status(certificate_status))
            .send()
            .await;
        match result {
            Ok(out) => Ok(CertificateRef {
                id: out.certificate_id.unwrap_or_default(),
                arn: out.certificate_arn.unwrap_or_default(),
            }),
            // Registered before (a retried step): IoT names the existing certificate.
            Err(err) => match err.as_service_error() {
                Some(aws_sdk_iot::operation::register_certificate::RegisterCertificateError::ResourceAlreadyExistsException(e))
                    if e.resource_id.is_some() =>
                {
                    let id = e.resource_id.clone().unwrap_or_default();
                    let arn = match &e.resource_arn {
                        Some(arn) => arn.clone(),
                        None => self
                            .client
                            .describe_certificate()
                            .certificate_id(&id)
                            .send()
                            .await
                            .map_err(|e| cloud_error("DescribeCertificate", &e))?
                            .certificate_description
                            .and_then(|d| d.certificate_arn)
                            .unwrap_or_default(),
                    };
                    Ok(CertificateRef { id, arn })
                }
                _ => Err(cloud_error("RegisterCertificate", &err)),
            },
        }
    }

    async fn update_certificate_status(
        &self,
        certificate_id: &str,
        certificate_status: CertificateStatus,
    ) -> Result<(), CloudError> {
        self.client
            .update_certificate()
            .certificate_id(certificate_id)
            .new_status(status(certificate_status))
            .send()
            .await
            .map_err(|e| cloud_error("UpdateCertificate", &e))?;
        Ok(())
    }

    async fn revoke_certificate(&self, certificate_id: &str) -> Result<(), CloudError> {
        self.client
            .update_certificate()
            .certificate_id(certificate_id)
            .new_status(IotStatus::Revoked)
            .send()
            .await
            .map_err(|e| cloud_error("UpdateCertificate", &e))?;
        Ok(())
    }

    async fn delete_certificate(&self, certificate_id: &str) -> Result<(), CloudError> {
        self.client
            .delete_certificate()
            .certificate_id(certificate_id)
            .send()
            .await
            .map_err(|e| cloud_error("DeleteCertificate", &e))?;
        Ok(())
    }

    async fn policy_exists(&self, name: &str) -> Result<bool, CloudError> {
        match self.client.get_policy().policy_name(name).send().await {
            Ok(_) => Ok(true),
            Err(err) => match cloud_error("GetPolicy", &err) {
                e if e.is_not_found() => Ok(false),
                e => Err(e),
            },
        }
    }

    async fn create_policy(&self, name: &str, document: &str) -> Result<(), CloudError> {
        self.client
            .create_policy()
            .policy_name(name)
            .policy_document(document)
            .send()
            .await
            .map_err(|e| cloud_error("CreatePolicy", &e))?;
        Ok(())
    }

    async fn delete_policy(&self, name: &str) -> Result<(), CloudError> {
        ok_if_not_found(
            self.client
                .delete_policy()
                .policy_name(name)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| cloud_error("DeletePolicy", &e)),
        )
    }

    async fn attach_policy_to_thing_group(&self, name: &str, group: &str) -> Result<(), CloudError> {
        let arn = self.thing_group_arn(group).await?;
        self.attach_policy(name, &arn).await
    }

    async fn attach_policy(&self, name: &str, target_arn: &str) -> Result<(), CloudError> {
        self.client
            .attach_policy()
            .policy_name(name)
            .target(target_arn)
            .send()
            .await
            .map_err(|e| cloud_error("AttachPolicy", &e))?;
        Ok(())
    }

    async fn detach_policy(&self, name: &str, target_arn: &str) -> Result<(), CloudError> {
        ok_if_not_found(
            self.client
                .detach_policy()
                .policy_name(name)
                .target(target_arn)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| cloud_error("DetachPolicy", &e)),
        )
    }

    async fn list_thing_groups_for_thing(&self, name: &ThingName) -> Result<Vec<String>, CloudError> {
        let mut groups = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_thing_groups_for_thing()
                .thing_name(name.as_str())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| cloud_error("ListThingGroupsForThing", &e))?;
            groups.extend(out.thing_groups.unwrap_or_default().into_iter().filter_map(|g| g.group_name));
            match out.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(groups),
            }
        }
    }

    async fn ensure_thing_group(&self, name: &str) -> Result<(), CloudError> {
        match self.client.create_thing_group().thing_group_name(name).send().await {
            Ok(_) => Ok(()),
            Err(err) => match cloud_error("CreateThingGroup", &err) {
                CloudError::AlreadyExists { .. } => Ok(()),
                e => Err(e),
            },
        }
    }

    async fn list_things_in_thing_group(&self, name: &str) -> Result<Vec<ThingName>, CloudError> {
        let mut things = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_things_in_thing_group()
                .thing_group_name(name)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| cloud_error("ListThingsInThingGroup", &e))?;
            things.extend(out.things.unwrap_or_default().iter().filter_map(|t| ThingName::parse(t).ok()));
            match out.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(things),
            }
        }
    }

    /// `SearchIndex` on the `AWS_Things` index (fleet indexing must be on), every page.
    async fn search_things(&self, query: &str) -> Result<Vec<ThingName>, CloudError> {
        let mut things = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .search_index()
                .index_name("AWS_Things")
                .query_string(query)
                .max_results(500)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| cloud_error("SearchIndex", &e))?;
            things.extend(
                out.things
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|t| t.thing_name().and_then(|n| ThingName::parse(n).ok())),
            );
            match out.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(things),
            }
        }
    }

    /// AWS's own syntax is the rule: one `SearchIndex` call with the query, and what AWS says
    /// of a query it refuses. A call that fails for another reason does not refuse the query
    /// (the expansion tries again).
    async fn check_thing_query(&self, query: &str) -> Result<(), String> {
        use aws_sdk_iot::error::ProvideErrorMetadata as _;
        let probe = self.client.search_index().index_name("AWS_Things").query_string(query).max_results(1).send().await;
        match probe {
            Err(err) if matches!(err.code(), Some("InvalidQueryException" | "InvalidRequestException")) => {
                Err(err.message().unwrap_or("AWS IoT refused the query").to_owned())
            }
            _ => Ok(()),
        }
    }

    async fn add_thing_to_thing_group(&self, group: &str, name: &ThingName) -> Result<(), CloudError> {
        let add = || async {
            self.client
                .add_thing_to_thing_group()
                .thing_group_name(group)
                .thing_name(name.as_str())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| cloud_error("AddThingToThingGroup", &e))
        };
        match add().await {
            Err(err) if err.is_not_found() && self.describe_thing(name).await?.is_some() => {
                self.ensure_thing_group(group).await?;
                add().await
            }
            other => other,
        }
    }

    /// One `UpdateThingGroupsForThing`; when a group does not exist (the target not created
    /// yet, an old group deleted), the calls one by one, which handle that.
    async fn update_thing_groups(
        &self,
        name: &ThingName,
        add: Option<&str>,
        remove: &[String],
    ) -> Result<(), CloudError> {
        let result = self
            .client
            .update_thing_groups_for_thing()
            .thing_name(name.as_str())
            .set_thing_groups_to_add(add.map(|g| vec![g.to_owned()]))
            .set_thing_groups_to_remove((!remove.is_empty()).then(|| remove.to_vec()))
            .send()
            .await
            .map_err(|e| cloud_error("UpdateThingGroupsForThing", &e));
        match result {
            Err(err) if err.is_not_found() => {
                ggprov_domain::ports::update_groups_call_by_call(self, name, add, remove).await
            }
            other => other.map(drop),
        }
    }

    async fn remove_thing_from_thing_group(&self, group: &str, name: &ThingName) -> Result<(), CloudError> {
        ok_if_not_found(
            self.client
                .remove_thing_from_thing_group()
                .thing_group_name(group)
                .thing_name(name.as_str())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| cloud_error("RemoveThingFromThingGroup", &e)),
        )
    }

    async fn describe_endpoint(&self, kind: EndpointKind) -> Result<String, CloudError> {
        let endpoint_type = match kind {
            EndpointKind::DataAts => "iot:Data-ATS",
            EndpointKind::CredentialProvider => "iot:CredentialProvider",
        };
        let out = self
            .client
            .describe_endpoint()
            .endpoint_type(endpoint_type)
            .send()
            .await
            .map_err(|e| cloud_error("DescribeEndpoint", &e))?;
        out.endpoint_address
            .ok_or_else(|| CloudError::Unavailable { api: "DescribeEndpoint", source: "no endpoint address".into() })
    }
}
