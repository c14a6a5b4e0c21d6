//! Docker image references (`[registry[:port]/]repository[:tag][@digest]`, the grammar of
//! `distribution/reference`) and where they come from, because that decides how a core pulls
//! them: Greengrass downloads private ECR, public ECR and Docker Hub images itself (`docker:`
//! artifacts); other registries need credentials and a `docker login` on the core.

use serde::{Deserialize, Serialize};

/// Where an image is pulled from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ImageKind {
    /// `ACCOUNT.dkr.ecr.REGION.amazonaws.com/repo`: needs the token exchange role.
    #[serde(rename_all = "camelCase")]
    PrivateEcr { account: String, region: String },
    /// `public.ecr.aws/...`.
    PublicEcr,
    /// `name`, `user/name`, `docker.io/...`.
    DockerHub,
    /// Any other registry: pulled on the core after a `docker login` with its credentials.
    Other,
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRef {
    /// As written in the compose file.
    pub reference: String,
    /// Registry host (`docker.io` for Docker Hub).
    pub registry: String,
    pub repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub kind: ImageKind,
}

const DOCKER_HUB: &str = "docker.io";

impl ImageRef {
    /// Parses a reference; `Err` says what is wrong with it.
    pub fn parse(reference: &str) -> Result<Self, String> {
        if reference.contains('$') {
            return Err("uses a variable; cores do not resolve Compose variables: write the image out".into());
        }
        if reference.len() > 255 || reference.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("is not an image reference (at most 255 characters, no spaces)".into());
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (reference, None),
        };
        if let Some(digest) = digest {
            let valid = digest.split_once(':').is_some_and(|(algo, hex)| {
                !algo.is_empty()
                    && algo.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
                    && hex.len() >= 32
                    && hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            });
            if !valid {
                return Err(format!(
                    "has digest '{digest}', which is not `algorithm:hex` such as sha256:<64 hex digits>"
                ));
            }
        }
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !valid {
                return Err(format!(
                    "has tag '{tag}', which is not a tag (letters, digits, '_', '.', '-'; at most 128)"
                ));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_owned(), path.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
            _ => registry,
        };
        if repository.is_empty() || !repository.split('/').all(valid_path_component) {
            return Err(format!(
                "has repository '{repository}', which is not a repository name (lowercase letters, digits and separators '.', '_', '__', '-', components joined by '/')"
            ));
        }
        let kind = classify(&registry);
        let repository = if kind == ImageKind::DockerHub && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        Ok(Self {
            reference: reference.to_owned(),
            registry,
            repository,
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
            kind,
        })
    }

    /// Whether Greengrass can download the image itself (a `docker:` artifact).
    pub fn greengrass_can_pull(&self) -> bool {
        !matches!(self.kind, ImageKind::Other)
    }
}

fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    // Separators: '.', '_', '__' or any number of '-', always between alphanumerics.
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return false;
        }
    }
    true
}

fn classify(registry: &str) -> ImageKind {
    if registry == DOCKER_HUB {
        return ImageKind::DockerHub;
    }
    if registry == "public.ecr.aws" {
        return ImageKind::PublicEcr;
    }
    // ACCOUNT.dkr.ecr.REGION.amazonaws.com(.cn)
    let host = registry.strip_suffix(".cn").unwrap_or(registry);
    if let Some(head) = host.strip_suffix(".amazonaws.com")
        && let Some((account, region)) = head.split_once(".dkr.ecr.")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !region.is_empty()
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return ImageKind::PrivateEcr { account: account.to_owned(), region: region.to_owned() };
    }
    ImageKind::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_split_and_classified() {
        let ecr = ImageRef::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api:1.4@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(ecr.kind, ImageKind::PrivateEcr { account: "123456789012".into(), region: "eu-west-1".into() });
        assert_eq!((ecr.repository.as_str(), ecr.tag.as_deref()), ("shop/api", Some("1.4")));
        assert!(ecr.digest.is_some());

        let hub = ImageRef::parse("nginx:1.25").unwrap();
        assert_eq!(
            (hub.registry.as_str(), hub.repository.as_str(), hub.kind),
            ("docker.io", "library/nginx", ImageKind::DockerHub)
        );
        assert_eq!(ImageRef::parse("grafana/grafana").unwrap().tag, None);
        assert_eq!(ImageRef::parse("public.ecr.aws/docker/library/redis:7").unwrap().kind, ImageKind::PublicEcr);
        let other = ImageRef::parse("registry.example.com:5000/team/app:2").unwrap();
        assert_eq!(
            (other.registry.as_str(), other.repository.as_str(), other.kind),
            ("registry.example.com:5000", "team/app", ImageKind::Other)
        );
        assert_eq!(ImageRef::parse("localhost/app").unwrap().kind, ImageKind::Other);
    }

    #[test]
    fn bad_references_say_why() {
        assert!(ImageRef::parse("Nginx").unwrap_err().contains("repository"));
        assert!(ImageRef::parse("nginx:").unwrap_err().contains("tag"));
        assert!(ImageRef::parse("nginx@sha256:xyz").unwrap_err().contains("digest"));
        assert!(ImageRef::parse("app:${TAG}").unwrap_err().contains("variable"));
        assert!(ImageRef::parse("a--b/c__d.e").is_ok());
        assert!(ImageRef::parse("a..b").is_err());
    }
}
