//! The `ggprov` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};
use ggprov::cli::{CaCommand, LocalCloudCommand};
use ggprov::client::{self, ClientCommand};
use ggprov::config::{self, Config};
use ggprov::{Application, shutdown_signal, telemetry};

/// `--version`: the version and the build profile (the benchmark harness labels its figures
/// with it, and a debug build's figures say little).
#[cfg(debug_assertions)]
const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (debug build)");
#[cfg(not(debug_assertions))]
const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (release build)");

/// Provision and deploy to fleets of AWS IoT Greengrass V2 devices.
#[derive(Parser)]
#[command(name = "ggprov", version, long_version = LONG_VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default command).
    #[command(after_help = config::help_text())]
    Serve {
        /// TOML configuration file (also `GGPROV_CONFIG`); environment variables override it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// What this process runs: all (API and workers), api, or worker (overrides `GGPROV_ROLE`).
        #[arg(long, value_name = "ROLE", value_parser = ["all", "api", "worker"])]
        role: Option<String>,
    },
    /// API keys for `GGPROV_AUTH=api-key`.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Certificate authorities: create, import, list.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
        /// TOML configuration file (for the data directory).
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
    },
    /// Drive the local cloud of a running `ggprov serve`: connect cores, set outcomes, inject faults.
    LocalCloud {
        #[command(subcommand)]
        command: LocalCloudCommand,
        /// Base URL of the service (default: `http://` + `GGPROV_LISTEN`).
        #[arg(long, global = true)]
        url: Option<String>,
    },
    /// Templates over the API: create, update, get, list, versions, diff.
    Templates {
        #[command(subcommand)]
        command: client::TemplatesCommand,
        #[command(flatten)]
        conn: client::Connection,
    },
    /// Cores over the API: provision from a CSV (with --wait), list, get, delete.
    Cores {
        #[command(subcommand)]
        command: client::CoresCommand,
        #[command(flatten)]
        conn: client::Connection,
    },
    /// Client devices over the API: create, get, list, delete.
    Devices {
        #[command(subcommand)]
        command: client::DevicesCommand,
        #[command(flatten)]
        conn: client::Connection,
    },
    /// Deploy a template to cores, groups or a query, optionally in waves (`--waves 1,10,100`).
    Deploy {
        #[command(flatten)]
        args: client::DeployArgs,
        #[command(flatten)]
        conn: client::Connection,
    },
    /// Tasks of any kind: get, watch (progress until done), retry the failed items.
    Tasks {
        #[command(subcommand)]
        command: client::TasksCommand,
        #[command(flatten)]
        conn: client::Connection,
    },
    /// The fleet summary per template version (`--software`: per nucleus version and platform).
    Fleet {
        #[arg(long)]
        software: bool,
        #[command(flatten)]
        conn: client::Connection,
    },
    /// Lifecycle events: `tail` follows them live.
    Events {
        #[command(subcommand)]
        command: client::EventsCommand,
        #[command(flatten)]
        conn: client::Connection,
    },
    /// Print a shell completion script, e.g. `ggprov completions bash > /etc/bash_completion.d/ggprov`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the recipe of the certificate-rotation component (`ggprov.CertificateRotation`) that
    /// AWS mode's rotation tasks talk to: create it with `aws greengrassv2
    /// create-component-version --inline-recipe fileb://recipe.json` and add it to your
    /// templates. (The embedded default's local cloud simulates it.)
    RotationComponent {
        /// The component version to print.
        #[arg(long, default_value = "1.0.0")]
        version: String,
    },
    /// Print the OpenAPI document of the API (or write it to a file).
    Openapi {
        /// Write to this file instead of standard output, e.g. `openapi/openapi.json`.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Make a new random key: prints the key (give it to the client) and its SHA-256 hash
    /// (add it to `GGPROV_API_KEYS`; ggprov stores only hashes).
    Create,
    /// Print the SHA-256 hash of an existing key.
    Hash { key: String },
}

/// mimalloc instead of glibc's malloc: allocation was a sixth of the server's CPU per
/// `GET /cores/{name}` (glibc's fastbin consolidation among it), and glibc's per-thread arenas
/// held on to memory a long provisioning task had freed (decision 78). Its v2 line: v3 keeps
/// freed pages for a second before returning them, and a 10,000-core task peaked at 122–144 MiB
/// with it against 103–110 MiB with v2, at the same CPU and request rates (decision 82).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The runtime's blocking threads at most (tokio's default is 512).
const BLOCKING_THREADS: usize = 16;

