//! The command-line client: `ggprov <noun> <verb>` over the HTTP API (`GGPROV_URL`,
//! `GGPROV_API_KEY` or `GGPROV_TOKEN`). Tables for people, `--output json` for scripts; the
//! exit code is 0 only when everything asked for succeeded (see [`Exit`]).

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

const CDF: &str = "application/vnd.aws-cdf-v1.0+json";
/// Cores per core task: keeps each request well under the API's 1 MiB body limit.
const CORES_PER_TASK: usize = 2000;

/// How the client ends: 0 success, 1 something failed (an item, or the API said no),
/// 2 the input was refused before anything was sent, 130 interrupted (the server goes on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Failed = 1,
    BadInput = 2,
    Interrupted = 130,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Where the API is and who calls it (every client command takes these).
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Base URL of the ggprov API.
    #[arg(long, env = "GGPROV_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// API key (sent as `x-api-key`).
    #[arg(long, env = "GGPROV_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Bearer token (OIDC), instead of an API key.
    #[arg(long, env = "GGPROV_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// `table` for people, `json` for scripts.
    #[arg(long, short, value_enum, default_value = "table", global = true)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Create a template from a JSON file (`-` for standard input), as `POST /templates` takes it.
    Create { file: PathBuf },
    /// Store the next version of a template from a JSON file (`components`, policies, ...).
    Update { name: String, file: PathBuf },
    /// Show a template (the latest version, or `--version`).
    Get {
        name: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// List templates.
    List,
    /// List a template's versions with their components.
    Versions { name: String },
    /// Compare the components of two versions.
    Diff { name: String, from: u32, to: u32 },
}

