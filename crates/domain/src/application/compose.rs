//! Reading a Docker Compose file the way a core would run it: a real YAML parser
//! (`yaml-rust2`'s event parser, anchors, aliases and `<<` merge keys included), a tree that
//! remembers each node's line, and the checks that matter before a file reaches a core.

use std::collections::{BTreeMap, BTreeSet};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::image::{ImageKind, ImageRef};
use crate::validation::Problems;

/// Most nodes a file may expand to (aliases copy nodes: a "billion laughs" file stops here).
const MAX_NODES: usize = 200_000;

/// A YAML node with the line (1-based) where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Scalar(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    fn scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    fn map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    fn get(&self, key: &str) -> Option<&Node> {
        self.map()?.iter().find(|(k, _)| k.scalar() == Some(key)).map(|(_, v)| v)
    }
}

type Entries = Vec<(Node, Node)>;

/// Builds [`Node`]s from parser events.
#[derive(Default)]
struct Builder {
    /// Open collections: the node, for maps a key waiting for its value and the entries of
    /// `<<` merge keys (added at the end, under the mapping's own keys).
    stack: Vec<(Node, Option<Node>, Entries)>,
    anchors: BTreeMap<usize, Node>,
    /// Anchor ids of the open collections (set when they close).
    anchor_ids: Vec<usize>,
    root: Option<Node>,
    nodes: usize,
    error: Option<String>,
}

impl Builder {
    /// Adds a finished node; `weight` is how many nodes it adds (an alias copies a tree).
    fn push_value(&mut self, node: Node, weight: usize) {
        self.nodes += weight;
        if self.nodes > MAX_NODES {
            self.error.get_or_insert_with(|| format!("the file expands to more than {MAX_NODES} YAML nodes"));
            return;
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some((parent, pending_key, merged)) => match &mut parent.value {
                Value::Seq(items) => items.push(node),
                Value::Map(entries) => match pending_key.take() {
                    None => *pending_key = Some(node),
                    Some(key) => {
                        if key.scalar() == Some("<<") {
                            merge(merged, &node);
                        } else if let Some(name) = key.scalar()
                            && entries.iter().any(|(k, _)| k.scalar() == Some(name))
                        {
                            self.error.get_or_insert_with(|| {
                                format!("line {}: key '{name}' appears twice in one mapping", key.line)
                            });
                        } else {
                            entries.push((key, node));
                        }
                    }
                },
                Value::Scalar(_) => unreachable!("scalars are never open"),
            },
        }
    }
}

fn count(node: &Node) -> usize {
    match &node.value {
        Value::Scalar(_) => 1,
        Value::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|(k, v)| count(k) + count(v)).sum::<usize>(),
    }
}

/// YAML merge key: the keys of the merged mapping(s) that the mapping does not set itself.
fn merge(entries: &mut Vec<(Node, Node)>, source: &Node) {
    let sources: Vec<&Node> = match &source.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![source],
    };
    for source in sources {
        for (k, v) in source.map().unwrap_or_default() {
            if !entries.iter().any(|(existing, _)| existing.scalar().is_some() && existing.scalar() == k.scalar()) {
                entries.push((k.clone(), v.clone()));
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let line = mark.line();
        match event {
            Event::Scalar(text, _, anchor, _) => {
                let node = Node { line, value: Value::Scalar(text) };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node, 1);
            }
            Event::Alias(anchor) => match self.anchors.get(&anchor).cloned() {
                Some(node) => {
                    let weight = count(&node);
                    self.push_value(node, weight);
                }
                None => self.error = Some(format!("line {line}: alias of an unknown anchor")),
            },
            Event::SequenceStart(anchor, _) => {
                self.stack.push((Node { line, value: Value::Seq(Vec::new()) }, None, Vec::new()));
                self.anchor_ids.push(anchor);
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push((Node { line, value: Value::Map(Vec::new()) }, None, Vec::new()));
                self.anchor_ids.push(anchor);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (mut node, _, merged) = self.stack.pop().expect("balanced events");
                if let Value::Map(entries) = &mut node.value {
                    merge(entries, &Node { line, value: Value::Map(merged) });
                }
                let anchor = self.anchor_ids.pop().unwrap_or(0);
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node, 1);
            }
            _ => {}
        }
    }
}