fn main() -> ExitCode {
    // No transparent huge pages for this process (decision 82): mimalloc's fresh pages were
    // faulted in 2 MiB at a time, each zeroed whole and counted whole in the RSS, so a 3,000-core
    // task peaked at 151 MiB instead of 110 and spent 6 % of its CPU zeroing pages. Best effort:
    // a kernel without THP refuses, and nothing changes.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve { config: None, role: None }) {
        Command::Serve { config, role } => serve(config.as_deref(), role.as_deref()),
        Command::ApiKey { command } => {
            match command {
                ApiKeyCommand::Create => {
                    let (key, hash) = ggprov::auth::new_api_key();
                    println!("key:  {key}\nhash: {hash}");
                }
                ApiKeyCommand::Hash { key } => println!("{}", ggprov::auth::hex(&ggprov::auth::hash_key(&key))),
            }
            ExitCode::SUCCESS
        }
        Command::Openapi { out } => openapi(out.as_deref()),
        Command::RotationComponent { version } => {
            let recipe = ggprov_aws::rotation_component_recipe(&version);
            println!("{}", serde_json::to_string_pretty(&recipe).expect("recipes serialise"));
            ExitCode::SUCCESS
        }
        Command::Ca { command, config } => with_config(config.as_deref(), |c| ggprov::cli::run_ca(c, command)),
        Command::LocalCloud { command, url } => with_config(None, |c| ggprov::cli::run_local_cloud(c, url, &command)),
        Command::Templates { command, conn } => exit(client::run(conn, ClientCommand::Templates(command))),
        Command::Cores { command, conn } => exit(client::run(conn, ClientCommand::Cores(command))),
        Command::Devices { command, conn } => exit(client::run(conn, ClientCommand::Devices(command))),
        Command::Deploy { args, conn } => exit(client::run(conn, ClientCommand::Deploy(args))),
        Command::Tasks { command, conn } => exit(client::run(conn, ClientCommand::Tasks(command))),
        Command::Fleet { software, conn } => exit(client::run(conn, ClientCommand::Fleet { software })),
        Command::Events { command, conn } => exit(client::run(conn, ClientCommand::Events(command))),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ggprov", &mut script);
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            ExitCode::SUCCESS
        }
    }
}

fn exit(code: client::Exit) -> ExitCode {
    ExitCode::from(code as u8)
}

fn serve(config_file: Option<&std::path::Path>, role: Option<&str>) -> ExitCode {
    let config = match Config::load(config_file) {
        Ok(mut config) => {
            if let Some(role) = role.and_then(ggprov::Role::parse) {
                config.worker.role = role;
            }
            config
        }
        Err(err) => {
            eprintln!("ggprov: {err}\nRun `ggprov serve --help` for every setting and its default.");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&config.telemetry.log, config.telemetry.log_format);
    for name in &config.unknown_env {
        tracing::warn!(variable = %name, "ignoring {name}: no such setting (see `ggprov serve --help`)");
    }
    // Blocking threads do the embedded default's file writes (each `fsync`ed, one disk) and the
    // AWS SDK's DNS lookups; past a few dozen they add no throughput, only a stack and an
    // allocator heap each (decision 86).
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(BLOCKING_THREADS).build() {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("ggprov: cannot start the async runtime: {err}");
                return ExitCode::FAILURE;
            }
        };
    let result = runtime.block_on(async {
        let app = Application::build(&config).await?;
        let shutdown = shutdown_signal();
        let addr = app.local_addr();
        let backend = match &config.storage.backend {
            ggprov::Backend::Embedded => "embedded",
            ggprov::Backend::Aws(_) => "aws",
        };
        tracing::info!(%addr, backend, role = ?config.worker.role, "ggprov serving");
        println!("ggprov listening on http://{addr}");
        app.run_until(shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ggprov: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn openapi(out: Option<&std::path::Path>) -> ExitCode {
    let text = ggprov::openapi_json();
    match out {
        None => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(path, format!("{text}\n")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("ggprov: cannot write {}: {err}", path.display());
                ExitCode::FAILURE
            }
        },
    }
}

fn with_config(file: Option<&std::path::Path>, run: impl FnOnce(&Config) -> anyhow::Result<()>) -> ExitCode {
    let config = match Config::load(file) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("ggprov: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init("warn", config.telemetry.log_format);
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ggprov: {err:#}");
            ExitCode::FAILURE
        }
    }
}