#[derive(Debug, Subcommand)]
pub enum CoresCommand {
    /// Provision cores listed in a CSV file: a header row with `name` and optionally
    /// `provisioningTemplate`, `configFileGenerator`; other columns become provisioning
    /// parameters. Every row is checked before anything is sent.
    Provision {
        #[arg(long, value_name = "FILE")]
        csv: PathBuf,
        /// The ggprov template whose nucleus version the installer config gets.
        #[arg(long)]
        template: Option<String>,
        /// The Greengrass nucleus version for the installer config (instead of `--template`).
        #[arg(long)]
        core_version: Option<String>,
        /// Provisioning template for rows without one.
        #[arg(long, default_value = "greengrass2_core")]
        provisioning_template: String,
        /// `configFileGenerator` for rows without one, e.g. `MANUAL_INSTALL`.
        #[arg(long)]
        config_generator: Option<String>,
        /// Wait until every core is provisioned, with progress.
        #[arg(long)]
        wait: bool,
    },
    /// List cores (filters as `GET /cores`).
    List {
        #[arg(long)]
        template: Option<String>,
        #[arg(long)]
        version: Option<u32>,
        #[arg(long)]
        failed_only: bool,
        #[arg(long)]
        nucleus_version: Option<String>,
        #[arg(long)]
        os: Option<String>,
        #[arg(long)]
        architecture: Option<String>,
        /// Stop after this many cores (all pages otherwise).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show one core.
    Get { name: String },
    /// Delete cores (a Delete core task); `--deprovision` also removes thing and certificate.
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
        #[arg(long)]
        deprovision: bool,
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Provision client devices for a core.
    Create {
        #[arg(long)]
        core: String,
        #[arg(required = true)]
        names: Vec<String>,
        #[arg(long, default_value = "greengrass2_client_device")]
        provisioning_template: String,
        #[arg(long)]
        wait: bool,
    },
    /// Show one client device.
    Get { name: String },
    /// List a core's client devices.
    List {
        #[arg(long)]
        core: String,
    },
    /// Delete a client device (`--keep-thing` only disassociates it).
    Delete {
        name: String,
        #[arg(long)]
        keep_thing: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Show a task of any kind (core, device, deployment, software update).
    Get {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Follow a task with progress until it ends; exit 0 only when every item succeeded.
    Watch {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Retry a task's failed items.
    Retry {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print events as they happen (`GET /events/stream`), reconnecting where it left off.
    Tail {
        /// Start after this sequence (0: every stored event).
        #[arg(long)]
        after: Option<u64>,
        /// Only these detail-types (comma-separated).
        #[arg(long)]
        detail_type: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
}

/// `ggprov deploy TEMPLATE ...`
#[derive(Debug, Args)]
pub struct DeployArgs {
    pub template: String,
    #[arg(long)]
    pub version: Option<u32>,
    /// Thing names, comma-separated.
    #[arg(long, value_delimiter = ',', required_unless_present_any = ["groups", "query"])]
    pub cores: Vec<String>,
    /// Thing group names, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// A fleet-indexing query.
    #[arg(long)]
    pub query: Option<String>,
    /// Rollout waves as cumulative percentages, e.g. `1,10,100` (the last must be 100).
    #[arg(long, value_delimiter = ',')]
    pub waves: Vec<u32>,
    #[arg(long)]
    pub wait: bool,
}

/// An API error, as the person at the terminal should read it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API refused or failed: its status and the message to show.
    #[error("{message}")]
    Api { status: u16, message: String },
    #[error("cannot reach {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    /// A server that is restarting, briefly overloaded or asking to slow down: worth waiting out.
    fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Api { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    pub fn exit(&self) -> Exit {
        match self {
            Self::BadInput(_) => Exit::BadInput,
            _ => Exit::Failed,
        }
    }
}

/// A thin HTTP client for the API.
pub struct Client {
    http: reqwest::Client,
    conn: Connection,
}

impl Client {
    pub fn new(conn: Connection) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("HTTP client");
        Self { http, conn }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.conn.url.trim_end_matches('/'))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.authorize(self.http.request(method, self.url(path)).header("accept", CDF))
    }

    /// Adds the caller's credentials (`x-api-key` or a bearer token).
    fn authorize(&self, mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(key) = &self.conn.api_key {
            request = request.header("x-api-key", key);
        }
        if let Some(token) = &self.conn.token {
            request = request.bearer_auth(token);
        }
        request
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(reqwest::header::HeaderMap, Value), ClientError> {
        let response =
            request.send().await.map_err(|source| ClientError::Unreachable { url: self.conn.url.clone(), source })?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body: Value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if !status.is_success() {
            return Err(ClientError::Api { status: status.as_u16(), message: api_message(status.as_u16(), &body) });
        }
        Ok((headers, body))
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        Ok(self.send(self.request(reqwest::Method::GET, path)).await?.1)
    }

    async fn write(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<(reqwest::header::HeaderMap, Value), ClientError> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.header("content-type", CDF).body(body.to_string());
        }
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        self.send(request).await
    }
}

/// `400 VALIDATION_FAILED: message (field: problem)`.
fn api_message(status: u16, body: &Value) -> String {
    let code = body.get("error").and_then(Value::as_str).unwrap_or("");
    let message = body.get("message").and_then(Value::as_str).map_or_else(|| body.to_string(), str::to_owned);
    let fields: Vec<String> = body
        .get("details")
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .filter_map(|x| Some(format!("{}: {}", x.get("field")?.as_str()?, x.get("problem")?.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    // A 500-core request can have 500 problems: the first few say what to fix.
    const SHOWN: usize = 5;
    let message = if !fields.is_empty() && message.contains(&fields[0]) {
        let mut text = message.split(&fields[0]).next().unwrap_or("").to_owned();
        text.push_str(&fields.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; "));
        if fields.len() > SHOWN {
            text.push_str(&format!("; and {} more like these", fields.len() - SHOWN));
        }
        text
    } else if fields.is_empty() || fields.iter().all(|f| message.contains(f.split_once(": ").map_or("", |p| p.1))) {
        message
    } else {
        format!("{message} ({})", fields.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; "))
    };
    format!("the API answered {status} {code}: {message}")
}

/// Runs a client command on a fresh runtime and returns its exit code.
pub fn run(conn: Connection, command: ClientCommand) -> Exit {
    let runtime = tokio::runtime::Runtime::new().expect("async runtime");
    let output = conn.output;
    let client = Client::new(conn);
    match runtime.block_on(command.run(&client, output)) {
        Ok(exit) => exit,
        Err(err) => {
            eprintln!("ggprov: {err}");
            err.exit()
        }
    }
}

/// Every client command.
#[derive(Debug)]
pub enum ClientCommand {
    Templates(TemplatesCommand),
    Cores(CoresCommand),
    Devices(DevicesCommand),
    Deploy(DeployArgs),
    Tasks(TasksCommand),
    Fleet { software: bool },
    Events(EventsCommand),
}

fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

/// Prints rows as aligned columns.
fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn s(value: &Value, pointer: &str) -> String {
    match value.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn enc(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn read_json(file: &Path) -> Result<Value, ClientError> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|e| ClientError::BadInput(format!("standard input: {e}")))?
    } else {
        std::fs::read_to_string(file).map_err(|e| ClientError::BadInput(format!("{}: {e}", file.display())))?
    };
    serde_json::from_str(&text).map_err(|e| ClientError::BadInput(format!("{}: not JSON: {e}", file.display())))
}

impl ClientCommand {
    async fn run(self, client: &Client, output: Output) -> Result<Exit, ClientError> {
        match self {
            Self::Templates(command) => templates(client, output, command).await,
            Self::Cores(command) => cores(client, output, command).await,
            Self::Devices(command) => devices(client, output, command).await,
            Self::Deploy(args) => deploy(client, output, args).await,
            Self::Tasks(command) => tasks(client, output, command).await,
            Self::Fleet { software } => fleet(client, output, software).await,
            Self::Events(EventsCommand::Tail { after, detail_type, count }) => {
                tail(client, output, after, detail_type.as_deref(), count).await
            }
        }
    }
}

async fn templates(client: &Client, output: Output, command: TemplatesCommand) -> Result<Exit, ClientError> {
    use reqwest::Method;
    match command {
        TemplatesCommand::Create { file } => {
            let body = read_json(&file)?;
            let (headers, _) = client.write(Method::POST, "/templates", Some(&body), None).await?;
            let version = headers.get("x-version").and_then(|v| v.to_str().ok()).unwrap_or("1");
            report(output, &json!({"name": body.get("name"), "version": version}), || {
                println!("created template {} version {version}", s(&body, "/name"));
            });
        }
        TemplatesCommand::Update { name, file } => {
            let body = read_json(&file)?;
            let (headers, _) =
                client.write(Method::PUT, &format!("/templates/{}", enc(&name)), Some(&body), None).await?;
            let version = headers.get("x-version").and_then(|v| v.to_str().ok()).unwrap_or("?").to_owned();
            report(output, &json!({"name": name, "version": version}), || println!("stored {name} version {version}"));
        }
        TemplatesCommand::Get { name, version } => {
            let path = match version {
                Some(v) => format!("/templates/{}/versions/{v}", enc(&name)),
                None => format!("/templates/{}", enc(&name)),
            };
            let template = client.get(&path).await?;
            report(output, &template, || {
                println!("{} version {}", s(&template, "/name"), s(&template, "/version"));
                print_components(&template);
            });
        }
        TemplatesCommand::List => {
            let list =
                all_pages(client, "/templates", "templates", |l| s(l, "/name"), "exclusiveStartName", None).await?;
            report(output, &json!({"templates": list}), || {
                let rows: Vec<Vec<String>> =
                    list.iter().map(|t| vec![s(t, "/name"), s(t, "/version"), s(t, "/updatedAt")]).collect();
                print_table(&["NAME", "VERSION", "UPDATED"], &rows);
            });
        }
        TemplatesCommand::Versions { name } => {
            let body = client.get(&format!("/templates/{}/versions", enc(&name))).await?;
            report(output, &body, || {
                for version in body.get("templates").and_then(Value::as_array).into_iter().flatten() {
                    println!("version {}", s(version, "/version"));
                    print_components(version);
                }
            });
        }
        TemplatesCommand::Diff { name, from, to } => {
            let a = client.get(&format!("/templates/{}/versions/{from}", enc(&name))).await?;
            let b = client.get(&format!("/templates/{}/versions/{to}", enc(&name))).await?;
            let (ca, cb) = (components(&a), components(&b));
            let keys: std::collections::BTreeSet<&String> = ca.keys().chain(cb.keys()).collect();
            let changes: Vec<Value> = keys
                .into_iter()
                .filter(|k| ca.get(*k) != cb.get(*k))
                .map(|k| json!({"component": k, "from": ca.get(k), "to": cb.get(k)}))
                .collect();
            report(output, &json!({"name": name, "from": from, "to": to, "changes": changes}), || {
                if changes.is_empty() {
                    println!("versions {from} and {to} have the same components");
                }
                for c in &changes {
                    let (f, t) = (s(c, "/from"), s(c, "/to"));
                    let sign = if f.is_empty() {
                        "+"
                    } else if t.is_empty() {
                        "-"
                    } else {
                        "~"
                    };
                    println!("{sign} {}  {}  ->  {}", s(c, "/component"), or_dash(&f), or_dash(&t));
                }
            });
        }
    }
    Ok(Exit::Success)
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

fn components(template: &Value) -> BTreeMap<String, String> {
    template
        .get("components")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| (s(c, "/key"), s(c, "/version")))
        .collect()
}

fn print_components(template: &Value) {
    for (key, version) in components(template) {
        println!("  {key} {version}");
    }
}

fn report(output: Output, value: &Value, table: impl FnOnce()) {
    match output {
        Output::Json => print_json(value),
        Output::Table => table(),
    }
}

/// Every page of a CDF list (pagination `lastEvaluated` → `exclusiveStart...`).
async fn all_pages(
    client: &Client,
    path: &str,
    key: &str,
    cursor: impl Fn(&Value) -> String,
    start_param: &str,
    limit: Option<usize>,
) -> Result<Vec<Value>, ClientError> {
    let mut items = Vec::new();
    let mut start: Option<String> = None;
    let sep = if path.contains('?') { '&' } else { '?' };
    loop {
        let mut url = format!("{path}{sep}count=500");
        if let Some(start) = &start {
            url.push_str(&format!("&{start_param}={}", enc(start)));
        }
        let page = client.get(&url).await?;
        let batch = page.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
        let last = page.pointer("/pagination/lastEvaluated").filter(|v| !v.is_null()).cloned();
        let empty = batch.is_empty();
        items.extend(batch);
        if limit.is_some_and(|l| items.len() >= l) {
            items.truncate(limit.unwrap_or(usize::MAX));
            break;
        }
        match last {
            Some(last) if !empty => {
                let next = cursor(&last);
                if next.is_empty() || start.as_deref() == Some(next.as_str()) {
                    break;
                }
                start = Some(next);
            }
            _ => break,
        }
    }
    Ok(items)
}

/// One row of a cores CSV, checked.
#[derive(Debug)]
struct CsvCore {
    line: u64,
    entry: Value,
}

/// Reads and checks a cores CSV; the first problem names its line.
fn read_cores_csv(
    path: &Path,
    text: &[u8],
    provisioning_template: &str,
    config_generator: Option<&str>,
) -> Result<Vec<CsvCore>, ClientError> {
    let bad = |line: u64, problem: String| ClientError::BadInput(format!("{}:{line}: {problem}", path.display()));
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).comment(Some(b'#')).from_reader(text);
    let headers = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
    let name_column = headers
        .iter()
        .position(|h| h == "name" || h == "thingName")
        .ok_or_else(|| bad(1, "the header row has no `name` column (e.g. `name,provisioningTemplate`)".into()))?;
    let mut seen = std::collections::HashMap::new();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, csv::Position::line);
            bad(line, e.to_string())
        })?;
        let line = record.position().map_or(0, csv::Position::line);
        let name = record.get(name_column).unwrap_or("");
        if let Err(err) = ggprov_domain::ThingName::parse(name) {
            return Err(bad(line, format!("core name {err}")));
        }
        if let Some(first) = seen.insert(name.to_owned(), line) {
            return Err(bad(line, format!("core '{name}' is listed twice (first on line {first})")));
        }
        let mut entry = json!({"name": name, "provisioningTemplate": provisioning_template});
        let mut parameters = serde_json::Map::new();
        for (header, value) in headers.iter().zip(record.iter()) {
            match header {
                "name" | "thingName" => {}
                _ if value.is_empty() => {}
                "provisioningTemplate" => entry["provisioningTemplate"] = json!(value),
                "configFileGenerator" => {
                    if !matches!(value, "MANUAL_INSTALL" | "FLEET_PROVISIONING") {
                        return Err(bad(
                            line,
                            format!("configFileGenerator '{value}' is not MANUAL_INSTALL or FLEET_PROVISIONING"),
                        ));
                    }
                    entry["configFileGenerator"] = json!(value);
                }
                other => {
                    parameters.insert(other.to_owned(), json!(value));
                }
            }
        }
        if entry.get("configFileGenerator").is_none()
            && let Some(generator) = config_generator
        {
            entry["configFileGenerator"] = json!(generator);
        }
        if !parameters.is_empty() {
            entry["provisioningParameters"] = Value::Object(parameters);
        }
        rows.push(CsvCore { line, entry });
    }
    if rows.is_empty() {
        return Err(ClientError::BadInput(format!("{}: no cores (only a header row?)", path.display())));
    }
    Ok(rows)
}

async fn cores(client: &Client, output: Output, command: CoresCommand) -> Result<Exit, ClientError> {
    use reqwest::Method;
    match command {
        CoresCommand::Provision { csv, template, core_version, provisioning_template, config_generator, wait } => {
            if template.is_none() && core_version.is_none() {
                return Err(ClientError::BadInput(
                    "give --core-version (e.g. 2.12.0) or --template (its nucleus version is used)".into(),
                ));
            }
            let text = std::fs::read(&csv).map_err(|e| ClientError::BadInput(format!("{}: {e}", csv.display())))?;
            let rows = read_cores_csv(&csv, &text, &provisioning_template, config_generator.as_deref())?;
            // Same file, same chunk: same Idempotency-Key, so a resubmission after a lost answer
            // does not provision twice.
            let digest = ggprov_domain::hash::fnv1a(&text);
            let mut task_ids = Vec::new();
            for (index, chunk) in rows.chunks(CORES_PER_TASK).enumerate() {
                let mut body =
                    json!({"type": "Create", "cores": chunk.iter().map(|r| r.entry.clone()).collect::<Vec<_>>()});
                if let Some(v) = &core_version {
                    body["coreVersion"] = json!(v);
                }
                if let Some(t) = &template {
                    body["template"] = json!(t);
                }
                let key = format!("ggprov-cli-{digest:016x}-{index}");
                let (headers, _) =
                    client.write(Method::POST, "/coreTasks", Some(&body), Some(&key)).await.map_err(|e| {
                        match (&e, chunk.first()) {
                            (ClientError::Api { status, message }, Some(first)) => {
                                // `cores[7]` is CSV line so-and-so: say the line.
                                let mut message = message.clone();
                                for (i, row) in chunk.iter().enumerate().rev() {
                                    message = message.replace(&format!("cores[{i}]"), &format!("line {}", row.line));
                                }
                                ClientError::Api {
                                    status: *status,
                                    message: format!(
                                        "{message} (nothing was provisioned from CSV lines {}-{})",
                                        first.line,
                                        chunk.last().map_or(first.line, |l| l.line)
                                    ),
                                }
                            }
                            _ => e,
                        }
                    })?;
                let id = headers.get("x-taskid").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                if output == Output::Table {
                    eprintln!("submitted core task {id} ({} cores)", chunk.len());
                }
                task_ids.push(id);
            }
            if wait {
                return watch(client, output, &task_ids).await;
            }
            report(output, &json!({"taskIds": task_ids, "cores": rows.len()}), || {
                println!(
                    "{} cores in task(s) {}; follow with `ggprov tasks watch {}`",
                    rows.len(),
                    task_ids.join(", "),
                    task_ids[0]
                );
            });
        }
        CoresCommand::List { template, version, failed_only, nucleus_version, os, architecture, limit } => {
            let mut query = Vec::new();
            for (k, v) in [
                ("templateName", template),
                ("templateVersion", version.map(|v| v.to_string())),
                ("failedOnly", failed_only.then(|| "true".to_owned())),
                ("nucleusVersion", nucleus_version),
                ("os", os),
                ("architecture", architecture),
            ] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", enc(&v)));
                }
            }
            let path = if query.is_empty() { "/cores".to_owned() } else { format!("/cores?{}", query.join("&")) };
            let list =
                all_pages(client, &path, "cores", |l| s(l, "/thingName"), "exclusiveStartThingName", limit).await?;
            report(output, &json!({"cores": list}), || {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|c| {
                        vec![
                            s(c, "/name"),
                            template_ref(c, "desired"),
                            template_ref(c, "reported"),
                            s(c, "/template/reported/deploymentStatus"),
                            s(c, "/software/nucleusVersion"),
                        ]
                    })
                    .collect();
                print_table(&["NAME", "DESIRED", "REPORTED", "DEPLOYMENT", "NUCLEUS"], &rows);
                eprintln!("{} cores", rows.len());
            });
        }
        CoresCommand::Get { name } => {
            let core = client.get(&format!("/cores/{}", enc(&name))).await?;
            report(output, &core, || {
                for (k, v) in [
                    ("name", s(&core, "/name")),
                    ("provisioning", s(&core, "/taskStatus")),
                    ("desired", template_ref(&core, "desired")),
                    ("reported", template_ref(&core, "reported")),
                    ("deployment", s(&core, "/template/reported/deploymentStatus")),
                    ("nucleus", format!("{} {}", s(&core, "/software/nucleus"), s(&core, "/software/nucleusVersion"))),
                    ("platform", format!("{}/{}", s(&core, "/software/os"), s(&core, "/software/architecture"))),
                    ("greengrass", s(&core, "/device/status")),
                ] {
                    println!("{k:<13}{v}");
                }
            });
        }
        CoresCommand::Delete { names, deprovision, wait } => {
            let cores: Vec<Value> =
                names.iter().map(|n| json!({"name": n, "provisioningTemplate": "greengrass2_core"})).collect();
            let body = json!({"type": "Delete", "coreVersion": "2.0.0", "cores": cores,
                "options": {"deprovisionCores": deprovision, "deprovisionClientDevices": deprovision}});
            let (headers, _) = client.write(Method::POST, "/coreTasks", Some(&body), None).await?;
            let id = headers.get("x-taskid").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            if wait {
                return watch(client, output, &[id]).await;
            }
            report(output, &json!({"taskId": id}), || println!("delete task {id}"));
        }
    }
    Ok(Exit::Success)
}