/// Parses YAML text into a tree; `Err` names the line and what is wrong.
pub(crate) fn parse_yaml(text: &str) -> Result<Option<Node>, String> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(err) = parser.load(&mut builder, false) {
        return Err(format!(
            "is not valid YAML: {} (line {}, column {})",
            err.info(),
            err.marker().line(),
            err.marker().col() + 1
        ));
    }
    if let Some(err) = builder.error {
        return Err(format!("is not usable YAML: {err}"));
    }
    Ok(builder.root)
}

/// One service of a checked compose file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComposeService {
    pub name: String,
    pub image: ImageRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// Host ports published, as `[ip:]port/protocol`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<String>,
    /// Line of the service in the compose file.
    pub line: usize,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uses_networks: bool,
}

/// What the checks found: the services (in file order) and warnings (not errors).
#[derive(Debug, Clone, Default)]
pub(crate) struct CheckedCompose {
    pub services: Vec<ComposeService>,
    pub warnings: Vec<String>,
}

/// Checks a compose file; problems go under `compose` with the line.
pub(crate) fn check_compose(text: &str, region: &str, problems: &mut Problems) -> CheckedCompose {
    let mut out = CheckedCompose::default();
    let root = match parse_yaml(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            problems.add("compose", "is empty; it must be a Compose file with a `services` mapping");
            return out;
        }
        Err(message) => {
            problems.add("compose", message);
            return out;
        }
    };
    if root.map().is_none() {
        problems.add("compose", format!("line {}: the file must be a mapping with a `services` key", root.line));
        return out;
    }
    let Some(services) = root.get("services") else {
        problems.add("compose", "has no `services` mapping: name at least one service to run");
        return out;
    };
    let Some(entries) = services.map().filter(|e| !e.is_empty()) else {
        problems
            .add("compose", format!("line {}: `services` must be a mapping of at least one service", services.line));
        return out;
    };
    let mut container_names: BTreeMap<String, String> = BTreeMap::new();
    let mut ports: BTreeMap<(String, u16, String), String> = BTreeMap::new();
    for (key, service) in entries {
        let name = key.scalar().unwrap_or_default().to_owned();
        let at = |line: usize| format!("line {line}: service '{name}'");
        if service.map().is_none() {
            problems.add("compose", format!("{} must be a mapping", at(key.line)));
            continue;
        }
        let image_node = service.get("image");
        if service.get("build").is_some() {
            if image_node.is_none() {
                problems.add(
                    "compose",
                    format!(
                        "{} has `build:` and no `image:`; cores do not build images: build and push it to a registry, then name it in `image:`",
                        at(key.line)
                    ),
                );
                continue;
            }
            out.warnings.push(format!(
                "{}: `build:` is ignored on cores; the image '{}' is pulled instead",
                at(key.line),
                image_node.and_then(Node::scalar).unwrap_or_default()
            ));
        }
        let Some(image_node) = image_node else {
            problems
                .add("compose", format!("{} has no `image:`; every service must name the image it runs", at(key.line)));
            continue;
        };
        let Some(reference) = image_node.scalar().filter(|s| !s.is_empty()) else {
            problems.add("compose", format!("{}: `image` must be an image reference", at(image_node.line)));
            continue;
        };
        let image = match ImageRef::parse(reference) {
            Ok(image) => image,
            Err(why) => {
                problems.add("compose", format!("{}: image '{reference}' {why}", at(image_node.line)));
                continue;
            }
        };
        if let ImageKind::PrivateEcr { region: image_region, .. } = &image.kind
            && image_region != region
        {
            problems.add(
                "compose",
                format!(
                    "{}: image '{reference}' is in Amazon ECR in {image_region}, but the cores deploy from {region}; Greengrass pulls private ECR images from the deployment's region only: replicate the repository to {region}",
                    at(image_node.line)
                ),
            );
        }
        if image.digest.is_none() && image.tag.as_deref().is_none_or(|t| t == "latest") {
            out.warnings.push(format!(
                "{}: image '{reference}' is {}; cores may run different images over time: pin a tag or a digest",
                at(image_node.line),
                if image.tag.is_none() { "untagged (`:latest`)" } else { "`:latest`" }
            ));
        }
        // Only the Compose file travels to the core: files it names next to itself do not.
        if let Some(env_file) = service.get("env_file") {
            out.warnings.push(format!(
                "{}: `env_file` names files that are not shipped with the application (only the Compose file is); put the variables under `environment`",
                at(env_file.line)
            ));
        }
        if let Some(Node { value: Value::Seq(volumes), .. }) = service.get("volumes") {
            for volume in volumes {
                let source = match &volume.value {
                    Value::Scalar(text) => Some(text.as_str()),
                    Value::Map(_) => volume.get("source").and_then(Node::scalar),
                    Value::Seq(_) => None,
                };
                if let Some(source) = source.filter(|s| s.starts_with("./") || s.starts_with("../") || *s == ".") {
                    out.warnings.push(format!(
                        "{}: volume '{source}' is a path relative to the Compose file; on the core it is relative to the component's artifact directory, where only the Compose file is",
                        at(volume.line)
                    ));
                }
            }
        }
        let container_name = service.get("container_name").and_then(Node::scalar).map(str::to_owned);
        if let Some(container) = &container_name
            && let Some(other) = container_names.insert(container.clone(), name.clone())
        {
            problems.add(
                "compose",
                format!(
                    "{}: container name '{container}' is also used by service '{other}'; container names must be unique",
                    at(service.get("container_name").map_or(key.line, |n| n.line))
                ),
            );
        }
        let mut host_ports = Vec::new();
        if let Some(Node { value: Value::Seq(items), .. }) = service.get("ports") {
            for item in items {
                match published_ports(item) {
                    Ok(list) => {
                        for (ip, port, proto) in list {
                            let shown =
                                if ip.is_empty() { format!("{port}/{proto}") } else { format!("{ip}:{port}/{proto}") };
                            let clash = ports.iter().find(|((other_ip, other_port, other_proto), _)| {
                                *other_port == port
                                    && *other_proto == proto
                                    && (other_ip.is_empty() || ip.is_empty() || *other_ip == ip)
                            });
                            if let Some((_, other)) = clash {
                                problems.add(
                                    "compose",
                                    format!(
                                        "{}: host port {shown} is also published by service '{other}'; a host port can be bound once",
                                        at(item.line)
                                    ),
                                );
                            } else {
                                ports.insert((ip.clone(), port, proto.clone()), name.clone());
                            }
                            host_ports.push(shown);
                        }
                    }
                    Err(why) => problems.add("compose", format!("{}: port {why}", at(item.line))),
                }
            }
        }
        out.services.push(ComposeService {
            name: name.clone(),
            image,
            container_name,
            host_ports,
            line: key.line,
            uses_networks: service.get("networks").is_some() || service.get("network_mode").is_some(),
        });
    }
    out
}

