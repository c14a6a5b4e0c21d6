//! AWS default request-rate quotas (transactions per second) of the control-plane APIs ggprov
//! calls (AWS General Reference: AWS IoT Core and AWS IoT Greengrass V2 service quotas).

/// The default TPS quota of an API.
pub fn aws_default_rate(api: &str) -> f64 {
    match api {
        "RegisterCertificate"
        | "RegisterCertificateWithoutCA"
        | "CreateKeysAndCertificate"
        | "UpdateCertificate"
        | "DeleteCertificate" => 10.0,
        "AttachPolicy" | "DetachPolicy" | "AttachThingPrincipal" | "DetachThingPrincipal" => 15.0,
        "CreatePolicy" | "DeletePolicy" | "DescribeEndpoint" => 10.0,
        "CreateThing" | "DeleteThing" | "DescribeThing" | "AddThingToThingGroup" | "RemoveThingFromThingGroup" => 100.0,
        "ListThingPrincipals"
        | "ListThingGroupsForThing"
        | "ListThingsInThingGroup"
        | "CreateThingGroup"
        | "GetPolicy" => 20.0,
        "GetCoreDevice" | "DeleteCoreDevice" | "ListInstalledComponents" | "ListEffectiveDeployments" => 10.0,
        "CreateDeployment" | "ListDeployments" | "BatchAssociateClientDeviceWithCoreDevice" => 10.0,
        _ => 20.0,
    }
}

/// Every API with a quota of its own in [`aws_default_rate`] (others get 20/s).
pub const QUOTED_APIS: &[&str] = &[
    "RegisterCertificate",
    "RegisterCertificateWithoutCA",
    "CreateKeysAndCertificate",
    "UpdateCertificate",
    "DeleteCertificate",
    "AttachPolicy",
    "DetachPolicy",
    "AttachThingPrincipal",
    "DetachThingPrincipal",
    "CreatePolicy",
    "DeletePolicy",
    "DescribeEndpoint",
    "CreateThing",
    "DeleteThing",
    "DescribeThing",
    "AddThingToThingGroup",
    "RemoveThingFromThingGroup",
    "ListThingPrincipals",
    "ListThingGroupsForThing",
    "ListThingsInThingGroup",
    "CreateThingGroup",
    "GetPolicy",
    "GetCoreDevice",
    "DeleteCoreDevice",
    "ListInstalledComponents",
    "ListEffectiveDeployments",
    "CreateDeployment",
    "ListDeployments",
    "BatchAssociateClientDeviceWithCoreDevice",
];