fn template_ref(core: &Value, which: &str) -> String {
    let name = s(core, &format!("/template/{which}/name"));
    if name.is_empty() || name == "None" {
        "-".into()
    } else {
        format!("{name} v{}", s(core, &format!("/template/{which}/version")))
    }
}

async fn devices(client: &Client, output: Output, command: DevicesCommand) -> Result<Exit, ClientError> {
    use reqwest::Method;
    match command {
        DevicesCommand::Create { core, names, provisioning_template, wait } => {
            for name in &names {
                ggprov_domain::ThingName::parse(name).map_err(|e| ClientError::BadInput(format!("device name {e}")))?;
            }
            let devices: Vec<Value> =
                names.iter().map(|n| json!({"name": n, "provisioningTemplate": provisioning_template})).collect();
            let body = json!({"type": "Create", "devices": devices});
            let (headers, _) =
                client.write(Method::POST, &format!("/cores/{}/deviceTasks", enc(&core)), Some(&body), None).await?;
            let id = headers.get("x-taskid").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            if wait {
                return watch(client, output, &[id]).await;
            }
            report(output, &json!({"taskId": id}), || println!("device task {id}"));
        }
        DevicesCommand::Get { name } => {
            let device = client.get(&format!("/devices/{}", enc(&name))).await?;
            report(output, &device, || {
                println!("{:<13}{}", "name", s(&device, "/name"));
                println!("{:<13}{}", "core", s(&device, "/coreName"));
                println!("{:<13}{}", "provisioning", s(&device, "/taskStatus"));
            });
        }
        DevicesCommand::List { core } => {
            let path = format!("/cores/{}/devices", enc(&core));
            let list =
                all_pages(client, &path, "devices", |l| s(l, "/thingName"), "exclusiveStartThingName", None).await?;
            report(output, &json!({"devices": list}), || {
                let rows: Vec<Vec<String>> =
                    list.iter().map(|d| vec![s(d, "/name"), s(d, "/taskStatus"), s(d, "/createdAt")]).collect();
                print_table(&["NAME", "PROVISIONING", "CREATED"], &rows);
            });
        }
        DevicesCommand::Delete { name, keep_thing } => {
            let path = format!("/devices/{}{}", enc(&name), if keep_thing { "?deprovision=false" } else { "" });
            client.write(Method::DELETE, &path, None, None).await?;
            report(output, &json!({"deleted": name}), || println!("deleted {name}"));
        }
    }
    Ok(Exit::Success)
}