/// The host ports a `ports` entry publishes: `(ip or "", port, protocol)`.
fn published_ports(item: &Node) -> Result<Vec<(String, u16, String)>, String> {
    match &item.value {
        Value::Scalar(text) => short_syntax(text),
        Value::Map(_) => {
            let Some(published) = item.get("published").and_then(Node::scalar) else {
                return Ok(Vec::new());
            };
            let proto = item.get("protocol").and_then(Node::scalar).unwrap_or("tcp").to_owned();
            let ip = item.get("host_ip").and_then(Node::scalar).unwrap_or_default().to_owned();
            Ok(port_range(published)?.into_iter().map(|p| (ip.clone(), p, proto.clone())).collect())
        }
        Value::Seq(_) => Err("entries must be strings or mappings".into()),
    }
}

/// `[ip:][host:]container[/proto]`, ports or ranges.
fn short_syntax(text: &str) -> Result<Vec<(String, u16, String)>, String> {
    let (spec, proto) = text.split_once('/').unwrap_or((text, "tcp"));
    let parts: Vec<&str> = match spec.rsplit_once(':') {
        None => return Ok(Vec::new()), // container port only: nothing published on a fixed host port
        Some((rest, _container)) => match rest.rsplit_once(':') {
            Some((ip, host)) => vec![ip, host],
            None => vec!["", rest],
        },
    };
    let (ip, host) = (parts[0].trim_matches(['[', ']']), parts[1]);
    if host.is_empty() {
        return Ok(Vec::new());
    }
    Ok(port_range(host)
        .map_err(|e| format!("'{text}' {e}"))?
        .into_iter()
        .map(|p| (ip.to_owned(), p, proto.to_owned()))
        .collect())
}