async fn deploy(client: &Client, output: Output, args: DeployArgs) -> Result<Exit, ClientError> {
    let mut targets = serde_json::Map::new();
    if !args.cores.is_empty() {
        targets.insert("thingNames".into(), json!(args.cores));
    }
    if !args.groups.is_empty() {
        targets.insert("thingGroupNames".into(), json!(args.groups));
    }
    if let Some(query) = &args.query {
        targets.insert("thingIndexQuery".into(), json!(query));
    }
    let mut template = json!({"name": args.template});
    if let Some(v) = args.version {
        template["version"] = json!(v);
    }
    let mut body = json!({"template": template, "targets": targets});
    if !args.waves.is_empty() {
        if args.waves.windows(2).any(|w| w[0] >= w[1]) || args.waves.iter().any(|p| *p == 0 || *p > 100) {
            return Err(ClientError::BadInput(format!(
                "--waves {:?}: cumulative percentages, rising, 1 to 100 (e.g. 1,10,100)",
                args.waves
            )));
        }
        if args.waves.last() != Some(&100) {
            return Err(ClientError::BadInput("--waves: the last wave must be 100 so that every core moves".into()));
        }
        body["rollout"] = json!({"waves": args.waves.iter().map(|p| json!({"percent": p})).collect::<Vec<_>>()});
    }
    let (headers, _) = client.write(reqwest::Method::POST, "/deploymentTasks", Some(&body), None).await?;
    let id = headers.get("x-taskid").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if args.wait {
        if output == Output::Table {
            eprintln!("deployment task {id}");
        }
        return watch(client, output, &[id]).await;
    }
    report(output, &json!({"taskId": id}), || println!("deployment task {id}; follow with `ggprov tasks watch {id}`"));
    Ok(Exit::Success)
}

/// Index of deployment tasks in [`TASK_PATHS`].
const DEPLOYMENT: usize = 0;

/// The kinds of task and where each is read.
const TASK_PATHS: [(&str, &str, &str); 4] = [
    ("deployment", "/deploymentTasks/", "deployments"),
    ("core", "/coreTasks/", "cores"),
    ("device", "/deviceTasks/", "devices"),
    ("software update", "/softwareUpdateTasks/", "cores"),
];

/// Finds a task by id whatever its kind: (kind index, task).
async fn find_task(client: &Client, id: &str) -> Result<(usize, Value), ClientError> {
    for (index, (_, path, _)) in TASK_PATHS.iter().enumerate() {
        match client.get(&format!("{path}{}", enc(id))).await {
            Ok(task) => return Ok((index, task)),
            Err(ClientError::Api { status: 404, .. }) => {}
            Err(err) => return Err(err),
        }
    }
    Err(ClientError::Api {
        status: 404,
        message: format!("no core, device, deployment or software update task has the id '{id}'"),
    })
}

async fn tasks(client: &Client, output: Output, command: TasksCommand) -> Result<Exit, ClientError> {
    match command {
        TasksCommand::Get { id } => {
            let (kind, task) = find_task(client, &id).await?;
            let mut progress = Progress::of(&task, TASK_PATHS[kind].2);
            if kind == DEPLOYMENT {
                progress = deployment_outcomes(client, &task, &progress).await?;
            }
            report(output, &task, || {
                println!("{} task {id}: {}", TASK_PATHS[kind].0, s(&task, "/taskStatus"));
                println!("{}", progress.line());
                progress.print_failures();
            });
            Ok(if progress.failed > 0 { Exit::Failed } else { Exit::Success })
        }
        TasksCommand::Watch { id } => watch(client, output, &[id]).await,
        TasksCommand::Retry { id } => {
            let (kind, _) = find_task(client, &id).await?;
            let (headers, body) = client
                .write(reqwest::Method::POST, &format!("{}{}/retry", TASK_PATHS[kind].1, enc(&id)), None, None)
                .await?;
            let new = headers
                .get("x-taskid")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_else(|| s(&body, "/id"));
            let shown = if new.is_empty() { id.as_str() } else { new.as_str() };
            report(output, &json!({"taskId": shown}), || {
                println!(
                    "retrying the failed items of {id}{}",
                    if new.is_empty() || new == id { String::new() } else { format!(" as task {new}") }
                );
            });
            Ok(Exit::Success)
        }
    }
}