fn port_range(text: &str) -> Result<Vec<u16>, String> {
    let parse = |s: &str| s.trim().parse::<u16>().ok().filter(|p| *p > 0);
    let (from, to) = match text.split_once('-') {
        Some((a, b)) => (parse(a), parse(b)),
        None => (parse(text), parse(text)),
    };
    match (from, to) {
        (Some(from), Some(to)) if from <= to && to - from < 1024 => Ok((from..=to).collect()),
        _ => Err(format!("has host port '{text}', which is not a port (1-65535) or a range of at most 1024")),
    }
}

/// Every image reference used, once.
pub(super) fn distinct_images(services: &[ComposeService]) -> BTreeSet<&str> {
    services.iter().map(|s| s.image.reference.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(text: &str) -> Vec<String> {
        let mut problems = Problems::new();
        check_compose(text, "eu-west-1", &mut problems);
        problems.iter().map(|p| p.problem.clone()).collect()
    }

    #[test]
    fn anchors_aliases_and_merge_keys_are_yaml_not_errors() {
        let text = "x-common: &common\n  restart: always\n  image: nginx:1.25\nservices:\n  web:\n    <<: *common\n  api:\n    <<: *common\n    image: public.ecr.aws/docker/library/redis:7\n";
        let mut problems = Problems::new();
        let checked = check_compose(text, "eu-west-1", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let images: Vec<_> = checked.services.iter().map(|s| s.image.reference.as_str()).collect();
        assert_eq!(images, ["nginx:1.25", "public.ecr.aws/docker/library/redis:7"]);
        assert_eq!(checked.services[1].line, 7, "the line of the service's name");
    }

    #[test]
    fn problems_name_the_line() {
        assert_eq!(
            problems_of("services:\n  web:\n    image: [\n"),
            ["is not valid YAML: while parsing a node, did not find expected node content (line 4, column 1)"]
        );
        assert_eq!(
            problems_of("services:\n  web:\n    build: .\n"),
            [
                "line 2: service 'web' has `build:` and no `image:`; cores do not build images: build and push it to a registry, then name it in `image:`"
            ]
        );
        let dupes = problems_of(
            "services:\n  a:\n    image: nginx:1\n    container_name: x\n    ports: ['8080:80']\n  b:\n    image: nginx:1\n    container_name: x\n    ports: ['127.0.0.1:8080:81', '9000-9001:90-91/udp']\n",
        );
        assert_eq!(dupes.len(), 2, "{dupes:?}");
        assert!(dupes[0].starts_with("line 8: service 'b': container name 'x'"), "{dupes:?}");
        assert!(dupes[1].starts_with("line 9: service 'b': host port 127.0.0.1:8080/tcp"), "{dupes:?}");
        assert!(problems_of("a: &a [*a]\n")[0].contains("alias"));
        assert!(problems_of("services: {a: {image: x}, a: {image: y}}\n")[0].contains("appears twice"));
        let mut problems = Problems::new();
        let checked = check_compose(
            "services:\n  a:\n    image: nginx:1\n    env_file: .env\n    volumes:\n      - ./conf:/etc/nginx\n      - data:/data\n      - {type: bind, source: ../x, target: /x}\n",
            "eu-west-1",
            &mut problems,
        );
        assert!(problems.is_empty());
        let lines: Vec<&str> = checked.warnings.iter().map(|w| w.split(':').next().unwrap()).collect();
        assert_eq!(lines, ["line 4", "line 6", "line 8"], "{:?}", checked.warnings);
    }

    #[test]
    fn a_billion_laughs_stops_at_the_node_limit() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = i - 1;
            text.push_str(&format!("a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"));
        }
        assert!(parse_yaml(&text).unwrap_err().contains("more than"));
    }
}