/// Item counts of a task.
#[derive(Debug, Default, Clone)]
struct Progress {
    total: usize,
    succeeded: usize,
    failed: usize,
    /// (name, message) of failed items.
    failures: Vec<(String, String)>,
    finished: bool,
    status: String,
}

impl Progress {
    fn of(task: &Value, items_key: &str) -> Self {
        let items = task.get(items_key).and_then(Value::as_array).cloned().unwrap_or_default();
        let mut progress = Self { total: items.len(), status: s(task, "/taskStatus"), ..Self::default() };
        for item in &items {
            match item.get("taskStatus").and_then(Value::as_str) {
                Some("Success") => progress.succeeded += 1,
                Some("Failure") => {
                    progress.failed += 1;
                    let name = [s(item, "/name"), s(item, "/coreName"), s(item, "/thingName")]
                        .into_iter()
                        .find(|n| !n.is_empty())
                        .unwrap_or_default();
                    let message = [s(item, "/statusMessage"), s(item, "/message")].into_iter().find(|m| !m.is_empty());
                    progress.failures.push((name, message.unwrap_or_default()));
                }
                _ => {}
            }
        }
        let rollout_running = task
            .pointer("/rollout/state")
            .and_then(Value::as_str)
            .is_some_and(|state| matches!(state, "Running" | "Paused"));
        progress.finished = matches!(progress.status.as_str(), "Success" | "Failure") && !rollout_running;
        progress
    }

    fn add(&mut self, other: &Self) {
        self.total += other.total;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.failures.extend(other.failures.iter().cloned());
    }

    fn line(&self) -> String {
        if self.total == 0 && !self.finished {
            return "waiting for the task to list its items".to_owned();
        }
        format!(
            "{}/{} done: {} succeeded, {} failed",
            self.succeeded + self.failed,
            self.total,
            self.succeeded,
            self.failed
        )
    }

    fn print_failures(&self) {
        for (name, message) in self.failures.iter().take(50) {
            eprintln!("  failed: {name}: {message}");
        }
        if self.failures.len() > 50 {
            eprintln!("  ... and {} more (see `--output json`)", self.failures.len() - 50);
        }
    }
}

/// A deployment task's items say whether each core's deployment was made; whether the core
/// then ran it is in the core's reported status. This reads the cores that desire the task's
/// template version (one paged listing) and counts the outcomes of the items made:
/// `SUCCESSFUL` succeeded, `None`/`IN_PROGRESS` pending, any other status failed.
async fn deployment_outcomes(client: &Client, task: &Value, dispatched: &Progress) -> Result<Progress, ClientError> {
    let mut progress = Progress { total: dispatched.total, status: dispatched.status.clone(), ..Progress::default() };
    progress.failed = dispatched.failed;
    progress.failures = dispatched.failures.clone();
    let (name, version) = (s(task, "/template/name"), s(task, "/template/version"));
    let path = format!("/cores?templateName={}&templateVersion={}", enc(&name), enc(&version));
    let cores = all_pages(client, &path, "cores", |l| s(l, "/thingName"), "exclusiveStartThingName", None).await?;
    let status: std::collections::HashMap<String, (String, String)> = cores
        .iter()
        .map(|c| {
            (
                s(c, "/name"),
                (s(c, "/template/reported/deploymentStatus"), s(c, "/template/reported/deploymentStatusMessage")),
            )
        })
        .collect();
    let mut pending = 0;
    for item in task.get("deployments").and_then(Value::as_array).into_iter().flatten() {
        if item.get("taskStatus").and_then(Value::as_str) != Some("Success") {
            continue;
        }
        let core = s(item, "/coreName");
        match status.get(&core).map(|(s, m)| (s.as_str(), m.as_str())) {
            Some(("SUCCESSFUL", _)) => progress.succeeded += 1,
            Some(("None" | "IN_PROGRESS" | "", _)) => pending += 1,
            Some((failed, message)) => {
                progress.failed += 1;
                progress.failures.push((core, format!("{failed}: {message}")));
            }
            None => {
                progress.failed += 1;
                progress
                    .failures
                    .push((core, format!("no longer desires {name} version {version} (a later deployment moved it)")));
            }
        }
    }
    progress.finished = dispatched.finished && pending == 0;
    Ok(progress)
}

/// Follows tasks until they end: a progress bar on a terminal, plain lines otherwise. Server
/// restarts and dropped connections are waited out; Ctrl-C stops watching, not the task.
async fn watch(client: &Client, output: Output, ids: &[String]) -> Result<Exit, ClientError> {
    let interactive = std::io::stderr().is_terminal() && output == Output::Table;
    let bar = indicatif::ProgressBar::with_draw_target(
        None,
        if interactive { indicatif::ProgressDrawTarget::stderr() } else { indicatif::ProgressDrawTarget::hidden() },
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} {msg} ({elapsed})")
            .expect("template")
            .progress_chars("=> "),
    );
    let mut kinds: Vec<Option<usize>> = vec![None; ids.len()];
    let mut last_line = String::new();
    let mut unreachable_since: Option<std::time::Instant> = None;
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let (total, tasks) = loop {
        let mut total = Progress::default();
        let mut tasks = Vec::new();
        let mut all_finished = true;
        let mut reachable = true;
        for (i, id) in ids.iter().enumerate() {
            let found = match kinds[i] {
                Some(kind) => client.get(&format!("{}{}", TASK_PATHS[kind].1, enc(id))).await.map(|t| (kind, t)),
                None => find_task(client, id).await,
            };
            match found {
                Ok((kind, task)) => {
                    kinds[i] = Some(kind);
                    let mut progress = Progress::of(&task, TASK_PATHS[kind].2);
                    if kind == DEPLOYMENT {
                        match deployment_outcomes(client, &task, &progress).await {
                            Ok(outcomes) => progress = outcomes,
                            Err(err) if err.is_transient() => {
                                reachable = false;
                                break;
                            }
                            Err(err) => return Err(err),
                        }
                    }
                    all_finished &= progress.finished;
                    total.add(&progress);
                    tasks.push(task);
                }
                Err(err) if err.is_transient() && is_transient_pending(&unreachable_since) => {
                    reachable = false;
                    break;
                }
                Err(err) => return Err(err),
            }
        }
        if reachable {
            if unreachable_since.take().is_some() && !interactive && output == Output::Table {
                eprintln!("the server answers again");
            }
            bar.set_length(total.total as u64);
            bar.set_position((total.succeeded + total.failed) as u64);
            bar.set_message(format!("{} failed", total.failed));
            let line = total.line();
            if !interactive && output == Output::Table && line != last_line {
                eprintln!("{line}");
                last_line = line;
            }
            if all_finished {
                break (total, tasks);
            }
        } else if unreachable_since.is_none() {
            unreachable_since = Some(std::time::Instant::now());
            let note = format!("cannot reach {}; still waiting (the task runs on the server)", client.conn.url);
            if interactive {
                bar.println(note)
            } else if output == Output::Table {
                eprintln!("{note}")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(if reachable { 500 } else { 1000 })) => {}
            _ = &mut interrupt => {
                bar.abandon();
                eprintln!(
                    "stopped watching; the task keeps running on the server. Watch it again with `ggprov tasks watch {}`",
                    ids.join(" ")
                );
                return Ok(Exit::Interrupted);
            }
        }
    };
    bar.finish_and_clear();
    report(
        output,
        &json!({"tasks": tasks, "succeeded": total.succeeded, "failed": total.failed, "total": total.total}),
        || {
            println!("{}", total.line());
            total.print_failures();
        },
    );
    Ok(if total.failed == 0 && total.succeeded == total.total { Exit::Success } else { Exit::Failed })
}

/// Connection trouble (a restarting server) is waited out for up to 10 minutes.
fn is_transient_pending(since: &Option<std::time::Instant>) -> bool {
    since.is_none_or(|since| since.elapsed() < Duration::from_secs(600))
}

async fn fleet(client: &Client, output: Output, software: bool) -> Result<Exit, ClientError> {
    if software {
        let body = client.get("/fleet/software").await?;
        report(output, &body, || {
            let rows: Vec<Vec<String>> = body
                .get("versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|v| {
                    vec![
                        s(v, "/nucleus"),
                        s(v, "/nucleusVersion"),
                        s(v, "/os"),
                        s(v, "/architecture"),
                        s(v, "/cores"),
                        s(v, "/updating"),
                    ]
                })
                .collect();
            print_table(&["NUCLEUS", "VERSION", "OS", "ARCH", "CORES", "UPDATING"], &rows);
            println!("total: {} cores, {} updating", s(&body, "/total/cores"), s(&body, "/total/updating"));
        });
        return Ok(Exit::Success);
    }
    let body = client.get("/fleet/summary").await?;
    report(output, &body, || {
        let mut rows = Vec::new();
        for (name, template) in body.get("templates").and_then(Value::as_object).into_iter().flatten() {
            for (version, c) in template.get("versions").and_then(Value::as_object).into_iter().flatten() {
                rows.push(vec![
                    name.clone(),
                    version.clone(),
                    s(c, "/desiredInUse"),
                    s(c, "/reportedInUse"),
                    s(c, "/lastDeploymentSuccess"),
                    s(c, "/lastDeploymentInProgress"),
                    s(c, "/lastDeploymentFailed"),
                ]);
            }
        }
        print_table(&["TEMPLATE", "VERSION", "DESIRED", "REPORTED", "SUCCESS", "IN PROGRESS", "FAILED"], &rows);
    });
    Ok(Exit::Success)
}

/// `events tail`: the SSE stream, reconnecting with `Last-Event-ID` after a drop.
async fn tail(
    client: &Client,
    output: Output,
    after: Option<u64>,
    detail_type: Option<&str>,
    count: Option<usize>,
) -> Result<Exit, ClientError> {
    use futures::StreamExt as _;
    let mut last: Option<u64> = after;
    let mut printed = 0usize;
    let stream_client = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().expect("client");
    loop {
        let mut path = "/events/stream".to_owned();
        if let Some(t) = detail_type {
            path.push_str(&format!("?detailType={}", enc(t)));
        }
        // Its own HTTP client: the API client's 60 s timeout would cut a stream that stays open.
        let mut request = client.authorize(stream_client.get(client.url(&path)).header("accept", "text/event-stream"));
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        let response = match request.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                return Err(ClientError::Api { status, message: api_message(status, &body) });
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id:") {
                        last = id.trim().parse().ok().or(last);
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let event: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                match output {
                    Output::Json => println!("{}", serde_json::to_string(&event).unwrap_or_default()),
                    Output::Table => {
                        let d = event.get("detail").cloned().unwrap_or(Value::Null);
                        let subject = ["/coreName", "/deviceName", "/taskId", "/templateName"]
                            .iter()
                            .map(|p| s(&d, p))
                            .find(|x| !x.is_empty())
                            .unwrap_or_default();
                        println!(
                            "{}  {}  {}  {subject}",
                            s(&event, "/sequence"),
                            s(&event, "/time"),
                            s(&event, "/detailType")
                        );
                    }
                }
                printed += 1;
                if count.is_some_and(|c| printed >= c) {
                    return Ok(Exit::Success);
                }
            }
        }
        // The server went away: reconnect where we left off.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
